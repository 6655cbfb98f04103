"""Every v1 message through both codecs (bad frames: tests/test_protocol_errors.py)."""

from __future__ import annotations

import json
from typing import Any

import msgpack
import pytest

from hushgate.wire import (
    Audio,
    AudioFormat,
    Ended,
    Enroll,
    Enrolled,
    EnrollProgress,
    Error,
    ErrorCode,
    Final,
    Flush,
    Partial,
    Ping,
    Pong,
    Ready,
    Speak,
    Speaker,
    SpeakerEvent,
    SpeechStarted,
    Start,
    Stop,
    Translate,
    Translation,
    TtsAudio,
    TtsEnd,
    TtsStart,
    Verified,
    Verify,
    VoiceprintDelete,
    VoiceprintDeleted,
    VoiceprintExport,
    VoiceprintExported,
    VoiceprintImport,
    VoiceprintImported,
    WordTiming,
)
from hushgate.wire.codec import JsonCodec, MsgpackCodec
from tests.protocol_helpers import CODECS, decode_server, encode_client

FULL_START: dict[str, Any] = {
    "type": "start",
    "audio": {"encoding": "pcm_s16le", "sample_rate": 48000, "channels": 1},
    "language": "en",
    "partials": True,
    "words": True,
    "vad": {"aggressiveness": 2, "silence_ms": 500, "max_utterance_ms": 15000},
    "translate": {"targets": ["es"]},
    "speak": {"translations": True, "voice": None},
    "speakers": {"identify": True, "diarize": True, "voiceprints": []},
}

CLIENT_CASES: list[tuple[dict[str, Any], Any]] = [
    ({"type": "start", "audio": {"sample_rate": 16000}}, Start(audio=AudioFormat(16000))),
    ({"type": "flush"}, Flush()),
    ({"type": "stop"}, Stop()),
    ({"type": "ping"}, Ping()),
    (
        {"type": "speak", "id": "s1", "text": "hello", "voice": "joe", "language": "en"},
        Speak(text="hello", id="s1", voice="joe", language="en"),
    ),
    (
        {"type": "translate", "id": "t1", "text": "hello", "source": "en", "target": "es"},
        Translate(text="hello", target="es", id="t1", source="en"),
    ),
    (
        {"type": "enroll", "id": "e1", "consent": True, "label": "Ana", "passphrase": None},
        Enroll(consent=True, id="e1", label="Ana"),
    ),
    ({"type": "verify", "id": "v1", "voiceprint_id": "vp"}, Verify(voiceprint_id="vp", id="v1")),
    ({"type": "voiceprint.export", "voiceprint_id": "vp"}, VoiceprintExport(voiceprint_id="vp")),
    ({"type": "voiceprint.import", "voiceprint": "sealed"}, VoiceprintImport(voiceprint="sealed")),
    ({"type": "voiceprint.delete", "voiceprint_id": "vp"}, VoiceprintDelete(voiceprint_id="vp")),
]


@pytest.mark.parametrize("codec", CODECS, ids=lambda c: c.name)
@pytest.mark.parametrize("wire,expected", CLIENT_CASES, ids=[c[0]["type"] for c in CLIENT_CASES])
def test_client_messages_decode_to_typed_values(codec: Any, wire: dict[str, Any], expected: Any) -> None:
    started = wire["type"] != "start"
    assert codec.decode(encode_client(codec, wire), started=started) == expected


@pytest.mark.parametrize("codec", CODECS, ids=lambda c: c.name)
def test_full_start_keeps_every_option(codec: Any) -> None:
    start = codec.decode(encode_client(codec, FULL_START), started=False)
    assert isinstance(start, Start)
    assert start.audio.sample_rate_hz == 48000
    assert start.vad.silence_ms == 500 and start.vad.aggressiveness == 2
    assert start.translate.targets == ("es",)
    assert start.speak.translations is True and start.speak.voice is None
    assert start.speakers.identify and start.speakers.diarize and start.speakers.voiceprints == ()


def test_audio_in_each_encoding() -> None:
    pcm = b"\x01\x00\x02\x00"
    assert JsonCodec().decode(pcm, started=True) == Audio(pcm)
    packed = msgpack.packb({"type": "audio", "pcm": pcm}, use_bin_type=True)
    assert MsgpackCodec(1 << 20).decode(packed, started=True) == Audio(pcm)


SERVER_CASES: list[tuple[Any, dict[str, Any]]] = [
    (
        Ready(session="s", audio={"sample_rate": 16000}, engines={"stt": {}}, limits={"max_frame_bytes": 1}),
        {
            "type": "ready",
            "session": "s",
            "audio": {"sample_rate": 16000},
            "engines": {"stt": {}},
            "limits": {"max_frame_bytes": 1},
            "protocol": 1,
        },
    ),
    (SpeechStarted(utterance=0, t_ms=120), {"type": "speech.started", "utterance": 0, "t_ms": 120}),
    (
        Partial(utterance=0, text="he", t0_ms=0, t1_ms=900),
        {"type": "partial", "utterance": 0, "text": "he", "t0_ms": 0, "t1_ms": 900},
    ),
    (
        Final(utterance=1, text="hi", t0_ms=5, t1_ms=9, words=(WordTiming("hi", 5, 9, 0.5),)),
        {
            "type": "final",
            "utterance": 1,
            "text": "hi",
            "t0_ms": 5,
            "t1_ms": 9,
            "words": [{"w": "hi", "t0_ms": 5, "t1_ms": 9, "conf": 0.5}],
        },
    ),
    (
        Final(utterance=1, text="hi", t0_ms=5, t1_ms=9, speaker=Speaker(None, "Guest-1", 0.2)),
        {
            "type": "final",
            "utterance": 1,
            "text": "hi",
            "t0_ms": 5,
            "t1_ms": 9,
            "speaker": {"voiceprint_id": None, "label": "Guest-1", "score": 0.2},
        },
    ),
    (Pong(), {"type": "pong"}),
    (
        Error(code=ErrorCode.BAD_MESSAGE, message="m", fatal=False, id="t1"),
        {"type": "error", "code": "bad_message", "message": "m", "fatal": False, "id": "t1"},
    ),
    (
        Error(code=ErrorCode.NOT_STARTED, message="m", fatal=True),
        {"type": "error", "code": "not_started", "message": "m", "fatal": True},
    ),
    (
        Ended(reason="stop", stats={"audio_ms": 10, "utterances": 1}),
        {"type": "ended", "reason": "stop", "stats": {"audio_ms": 10, "utterances": 1}},
    ),
    (
        SpeakerEvent(utterance=3, speaker=None, undecided="failed"),
        {"type": "speaker", "utterance": 3, "undecided": "failed"},
    ),
    (
        EnrollProgress(id=None, speech_ms=0, needed_ms=8000),
        {"type": "enroll.progress", "speech_ms": 0, "needed_ms": 8000},
    ),
    (
        Enrolled(id="e1", voiceprint_id="vp", label=None, speech_ms=8000),
        {"type": "enrolled", "id": "e1", "voiceprint_id": "vp", "label": None, "speech_ms": 8000},
    ),
    (
        Verified(id="v1", voiceprint_id="vp", decision="reject", score=0.25, passphrase_match=False, speech_ms=0),
        {
            "type": "verified",
            "id": "v1",
            "voiceprint_id": "vp",
            "decision": "reject",
            "score": 0.25,
            "passphrase_match": False,
            "speech_ms": 0,
        },
    ),
    (
        VoiceprintExported(voiceprint_id="vp", voiceprint="sealed"),
        {"type": "voiceprint.exported", "voiceprint_id": "vp", "voiceprint": "sealed"},
    ),
    (
        VoiceprintImported(voiceprint_id="vp", label=None, id="i1"),
        {"type": "voiceprint.imported", "voiceprint_id": "vp", "label": None, "id": "i1"},
    ),
    (VoiceprintDeleted(voiceprint_id="vp"), {"type": "voiceprint.deleted", "voiceprint_id": "vp"}),
    (
        Translation(source="en", target="es", text="¡Hola!", utterance=2),
        {"type": "translation", "source": "en", "target": "es", "text": "¡Hola!", "utterance": 2},
    ),
    (
        Translation(source="en", target="es", text="x", id="t1", provisional=True),
        {"type": "translation", "source": "en", "target": "es", "text": "x", "id": "t1", "provisional": True},
    ),
    (
        TtsStart(id=4, sample_rate=22050, voice="joe"),
        {"type": "tts.start", "id": 4, "sample_rate": 22050, "voice": "joe"},
    ),
    (TtsEnd(id="s1", duration_ms=900), {"type": "tts.end", "id": "s1", "duration_ms": 900}),
    (
        Final(utterance=0, text="hola", t0_ms=0, t1_ms=9, language="es", language_probability=0.75),
        {
            "type": "final",
            "utterance": 0,
            "text": "hola",
            "t0_ms": 0,
            "t1_ms": 9,
            "language": "es",
            "language_probability": 0.75,
        },
    ),
]


@pytest.mark.parametrize("codec", CODECS, ids=lambda c: c.name)
@pytest.mark.parametrize("event,wire", SERVER_CASES, ids=[c[1]["type"] for c in SERVER_CASES])
def test_server_events_encode_to_the_documented_shape(codec: Any, event: Any, wire: dict[str, Any]) -> None:
    frames = codec.encode(event)
    assert len(frames) == 1
    if isinstance(codec, JsonCodec):
        assert isinstance(frames[0], str)
    else:
        assert isinstance(frames[0], bytes)
    assert decode_server(codec, frames[0]) == wire


@pytest.mark.parametrize("event,wire", SERVER_CASES, ids=[c[1]["type"] for c in SERVER_CASES])
def test_server_events_keep_the_bytes_of_the_v1_encoders(event: Any, wire: dict[str, Any]) -> None:
    # What the server sent before the wire package (json.dumps, msgpack.packb), byte for byte:
    # same keys, same order, same omissions, so no client can see a difference.
    assert JsonCodec().encode(event) == [json.dumps(wire, ensure_ascii=False, separators=(",", ":"))]
    assert MsgpackCodec(1 << 20).encode(event) == [msgpack.packb(wire, use_bin_type=True)]


def test_numpy_scalars_from_engines_encode_as_plain_numbers() -> None:
    import numpy as np

    event = Final(
        utterance=np.int64(1),
        text="a",
        t0_ms=0,
        t1_ms=5,  # type: ignore[arg-type]
        words=(WordTiming("a", 0, 5, np.float32(0.5)),),
    )  # type: ignore[arg-type]
    assert json.loads(JsonCodec().encode(event)[0])["words"][0]["conf"] == 0.5


def test_tts_audio_is_a_binary_frame_in_json_and_a_map_in_msgpack() -> None:
    event = TtsAudio(id="s1", pcm=b"\x00\x01")
    assert JsonCodec().encode(event) == [b"\x00\x01"]
    (frame,) = MsgpackCodec(1 << 20).encode(event)
    assert msgpack.unpackb(frame, raw=False) == {"type": "tts.audio", "id": "s1", "pcm": b"\x00\x01"}
