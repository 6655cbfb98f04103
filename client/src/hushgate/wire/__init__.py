"""The hushgate wire protocol (v1), defined once: messages, events, codes, codecs.

Shipped by the ``hushgate-client`` distribution and used by the server, the
Python SDK, the tests and the benchmarks alike. ``python -m hushgate.wire.schema``
prints its JSON Schema; ``python -m hushgate.wire.typescript`` the TypeScript
declarations of the JavaScript SDK.
"""

from hushgate.wire.codec import (
    Codec,
    Event,
    EventParseError,
    Format,
    Frame,
    JsonCodec,
    MsgpackCodec,
    codec_for,
    decode_event,
    encode_message,
    parse_event,
    to_wire,
)
from hushgate.wire.codes import (
    MAX_ID_CHARS,
    MAX_SAMPLE_RATE_HZ,
    MAX_TEXT_CHARS_WIRE,
    MIN_SAMPLE_RATE_HZ,
    PROTOCOL_VERSION,
    CloseCode,
    ErrorCode,
)
from hushgate.wire.errors import ProtocolError
from hushgate.wire.events import (
    EngineInfo,
    Ended,
    Enrolled,
    EnrollProgress,
    Error,
    Final,
    Partial,
    Pong,
    Ready,
    RequestId,
    ServerEvent,
    Speaker,
    SpeakerEvent,
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
    WordTiming,
)
from hushgate.wire.messages import (
    Audio,
    AudioFormat,
    ClientMessage,
    Enroll,
    Flush,
    Ping,
    Speak,
    SpeakerOptions,
    SpeakOptions,
    Start,
    Stop,
    Translate,
    TranslateOptions,
    VadOptions,
    Verify,
    VoiceprintDelete,
    VoiceprintExport,
    VoiceprintImport,
)
from hushgate.wire.validate import parse_client_message

__all__ = [
    "MAX_ID_CHARS", "MAX_SAMPLE_RATE_HZ", "MAX_TEXT_CHARS_WIRE", "MIN_SAMPLE_RATE_HZ", "PROTOCOL_VERSION",
    "Audio", "AudioFormat", "ClientMessage", "CloseCode", "Codec", "Ended", "EngineInfo", "Enroll", "Enrolled",
    "EnrollProgress", "Error", "ErrorCode", "Event", "EventParseError", "Final", "Flush", "Format", "Frame",
    "JsonCodec", "MsgpackCodec", "Partial", "Ping", "Pong", "ProtocolError", "Ready", "RequestId", "ServerEvent",
    "Speak", "SpeakOptions", "Speaker", "SpeakerEvent", "SpeakerOptions", "SpeechStarted", "Start", "Stop",
    "Translate", "TranslateOptions", "Translation", "TtsAudio", "TtsEnd", "TtsStart", "UnknownEvent", "VadOptions",
    "Verified", "Verify", "VoiceprintDelete", "VoiceprintDeleted", "VoiceprintExport", "VoiceprintExported",
    "VoiceprintImport", "VoiceprintImported", "WordTiming", "codec_for", "decode_event", "encode_message",
    "parse_client_message", "parse_event", "to_wire",
]
