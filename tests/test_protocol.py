"""Every v1 message through both codecs, and every way a frame can be wrong."""

from __future__ import annotations

import json
from typing import Any

import msgpack
import pytest

from hushgate.wire import (
    Audio,
    AudioFormat,
    CloseCode,
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
    ProtocolError,
    Ready,
    Speak,
    Speaker,
    SpeakerEvent,
    SpeechStarted,
    Start,
    Stop,
    Translate,
    TranslateOptions,
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
from hushgate.wire.codec import JsonCodec, MsgpackCodec, codec_for

CODECS = [JsonCodec(), MsgpackCodec(max_frame_bytes=1 << 20)]

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


def encode_client(codec: Any, obj: dict[str, Any]) -> str | bytes:
    if isinstance(codec, JsonCodec):
        return json.dumps(obj)
    return msgpack.packb(obj, use_bin_type=True)


def decode_server(codec: Any, frame: str | bytes) -> Any:
    if isinstance(codec, JsonCodec):
        return json.loads(frame) if isinstance(frame, str) else frame
    return msgpack.unpackb(frame, raw=False)


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


def _error(codec: Any, frame: str | bytes, *, started: bool) -> ProtocolError:
    with pytest.raises(ProtocolError) as info:
        codec.decode(frame, started=started)
    return info.value


BAD_JSON: list[tuple[str, str | bytes, bool, ErrorCode, CloseCode | None]] = [
    ("invalid json", "{nope", False, ErrorCode.BAD_MESSAGE, CloseCode.INVALID_PAYLOAD),
    ("not an object", "[1, 2]", True, ErrorCode.BAD_MESSAGE, CloseCode.INVALID_PAYLOAD),
    ("no type", '{"x": 1}', True, ErrorCode.BAD_MESSAGE, CloseCode.INVALID_PAYLOAD),
    ("type not a string", '{"type": 5}', True, ErrorCode.BAD_MESSAGE, CloseCode.INVALID_PAYLOAD),
    ("before start", '{"type": "ping"}', False, ErrorCode.NOT_STARTED, CloseCode.POLICY),
    ("audio before start", b"\x00\x00", False, ErrorCode.NOT_STARTED, CloseCode.POLICY),
    ("unknown type", '{"type": "dance", "id": "d1"}', True, ErrorCode.BAD_MESSAGE, None),
    ("start without audio", '{"type": "start"}', False, ErrorCode.BAD_MESSAGE, CloseCode.INVALID_PAYLOAD),
    (
        "rate not a number",
        '{"type": "start", "audio": {"sample_rate": "16k"}}',
        False,
        ErrorCode.BAD_MESSAGE,
        CloseCode.INVALID_PAYLOAD,
    ),
    (
        "rate is a bool",
        '{"type": "start", "audio": {"sample_rate": true}}',
        False,
        ErrorCode.BAD_MESSAGE,
        CloseCode.INVALID_PAYLOAD,
    ),
    (
        "rate 7999",
        '{"type": "start", "audio": {"sample_rate": 7999}}',
        False,
        ErrorCode.UNSUPPORTED_AUDIO,
        CloseCode.UNSUPPORTED_DATA,
    ),
    (
        "rate 96000",
        '{"type": "start", "audio": {"sample_rate": 96000}}',
        False,
        ErrorCode.UNSUPPORTED_AUDIO,
        CloseCode.UNSUPPORTED_DATA,
    ),
    (
        "stereo",
        '{"type": "start", "audio": {"sample_rate": 16000, "channels": 2}}',
        False,
        ErrorCode.UNSUPPORTED_AUDIO,
        CloseCode.UNSUPPORTED_DATA,
    ),
    (
        "float encoding",
        '{"type": "start", "audio": {"sample_rate": 16000, "encoding": "f32"}}',
        False,
        ErrorCode.UNSUPPORTED_AUDIO,
        CloseCode.UNSUPPORTED_DATA,
    ),
    (
        "partials not a bool",
        '{"type": "start", "audio": {"sample_rate": 16000}, "partials": 1}',
        False,
        ErrorCode.BAD_MESSAGE,
        CloseCode.INVALID_PAYLOAD,
    ),
    (
        "silence out of range",
        '{"type": "start", "audio": {"sample_rate": 16000}, "vad": {"silence_ms": 99999}}',
        False,
        ErrorCode.BAD_MESSAGE,
        CloseCode.INVALID_PAYLOAD,
    ),
    (
        "vad not an object",
        '{"type": "start", "audio": {"sample_rate": 16000}, "vad": 3}',
        False,
        ErrorCode.BAD_MESSAGE,
        CloseCode.INVALID_PAYLOAD,
    ),
    (
        "huge number",
        '{"type": "start", "audio": {"sample_rate": ' + "9" * 5000 + "}}",
        False,
        ErrorCode.BAD_MESSAGE,
        CloseCode.INVALID_PAYLOAD,
    ),
    ("deep nesting", "[" * 100_000, True, ErrorCode.BAD_MESSAGE, CloseCode.INVALID_PAYLOAD),
    ("speak text wrong type", '{"type": "speak", "id": "s1", "text": 5}', True, ErrorCode.BAD_MESSAGE, None),
    ("verify without voiceprint", '{"type": "verify", "id": "v1"}', True, ErrorCode.BAD_MESSAGE, None),
    ("unknown type before start", '{"type": "dance"}', False, ErrorCode.NOT_STARTED, CloseCode.POLICY),
    ("malformed request before start", '{"type": "speak", "text": 5}', False, ErrorCode.NOT_STARTED, CloseCode.POLICY),
    (
        "rate beyond 64 bits",
        '{"type": "start", "audio": {"sample_rate": 99999999999999999999}}',
        False,
        ErrorCode.BAD_MESSAGE,
        CloseCode.INVALID_PAYLOAD,
    ),
    (
        "rate not whole",
        '{"type": "start", "audio": {"sample_rate": 16000.5}}',
        False,
        ErrorCode.BAD_MESSAGE,
        CloseCode.INVALID_PAYLOAD,
    ),
    (
        "channels out of range",
        '{"type": "start", "audio": {"sample_rate": 16000, "channels": 70000}}',
        False,
        ErrorCode.BAD_MESSAGE,
        CloseCode.INVALID_PAYLOAD,
    ),
    (
        "too many targets",
        '{"type": "start", "audio": {"sample_rate": 16000}, "translate": {"targets": ' + json.dumps(["es"] * 9) + "}}",
        False,
        ErrorCode.BAD_MESSAGE,
        CloseCode.INVALID_PAYLOAD,
    ),
    ("repeated start malformed", '{"type": "start", "audio": {"sample_rate": "x"}}', True, ErrorCode.BAD_MESSAGE, None),
    (
        "repeated start unsupported",
        '{"type": "start", "audio": {"sample_rate": 4000}}',
        True,
        ErrorCode.UNSUPPORTED_AUDIO,
        None,
    ),
    ("audio as a json map", '{"type": "audio", "pcm": "AAAA"}', True, ErrorCode.BAD_MESSAGE, CloseCode.INVALID_PAYLOAD),
    (
        "id too long",
        '{"type": "translate", "text": "a", "target": "es", "id": "' + "x" * 129 + '"}',
        True,
        ErrorCode.BAD_MESSAGE,
        None,
    ),
    (
        "NaN",
        '{"type": "start", "audio": {"sample_rate": NaN}}',
        False,
        ErrorCode.BAD_MESSAGE,
        CloseCode.INVALID_PAYLOAD,
    ),
    ("trailing garbage", '{"type": "ping"} x', True, ErrorCode.BAD_MESSAGE, CloseCode.INVALID_PAYLOAD),
    (
        "lone surrogate in a request",
        '{"type": "speak", "id": "s1", "text": "a \\ud800 b"}',
        True,
        ErrorCode.BAD_MESSAGE,
        None,
    ),
    (
        "lone surrogate in the opening start",
        '{"type": "start", "audio": {"sample_rate": 16000}, "language": "\\udc00"}',
        False,
        ErrorCode.BAD_MESSAGE,
        CloseCode.INVALID_PAYLOAD,
    ),
]


@pytest.mark.parametrize("name,frame,started,code,close", BAD_JSON, ids=[c[0] for c in BAD_JSON])
def test_bad_json_frames_map_to_code_and_close(
    name: str, frame: str | bytes, started: bool, code: ErrorCode, close: CloseCode | None
) -> None:
    error = _error(JsonCodec(), frame, started=started)
    assert (error.code, error.close) == (code, close)
    assert error.message


@pytest.mark.parametrize("codec", CODECS, ids=lambda c: c.name)
def test_what_v1_always_accepted_still_parses(codec: Any) -> None:
    # null means "the default", and whole numbers may be written as floats.
    lax = {
        "type": "start",
        "audio": {"sample_rate": 16000.0, "channels": 1.0, "encoding": None},
        "language": None,
        "partials": None,
        "vad": None,
        "translate": {"targets": ["es"], "partials": None},
        "speak": {"translations": None, "voice": None},
        "future_option": {"x": 1},
    }
    start = codec.decode(encode_client(codec, lax), started=False)
    assert start == Start(audio=AudioFormat(16000), translate=TranslateOptions(targets=("es",)))
    enroll = codec.decode(encode_client(codec, {"type": "enroll", "consent": None, "needed_ms": 2000.0}), started=True)
    assert enroll == Enroll(consent=False, needed_ms=2000)


def test_request_errors_carry_the_request_id() -> None:
    assert _error(JsonCodec(), '{"type": "speak", "id": "s\\ud800", "text": 5}', started=True).request_id is None
    assert _error(JsonCodec(), '{"type": "speak", "id": "s9", "text": 5}', started=True).request_id == "s9"
    assert _error(JsonCodec(), '{"type": "dance", "id": "d1"}', started=True).event().id == "d1"


BAD_MSGPACK: list[tuple[str, str | bytes, CloseCode]] = [
    ("text frame", '{"type": "ping"}', CloseCode.UNSUPPORTED_DATA),
    ("random bytes", b"\xc1\xc1\xc1", CloseCode.INVALID_PAYLOAD),
    ("truncated", msgpack.packb({"type": "ping", "x": "y" * 50})[:-5], CloseCode.INVALID_PAYLOAD),
    ("not a map", msgpack.packb([1, 2, 3]), CloseCode.INVALID_PAYLOAD),
    ("deep nesting", b"\x91" * 100_000, CloseCode.INVALID_PAYLOAD),
    ("invalid utf-8", b"\x81\xa4type\xa2\xff\xfe", CloseCode.INVALID_PAYLOAD),
    ("pcm not binary", msgpack.packb({"type": "audio", "pcm": "text"}), CloseCode.INVALID_PAYLOAD),
    ("declares a giant array", b"\xdd\xff\xff\xff\xff", CloseCode.INVALID_PAYLOAD),
    ("integer map key", msgpack.packb({"type": "ping", 1: 2}), CloseCode.INVALID_PAYLOAD),
    ("extension type", msgpack.packb({"type": "speak", "text": msgpack.ExtType(5, b"x")}), CloseCode.INVALID_PAYLOAD),
    ("timestamp", msgpack.packb({"type": "speak", "text": msgpack.Timestamp(1, 0)}), CloseCode.INVALID_PAYLOAD),
    ("trailing bytes", msgpack.packb({"type": "ping"}) + b"\x00", CloseCode.INVALID_PAYLOAD),
]


@pytest.mark.parametrize("name,frame,close", BAD_MSGPACK, ids=[c[0] for c in BAD_MSGPACK])
def test_bad_msgpack_frames_are_fatal_with_the_right_close(name: str, frame: str | bytes, close: CloseCode) -> None:
    error = _error(MsgpackCodec(1 << 20), frame, started=True)
    assert error.close == close and error.fatal


def test_unknown_format_is_refused() -> None:
    with pytest.raises(ProtocolError) as info:
        codec_for("xml", max_frame_bytes=10)
    assert info.value.close == CloseCode.UNSUPPORTED_DATA
