"""Error and close codes of the wire protocol."""

from __future__ import annotations

import enum


class ErrorCode(enum.StrEnum):
    """The ``code`` of an ``error`` event."""

    BAD_MESSAGE = "bad_message"
    NOT_STARTED = "not_started"
    UNSUPPORTED_AUDIO = "unsupported_audio"
    TOO_LARGE = "too_large"
    UNKNOWN_VOICEPRINT = "unknown_voiceprint"
    CONSENT_REQUIRED = "consent_required"
    ENGINE_UNAVAILABLE = "engine_unavailable"
    OVERLOADED = "overloaded"
    UNAUTHORIZED = "unauthorized"
    INTERNAL = "internal"


class CloseCode(enum.IntEnum):
    """The WebSocket close codes the server ends a session with."""

    NORMAL = 1000
    GOING_AWAY = 1001
    UNSUPPORTED_DATA = 1003
    INVALID_PAYLOAD = 1007
    POLICY = 1008
    TOO_BIG = 1009
    INTERNAL = 1011
    TRY_AGAIN_LATER = 1013


PROTOCOL_VERSION = 1
AUDIO_ENCODINGS = ("pcm_s16le", "mulaw", "alaw")
G711_RATE_HZ = 8_000
MIN_SAMPLE_RATE_HZ = 8_000
MAX_SAMPLE_RATE_HZ = 48_000
MAX_ID_CHARS = 128
MAX_LANGUAGE_CHARS = 32
MAX_VOICEPRINT_CHARS = 64_000
MAX_TEXT_CHARS_WIRE = 1_000_000  # the operator's lower limit applies later; this only bounds parsing
