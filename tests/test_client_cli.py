"""The Python SDK (hushgate.client) and the transcribe / speak / translate commands,
against a real server on loopback.

Most tests use the fake engines (tests/fakes.py plus a fake speaker encoder
below), so every expectation is exact; the two slow tests at the end run
Whisper and Piper for real.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import struct
import time
import wave
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import msgpack
import numpy as np
import pytest

import hushgate.wire as wire
from hushgate.client import (
    Client,
    Ended,
    EngineInfo,
    Enrolled,
    EnrollProgress,
    EventParseError,
    Final,
    GatewayError,
    Partial,
    Pong,
    Ready,
    ServerError,
    Session,
    Speaker,
    SpeakerUpdate,
    SpeechStarted,
    Translation,
    TtsAudio,
    TtsEnd,
    TtsStart,
    UnknownEvent,
    Verified,
    VoiceprintDeleted,
    VoiceprintExported,
    VoiceprintImported,
    Word,
    parse_event,
)
from hushgate.client.commands import cue, speak_main, timestamp, transcribe_main, translate_main
from hushgate.client.sync import SyncClient
from hushgate.engines.base import EngineSpec
from hushgate.server.auth import hash_key
from hushgate.server.settings import Settings
from tests.audio_helpers import read_wav
from tests.conftest import free_port, serve
from tests.fakes import FakeSynthesizer, FakeTranslator, fake_spec, fake_translate_spec, fake_tts_spec

JFK = Path(__file__).resolve().parents[1].parent / "shared" / "audio" / "misc" / "jfk.wav"
MAX_FRAME = 16_384  # small, so that send_audio has to split and oversized frames are cheap to make
SETTINGS = Settings(
    stt=("en=fake",),
    translators=("fake-translate",),
    synthesizers=("fake-tts",),
    speaker_encoder="fake-speaker",
    voiceprint_key="client-test-key",
    enroll_needed_ms=4_000,
    max_frame_bytes=MAX_FRAME,
)
FORMATS = ["json", "msgpack"]


class FakeEncoder:
    """Every voice is the same voice; slow enough that finals go out before the speaker is known."""

    name = "fake-speaker"
    model = "fake-ge2e"
    sample_rate_hz = 16_000
    dimensions = 4

    def embed(self, pcm: Any) -> np.ndarray:
        time.sleep(0.3)
        return np.full(4, 0.5, np.float32)  # a fresh array: the server wipes vectors it is done with

    def close(self) -> None:
        pass


@pytest.fixture(scope="module")
def server():  # noqa: ANN201
    specs = [
        fake_spec(),
        fake_translate_spec(FakeTranslator()),
        fake_tts_spec(FakeSynthesizer()),
        EngineSpec(name="fake-speaker", capability="speaker", factory=lambda options: FakeEncoder()),
    ]
    with serve(SETTINGS, specs) as running:
        yield running


@pytest.fixture(scope="module")
def jfk() -> np.ndarray:
    if not JFK.is_file():
        pytest.fail(f"shared test audio not found at {JFK}")
    return read_wav(JFK)[0]


def speech(jfk: np.ndarray) -> np.ndarray:
    """JFK and a second of silence, so the last utterance ends by itself."""
    return np.concatenate([jfk, np.zeros(16_000, np.int16)])


async def until(session: Session, kind: type, timeout_s: float = 30.0) -> tuple[Any, list[Any]]:
    """Events up to and including the first of ``kind``."""
    seen = []
    while True:
        event = await session.receive(timeout_s)
        assert event is not None, f"session ended before a {kind.__name__}: {seen}"
        seen.append(event)
        if isinstance(event, kind):
            return event, seen


# parse_event --------------------------------------------------------------------------


def test_parse_event_reads_every_event_the_server_makes() -> None:
    # The SDK's events are the server's own types; what is checked here is the
    # reading of a plain map (as a JSON or msgpack frame gives it) back to the same value.
    speaker = wire.Speaker(voiceprint_id=None, label="Guest-1", score=0.25)
    cases: list[Any] = [
        wire.Ready(
            session="s1",
            audio={"encoding": "pcm_s16le", "sample_rate": 48_000, "channels": 1},
            engines={
                "stt": {"name": "whisper", "model": "tiny.en", "language": "en"},
                "vad": {"name": "webrtc", "model": "webrtc"},
                "translate": {"es": {"name": "argos", "model": "en-es"}},
                "tts": {"name": "piper", "model": "en_US-joe-medium"},
            },
            limits={"max_frame_bytes": 4096},
        ),
        wire.SpeechStarted(utterance=2, t_ms=1020),
        wire.Partial(utterance=2, text="hel", t0_ms=720, t1_ms=1720),
        wire.Final(
            utterance=2,
            text="Hello.",
            t0_ms=720,
            t1_ms=2660,
            words=(wire.WordTiming("Hello.", 1040, 1400, 0.93),),
            speaker=speaker,
        ),
        wire.SpeakerEvent(utterance=2, speaker=speaker),
        wire.Translation(source="en", target="es", text="Hola.", utterance=2, provisional=True),
        wire.TtsStart(id=3, sample_rate=22_050, voice="v"),
        wire.TtsAudio(id="s1", pcm=b"\x01\x00\xff\xff"),
        wire.TtsEnd(id="s1", duration_ms=1480),
        wire.EnrollProgress(id="e1", speech_ms=2000, needed_ms=8000, passphrase_match=True),
        wire.Enrolled(id="e1", voiceprint_id="vp", label="Ana", speech_ms=8200),
        wire.Verified(id="v1", voiceprint_id="vp", decision="accept", score=0.9, speech_ms=2000),
        wire.VoiceprintExported(voiceprint_id="vp", voiceprint="sealed", id="x1"),
        wire.VoiceprintImported(voiceprint_id="vp", label="Ana", id="i1"),
        wire.VoiceprintDeleted(voiceprint_id="vp", id="d1"),
        wire.Pong(),
        wire.Error(code=wire.ErrorCode.TOO_LARGE, message="big", fatal=False, id="t7"),
        wire.Ended(reason="stop", stats={"audio_ms": 3200, "utterances": 1}),
    ]
    assert {type(c) for c in cases} == set(wire.events.EVENT_TYPES.values())  # every event is here
    for server_event in cases:
        data = wire.to_wire(server_event)
        for mapping in (data, msgpack.unpackb(msgpack.packb(data, use_bin_type=True), raw=False)):
            assert parse_event(mapping) == server_event, data
    ready = cases[0]
    assert ready.audio["sample_rate"] == ready.sample_rate_hz == 48_000 and ready.max_frame_bytes == 4096
    assert ready.stt == EngineInfo("whisper", "tiny.en", "en") and ready.vad == EngineInfo("webrtc", "webrtc")
    assert ready.translate == {"es": EngineInfo("argos", "en-es")} and ready.tts == EngineInfo(
        "piper", "en_US-joe-medium"
    )
    final = cases[3]
    assert final.words == (Word("Hello.", 1040, 1400, 0.93),) and final.speaker == Speaker(None, "Guest-1", 0.25)
    translation = parse_event({"type": "translation", "id": "t1", "source": "en", "target": "es", "text": "x"})
    assert isinstance(translation, Translation)
    assert (translation.id, translation.utterance, translation.provisional) == ("t1", None, None)
    audio = cases[7]
    assert isinstance(audio, TtsAudio) and audio.samples.tolist() == [1, -1]
    assert cases[16] == ServerError("too_large", "big", False, "t7") and isinstance(cases[4], SpeakerUpdate)


def test_parse_event_tolerates_the_future_and_rejects_nonsense() -> None:
    # Newer servers: unknown types and fields do not break an older client.
    unknown = parse_event({"type": "summary", "text": "…"})
    assert isinstance(unknown, UnknownEvent) and unknown.type == "summary" and unknown.raw["text"] == "…"
    pong = parse_event({"type": "pong", "new_field": 1})
    assert isinstance(pong, Pong)
    for bad in [
        {},
        {"type": 3},
        {"type": "final", "utterance": 0},
        {"type": "partial", "utterance": "0", "text": "", "t0_ms": 0, "t1_ms": 0},
        {"type": "speech.started", "utterance": True, "t_ms": 0},
    ]:
        with pytest.raises(EventParseError):
            parse_event(bad)
    # Integral floats are integers on the wire.
    assert parse_event({"type": "speech.started", "utterance": 1.0, "t_ms": 20.0}) == SpeechStarted(1, 20)


# Sessions -----------------------------------------------------------------------------


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


def test_timestamps_and_cues_are_exact() -> None:
    assert timestamp(0) == "00:00:00,000"
    assert timestamp(3_723_004) == "01:02:03,004"
    assert timestamp(3_723_004, ".") == "01:02:03.004"
    assert timestamp(59_999) == "00:00:59,999"
    assert timestamp(100 * 3_600_000) == "100:00:00,000"
    assert cue(3, 720, 2660, "Hello  world.", "srt") == "3\n00:00:00,720 --> 00:00:02,660\nHello world.\n\n"
    assert cue(1, 61_000, 62_500, "a --> b\n\nc", "vtt") == "1\n00:01:01.000 --> 00:01:02.500\na -> b c\n\n"


def reference_finals(server, pcm: np.ndarray, **start: Any) -> list[Final]:  # noqa: ANN001
    async def run() -> list[Final]:
        return [e async for e in Client(server.ws()).stream([pcm], 16_000, **start) if isinstance(e, Final)]

    finals = asyncio.run(run())
    assert len(finals) >= 2
    return finals


def ts(ms: int, sep: str) -> str:
    return f"{ms // 3_600_000:02d}:{ms // 60_000 % 60:02d}:{ms // 1000 % 60:02d}{sep}{ms % 1000:03d}"


def test_transcribe_prints_text_json_srt_and_vtt(server, jfk: np.ndarray, capsys) -> None:  # noqa: ANN001
    finals = reference_finals(server, jfk)
    url = server.ws()
    assert transcribe_main([str(JFK), "--url", url]) == 0
    out, err = capsys.readouterr()
    assert out == "".join(f"{f.text}\n" for f in finals) and err == ""

    assert transcribe_main([str(JFK), "--url", url, "--format", "srt"]) == 0
    expected_srt = "".join(
        f"{i}\n{ts(f.t0_ms, ',')} --> {ts(f.t1_ms, ',')}\n{f.text}\n\n" for i, f in enumerate(finals, 1)
    )
    assert capsys.readouterr().out == expected_srt
    assert expected_srt.startswith("1\n00:00:00,")

    assert transcribe_main([str(JFK), "--url", url, "--format", "vtt", "--msgpack"]) == 0
    assert capsys.readouterr().out == "WEBVTT\n\n" + "".join(
        f"{i}\n{ts(f.t0_ms, '.')} --> {ts(f.t1_ms, '.')}\n{f.text}\n\n" for i, f in enumerate(finals, 1)
    )

    assert transcribe_main([str(JFK), "--url", url, "--format", "json", "--translate", "es"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    # A translation follows its final, though not always before the next final.
    wire_finals = [line for line in lines if line["type"] == "final"]
    wire_translations = [line for line in lines if line["type"] == "translation"]
    assert len(lines) == 2 * len(finals)
    for final, wire_final, wire_translation in zip(finals, wire_finals, wire_translations, strict=True):
        assert lines.index(wire_final) < lines.index(wire_translation)
        assert wire_final["text"] == final.text and wire_final["t0_ms"] == final.t0_ms
        assert [w["w"] for w in wire_final["words"]] == final.text.split()
        assert wire_translation == {
            "type": "translation",
            "utterance": final.utterance,
            "source": "en",
            "target": "es",
            "text": f"[es] {final.text}",
        }

    assert transcribe_main([str(JFK), "--url", url, "--format", "srt", "--translate", "es"]) == 0
    assert capsys.readouterr().out == "".join(
        f"{i}\n{ts(f.t0_ms, ',')} --> {ts(f.t1_ms, ',')}\n[es] {f.text}\n\n" for i, f in enumerate(finals, 1)
    )


def test_realtime_sends_at_the_pace_of_the_audio(server, jfk: np.ndarray, tmp_path: Path, capsys) -> None:  # noqa: ANN001
    path = tmp_path / "short.wav"
    write_wave(path, np.concatenate([jfk[: 16_000 * 3], np.zeros(8_000, np.int16)]), 16_000)
    started = time.monotonic()
    assert transcribe_main([str(path), "--url", server.ws(), "--realtime"]) == 0
    assert time.monotonic() - started >= 3.4
    assert capsys.readouterr().out.startswith("word0")


def test_transcribe_without_the_translation_pair_warns_and_keeps_the_original(server, capsys) -> None:  # noqa: ANN001
    assert transcribe_main([str(JFK), "--url", server.ws(), "--translate", "de"]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("word0") and "[" not in out
    assert "warning: engine_unavailable" in err


def write_riff(path: Path, pcm: np.ndarray, rate: int, *, channels: int, tag: int, bits: int) -> None:
    """A WAV written by hand, for the encodings Python's `wave` cannot write (float, EXTENSIBLE)."""
    frames = np.repeat(pcm[:, None], channels, axis=1)
    if tag == 3:
        data = (frames.astype(np.float32) / 32768.0).astype("<f4").tobytes()
    else:
        data = (frames.astype(np.int32) << (bits - 16)).astype("<i4").tobytes()
        if bits == 24:
            data = np.frombuffer(data, np.uint8).reshape(-1, 4)[:, :3].tobytes()
    block = channels * bits // 8
    fmt = struct.pack("<HHIIHH", 0xFFFE if tag == 0xFFFE else tag, channels, rate, rate * block, block, bits)
    if tag == 0xFFFE:
        guid = struct.pack("<H", 1) + b"\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"
        fmt += struct.pack("<HHI", 22, bits, 0) + guid
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"LIST" + struct.pack("<I", 3) + b"abc\x00"
    body += b"data" + struct.pack("<I", len(data)) + data
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)


def write_wave(path: Path, pcm: np.ndarray, rate: int, *, channels: int = 1, width: int = 2) -> None:
    frames = np.repeat(pcm[:, None], channels, axis=1).astype(np.int32)
    if width == 1:
        data = ((frames >> 8) + 128).astype(np.uint8).tobytes()
    elif width == 2:
        data = frames.astype("<i2").tobytes()
    else:
        data = np.frombuffer((frames << 8).astype("<i4").tobytes(), np.uint8).reshape(-1, 4)[:, :3].tobytes()
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(data)


def test_transcribe_reads_any_wav(server, jfk: np.ndarray, tmp_path: Path, capsys) -> None:  # noqa: ANN001
    url = server.ws()
    assert transcribe_main([str(JFK), "--url", url, "--format", "srt"]) == 0
    reference = capsys.readouterr().out
    # Lossless variants of the same audio give exactly the same captions.
    lossless = {
        "stereo24.wav": lambda p: write_wave(p, jfk, 16_000, channels=2, width=3),
        "ext24.wav": lambda p: write_riff(p, jfk, 16_000, channels=2, tag=0xFFFE, bits=24),
        "ext32.wav": lambda p: write_riff(p, jfk, 16_000, channels=3, tag=0xFFFE, bits=32),
        "pcm32.wav": lambda p: write_riff(p, jfk, 16_000, channels=1, tag=1, bits=32),
        "float.wav": lambda p: write_riff(p, jfk, 16_000, channels=2, tag=3, bits=32),
    }
    for name, write in lossless.items():
        write(tmp_path / name)
        assert transcribe_main([str(tmp_path / name), "--url", url, "--format", "srt"]) == 0, name
        assert capsys.readouterr().out == reference, name
    # Other rates: sent as they are inside 8–48 kHz, resampled to 16 kHz outside.
    import soxr

    for name, rate, width in [
        ("8bit8k.wav", 8_000, 1),
        ("44k.wav", 44_100, 2),
        ("96k.wav", 96_000, 2),
        ("4k.wav", 4_000, 2),
    ]:
        resampled = np.asarray(soxr.resample(jfk, 16_000, rate), dtype=np.int16)
        write_wave(tmp_path / name, resampled, rate, width=width)
        assert transcribe_main([str(tmp_path / name), "--url", url, "--format", "srt", "-q"]) == 0, name
        out = capsys.readouterr().out
        starts = [line.split(" --> ")[0] for line in out.splitlines() if " --> " in line]
        assert len(starts) >= 2 and starts[0].startswith("00:00:0"), (name, out)
        assert out.rstrip().splitlines()[-1].startswith("word"), (name, out)

    (tmp_path / "notes.txt").write_text("not audio")
    assert transcribe_main([str(tmp_path / "notes.txt"), "--url", url]) == 2
    assert transcribe_main([str(tmp_path / "missing.wav"), "--url", url]) == 2
    assert "missing.wav" in capsys.readouterr().err


def test_transcribe_reports_gateway_failures(server, capsys) -> None:  # noqa: ANN001
    assert transcribe_main([str(JFK), "--url", server.ws(), "--language", "zz"]) == 1
    assert "engine_unavailable" in capsys.readouterr().err
    assert transcribe_main([str(JFK), "--url", f"ws://127.0.0.1:{free_port()}/v1/stream"]) == 1
    assert "unreachable" in capsys.readouterr().err


def test_api_key_from_flag_or_environment(monkeypatch, capsys) -> None:  # noqa: ANN001
    key = "sgw_cli_test_key_0123456789"
    settings = Settings(
        stt=("en=fake",), translators=(), synthesizers=(), speaker_encoder="", api_keys=(hash_key(key),)
    )
    with serve(settings, [fake_spec()]) as running:
        monkeypatch.delenv("HUSHGATE_CLIENT_KEY", raising=False)
        assert transcribe_main([str(JFK), "--url", running.ws()]) == 1
        assert "unauthorized" in capsys.readouterr().err
        assert transcribe_main([str(JFK), "--url", running.ws(), "--api-key", key]) == 0
        assert capsys.readouterr().out.startswith("word0")
        monkeypatch.setenv("HUSHGATE_CLIENT_KEY", key)
        assert transcribe_main([str(JFK), "--url", running.ws()]) == 0
        assert capsys.readouterr().out.startswith("word0")


def test_speak_writes_a_wav(server, tmp_path: Path, capsys) -> None:  # noqa: ANN001
    out = tmp_path / "out.wav"
    for extra, rate, frames in [
        ([], 16_000, 16_000 * 2 // 10 + 16_000 * 5 // 10),
        (["--voice", "fake-es", "--msgpack"], 22_050, 22_050 * 2 // 10 + 22_050 * 5 // 10),
        (["--language", "es"], 22_050, 22_050 * 2 // 10 + 22_050 * 5 // 10),
    ]:
        assert speak_main(["hi there", "-o", str(out), "--url", server.ws(), *extra]) == 0
        with wave.open(str(out), "rb") as w:
            assert (w.getnchannels(), w.getsampwidth(), w.getframerate(), w.getnframes()) == (1, 2, rate, frames)
        assert f"{rate} Hz" in capsys.readouterr().err
    assert speak_main(["hi there", "-o", str(out), "--url", server.ws(), "--sample-rate", "8000", "-q"]) == 0
    with wave.open(str(out), "rb") as w:
        assert w.getframerate() == 8_000 and abs(w.getnframes() - 5_600) <= 16
    assert capsys.readouterr().err == ""
    assert speak_main(["hi", "-o", str(out), "--url", server.ws(), "--voice", "nobody"]) == 1
    assert "engine_unavailable" in capsys.readouterr().err


def test_translate_prints_the_translation(server, capsys) -> None:  # noqa: ANN001
    assert translate_main(["good morning", "--to", "es", "--url", server.ws()]) == 0
    assert capsys.readouterr().out == "[es] good morning\n"
    assert translate_main(["good morning", "--to", "fr", "--from", "en", "--url", server.ws(), "--msgpack"]) == 0
    assert capsys.readouterr().out == "[fr] good morning\n"
    assert translate_main(["good morning", "--to", "de", "--url", server.ws()]) == 1
    out, err = capsys.readouterr()
    assert out == "" and "engine_unavailable" in err


# Real engines -------------------------------------------------------------------------


@pytest.mark.slow
def test_transcribe_jfk_as_srt_with_whisper(capsys) -> None:  # noqa: ANN001
    settings = Settings(stt=("en=whisper",), translators=(), synthesizers=(), speaker_encoder="")
    with serve(settings) as running:
        assert transcribe_main([str(JFK), "--url", running.ws(), "--format", "srt"]) == 0
    out = capsys.readouterr().out
    blocks = [b for b in out.split("\n\n") if b.strip()]
    assert blocks and out.endswith("\n\n")
    times = []
    for number, block in enumerate(blocks, 1):
        index, span, *text = block.split("\n")
        assert index == str(number) and text and all(text)
        start, _, end = span.partition(" --> ")
        for t in (start, end):
            assert len(t) == 12 and t[2] == t[5] == ":" and t[8] == ","
        times += [start, end]
    assert blocks[0].split("\n")[1].startswith("00:00:00,")
    assert times == sorted(times) and times[0] < times[-1]
    assert "country" in out.lower()


@pytest.mark.slow
def test_speak_then_transcribe_round_trip_with_piper_and_whisper(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    settings = Settings(stt=("en=whisper",), translators=(), synthesizers=("piper",), speaker_encoder="")
    out = tmp_path / "out.wav"
    with serve(settings) as running:
        assert speak_main(["Ask not what your country can do for you.", "-o", str(out), "--url", running.ws()]) == 0
        capsys.readouterr()
        assert transcribe_main([str(out), "--url", running.ws()]) == 0
    assert "country" in capsys.readouterr().out.lower()
