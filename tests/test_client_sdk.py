"""The Python SDK (hushgate.client) against a real server on loopback with fake engines,
so every expectation is exact.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterator

import httpx
import numpy as np
import pytest

from hushgate.client import (
    Client,
    Ended,
    EngineInfo,
    Enrolled,
    EnrollProgress,
    Final,
    GatewayError,
    Partial,
    Pong,
    Ready,
    ServerError,
    Speaker,
    SpeakerUpdate,
    SpeechStarted,
    Translation,
    TtsAudio,
    TtsEnd,
    TtsStart,
    Verified,
    VoiceprintDeleted,
    VoiceprintExported,
    VoiceprintImported,
    Word,
)
from hushgate.client.sync import SyncClient
from hushgate.server.auth import hash_key
from hushgate.server.settings import Settings
from tests.client_helpers import FORMATS, JFK, MAX_FRAME, jfk_fixture, server_fixture, speech, until  # noqa: F401 - fixtures
from tests.conftest import free_port, serve
from tests.fakes import fake_spec


@pytest.mark.parametrize("fmt", FORMATS)
async def test_a_session_uses_every_request_and_gets_typed_events(server, jfk: np.ndarray, fmt: str) -> None:  # noqa: ANN001
    audio = speech(jfk)
    async with Client(server.ws(), format=fmt).session(16_000, translate=["es"]) as s:
        ready = s.ready
        assert ready.sample_rate_hz == 16_000 and ready.audio["sample_rate"] == 16_000
        assert ready.stt == EngineInfo("fake", "fake-model", "en")
        assert ready.translate == {"es": EngineInfo("fake-translate", "en-es")}
        assert ready.tts == EngineInfo("fake-tts", "fake-en") and ready.vad is not None
        assert ready.max_frame_bytes == MAX_FRAME
        await s.ping()
        assert await s.translate("good morning", "es", id="t1") == "t1"
        assert await s.speak("hello there", id="s1") == "s1"
        await s.translate("good morning", "de", id="t2")
        generated = await s.speak("hola", voice="fake-es")  # an id is made up when none is given
        await s.send_audio(audio[: 16_000 * 4])  # int16 array, bigger than a frame: split
        await s.send_audio(audio[16_000 * 4 : 16_000 * 8].tobytes())
        await s.send_audio(audio[16_000 * 8 :].astype(np.float32) / 32768.0)
        await s.flush()
        events = await s.finish(timeout_s=60)
    assert isinstance(events[-1], Ended) and events[-1].reason == "stop"
    assert events[-1].audio_ms == len(audio) * 1000 // 16_000
    assert sum(isinstance(e, Pong) for e in events) == 1
    (answer,) = [e for e in events if isinstance(e, Translation) and e.id == "t1"]
    assert (answer.source, answer.target, answer.text, answer.utterance) == ("en", "es", "[es] good morning", None)
    (refusal,) = [e for e in events if isinstance(e, ServerError)]
    assert (refusal.code, refusal.id, refusal.fatal) == ("engine_unavailable", "t2", False)
    # Speech: start, end and audio of each synthesis carry its id, in both encodings.
    for request_id, voice, rate, chars in [("s1", "fake-en", 16_000, [5, 5]), (generated, "fake-es", 22_050, [4])]:
        (start,) = [e for e in events if isinstance(e, TtsStart) and e.id == request_id]
        assert (start.sample_rate, start.voice) == (rate, voice)
        pcm = b"".join(e.pcm for e in events if isinstance(e, TtsAudio) and e.id == request_id)
        assert len(pcm) == 2 * sum(rate * n // 10 for n in chars)
        (end,) = [e for e in events if isinstance(e, TtsEnd) and e.id == request_id]
        assert end.duration_ms == len(pcm) // 2 * 1000 // rate
        assert events.index(start) < events.index(end)
    # Captions: per utterance speech.started, partials, one final with words, its translation.
    finals = [e for e in events if isinstance(e, Final)]
    assert len(finals) >= 2 and events[-1].utterances == len(finals)
    assert [f.utterance for f in finals] == list(range(len(finals)))
    for final in finals:
        assert final.text.startswith("word0") and final.t0_ms < final.t1_ms
        assert final.words is not None and [w.w for w in final.words] == final.text.split()
        assert all(isinstance(w, Word) and final.t0_ms <= w.t0_ms <= w.t1_ms <= final.t1_ms for w in final.words)
        (started,) = [e for e in events if isinstance(e, SpeechStarted) and e.utterance == final.utterance]
        assert events.index(started) < events.index(final)
        (translated,) = [e for e in events if isinstance(e, Translation) and e.utterance == final.utterance]
        assert translated.text == f"[es] {final.text}" and events.index(translated) > events.index(final)
    assert any(isinstance(e, Partial) for e in events)


@pytest.mark.parametrize("fmt", FORMATS)
async def test_speaker_requests_and_events(server, jfk: np.ndarray, fmt: str) -> None:  # noqa: ANN001
    async with Client(server.ws(), format=fmt).session(16_000, speakers={"identify": True, "diarize": True}) as s:
        await s.enroll(consent=False, id="e0")
        refusal, _ = await until(s, ServerError)
        assert (refusal.code, refusal.id, refusal.fatal) == ("consent_required", "e0", False)
        assert await s.enroll(consent=True, label="Ana", needed_ms=4_000, id="e1") == "e1"
        progress, _ = await until(s, EnrollProgress)
        assert (progress.id, progress.speech_ms, progress.needed_ms) == ("e1", 0, 4_000)
        await s.send_audio(speech(jfk))
        await s.flush()
        enrolled, seen = await until(s, Enrolled)
        assert (enrolled.id, enrolled.label) == ("e1", "Ana") and enrolled.speech_ms >= 4_000
        # Finals go out before the (slow) encoder is done: the speaker follows in its own event.
        updates = [e for e in seen if isinstance(e, SpeakerUpdate)]
        assert updates and all(u.speaker is not None and u.speaker.label.startswith("Guest-") for u in updates)

        await s.verify(enrolled.voiceprint_id, id="v1")
        await s.send_audio(speech(jfk)[: 16_000 * 4])
        await s.flush()
        verified, seen = await until(s, Verified)
        assert (verified.id, verified.voiceprint_id, verified.decision) == ("v1", enrolled.voiceprint_id, "accept")
        assert verified.accepted and verified.score >= 0.5
        identified = [e.speaker for e in seen if isinstance(e, SpeakerUpdate) and e.speaker is not None]
        assert Speaker(enrolled.voiceprint_id, "Ana", identified[-1].score) in identified

        await s.export_voiceprint(enrolled.voiceprint_id, id="x1")
        exported, _ = await until(s, VoiceprintExported)
        assert (exported.id, exported.voiceprint_id) == ("x1", enrolled.voiceprint_id) and exported.voiceprint
        await s.delete_voiceprint(enrolled.voiceprint_id, id="d1")
        deleted, _ = await until(s, VoiceprintDeleted)
        assert (deleted.id, deleted.voiceprint_id) == ("d1", enrolled.voiceprint_id)
        await s.import_voiceprint(exported.voiceprint, id="i1")
        imported, _ = await until(s, VoiceprintImported)
        assert (imported.id, imported.voiceprint_id, imported.label) == ("i1", enrolled.voiceprint_id, "Ana")
        await s.delete_voiceprint("no-such-voiceprint", id="d2")
        unknown, _ = await until(s, ServerError)
        assert (unknown.code, unknown.id) == ("unknown_voiceprint", "d2")
        rest = await s.finish(timeout_s=60)
    assert isinstance(rest[-1], Ended)


@pytest.mark.parametrize("fmt", FORMATS)
async def test_stream_sends_while_yielding_and_stops_at_the_end(server, jfk: np.ndarray, fmt: str) -> None:  # noqa: ANN001
    client = Client(server.ws(), format=fmt)
    audio = speech(jfk)
    chunks = [audio[i : i + 1600] for i in range(0, len(audio), 1600)]

    async def paced() -> AsyncIterator[np.ndarray]:
        for chunk in chunks:
            await asyncio.sleep(0)
            yield chunk

    for source in (chunks, paced()):
        events = [e async for e in client.stream(source, 16_000, translate="es", partials=False)]
        assert isinstance(events[0], Ready) and isinstance(events[-1], Ended)
        finals = [e for e in events if isinstance(e, Final)]
        assert len(finals) == events[-1].utterances >= 2 and not any(isinstance(e, Partial) for e in events)
        assert events[-1].audio_ms == len(audio) * 1000 // 16_000
        assert len([e for e in events if isinstance(e, Translation)]) == len(finals)


async def test_stream_can_be_left_early_and_raises_what_the_audio_source_raises(server, jfk: np.ndarray) -> None:  # noqa: ANN001
    client = Client(server.ws())

    def endless() -> Iterator[np.ndarray]:
        while True:
            yield from (jfk[i : i + 1600] for i in range(0, len(jfk), 1600))

    async with contextlib.aclosing(client.stream(endless(), 16_000)) as events:
        async for event in events:
            if isinstance(event, Final):
                break
    assert isinstance(event, Final)

    def unplugged() -> Iterator[np.ndarray]:
        yield jfk[:1600]
        raise OSError("microphone unplugged")

    with pytest.raises(OSError, match="unplugged"):
        async for _ in client.stream(unplugged(), 16_000):
            pass
    await wait_for_sessions(server, 0)


async def wait_for_sessions(server, count: int) -> None:  # noqa: ANN001
    deadline = time.monotonic() + 10
    while server.counters.active != count:
        assert time.monotonic() < deadline, f"{server.counters.active} sessions still open"
        await asyncio.sleep(0.05)


@pytest.mark.parametrize("fmt", FORMATS)
async def test_speak_and_translate_in_one_call(server, fmt: str) -> None:  # noqa: ANN001
    client = Client(server.ws(), format=fmt)
    pcm, rate = await client.speak("hi there")
    assert rate == 16_000 and pcm.dtype == np.int16 and len(pcm) == 16_000 * 2 // 10 + 16_000 * 5 // 10
    pcm, rate = await client.speak("hi there", voice="fake-es")
    assert rate == 22_050 and len(pcm) == 22_050 * 2 // 10 + 22_050 * 5 // 10
    pcm, rate = await client.speak("hi there", sample_rate=24_000)
    assert rate == 24_000 and abs(len(pcm) - 16_800) <= 48
    pcm, rate = await client.speak("hola", language="es")
    assert rate == 22_050 and len(pcm) == 22_050 * 4 // 10
    assert await client.translate("good morning", "es") == "[es] good morning"
    assert await client.translate("good morning", "fr", source="en") == "[fr] good morning"
    for call, code in [
        (client.speak("   "), "bad_message"),
        (client.speak("hi", voice="nobody"), "engine_unavailable"),
        (client.translate("hi", "de"), "engine_unavailable"),
    ]:
        with pytest.raises(GatewayError) as info:
            await call
        assert info.value.code == code and info.value.close_code is None


@pytest.mark.parametrize("fmt", FORMATS)
def test_the_sync_api_without_an_event_loop(server, jfk: np.ndarray, fmt: str) -> None:  # noqa: ANN001
    gateway = SyncClient(Client(server.ws(), format=fmt))
    audio = speech(jfk)
    as_bytes = [audio[i : i + 1600].astype("<i2").tobytes() for i in range(0, len(audio), 1600)]
    finals = gateway.transcribe(as_bytes, 16_000)
    assert len(finals) >= 2 and all(isinstance(f, Final) for f in finals)
    assert [f.text for f in gateway.transcribe_file(JFK)] == [f.text for f in gateway.transcribe([jfk], 16_000)]
    pcm, rate = gateway.speak_pcm("hi there")
    assert isinstance(pcm, bytes) and rate == 16_000 and len(pcm) == 2 * (16_000 * 2 // 10 + 16_000 * 5 // 10)
    samples, rate = gateway.speak("hi there")
    assert samples.dtype == np.int16 and samples.tobytes() == pcm
    assert gateway.translate("good morning", "es") == "[es] good morning"
    with pytest.raises(GatewayError) as info:
        gateway.translate("hi", "de")
    assert info.value.code == "engine_unavailable"


# Errors -------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
async def test_fatal_errors_and_abnormal_closes_raise_gateway_error(server, fmt: str) -> None:  # noqa: ANN001
    client = Client(server.ws(), format=fmt)
    for options, code, close in [
        ({"rate": 96_000}, "unsupported_audio", 1003),
        ({"language": "zz"}, "engine_unavailable", 1003),
    ]:
        with pytest.raises(GatewayError) as info:
            async with client.session(**options):
                pass
        assert (info.value.code, info.value.close_code) == (code, close)

    # Fatal in the middle of a session: a malformed audio message.
    async with client.session() as s:
        await s.send({"type": "audio", "pcm": "not binary"})
        with pytest.raises(GatewayError) as info:
            async for _ in s.events():
                pass
        assert (info.value.code, info.value.close_code) == ("bad_message", 1007)
        with pytest.raises(GatewayError):  # and again: the end stays the end
            await s.receive()
        with pytest.raises(GatewayError) as info:
            await s.send_audio(b"\x00\x00")
        assert info.value.code == "bad_message"

    # A frame over the limit: the session says so (1009) ...
    async with client.session() as s:
        await s.send({"type": "ping", "pad": "x" * (MAX_FRAME + 100)})
        with pytest.raises(GatewayError) as info:
            await s.finish(timeout_s=10)
        assert (info.value.code, info.value.close_code) == ("too_large", 1009)
    # ... and far over it the socket layer closes with no event at all.
    async with client.session() as s:
        await s.send({"type": "ping", "pad": "x" * (3 * MAX_FRAME)})
        with pytest.raises(GatewayError) as info:
            await s.finish(timeout_s=10)
        assert (info.value.code, info.value.close_code) == ("closed", 1009)

    with pytest.raises(ValueError):
        async with client.session() as s:
            await s.send_audio(b"\x00")  # odd: caught here rather than killing the session
    with pytest.raises(GatewayError) as info:
        await Client(f"ws://127.0.0.1:{free_port()}").translate("hi", "es")
    assert info.value.code == "unreachable"


async def test_refusals_at_connection() -> None:
    key = "sgw_client_test_key_0123456789"
    settings = Settings(
        stt=("en=fake",),
        translators=(),
        synthesizers=(),
        speaker_encoder="",
        max_sessions=1,
        api_keys=(hash_key(key),),
        token_secret="s3cret",
    )
    with serve(settings, [fake_spec()]) as running:
        with pytest.raises(GatewayError) as info:
            async with Client(running.ws()).session():
                pass
        assert (info.value.code, info.value.http_status, info.value.close_code) == ("unauthorized", 401, None)
        with pytest.raises(GatewayError) as info:
            async with Client(running.ws(), api_key="wrong").session():
                pass
        assert info.value.http_status == 401
        async with httpx.AsyncClient() as http:
            answer = await http.post(running.http + "/v1/tokens", headers={"Authorization": f"Bearer {key}"}, json={})
        token = answer.json()["token"]
        # A bare server address works too: the SDK adds /v1/stream.
        async with Client(running.http, api_key=key, format="msgpack").session() as s:
            assert s.ready.stt is not None
            with pytest.raises(GatewayError) as info:
                async with Client(running.ws(), token=token).session():
                    pass
            assert (info.value.code, info.value.close_code) == ("overloaded", 1013)
            await s.finish(timeout_s=10)
        await wait_for_sessions(running, 0)
        async with Client(running.ws(), token=token).session() as s:
            assert isinstance((await s.finish(timeout_s=10))[-1], Ended)
        assert "token" not in repr(Client(running.ws(), token=token))


# CLI: formatting and WAV input -------------------------------------------------------------
