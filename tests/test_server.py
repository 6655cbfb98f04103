"""The gateway over a real socket, with the fake transcriber (plumbing only).

Speech is real (``../shared/audio``) so the real WebRTC VAD segments it; what
the fake engine "hears" is one word per 500 ms of utterance audio.
"""

from __future__ import annotations

import asyncio
import json

import httpx
import msgpack
import numpy as np
import pytest
import websockets

from hushgate.server.settings import Settings
from tests.audio_helpers import resample
from tests.conftest import serve, wait_until
from tests.fakes import FakeTranscriber, fake_spec
from tests.server_helpers import SETTINGS, fake_fixture, jfk_fixture, server_fixture  # noqa: F401 - fixtures
from tests.wsclient import Client


def check_utterance_events(received) -> None:  # noqa: ANN001
    """Per utterance: speech.started, then partials, then one final; times consistent."""
    seen: dict[int, list[str]] = {}
    for event in received.events:
        if "utterance" in event:
            seen.setdefault(event["utterance"], []).append(event["type"])
    assert seen, received.types
    for kinds in seen.values():
        assert kinds[0] == "speech.started" and kinds[-1] == "final" and kinds.count("final") == 1, kinds
    finals = received.of("final")
    assert [f["utterance"] for f in finals] == sorted(f["utterance"] for f in finals)
    for final in finals:
        assert final["t0_ms"] < final["t1_ms"]
        previous = final["t0_ms"]
        for word in final["words"]:
            assert final["t0_ms"] <= word["t0_ms"] <= word["t1_ms"] <= final["t1_ms"]
            assert word["t0_ms"] >= previous
            previous = word["t0_ms"]


@pytest.mark.parametrize("fmt", ["json", "msgpack"])
async def test_a_session_from_start_to_ended(server, jfk: np.ndarray, fmt: str, fake: FakeTranscriber) -> None:  # noqa: ANN001
    client = await Client.connect(server.ws(), fmt)
    ready = await client.start(16_000, language="en")
    assert ready["type"] == "ready"
    assert ready["audio"] == {"encoding": "pcm_s16le", "sample_rate": 16000, "channels": 1}
    assert ready["engines"]["stt"] == {"name": "fake", "model": "fake-model", "language": "en"}
    assert ready["limits"]["max_frame_bytes"] == SETTINGS.max_frame_bytes
    assert len(ready["session"]) == 36
    client.read_in_background()
    await client.stream(np.concatenate([jfk, np.zeros(16_000, np.int16)]))
    received = await client.finish()
    assert received.close_code == 1000
    check_utterance_events(received)
    assert received.of("partial"), "partials must arrive before the final"
    ended = received.events[-1]
    assert ended["type"] == "ended" and ended["reason"] == "stop"
    assert ended["stats"] == {"audio_ms": 12_000, "utterances": len(received.of("final"))}
    await wait_until(lambda: server.counters.active == 0)
    await wait_until(lambda: fake.open_streams == 0)


async def test_48k_input_is_resampled_onto_the_same_clock(server, jfk: np.ndarray) -> None:  # noqa: ANN001
    pcm48 = resample(jfk, 16_000, 48_000)
    client = await Client.connect(server.ws())
    await client.start(48_000)
    client.read_in_background()
    await client.stream(np.concatenate([pcm48, np.zeros(48_000, np.int16)]), rate_hz=48_000)
    received = await client.finish()
    check_utterance_events(received)
    assert received.events[-1]["stats"]["audio_ms"] == 12_000
    last = received.of("final")[-1]
    assert 10_000 <= last["t1_ms"] <= 11_500  # JFK stops talking near 10.6 s


async def test_flush_ends_the_utterance_now_and_ping_is_answered(server, jfk: np.ndarray) -> None:  # noqa: ANN001
    client = await Client.connect(server.ws())
    await client.start()
    await client.stream(jfk[: 16_000 * 2])  # mid-speech, no trailing silence
    await client.send({"type": "flush"})
    await client.send({"type": "ping"})
    events = [await client.next_event() for _ in range(3)]
    kinds = [e["type"] for e in events if e["type"] != "partial"]
    while "final" not in kinds or "pong" not in kinds:
        event = await client.next_event()
        if event["type"] != "partial":
            kinds.append(event["type"])
    assert "speech.started" in kinds
    received = await client.finish()
    assert received.close_code == 1000


async def test_feature_requests_answer_engine_unavailable_and_the_session_lives(server) -> None:  # noqa: ANN001
    client = await Client.connect(server.ws())
    await client.start(translate={"targets": ["es"]})
    notice = await client.next_event()
    assert notice["code"] == "engine_unavailable" and notice["fatal"] is False
    requests = [
        {"type": "speak", "id": "s1", "text": "hi"},
        {"type": "translate", "id": "t1", "text": "hi", "target": "es"},
        {"type": "enroll", "id": "e1", "consent": True},
        {"type": "verify", "id": "v1", "voiceprint_id": "x"},
        {"type": "voiceprint.import", "id": "i1", "voiceprint": "x"},
    ]
    for request in requests:
        await client.send(request)
        error = await client.next_event()
        assert (error["type"], error["code"], error["fatal"], error["id"]) == (
            "error",
            "engine_unavailable",
            False,
            request["id"],
        )
    for request in [
        {"type": "voiceprint.export", "id": "x1", "voiceprint_id": "x"},
        {"type": "voiceprint.delete", "id": "d1", "voiceprint_id": "x"},
    ]:
        await client.send(request)
        error = await client.next_event()
        assert (error["code"], error["fatal"], error["id"]) == ("unknown_voiceprint", False, request["id"])
    await client.send({"type": "ping"})
    assert (await client.next_event())["type"] == "pong"
    assert (await client.finish()).close_code == 1000


async def test_non_fatal_errors_keep_the_session(server) -> None:  # noqa: ANN001
    client = await Client.connect(server.ws())
    await client.start()
    for message, code in [
        ({"type": "dance", "id": "d1"}, "bad_message"),
        ({"type": "start", "audio": {"sample_rate": 16000}}, "bad_message"),
        # A malformed or unsupported repeat of `start` is no reason to end the session.
        ({"type": "start", "audio": {"sample_rate": "fast"}}, "bad_message"),
        ({"type": "start", "audio": {"sample_rate": 96000}}, "unsupported_audio"),
        ({"type": "enroll", "id": "e0", "consent": False}, "consent_required"),
        ({"type": "enroll", "id": "e1"}, "consent_required"),
        ({"type": "speak", "id": "s1", "text": 12}, "bad_message"),
    ]:
        await client.send(message)
        error = await client.next_event()
        assert (error["code"], error["fatal"]) == (code, False)
    await client.send({"type": "ping"})
    assert (await client.next_event())["type"] == "pong"


async def test_faster_than_real_time_with_a_slow_engine_loses_nothing(jfk: np.ndarray) -> None:
    """The backlog fills, the reader stops reading, TCP pushes back; every utterance still gets its final."""
    slow = FakeTranscriber(delay_s=0.02)
    settings = Settings(stt=("en=fake",), translators=(), synthesizers=(), speaker_encoder="", backlog_ms=1_000)
    with serve(settings, [fake_spec(slow)]) as server:
        audio = np.concatenate([jfk, np.zeros(16_000, np.int16)] * 3)
        client = await Client.connect(server.ws())
        await client.start(partials=False)
        client.read_in_background()
        await client.stream(audio, chunk_ms=20)
        received = await client.finish()
        assert received.close_code == 1000
        assert received.events[-1]["stats"]["audio_ms"] == 36_000
        assert len(received.of("final")) == len(received.of("speech.started")) >= 3
        assert not received.of("partial")  # partials: false is honoured


async def test_engine_failure_is_an_error_for_that_session_only(jfk: np.ndarray) -> None:
    broken = FakeTranscriber(fail_on_accept=True)
    with serve(
        Settings(stt=("en=fake",), translators=(), synthesizers=(), speaker_encoder=""), [fake_spec(broken)]
    ) as server:
        client = await Client.connect(server.ws())
        await client.start()
        client.read_in_background()
        await client.stream(np.concatenate([jfk, np.zeros(16_000, np.int16)]))
        received = await client.finish()
        assert received.close_code == 1000 and received.events[-1]["type"] == "ended"
        assert {e["code"] for e in received.of("error")} == {"internal"}
        assert all(not e["fatal"] for e in received.of("error"))


async def test_idle_session_ends_by_itself() -> None:
    with serve(
        Settings(stt=("en=fake",), translators=(), synthesizers=(), speaker_encoder="", idle_timeout_s=0.5),
        [fake_spec()],
    ) as server:
        client = await Client.connect(server.ws())
        await client.start()
        received = await client.closed(timeout_s=10)
        assert received.close_code == 1000 and received.events[-1]["reason"] == "idle"


async def test_http_routes(server) -> None:  # noqa: ANN001
    async with httpx.AsyncClient() as http:
        assert (await http.get(server.http + "/healthz")).json() == {"status": "ok"}
        assert (await http.get(server.http + "/readyz")).status_code == 200
        engines = (await http.get(server.http + "/v1/engines")).json()
        assert engines["languages"] == ["en", "xx"]
        assert engines["engines"]["stt"][0]["engine"] == "fake"
        assert engines["limits"]["max_sessions"] == SETTINGS.max_sessions
        assert (await http.get(server.http + "/")).status_code == 200


async def test_readyz_is_503_until_engines_load() -> None:
    import threading

    from hushgate.engines.base import EngineSpec

    gate = threading.Event()

    def slow_factory(options):  # noqa: ANN001, ANN202
        gate.wait(10)
        return FakeTranscriber()

    spec = EngineSpec(name="fake", capability="stt", factory=slow_factory)
    import uvicorn

    from hushgate.engines.registry import EngineRegistry
    from hushgate.server.app import create_app
    from tests.conftest import free_port

    port = free_port()
    app = create_app(
        Settings(stt=("en=fake",), translators=(), synthesizers=(), speaker_encoder="", port=port),
        registry=EngineRegistry([spec]),
    )
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        async with httpx.AsyncClient() as http:
            for _ in range(100):
                try:
                    response = await http.get(f"http://127.0.0.1:{port}/readyz")
                    break
                except httpx.HTTPError:
                    await asyncio.sleep(0.05)
            assert response.status_code == 503
            assert (await http.get(f"http://127.0.0.1:{port}/healthz")).status_code == 200
            client = await Client.connect(f"ws://127.0.0.1:{port}/v1/stream")
            received = await client.closed()
            assert received.close_code == 1013 and received.of("error")[0]["code"] == "engine_unavailable"
            gate.set()
            for _ in range(100):
                if (await http.get(f"http://127.0.0.1:{port}/readyz")).status_code == 200:
                    break
                await asyncio.sleep(0.05)
            assert (await http.get(f"http://127.0.0.1:{port}/readyz")).status_code == 200
    finally:
        gate.set()
        server.should_exit = True
        thread.join(10)


def test_msgpack_client_bytes_are_binary() -> None:
    # A guard for the test client itself: msgpack audio must travel as bin, not str.
    packed = msgpack.packb({"type": "audio", "pcm": b"\x00\x01"}, use_bin_type=True)
    assert msgpack.unpackb(packed, raw=False)["pcm"] == b"\x00\x01"
    assert websockets  # imported for the client


async def test_control_messages_are_rate_limited_but_stop_always_works() -> None:
    settings = Settings(stt=("en=fake",), translators=(), synthesizers=(), speaker_encoder="", control_rate_per_s=5)
    with serve(settings, [fake_spec()]) as server:
        client = await Client.connect(server.ws())
        await client.start()
        for _ in range(15):
            await client.send({"type": "ping"})
        client.read_in_background()
        received = await client.finish()
    refused = [e for e in received.of("error") if e["code"] == "overloaded"]
    # A burst of twice the rate, then refusals (not fatal until another burst's worth: test_hostile_input).
    assert len(received.of("pong")) in (10, 11) and len(refused) in (4, 5) and not refused[0]["fatal"]
    assert received.close_code == 1000 and received.types[-1] == "ended"


async def test_a_session_that_falls_behind_is_told(jfk: np.ndarray) -> None:
    slow = FakeTranscriber(real_time_factor=1.5)  # an engine slower than real time
    settings = Settings(stt=("en=fake",), translators=(), synthesizers=(), speaker_encoder="", lag_warning_ms=1000)
    with serve(settings, [fake_spec(slow)]) as server:
        client = await Client.connect(server.ws())
        await client.start(partials=False)
        client.read_in_background()
        await client.stream(np.concatenate([jfk, np.zeros(16_000, np.int16)]), chunk_ms=20, realtime=True)
        received = await client.finish()
    notices = [e for e in received.of("error") if e["code"] == "overloaded"]
    assert notices and "behind" in notices[0]["message"] and not notices[0]["fatal"]
    assert received.of("final")  # late, but not lost


def test_json_logs_are_one_object_per_line() -> None:
    import logging

    from hushgate.server.cli import JsonFormatter

    record = logging.LogRecord("hushgate.session", logging.INFO, __file__, 1, "session %s closed", ("abc",), None)
    line = JsonFormatter().format(record)
    assert json.loads(line) == {
        **json.loads(line),
        "level": "info",
        "logger": "hushgate.session",
        "message": "session abc closed",
    }
