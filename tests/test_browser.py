"""The demo page, the caption overlay and the JS SDK in a real headless Chromium.

The microphone is a real recording (Chromium's fake capture device plays
``misc/jfk.wav`` in a loop) and the gateway runs real Whisper, so these tests
see what a person would: captions of what was said.

Needs Debian's ``chromium`` and ``chromium-driver`` and the ``selenium`` Python
package; skipped, with the reason, when one is missing. Screenshots go to
``test-artifacts/`` and, for the docs, ``docs/img/demo.png`` and ``docs/img/overlay.png``.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from hushgate.server.settings import Settings
from tests.browser_helpers import (  # noqa: F401 - the *_fixture names are fixtures
    By,
    Keys,
    browser_fixture,
    console,
    finals,
    js,
    open_demo,
    publish_for_docs,
    save_screenshot,
    server_fixture,
    state,
    wait_for,
)
from tests.conftest import serve
from tests.fakes import FakeSynthesizer, FakeTranslator, fake_spec, fake_translate_spec, fake_tts_spec

pytestmark = pytest.mark.slow


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
