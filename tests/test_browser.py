"""The demo page, the caption overlay and the JS SDK in a real headless Chromium.

The microphone is a real recording (Chromium's fake capture device plays
``misc/jfk.wav`` in a loop) and the gateway runs real Whisper, so these tests
see what a person would: captions of what was said.

Needs Debian's ``chromium`` and ``chromium-driver`` and the ``selenium`` Python
package; skipped, with the reason, when one is missing. Screenshots go to
``test-artifacts/`` and, for the docs, ``docs/img/demo.png`` and ``docs/img/overlay.png``.
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
from tests.fakes import FakeSynthesizer, FakeTranslator, fake_spec, fake_translate_spec, fake_tts_spec

pytestmark = pytest.mark.slow

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed: pip install selenium")
from selenium.common.exceptions import TimeoutException, WebDriverException  # noqa: E402
from selenium.webdriver.chrome.options import Options  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
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


@pytest.fixture(scope="module")
def server() -> Iterator[Any]:
    with serve(Settings(stt=("en=whisper",), translators=(), synthesizers=(), speaker_encoder="")) as running:
        yield running


@pytest.fixture
def browser(tmp_path: Path, audio_dir: Path, request: pytest.FixtureRequest) -> Iterator[Any]:
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


# Tests ------------------------------------------------------------------------------------


def test_demo_captions_the_microphone_and_feeds_the_overlay(server: Any, browser: Any) -> None:
    # The overlay, in its own tab, gets the demo's captions over a BroadcastChannel.
    browser.get(server.http + "/overlay?lines=3&size=40")
    overlay_tab = browser.current_window_handle
    browser.switch_to.new_window("tab")
    demo_tab = browser.current_window_handle
    open_demo(browser, server)
    assert state(browser) == "Ready"
    # Record every partial the page shows, however briefly.
    js(
        browser,
        """
        window.partialsSeen = [];
        new MutationObserver((records) => {
          for (const r of records) for (const n of r.addedNodes) {
            if (n.nodeType === 1 && n.classList.contains('partial') && n.textContent !== '…')
              window.partialsSeen.push(n.textContent);
          }
        }).observe(document.getElementById('rows'), {childList: true, subtree: true});
    """,
    )

    browser.find_element(By.ID, "start").click()
    wait_for(browser, "the session to open", lambda d: state(d) == "Listening", 30)
    assert not browser.find_element(By.ID, "start").is_enabled()
    assert browser.find_element(By.ID, "stop").is_enabled()
    assert "whisper" in browser.find_element(By.ID, "engine-info").text
    wait_for(
        browser,
        "the level meter to move",
        lambda d: int(d.find_element(By.ID, "meter").get_attribute("aria-valuenow")) > 5,
        15,
    )

    wait_for(browser, "a final containing 'country'", lambda d: any("country" in f.lower() for f in finals(d)), 60)
    # A few more captions make a better picture, and show timestamps advancing.
    wait_for(browser, "three finals", lambda d: len(finals(d)) >= 3, 60)
    text = " ".join(finals(browser)).lower()
    assert "ask not what your country" in text or "what you can do for your country" in text, text
    times = js(browser, "return [...document.querySelectorAll('#rows .row.final .time')].map(e => e.textContent)")
    assert all(re.fullmatch(r"\d\d:\d\d", t) for t in times), times
    assert times == sorted(times), times
    assert js(browser, "return window.partialsSeen.length") > 0, "no partial was ever shown"
    assert not browser.find_elements(By.CSS_SELECTOR, ".notice[data-kind='error']"), console(browser)
    demo_png = save_screenshot(browser, "demo.png", width=1366, full_page=True)
    save_screenshot(browser, "demo-narrow.png", width=390, height=844)

    browser.switch_to.window(overlay_tab)
    wait_for(
        browser,
        "the overlay to show the demo's captions",
        lambda d: d.find_element(By.ID, "captions").text.strip() != "",
        15,
    )
    lines = browser.find_elements(By.CSS_SELECTOR, "#captions .line")
    assert 1 <= len(lines) <= 3
    save_screenshot(browser, "overlay-from-demo.png", width=1280, height=360, transparent=True)

    browser.switch_to.window(demo_tab)
    browser.find_element(By.ID, "stop").click()
    wait_for(browser, "the session to end", lambda d: state(d) == "Stopped", 60)
    assert browser.find_element(By.ID, "start").is_enabled()
    assert "Last session:" in browser.find_element(By.ID, "engine-info").text
    publish_for_docs(demo_png, "demo.png")


def test_overlay_with_its_own_microphone(server: Any, browser: Any) -> None:
    browser.get(server.http + "/overlay?mic=1&lines=2&size=52")
    assert js(browser, "return getComputedStyle(document.body).backgroundColor") == "rgba(0, 0, 0, 0)"
    wait_for(
        browser,
        "the overlay's captions to include 'country'",
        lambda d: "country" in d.find_element(By.ID, "captions").text.lower(),
        90,
    )
    lines = browser.find_elements(By.CSS_SELECTOR, "#captions .line")
    assert 1 <= len(lines) <= 2
    size = js(browser, "return getComputedStyle(document.getElementById('captions')).fontSize")
    assert size == "52px"
    # Wait for a finished caption, not a guess in progress, for the picture.
    wait_for(
        browser, "a finished caption", lambda d: d.find_elements(By.CSS_SELECTOR, "#captions .line:not(.partial)"), 30
    )
    assert browser.find_element(By.ID, "status").text == ""
    path = save_screenshot(browser, "overlay.png", width=1280, height=300, transparent=True)
    publish_for_docs(path, "overlay.png")


def test_overlay_options_and_translation_target(server: Any, browser: Any) -> None:
    """Captions fed over the BroadcastChannel; `lines`, `target`, `color` and `position` obeyed."""
    browser.get(server.http + "/overlay?lines=2&target=es&color=ffff00&bg=transparent&position=top&hint=0")
    post = """
        const channel = new BroadcastChannel('hushgate-captions');
        for (const m of arguments[0]) channel.postMessage(m);
        channel.close();
    """
    js(
        browser,
        post,
        [
            {"kind": "final", "key": "a:0", "text": "one"},
            {"kind": "translation", "key": "a:0", "target": "es", "text": "uno"},
            {"kind": "final", "key": "a:1", "text": "two"},
            {"kind": "translation", "key": "a:1", "target": "fr", "text": "deux"},
            {"kind": "translation", "key": "a:1", "target": "es", "text": "dos"},
            {"kind": "final", "key": "a:2", "text": "three"},
            {"kind": "translation", "key": "a:2", "target": "es", "text": "tr", "provisional": True},
        ],
    )
    wait_for(
        browser,
        "the Spanish captions",
        lambda d: [e.text for e in d.find_elements(By.CSS_SELECTOR, "#captions .line")] == ["dos", "tr"],
        10,
    )
    style = js(
        browser,
        """
        const s = getComputedStyle(document.getElementById('box'));
        return [s.color, s.backgroundColor, getComputedStyle(document.body).justifyContent];
    """,
    )
    assert style == ["rgb(255, 255, 0)", "rgba(0, 0, 0, 0)", "flex-start"]
    js(browser, post, [{"kind": "translation", "key": "a:2", "target": "es", "text": "tres"}, {"kind": "reset"}])
    wait_for(browser, "the reset", lambda d: not d.find_elements(By.CSS_SELECTOR, "#captions .line"), 10)
    assert not browser.find_element(By.ID, "box").is_displayed()


def test_enrollment_needs_consent_and_unavailable_features_are_calm(server: Any, browser: Any) -> None:
    open_demo(browser, server)
    enroll = browser.find_element(By.ID, "enroll")
    consent = browser.find_element(By.ID, "consent")
    assert not consent.is_selected()
    assert not enroll.is_enabled(), "Enroll must be disabled until consent is given"

    # Keyboard only: Tab reaches the skip link, then Start, with a visible focus ring.
    body = browser.find_element(By.TAG_NAME, "body")
    body.send_keys(Keys.TAB)
    body = browser.switch_to.active_element
    body.send_keys(Keys.TAB)
    focused = browser.switch_to.active_element
    assert focused.get_attribute("id") == "start"
    assert js(browser, "return getComputedStyle(document.activeElement).outlineStyle") == "solid"

    consent.send_keys(Keys.SPACE)
    assert consent.is_selected()
    assert enroll.is_enabled()
    consent.send_keys(Keys.SPACE)
    assert not enroll.is_enabled()
    consent.send_keys(Keys.SPACE)

    browser.find_element(By.ID, "start").send_keys(Keys.ENTER)
    wait_for(browser, "the session to open", lambda d: state(d) == "Listening", 30)
    enroll.click()
    status = browser.find_element(By.ID, "enroll-status")
    wait_for(browser, "the answer to enroll", lambda d: "not available" in status.text, 15)
    assert "The rest of the demo works as usual." in status.text
    assert not browser.find_elements(By.CSS_SELECTOR, ".notice[data-kind='error']")
    assert state(browser) == "Listening"
    browser.find_element(By.ID, "stop").click()
    wait_for(browser, "the session to end", lambda d: state(d) == "Stopped", 60)


def test_demo_translation_columns_and_speech(browser: Any) -> None:
    """With (fake) translation and speech engines: one column per chosen target,
    spoken translations, and the Speak box both without and within a session."""
    settings = Settings(stt=("en=fake",), translators=("fake-translate",), synthesizers=("fake-tts",))
    specs = [fake_spec(), fake_translate_spec(FakeTranslator()), fake_tts_spec(FakeSynthesizer())]
    with serve(settings, specs) as server:
        open_demo(browser, server)
        targets = js(browser, "return [...document.querySelectorAll('#targets input')].map(b => b.value)")
        assert targets == ["es", "fr"]
        voices = js(browser, "return [...document.querySelectorAll('#voice option')].map(o => o.value)")
        assert voices == ["", "fake-en", "fake-es"]

        # Without a session, Speak uses POST /v1/tts and plays the WAV.
        browser.find_element(By.ID, "speak").click()
        status = browser.find_element(By.ID, "speak-status")
        wait_for(browser, "speech over HTTP", lambda d: status.text.startswith("Spoken:"), 15)
        assert "fake-en" in status.text

        for code in ("es", "fr"):
            browser.find_element(By.CSS_SELECTOR, f"#targets input[value='{code}']").click()
        browser.find_element(By.ID, "speak-translations").click()
        browser.find_element(By.ID, "start").click()
        wait_for(browser, "the session to open", lambda d: state(d) == "Listening", 30)
        head = js(browser, "return [...document.querySelectorAll('#transcript-head > div')].map(e => e.textContent)")
        assert head == ["Time", "English", "Spanish", "French"]
        translated = (
            "return [...document.querySelectorAll('#rows .row.final .cell.translation')].map(e => e.textContent)"
        )
        wait_for(
            browser,
            "translations in both columns",
            lambda d: (
                any(t.startswith("[es] word0") for t in js(d, translated))
                and any(t.startswith("[fr] word0") for t in js(d, translated))
            ),
            60,
        )
        assert not browser.find_elements(By.CSS_SELECTOR, ".notice[data-kind='error']"), console(browser)

        # Within the session, Speak goes over the WebSocket (queued behind spoken translations).
        browser.find_element(By.ID, "speak-text").clear()
        browser.find_element(By.ID, "speak-text").send_keys("Your table is ready")
        browser.find_element(By.ID, "speak").click()
        wait_for(
            browser,
            "speech over the session",
            lambda d: status.text.startswith("Spoken: 1.6 s") and "fake-en" in status.text,
            30,
        )
        save_screenshot(browser, "demo-translations.png", width=1366, full_page=True)
        browser.find_element(By.ID, "stop").click()
        wait_for(browser, "the session to end", lambda d: state(d) == "Stopped", 60)


SDK_SESSION = """
const [format, done] = [arguments[0], arguments[arguments.length - 1]];
(async () => {
  const { connect } = await import('/web/sdk.js');
  const types = [];
  const s = await connect('/v1/stream', { format, sampleRate: 16000, language: 'en', words: false });
  s.addEventListener('message', (e) => types.push(e.detail.type));
  const codeOf = async (p) => { try { await p; return 'resolved'; } catch (e) { return e.code; } };
  const rtt = await s.ping();
  const translate = await codeOf(s.translate('hello', { target: 'es' }));
  const speak = await codeOf(s.speak('hello'));
  const enroll = await codeOf(s.enroll({ consent: true, label: 'Ana' }));
  const noConsent = await codeOf(s.enroll({ consent: false }));
  const verify = await codeOf(s.verify('00000000-0000-4000-8000-000000000000'));
  for (let i = 0; i < 50; i++) s.sendPcm(new Int16Array(320));  // one second of silence
  s.flush();
  const ended = await s.stop();
  return { rtt, translate, speak, enroll, noConsent, verify, ended, types, state: s.state,
           audio: s.readyInfo.audio, url: s.url };
})().then(done, (e) => done({ failed: String(e), code: e.code }));
"""


@pytest.mark.parametrize("fmt", ["json", "msgpack"])
def test_sdk_session_in_the_browser(server: Any, browser: Any, fmt: str) -> None:
    browser.get(server.http + "/overlay?hint=0")  # any page of the gateway's origin
    result = browser.execute_async_script(SDK_SESSION, fmt)
    assert "failed" not in result, result
    assert result["rtt"] >= 0
    assert result["translate"] == "engine_unavailable"
    assert result["speak"] == "engine_unavailable"
    assert result["enroll"] == "engine_unavailable"
    assert result["noConsent"] == "consent_required"  # refused by the SDK before sending
    assert result["verify"] == "engine_unavailable"
    assert result["ended"]["stats"]["audio_ms"] == 1000
    assert result["audio"] == {"encoding": "pcm_s16le", "sample_rate": 16000, "channels": 1}
    assert result["types"][0] == "pong" and result["types"][-1] == "ended"
    assert result["state"] == "closed"
    assert ("format=msgpack" in result["url"]) == (fmt == "msgpack")


SDK_RECONNECT = """
const [url, options, done] = [arguments[0], arguments[1], arguments[arguments.length - 1]];
(async () => {
  const { GatewaySession } = await import('/web/sdk.js');
  const s = new GatewaySession(url, options);
  const attempts = [];
  s.addEventListener('reconnecting', (e) => attempts.push(e.detail));
  const t0 = performance.now();
  try { await s.open(); return { opened: true }; }
  catch (e) { return { code: e.code, attempts, ms: performance.now() - t0, state: s.state }; }
})().then(done, (e) => done({ failed: String(e) }));
"""


def test_sdk_reconnects_with_backoff_and_gives_up(server: Any, browser: Any) -> None:
    from tests.conftest import free_port

    browser.get(server.http + "/overlay?hint=0")
    nobody = f"ws://127.0.0.1:{free_port()}/v1/stream"
    result = browser.execute_async_script(
        SDK_RECONNECT, nobody, {"sampleRate": 16000, "reconnect": {"retries": 3, "baseDelayMs": 100}}
    )
    assert result["code"] == "connection", result
    assert [a["attempt"] for a in result["attempts"]] == [1, 2, 3]
    delays = [a["delayMs"] for a in result["attempts"]]
    for delay, nominal in zip(delays, [100, 200, 400], strict=True):
        assert 0.8 * nominal <= delay <= 1.2 * nominal, delays
    assert result["ms"] >= sum(delays)
    assert result["state"] == "closed"

    # A refusal that retrying cannot fix (a language with no engine, close 1003) is not retried.
    result = browser.execute_async_script(
        SDK_RECONNECT,
        "/v1/stream",
        {"sampleRate": 16000, "language": "xx", "reconnect": {"retries": 3, "baseDelayMs": 100}},
    )
    assert result["code"] == "engine_unavailable", result
    assert result["attempts"] == []
