"""Every way a client frame can be wrong, in both codecs: the error code and the close it brings."""

from __future__ import annotations

import json
from typing import Any

import msgpack
import pytest

from hushgate.wire import (
    AudioFormat,
    CloseCode,
    Enroll,
    ErrorCode,
    ProtocolError,
    Start,
    TranslateOptions,
)
from hushgate.wire.codec import JsonCodec, MsgpackCodec, codec_for
from tests.protocol_helpers import CODECS, encode_client


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
