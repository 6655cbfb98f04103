"""The JS SDK in a real headless Chromium against a Whisper server: a session in each encoding, reconnects."""

from __future__ import annotations

from typing import Any

import pytest

from tests.browser_helpers import browser_fixture, js, server_fixture, state  # noqa: F401 - the *_fixture names are fixtures

pytestmark = pytest.mark.slow


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
