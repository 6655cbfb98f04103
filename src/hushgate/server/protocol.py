"""Wire protocol v1 as typed values, and the one path that validates them.

Both codecs (``hushgate.server.codec``) turn a frame into a plain mapping and hand it to
:func:`parse_client_message`; every way a frame can be wrong ends in a
:class:`ProtocolError` that carries the error code for the ``error`` event and,
when the failure is fatal, the WebSocket close code. Events go the other way
through :func:`event_to_wire`.
"""

from __future__ import annotations

import dataclasses
import enum
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeAlias, TypeVar

PROTOCOL_VERSION = 1
MIN_SAMPLE_RATE_HZ = 8_000
MAX_SAMPLE_RATE_HZ = 48_000
MAX_ID_CHARS = 128
MAX_TEXT_CHARS_WIRE = 1_000_000  # the operator's lower limit applies later; this only bounds parsing


class ErrorCode(enum.StrEnum):
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
    NORMAL = 1000
    GOING_AWAY = 1001
    UNSUPPORTED_DATA = 1003
    INVALID_PAYLOAD = 1007
    POLICY = 1008
    TOO_BIG = 1009
    INTERNAL = 1011
    TRY_AGAIN_LATER = 1013


class ProtocolError(Exception):
    """A failure to report to the client; fatal when ``close`` is set."""

    def __init__(
        self,
        code: ErrorCode,
        message: str,
        *,
        close: CloseCode | None = None,
        request_id: str | None = None,
        utterance: int | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.close = close
        self.request_id = request_id
        self.utterance = utterance

    @property
    def fatal(self) -> bool:
        return self.close is not None

    def event(self) -> Error:
        return Error(
            code=self.code, message=self.message, fatal=self.fatal, id=self.request_id, utterance=self.utterance
        )


# Client → server ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AudioFormat:
    sample_rate_hz: int
    encoding: str = "pcm_s16le"
    channels: int = 1


@dataclass(frozen=True, slots=True)
class VadOptions:
    aggressiveness: int | None = None
    silence_ms: int | None = None
    max_utterance_ms: int | None = None


@dataclass(frozen=True, slots=True)
class TranslateOptions:
    targets: tuple[str, ...] = ()
    partials: bool = False


@dataclass(frozen=True, slots=True)
class SpeakOptions:
    translations: bool = False
    voice: str | None = None
    sample_rate_hz: int | None = None


@dataclass(frozen=True, slots=True)
class SpeakerOptions:
    identify: bool = False
    diarize: bool = False
    voiceprints: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Start:
    audio: AudioFormat
    language: str | None = None
    """A language code, or "auto" to identify it."""
    languages: tuple[str, ...] = ()
    """With "auto": the languages to choose from (empty: any the model knows)."""
    partials: bool = True
    words: bool = True
    vad: VadOptions = field(default_factory=VadOptions)
    translate: TranslateOptions = field(default_factory=TranslateOptions)
    speak: SpeakOptions = field(default_factory=SpeakOptions)
    speakers: SpeakerOptions = field(default_factory=SpeakerOptions)


@dataclass(frozen=True, slots=True)
class Audio:
    pcm: bytes


@dataclass(frozen=True, slots=True)
class Flush:
    pass


@dataclass(frozen=True, slots=True)
class Stop:
    pass


@dataclass(frozen=True, slots=True)
class Ping:
    pass


@dataclass(frozen=True, slots=True)
class Speak:
    text: str
    id: str | None = None
    voice: str | None = None
    language: str | None = None


@dataclass(frozen=True, slots=True)
class Translate:
    text: str
    target: str
    id: str | None = None
    source: str | None = None


@dataclass(frozen=True, slots=True)
class Enroll:
    consent: bool
    id: str | None = None
    label: str | None = None
    passphrase: str | None = None
    needed_ms: int | None = None


@dataclass(frozen=True, slots=True)
class Verify:
    voiceprint_id: str
    id: str | None = None


@dataclass(frozen=True, slots=True)
class VoiceprintExport:
    voiceprint_id: str
    id: str | None = None


@dataclass(frozen=True, slots=True)
class VoiceprintImport:
    voiceprint: str
    id: str | None = None


@dataclass(frozen=True, slots=True)
class VoiceprintDelete:
    voiceprint_id: str
    id: str | None = None


ClientMessage: TypeAlias = (
    Start
    | Audio
    | Flush
    | Stop
    | Ping
    | Speak
    | Translate
    | Enroll
    | Verify
    | VoiceprintExport
    | VoiceprintImport
    | VoiceprintDelete
)


# Server → client ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Ready:
    session: str
    audio: Mapping[str, Any]
    engines: Mapping[str, Any]
    limits: Mapping[str, Any]
    protocol: int = PROTOCOL_VERSION
    type: str = field(default="ready", init=False)


@dataclass(frozen=True, slots=True)
class SpeechStarted:
    utterance: int
    t_ms: int
    type: str = field(default="speech.started", init=False)


@dataclass(frozen=True, slots=True)
class Partial:
    utterance: int
    text: str
    t0_ms: int
    t1_ms: int
    type: str = field(default="partial", init=False)


@dataclass(frozen=True, slots=True)
class WordTiming:
    w: str
    t0_ms: int
    t1_ms: int
    conf: float


@dataclass(frozen=True, slots=True)
class Speaker:
    voiceprint_id: str | None
    label: str
    score: float


@dataclass(frozen=True, slots=True)
class SpeakerEvent:
    """The speaker of an utterance whose final went out before scoring was done."""

    utterance: int
    speaker: Speaker | None
    undecided: str | None = None
    type: str = field(default="speaker", init=False)


@dataclass(frozen=True, slots=True)
class EnrollProgress:
    id: str | None
    speech_ms: int
    needed_ms: int
    passphrase_match: bool | None = None
    type: str = field(default="enroll.progress", init=False)


@dataclass(frozen=True, slots=True)
class Enrolled:
    id: str | None
    voiceprint_id: str
    label: str | None
    speech_ms: int
    type: str = field(default="enrolled", init=False)


@dataclass(frozen=True, slots=True)
class Verified:
    id: str | None
    voiceprint_id: str
    decision: str
    score: float
    passphrase_match: bool | None = None
    speech_ms: int = 0
    type: str = field(default="verified", init=False)


@dataclass(frozen=True, slots=True)
class VoiceprintExported:
    voiceprint_id: str
    voiceprint: str
    id: str | None = None
    type: str = field(default="voiceprint.exported", init=False)


@dataclass(frozen=True, slots=True)
class VoiceprintImported:
    voiceprint_id: str
    label: str | None = None
    id: str | None = None
    type: str = field(default="voiceprint.imported", init=False)


@dataclass(frozen=True, slots=True)
class VoiceprintDeleted:
    voiceprint_id: str
    id: str | None = None
    type: str = field(default="voiceprint.deleted", init=False)


@dataclass(frozen=True, slots=True)
class Final:
    utterance: int
    text: str
    t0_ms: int
    t1_ms: int
    words: tuple[WordTiming, ...] | None = None
    speaker: Speaker | None = None
    undecided: str | None = None
    language: str | None = None
    language_probability: float | None = None
    type: str = field(default="final", init=False)


@dataclass(frozen=True, slots=True)
class Pong:
    type: str = field(default="pong", init=False)


@dataclass(frozen=True, slots=True)
class Error:
    code: ErrorCode
    message: str
    fatal: bool = False
    id: str | None = None
    utterance: int | None = None
    type: str = field(default="error", init=False)


@dataclass(frozen=True, slots=True)
class Ended:
    reason: str
    stats: Mapping[str, int]
    type: str = field(default="ended", init=False)


@dataclass(frozen=True, slots=True)
class Translation:
    """A translation of utterance ``utterance``'s final (or partial, when
    ``provisional``), or the answer to a ``translate`` request ``id``."""

    source: str
    target: str
    text: str
    utterance: int | None = None
    id: str | None = None
    provisional: bool | None = None
    type: str = field(default="translation", init=False)


@dataclass(frozen=True, slots=True)
class TtsStart:
    id: str | int
    sample_rate: int
    voice: str
    type: str = field(default="tts.start", init=False)


@dataclass(frozen=True, slots=True)
class TtsEnd:
    id: str | int
    duration_ms: int
    type: str = field(default="tts.end", init=False)


@dataclass(frozen=True, slots=True)
class TtsAudio:
    """Synthesized audio; a bare binary frame in JSON, a map in msgpack."""

    id: str | int
    pcm: bytes
    type: str = field(default="tts.audio", init=False)


ServerEvent: TypeAlias = (
    Ready | SpeechStarted | Partial | Final | Pong | Error | Ended | Translation | TtsStart | TtsAudio | TtsEnd
    | SpeakerEvent | EnrollProgress | Enrolled | Verified | VoiceprintExported | VoiceprintImported
    | VoiceprintDeleted
)

# Optional fields that are left out of the frame when they are None.
_OMIT_WHEN_NONE = frozenset(
    {"id", "words", "speaker", "utterance", "provisional", "undecided", "passphrase_match", "language",
     "language_probability"}
)


def event_to_wire(event: ServerEvent) -> dict[str, Any]:
    """The event as a plain mapping, `type` first (both codecs share this)."""
    out: dict[str, Any] = {"type": event.type}
    for f in dataclasses.fields(event):
        if f.name == "type":
            continue
        value = getattr(event, f.name)
        if value is None and f.name in _OMIT_WHEN_NONE:
            continue
        out[f.name] = _plain(value)
    return out


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    return value


# Validation -----------------------------------------------------------------

T = TypeVar("T")
_MISSING: Any = object()


def is_utf8(text: str) -> bool:
    """False for a string with a lone surrogate (JSON can spell one as ``\\ud800``; UTF-8 cannot carry it)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class _Fields:
    """Typed access to one mapping; every mistake becomes a ProtocolError."""

    def __init__(self, obj: Mapping[str, Any], where: str, fatal: bool, request_id: str | None) -> None:
        self.obj = obj
        self.where = where
        self.fatal = fatal
        self.request_id = request_id

    def fail(self, message: str) -> ProtocolError:
        return ProtocolError(
            ErrorCode.BAD_MESSAGE,
            f"{self.where}: {message}",
            close=CloseCode.INVALID_PAYLOAD if self.fatal else None,
            request_id=self.request_id,
        )

    def _get(self, key: str, default: Any) -> Any:
        value = self.obj.get(key, _MISSING)
        if value is _MISSING or (value is None and default is not _MISSING):
            if default is _MISSING:
                raise self.fail(f"`{key}` is required")
            return default
        return value

    def string(self, key: str, default: Any = _MISSING, *, max_chars: int = MAX_ID_CHARS) -> Any:
        value = self._get(key, default)
        if value is default and default is not _MISSING:
            return value
        if not isinstance(value, str):
            raise self.fail(f"`{key}` must be a string")
        if not is_utf8(value):
            raise self.fail(f"`{key}` holds a lone surrogate, which is not text")
        if len(value) > max_chars:
            raise self.fail(f"`{key}` is longer than {max_chars} characters")
        return value

    def integer(self, key: str, default: Any = _MISSING, *, low: int, high: int) -> Any:
        value = self._get(key, default)
        if value is default and default is not _MISSING:
            return value
        # bool is an int in Python, but `true` is not a number on the wire.
        if isinstance(value, float) and value.is_integer() and math.isfinite(value):
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(f"`{key}` must be an integer")
        if not low <= value <= high:
            raise self.fail(f"`{key}` must be between {low} and {high}, not {value}")
        return value

    def boolean(self, key: str, default: Any = _MISSING) -> Any:
        value = self._get(key, default)
        if not isinstance(value, bool):
            raise self.fail(f"`{key}` must be true or false")
        return value

    def strings(self, key: str, *, max_items: int, max_chars: int = MAX_ID_CHARS) -> tuple[str, ...]:
        value = self._get(key, [])
        if not isinstance(value, list) or len(value) > max_items:
            raise self.fail(f"`{key}` must be a list of at most {max_items} strings")
        if not all(isinstance(v, str) and len(v) <= max_chars and is_utf8(v) for v in value):
            raise self.fail(f"`{key}` must hold strings of at most {max_chars} characters")
        return tuple(value)

    def nested(self, key: str, build: Callable[[_Fields], T], default: T) -> T:
        value = self._get(key, None)
        if value is None:
            return default
        if not isinstance(value, Mapping):
            raise self.fail(f"`{key}` must be an object")
        return build(_Fields(value, f"{self.where}.{key}", self.fatal, self.request_id))


def _audio_format(f: _Fields) -> AudioFormat:
    encoding = f.string("encoding", "pcm_s16le")
    channels = f.integer("channels", 1, low=0, high=1 << 16)
    # Any whole number parses here, so every out-of-range rate is "unsupported", not "malformed".
    rate = f.integer("sample_rate", low=-(1 << 63), high=1 << 63)
    close = CloseCode.UNSUPPORTED_DATA if f.fatal else None
    if encoding not in ("pcm_s16le", "mulaw", "alaw") or channels != 1:
        raise ProtocolError(
            ErrorCode.UNSUPPORTED_AUDIO,
            f"only mono pcm_s16le, mulaw or alaw is accepted, not {encoding} with {channels} channels",
            close=close,
        )
    if encoding != "pcm_s16le" and rate != 8_000:
        # G.711 is telephony audio: 8 kHz by definition.
        raise ProtocolError(ErrorCode.UNSUPPORTED_AUDIO, f"{encoding} is 8000 Hz audio, not {rate} Hz", close=close)
    if not MIN_SAMPLE_RATE_HZ <= rate <= MAX_SAMPLE_RATE_HZ:
        raise ProtocolError(
            ErrorCode.UNSUPPORTED_AUDIO,
            f"sample_rate must be {MIN_SAMPLE_RATE_HZ}–{MAX_SAMPLE_RATE_HZ} Hz, not {rate}",
            close=close,
        )
    return AudioFormat(sample_rate_hz=rate, encoding=encoding, channels=channels)


def _start(f: _Fields) -> Start:
    audio = f.nested("audio", _audio_format, None)
    if audio is None:
        raise f.fail("`audio.sample_rate` is required")
    return Start(
        audio=audio,
        language=f.string("language", None, max_chars=32),
        languages=f.strings("languages", max_items=32, max_chars=32),
        partials=f.boolean("partials", True),
        words=f.boolean("words", True),
        vad=f.nested(
            "vad",
            lambda v: VadOptions(
                aggressiveness=v.integer("aggressiveness", None, low=0, high=3),
                silence_ms=v.integer("silence_ms", None, low=100, high=5000),
                max_utterance_ms=v.integer("max_utterance_ms", None, low=1000, high=30_000),
            ),
            VadOptions(),
        ),
        translate=f.nested(
            "translate",
            lambda v: TranslateOptions(
                targets=v.strings("targets", max_items=8, max_chars=32),
                partials=v.boolean("partials", False),
            ),
            TranslateOptions(),
        ),
        speak=f.nested(
            "speak",
            lambda v: SpeakOptions(
                translations=v.boolean("translations", False),
                voice=v.string("voice", None),
                sample_rate_hz=v.integer("sample_rate", None, low=MIN_SAMPLE_RATE_HZ, high=MAX_SAMPLE_RATE_HZ),
            ),
            SpeakOptions(),
        ),
        speakers=f.nested(
            "speakers",
            lambda v: SpeakerOptions(
                identify=v.boolean("identify", False),
                diarize=v.boolean("diarize", False),
                voiceprints=v.strings("voiceprints", max_items=50, max_chars=64_000),
            ),
            SpeakerOptions(),
        ),
    )


def _text(f: _Fields) -> str:
    return f.string("text", max_chars=MAX_TEXT_CHARS_WIRE)


_PARSERS: dict[str, Callable[[_Fields], ClientMessage]] = {
    "start": _start,
    "flush": lambda f: Flush(),
    "stop": lambda f: Stop(),
    "ping": lambda f: Ping(),
    "speak": lambda f: Speak(
        text=_text(f), id=f.string("id", None), voice=f.string("voice", None),
        language=f.string("language", None, max_chars=32),
    ),
    "translate": lambda f: Translate(
        text=_text(f), target=f.string("target", max_chars=32), id=f.string("id", None),
        source=f.string("source", None, max_chars=32),
    ),
    "enroll": lambda f: Enroll(
        consent=f.boolean("consent", False), id=f.string("id", None), label=f.string("label", None),
        passphrase=f.string("passphrase", None, max_chars=1000),
        needed_ms=f.integer("needed_ms", None, low=0, high=600_000),
    ),
    "verify": lambda f: Verify(voiceprint_id=f.string("voiceprint_id"), id=f.string("id", None)),
    "voiceprint.export": lambda f: VoiceprintExport(voiceprint_id=f.string("voiceprint_id"), id=f.string("id", None)),
    "voiceprint.import": lambda f: VoiceprintImport(
        voiceprint=f.string("voiceprint", max_chars=64_000), id=f.string("id", None)
    ),
    "voiceprint.delete": lambda f: VoiceprintDelete(voiceprint_id=f.string("voiceprint_id"), id=f.string("id", None)),
}


def parse_client_message(obj: Any, *, started: bool) -> ClientMessage:
    """Validate one decoded frame.

    ``started`` says whether the session has accepted ``start``: a malformed
    ``start`` is fatal, a malformed request later costs only that request.
    """
    if not isinstance(obj, Mapping):
        raise ProtocolError(
            ErrorCode.BAD_MESSAGE, "a control frame must be an object with a `type`",
            close=CloseCode.INVALID_PAYLOAD,
        )
    kind = obj.get("type")
    if not isinstance(kind, str):
        raise ProtocolError(
            ErrorCode.BAD_MESSAGE, "a control frame needs a string `type`", close=CloseCode.INVALID_PAYLOAD
        )
    if not started and kind != "start":
        raise ProtocolError(
            ErrorCode.NOT_STARTED, f"the first message must be `start`, not `{kind[:40]}`", close=CloseCode.POLICY
        )
    raw_id = obj.get("id")
    # Every id is echoed, and an id no UTF-8 frame can carry would fail the whole session.
    request_id = raw_id if isinstance(raw_id, str) and len(raw_id) <= MAX_ID_CHARS and is_utf8(raw_id) else None
    if kind == "audio":
        pcm = obj.get("pcm")
        if not isinstance(pcm, (bytes, bytearray)):
            raise ProtocolError(ErrorCode.BAD_MESSAGE, "audio: `pcm` must be binary", close=CloseCode.INVALID_PAYLOAD)
        return Audio(bytes(pcm))
    parser = _PARSERS.get(kind)
    if parser is None:
        # Not fatal, so that a newer client can probe for features.
        raise ProtocolError(ErrorCode.BAD_MESSAGE, f"unknown message type {kind[:40]!r}", request_id=request_id)
    # Only the opening `start` is fatal when malformed; a repeated one costs nothing.
    return parser(_Fields(obj, kind, kind == "start" and not started, request_id))
