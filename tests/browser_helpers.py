"""What the headless-Chromium tests share: the browser (skipped when Chromium or selenium is missing),
a Whisper server, waits and screenshots.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from hushgate.server.settings import Settings
from tests.conftest import serve

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed: pip install selenium")
from selenium.common.exceptions import TimeoutException, WebDriverException  # noqa: E402
from selenium.webdriver.chrome.options import Options  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402, F401 - for tests/test_browser.py
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts"
DOCS_IMG = ROOT / "docs" / "img"


def _find(*names: str) -> str | None:
    for name in names:
        found = shutil.which(name) or (name if Path(name).is_file() else None)
        if found:
            return found
    return None


CHROMIUM = _find("chromium", "/usr/bin/chromium", "chromium-browser")
CHROMEDRIVER = _find("chromedriver", "/usr/bin/chromedriver")
if CHROMIUM is None or CHROMEDRIVER is None:
    pytest.skip(
        "Chromium is not installed: apt-get install -y chromium chromium-driver",
        allow_module_level=True,
    )

FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
    "--autoplay-policy=no-user-gesture-required",
    "--window-size=1366,900",
    "--force-device-scale-factor=1",
    "--lang=en-US",
)


@pytest.fixture(name="server", scope="module")
def server_fixture() -> Iterator[Any]:
    with serve(Settings(stt=("en=whisper",), translators=(), synthesizers=(), speaker_encoder="")) as running:
        yield running


@pytest.fixture(name="browser")
def browser_fixture(tmp_path: Path, audio_dir: Path, request: pytest.FixtureRequest) -> Iterator[Any]:
    options = Options()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path / 'chromium-profile'}")
    # Chromium reads the WAV itself and loops it: a real voice as the microphone.
    options.add_argument(f"--use-file-for-fake-audio-capture={audio_dir / 'misc' / 'jfk.wav'}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    try:
        driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    except WebDriverException as exc:
        pytest.fail(f"Chromium did not start: {exc.msg}")
    driver.set_script_timeout(60)
    failures_before = request.session.testsfailed
    try:
        yield driver
    finally:
        if request.session.testsfailed > failures_before:  # this test failed: keep the evidence
            ARTIFACTS.mkdir(exist_ok=True)
            name = re.sub(r"\W+", "_", request.node.name)
            for i, handle in enumerate(driver.window_handles):
                driver.switch_to.window(handle)
                driver.save_screenshot(str(ARTIFACTS / f"failed-{name}-{i}.png"))
            print("browser console:\n" + console(driver))
        driver.quit()


def console(driver: Any) -> str:
    try:
        return "\n".join(f"{e['level']}: {e['message']}" for e in driver.get_log("browser"))
    except WebDriverException:
        return "(no console log)"


def wait_for(driver: Any, what: str, condition: Callable[[Any], Any], timeout_s: float) -> Any:
    try:
        return WebDriverWait(driver, timeout_s, poll_frequency=0.2).until(condition)
    except TimeoutException:
        raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}") from None


def js(driver: Any, script: str, *args: Any) -> Any:
    return driver.execute_script(script, *args)


def save_screenshot(
    driver: Any,
    name: str,
    *,
    width: int | None = None,
    height: int | None = None,
    full_page: bool = False,
    transparent: bool = False,
) -> Path:
    """A PNG of the page at an exact viewport size (or its whole height)."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    width = width or js(driver, "return window.innerWidth")
    height = height or js(driver, "return window.innerHeight")

    def viewport(h: int) -> None:
        driver.execute_cdp_cmd(
            "Emulation.setDeviceMetricsOverride", {"width": width, "height": h, "deviceScaleFactor": 1, "mobile": False}
        )

    try:
        viewport(height)
        if full_page:
            for _ in range(3):  # the layout may grow with the viewport; settle it
                full = js(driver, "return Math.ceil(document.documentElement.scrollHeight)")
                if full <= height:
                    break
                height = full
                viewport(height)
        if transparent:
            # Keep the page's transparency in the PNG, as streaming software sees it.
            driver.execute_cdp_cmd(
                "Emulation.setDefaultBackgroundColorOverride", {"color": {"r": 0, "g": 0, "b": 0, "a": 0}}
            )
        time.sleep(0.3)  # one more frame at the new size
        driver.save_screenshot(str(path))
    finally:
        if transparent:
            driver.execute_cdp_cmd("Emulation.setDefaultBackgroundColorOverride", {})
        driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    return path


def publish_for_docs(path: Path, name: str) -> None:
    # The README's pictures change only when asked: UPDATE_DOCS_IMAGES=1 scripts/test.sh
    if os.environ.get("UPDATE_DOCS_IMAGES") == "1":
        DOCS_IMG.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, DOCS_IMG / name)


def open_demo(driver: Any, server: Any) -> None:
    driver.get(server.http + "/")
    wait_for(driver, "the demo to load the server's engines", lambda d: d.find_element(By.ID, "start").is_enabled(), 30)
    assert js(driver, "return [...document.querySelectorAll('#language option')].map(o => o.value)") == ["en"]


def finals(driver: Any) -> list[str]:
    return js(driver, "return [...document.querySelectorAll('#rows .row.final .cell.source')].map(e => e.textContent)")


def state(driver: Any) -> str:
    return driver.find_element(By.ID, "connection").text
