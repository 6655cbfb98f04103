"""parse_event in the Python SDK (hushgate.client): every server event, unknown ones, nonsense."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest

import hushgate.wire as wire
from hushgate.client import (
    EngineInfo,
    EventParseError,
    Pong,
    ServerError,
    Speaker,
    SpeakerUpdate,
    SpeechStarted,
    Translation,
    TtsAudio,
    UnknownEvent,
    Word,
    parse_event,
)


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
