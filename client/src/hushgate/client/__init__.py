"""Python SDK for the speech gateway (wire protocol v1, see docs/protocol.md).

Three ways in, from the most convenient to the most flexible::

    client = Client("ws://127.0.0.1:8000", api_key="sgw_...")

    # one-shot requests
    text = await client.translate("good morning", "es")
    pcm, rate = await client.speak("Your table is ready.")

    # a file or any iterable of PCM chunks: events while it is sent
    async for event in client.stream(chunks, 16_000, translate=["es"]):
        if isinstance(event, Final):
            print(event.text)

    # a session you drive yourself
    async with client.session(16_000, language="en") as s:
        await s.send_audio(pcm)
        await s.stop()
        async for event in s.events():
            ...

Every server event arrives as a frozen dataclass (``parse_event`` is the one
place that turns a wire mapping into one). Event types this SDK does not know
yet become :class:`UnknownEvent`, and unknown fields are ignored (each event
keeps its wire mapping in ``raw``), so an older client keeps working against a
newer server, as the protocol's compatibility rule intends.

A fatal ``error`` event, an abnormal close, a refused handshake or an
unreachable server raise :class:`GatewayError`; non-fatal errors are ordinary
:class:`ServerError` events, because the session goes on after them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, TypeAlias
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import msgpack
import numpy as np
import numpy.typing as npt
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI

from hushgate.client.resume import RESUMABLE_CLOSE_CODES, RESUME_ATTEMPTS, RESUME_FIRST_WAIT_S, AudioTail, Timeline

__all__ = [
    "Resumed",
    "AudioFormat", "Client", "EngineInfo", "Enrolled", "EnrollProgress", "Ended", "Event", "EventParseError",
    "Final", "GatewayError", "Partial", "PcmChunk", "Pong", "Ready", "ServerError", "Session", "Speaker",
    "SpeakerUpdate", "SpeechStarted", "Translation", "TtsAudio", "TtsEnd", "TtsStart", "UnknownEvent",
    "Verified", "VoiceprintDeleted", "VoiceprintExported", "VoiceprintImported", "Word", "parse_event",
]

Format: TypeAlias = Literal["json", "msgpack"]
#: What ``send_audio`` takes: s16le bytes, or a 1-D array (int16, or float in -1..1).
PcmChunk: TypeAlias = bytes | bytearray | memoryview | npt.NDArray[Any]

DEFAULT_PATH = "/v1/stream"
# Room for the msgpack map around an audio payload, so a split chunk never exceeds the frame limit.
_MSGPACK_AUDIO_OVERHEAD = 64


class GatewayError(Exception):
    """The session cannot go on: a fatal ``error`` event, an abnormal close, or a failed connection.

    ``code`` is the protocol's error code (``bad_message``, ``overloaded``, …) when the
    server named one; otherwise one of the SDK's own: ``closed`` (the connection ended
    without an ``error`` or ``ended``), ``unreachable`` (no connection at all),
    ``http_error`` (the upgrade was answered with an unexpected HTTP status), and
    ``bad_event`` (the server sent something this SDK cannot read). ``close_code`` is
    the WebSocket close code when there was a close; ``http_status`` is set when the
    handshake itself was refused (401 and 403 come with code ``unauthorized``).
    """

    def __init__(self, code: str, message: str, close_code: int | None = None, *,
                 http_status: int | None = None) -> None:
        super().__init__(code, message, close_code)
        self.code = code
        self.message = message
        self.close_code = close_code
        self.http_status = http_status

    def __str__(self) -> str:
        where = f" (close {self.close_code})" if self.close_code is not None else ""
        if self.http_status is not None:
            where = f" (HTTP {self.http_status})"
        return f"{self.code}: {self.message}{where}"


class EventParseError(ValueError):
    """A frame of a known event type is missing a field or has one of the wrong type."""


# Events ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Word:
    """One timed word of a ``final``; times are on the session's audio clock."""

    w: str
    t0_ms: int
    t1_ms: int
    conf: float


@dataclass(frozen=True, slots=True)
class Speaker:
    """Who spoke an utterance: an enrolled voiceprint, or a guest label (``voiceprint_id`` None)."""

    voiceprint_id: str | None
    label: str
    score: float


@dataclass(frozen=True, slots=True)
class EngineInfo:
    """One engine a session uses, as ``ready.engines`` names it."""

    name: str
    model: str
    language: str | None = None


@dataclass(frozen=True, slots=True)
class AudioFormat:
    """The input format the server accepted."""

    sample_rate: int
    encoding: str = "pcm_s16le"
    channels: int = 1


@dataclass(frozen=True, slots=True)
class Ready:
    """First event of an accepted session; also kept as ``Session.ready``."""

    type: ClassVar[str] = "ready"
    session: str
    audio: AudioFormat
    engines: Mapping[str, Any]
    limits: Mapping[str, Any]
    protocol: int
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def _engine(self, capability: str) -> EngineInfo | None:
        return _engine_info(self.engines.get(capability))

    @property
    def stt(self) -> EngineInfo | None:
        return self._engine("stt")

    @property
    def vad(self) -> EngineInfo | None:
        return self._engine("vad")

    @property
    def tts(self) -> EngineInfo | None:
        """The voice the session speaks with by default (``model`` is the voice id)."""
        return self._engine("tts")

    @property
    def translate(self) -> dict[str, EngineInfo]:
        """Target language → translator, for the targets the server could honour."""
        table = self.engines.get("translate")
        if not isinstance(table, Mapping):
            return {}
        out = {}
        for target, entry in table.items():
            info = _engine_info(entry)
            if info is not None:
                out[str(target)] = info
        return out

    @property
    def max_frame_bytes(self) -> int:
        value = self.limits.get("max_frame_bytes")
        return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 1 << 20


@dataclass(frozen=True, slots=True)
class SpeechStarted:
    type: ClassVar[str] = "speech.started"
    utterance: int
    t_ms: int
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)


@dataclass(frozen=True, slots=True)
class Partial:
    """A provisional transcript: display it, do not store it."""

    type: ClassVar[str] = "partial"
    utterance: int
    text: str
    t0_ms: int
    t1_ms: int
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)


@dataclass(frozen=True, slots=True)
class Final:
    """The finished transcript of one utterance."""

    type: ClassVar[str] = "final"
    utterance: int
    text: str
    t0_ms: int
    t1_ms: int
    words: tuple[Word, ...] | None = None
    speaker: Speaker | None = None
    undecided: str | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)


@dataclass(frozen=True, slots=True)
class SpeakerUpdate:
    """The speaker of an utterance whose ``final`` went out before scoring was done (type ``speaker``)."""

    type: ClassVar[str] = "speaker"
    utterance: int
    speaker: Speaker | None
    undecided: str | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)


@dataclass(frozen=True, slots=True)
class Translation:
    """A translation of utterance ``utterance``, or the answer to ``translate`` request ``id``."""

    type: ClassVar[str] = "translation"
    source: str
    target: str
    text: str
    utterance: int | None = None
    id: str | None = None
    provisional: bool = False
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)


@dataclass(frozen=True, slots=True)
class TtsStart:
    """A synthesis begins; ``id`` is the ``speak`` id, or the utterance number for a spoken translation."""

    type: ClassVar[str] = "tts.start"
    id: str | int
    sample_rate: int
    voice: str
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)


@dataclass(frozen=True, slots=True)
class TtsAudio:
    """A chunk of synthesized s16le mono PCM at the ``sample_rate`` of its ``tts.start``.

    In JSON sessions the audio comes as bare binary frames; the SDK gives them the
    id of the synthesis they belong to, so both encodings look the same here.
    """

    type: ClassVar[str] = "tts.audio"
    id: str | int | None
    pcm: bytes
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def samples(self) -> npt.NDArray[np.int16]:
        return np.frombuffer(self.pcm, dtype="<i2").astype(np.int16, copy=False)


@dataclass(frozen=True, slots=True)
class TtsEnd:
    type: ClassVar[str] = "tts.end"
    id: str | int
    duration_ms: int
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)


@dataclass(frozen=True, slots=True)
class EnrollProgress:
    type: ClassVar[str] = "enroll.progress"
    id: str | None
    speech_ms: int
    needed_ms: int
    passphrase_match: bool | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)


@dataclass(frozen=True, slots=True)
class Enrolled:
    type: ClassVar[str] = "enrolled"
    id: str | None
    voiceprint_id: str
    label: str | None
    speech_ms: int
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)


@dataclass(frozen=True, slots=True)
class Verified:
    type: ClassVar[str] = "verified"
    id: str | None
    voiceprint_id: str
    decision: str
    score: float
    passphrase_match: bool | None = None
    speech_ms: int | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def accepted(self) -> bool:
        return self.decision == "accept"


@dataclass(frozen=True, slots=True)
class VoiceprintExported:
    """``voiceprint`` is sealed by the server: keep it as is, give it back with ``import_voiceprint``."""

    type: ClassVar[str] = "voiceprint.exported"
    voiceprint_id: str
    voiceprint: str
    id: str | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)


@dataclass(frozen=True, slots=True)
class VoiceprintImported:
    type: ClassVar[str] = "voiceprint.imported"
    voiceprint_id: str
    label: str | None = None
    id: str | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)


@dataclass(frozen=True, slots=True)
class VoiceprintDeleted:
    type: ClassVar[str] = "voiceprint.deleted"
    voiceprint_id: str
    id: str | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)


@dataclass(frozen=True, slots=True)
class Pong:
    type: ClassVar[str] = "pong"
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)


@dataclass(frozen=True, slots=True)
class ServerError:
    """An ``error`` event. Non-fatal ones are delivered as events; fatal ones raise GatewayError."""

    type: ClassVar[str] = "error"
    code: str
    message: str
    fatal: bool = False
    id: str | None = None
    utterance: int | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)


@dataclass(frozen=True, slots=True)
class Ended:
    """Last event of a session that ended in order (``reason``: stop, idle, max_duration, shutdown)."""

    type: ClassVar[str] = "ended"
    reason: str
    stats: Mapping[str, int]
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def audio_ms(self) -> int:
        return int(self.stats.get("audio_ms", 0))

    @property
    def utterances(self) -> int:
        return int(self.stats.get("utterances", 0))


@dataclass(frozen=True, slots=True)
class UnknownEvent:
    """An event type this SDK does not know (a newer server); ``raw`` holds all of it."""

    type: str
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)


Event: TypeAlias = (
    Ready | SpeechStarted | Partial | Final | SpeakerUpdate | Translation | TtsStart | TtsAudio | TtsEnd
    | EnrollProgress | Enrolled | Verified | VoiceprintExported | VoiceprintImported | VoiceprintDeleted
    | Pong | ServerError | Ended | UnknownEvent
)


# Parsing --------------------------------------------------------------------------

_MISSING: Any = object()


class _Fields:
    """Typed reads from one wire mapping; a wrong field names the event and the key."""

    def __init__(self, data: Mapping[str, Any], kind: str) -> None:
        self._data = data
        self._kind = kind

    def _get(self, key: str, default: Any) -> Any:
        value = self._data.get(key)
        if value is None:
            if default is _MISSING:
                raise EventParseError(f"`{self._kind}` event without `{key}`")
            return default
        return value

    def _bad(self, key: str, what: str) -> EventParseError:
        return EventParseError(f"`{self._kind}` event: `{key}` is not {what}")

    def integer(self, key: str, default: Any = _MISSING) -> Any:
        value = self._get(key, default)
        if value is default:
            return value
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self._bad(key, "an integer")
        return value

    def number(self, key: str, default: Any = _MISSING) -> Any:
        value = self._get(key, default)
        if value is default:
            return value
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self._bad(key, "a number")
        return float(value)

    def string(self, key: str, default: Any = _MISSING) -> Any:
        value = self._get(key, default)
        if value is not default and not isinstance(value, str):
            raise self._bad(key, "a string")
        return value

    def boolean(self, key: str, default: Any = _MISSING) -> Any:
        value = self._get(key, default)
        if value is not default and not isinstance(value, bool):
            raise self._bad(key, "true or false")
        return value

    def request_id(self, key: str = "id", default: Any = None) -> Any:
        """Request ids are strings; a spoken translation's synthesis id is its utterance number."""
        value = self._get(key, default)
        if value is default:
            return value
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise self._bad(key, "a string or an integer")
        return value

    def mapping(self, key: str, default: Any = _MISSING) -> Any:
        value = self._get(key, default)
        if value is not default and not isinstance(value, Mapping):
            raise self._bad(key, "an object")
        return value

    def binary(self, key: str) -> bytes:
        value = self._get(key, _MISSING)
        if not isinstance(value, (bytes, bytearray)):
            raise self._bad(key, "binary")
        return bytes(value)


def _engine_info(entry: Any) -> EngineInfo | None:
    if not isinstance(entry, Mapping):
        return None
    # `name` is what the server sends; `engine` is accepted as an older spelling.
    name = entry.get("name", entry.get("engine"))
    model = entry.get("model", name)
    if not isinstance(name, str):
        return None
    language = entry.get("language")
    return EngineInfo(name, model if isinstance(model, str) else name, language if isinstance(language, str) else None)


def _speaker(value: Any, kind: str) -> Speaker | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise EventParseError(f"`{kind}` event: `speaker` is not an object")
    f = _Fields(value, f"{kind}.speaker")
    return Speaker(voiceprint_id=f.string("voiceprint_id", None), label=f.string("label", ""),
                   score=f.number("score", 0.0))


def _words(value: Any) -> tuple[Word, ...] | None:
    if value is None:
        return None
    if not isinstance(value, list):
        raise EventParseError("`final` event: `words` is not a list")
    words = []
    for item in value:
        if not isinstance(item, Mapping):
            raise EventParseError("`final` event: a word is not an object")
        f = _Fields(item, "final.words")
        words.append(Word(w=f.string("w"), t0_ms=f.integer("t0_ms"), t1_ms=f.integer("t1_ms"),
                          conf=f.number("conf", 0.0)))
    return tuple(words)


def parse_event(data: Mapping[str, Any]) -> Event:
    """One server event from its wire mapping (the same in both encodings).

    Unknown types give :class:`UnknownEvent`; unknown fields are ignored. A known
    type with a missing or mistyped field raises :class:`EventParseError`.
    """
    kind = data.get("type") if isinstance(data, Mapping) else None
    if not isinstance(kind, str):
        raise EventParseError("an event must be an object with a string `type`")
    f = _Fields(data, kind)
    raw = data
    match kind:
        case "ready":
            audio = f.mapping("audio", {})
            a = _Fields(audio, "ready.audio")
            return Ready(
                session=f.string("session"),
                audio=AudioFormat(sample_rate=a.integer("sample_rate", 0), encoding=a.string("encoding", "pcm_s16le"),
                                  channels=a.integer("channels", 1)),
                engines=f.mapping("engines", {}), limits=f.mapping("limits", {}), protocol=f.integer("protocol", 1),
                raw=raw,
            )
        case "speech.started":
            return SpeechStarted(utterance=f.integer("utterance"), t_ms=f.integer("t_ms"), raw=raw)
        case "partial":
            return Partial(utterance=f.integer("utterance"), text=f.string("text"), t0_ms=f.integer("t0_ms"),
                           t1_ms=f.integer("t1_ms"), raw=raw)
        case "final":
            return Final(
                utterance=f.integer("utterance"), text=f.string("text"), t0_ms=f.integer("t0_ms"),
                t1_ms=f.integer("t1_ms"),
                words=_words(data.get("words")), speaker=_speaker(data.get("speaker"), kind),
                undecided=f.string("undecided", None), raw=raw,
            )
        case "speaker":
            return SpeakerUpdate(utterance=f.integer("utterance"), speaker=_speaker(data.get("speaker"), kind),
                                 undecided=f.string("undecided", None), raw=raw)
        case "translation":
            return Translation(
                source=f.string("source", ""), target=f.string("target"), text=f.string("text"),
                utterance=f.integer("utterance", None), id=f.string("id", None),
                provisional=f.boolean("provisional", False), raw=raw,
            )
        case "tts.start":
            return TtsStart(id=f.request_id(default=_MISSING), sample_rate=f.integer("sample_rate"),
                            voice=f.string("voice", ""), raw=raw)
        case "tts.audio":
            return TtsAudio(id=f.request_id(), pcm=f.binary("pcm"), raw=raw)
        case "tts.end":
            return TtsEnd(id=f.request_id(default=_MISSING), duration_ms=f.integer("duration_ms", 0), raw=raw)
        case "enroll.progress":
            return EnrollProgress(id=f.string("id", None), speech_ms=f.integer("speech_ms"),
                                  needed_ms=f.integer("needed_ms"),
                                  passphrase_match=f.boolean("passphrase_match", None), raw=raw)
        case "enrolled":
            return Enrolled(id=f.string("id", None), voiceprint_id=f.string("voiceprint_id"),
                            label=f.string("label", None), speech_ms=f.integer("speech_ms", 0), raw=raw)
        case "verified":
            return Verified(
                id=f.string("id", None), voiceprint_id=f.string("voiceprint_id"), decision=f.string("decision"),
                score=f.number("score"), passphrase_match=f.boolean("passphrase_match", None),
                speech_ms=f.integer("speech_ms", None), raw=raw,
            )
        case "voiceprint.exported":
            return VoiceprintExported(voiceprint_id=f.string("voiceprint_id"), voiceprint=f.string("voiceprint"),
                                      id=f.string("id", None), raw=raw)
        case "voiceprint.imported":
            return VoiceprintImported(voiceprint_id=f.string("voiceprint_id"), label=f.string("label", None),
                                      id=f.string("id", None), raw=raw)
        case "voiceprint.deleted":
            return VoiceprintDeleted(voiceprint_id=f.string("voiceprint_id"), id=f.string("id", None), raw=raw)
        case "pong":
            return Pong(raw=raw)
        case "error":
            return ServerError(code=f.string("code"), message=f.string("message", ""), fatal=f.boolean("fatal", False),
                               id=f.string("id", None), utterance=f.integer("utterance", None), raw=raw)
        case "ended":
            stats = f.mapping("stats", {})
            return Ended(reason=f.string("reason", ""), stats={str(k): v for k, v in stats.items()}, raw=raw)
        case _:
            return UnknownEvent(type=kind, raw=raw)


# Helpers --------------------------------------------------------------------------


def _pcm_bytes(pcm: PcmChunk) -> bytes:
    """s16le bytes from what callers naturally have: bytes from a file, or an array from numpy."""
    if isinstance(pcm, np.ndarray):
        if pcm.ndim != 1:
            raise ValueError(f"audio must be one channel (a 1-D array), not shape {pcm.shape}")
        if np.issubdtype(pcm.dtype, np.floating):
            pcm = np.clip(np.rint(pcm * 32768.0), -32768, 32767)
        elif pcm.dtype != np.int16:
            raise TypeError(f"audio arrays must be int16, or float in -1..1; not {pcm.dtype}")
        return pcm.astype("<i2", copy=False).tobytes()
    data = bytes(pcm)
    if len(data) % 2:
        raise ValueError("s16le audio has an even number of bytes; this chunk has an odd one")
    return data


def _stream_url(url: str, fmt: Format, token: str | None) -> str:
    """The /v1/stream URL with ``format`` (and ``token``) set; a bare server address gets the default path."""
    parts = urlsplit(url)
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    if scheme not in ("ws", "wss"):
        raise ValueError(f"the gateway URL must start with ws://, wss://, http:// or https://, not {url!r}")
    path = parts.path if parts.path not in ("", "/") else DEFAULT_PATH
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k not in ("format", "token")]
    query.append(("format", fmt))
    if token is not None:
        query.append(("token", token))
    return urlunsplit((scheme, parts.netloc, path, urlencode(query), ""))


def _drop_none(message: Mapping[str, Any]) -> dict[str, Any]:
    # `null` means "default" on the wire anyway; leaving it out keeps frames small.
    return {k: v for k, v in message.items() if v is not None}


def _new_id() -> str:
    return str(uuid.uuid4())


class _End:
    """The end of a session's events, after ``ended`` or an orderly close."""


# Session --------------------------------------------------------------------------


class Session:
    """One open session. Made by :meth:`Client.session`; not constructed directly.

    A background task reads the socket all the time, so the server never sees a
    client that stopped reading (it would close with 1013); events wait in memory
    until :meth:`events` or :meth:`receive` takes them. Read them from one task.
    """

    def __init__(self, ws: ClientConnection, fmt: Format) -> None:
        self._ws = ws
        self._format = fmt
        self._queue: asyncio.Queue[Event | GatewayError | _End] = asyncio.Queue()
        self._reader: asyncio.Task[None] | None = None
        self._tts_id: str | int | None = None
        self._fatal: ServerError | None = None
        self._ready: Ready | None = None
        self.ended: Ended | None = None
        self.stopped = False

    # Opening and closing ----------------------------------------------------------

    async def _open(self, start: Mapping[str, Any], timeout_s: float | None) -> Ready:
        self._reader = asyncio.create_task(self._read(), name="hushgate-reader")
        await self.send(start)
        try:
            first = await asyncio.wait_for(self.receive(), timeout_s)
        except TimeoutError:
            raise GatewayError("closed", f"no `ready` within {timeout_s} s") from None
        if not isinstance(first, Ready):
            got = first.type if first is not None else "the end of the connection"
            raise GatewayError("bad_event", f"expected `ready` first, got {got}")
        self._ready = first
        return first

    async def close(self) -> None:
        """Close the connection now. Pending events are dropped; the server discards the session."""
        with contextlib.suppress(Exception):
            await self._ws.close()
        if self._reader is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(self._reader, 5.0)

    @property
    def ready(self) -> Ready:
        """The session's ``ready`` event: the engines in use and the limits."""
        if self._ready is None:
            raise RuntimeError("the session has not started")
        return self._ready

    @property
    def close_code(self) -> int | None:
        return self._ws.close_code

    # Reading ----------------------------------------------------------------------

    async def _read(self) -> None:
        terminal: GatewayError | _End = _End()
        try:
            async for frame in self._ws:
                event = self._decode(frame)
                if isinstance(event, ServerError) and event.fatal:
                    # Raised once the close that follows tells its close code.
                    self._fatal = event
                    continue
                if isinstance(event, Ended):
                    self.ended = event
                self._queue.put_nowait(event)
        except ConnectionClosed:
            pass
        except (EventParseError, ValueError, msgpack.UnpackException) as exc:
            terminal = GatewayError("bad_event", f"cannot read a server frame: {exc}")
            with contextlib.suppress(Exception):
                await self._ws.close(1002, "unreadable frame")
            self._queue.put_nowait(terminal)
            return
        code = self._ws.close_code if self._ws.close_code is not None else 1006
        reason = self._ws.close_reason or ""
        if self._fatal is not None:
            terminal = GatewayError(self._fatal.code, self._fatal.message, code)
        elif self.ended is None and code != 1000:
            terminal = GatewayError("closed", reason or f"the connection closed with code {code}", code)
        self._queue.put_nowait(terminal)

    def _decode(self, frame: str | bytes) -> Event:
        if isinstance(frame, bytes) and self._format == "json":
            # Bare binary frames in a JSON session are the audio of the synthesis in progress.
            return TtsAudio(id=self._tts_id, pcm=frame, raw={"type": "tts.audio", "id": self._tts_id})
        # A refusal before the encoding is agreed is always JSON, so text is read as JSON everywhere.
        data = json.loads(frame) if isinstance(frame, str) else msgpack.unpackb(frame, raw=False)
        if not isinstance(data, Mapping):
            raise EventParseError("a server frame is not an object")
        event = parse_event(data)
        if isinstance(event, TtsStart):
            self._tts_id = event.id
        elif isinstance(event, TtsEnd):
            self._tts_id = None
        return event

    async def receive(self, timeout_s: float | None = None) -> Event | None:
        """The next event; None once the session is over.

        Raises :class:`GatewayError` when it ended by a fatal error or an abnormal
        close (again on every later call), and ``TimeoutError`` after ``timeout_s``.
        """
        item = await asyncio.wait_for(self._queue.get(), timeout_s)
        if isinstance(item, (_End, GatewayError)):
            self._queue.put_nowait(item)  # the end stays the end for later calls
            if isinstance(item, GatewayError):
                raise item
            return None
        return item

    async def events(self) -> AsyncIterator[Event]:
        """Every event until ``ended`` (included) or the close; raises GatewayError on a fatal end."""
        while (event := await self.receive()) is not None:
            yield event

    def __aiter__(self) -> AsyncIterator[Event]:
        return self.events()

    async def finish(self, timeout_s: float | None = None) -> list[Event]:
        """Send ``stop`` (if not yet sent) and collect every remaining event up to ``ended``."""
        if not self.stopped:
            await self.stop()
        out: list[Event] = []

        async def collect() -> None:
            async for event in self.events():
                out.append(event)

        await asyncio.wait_for(collect(), timeout_s)
        return out

    # Sending ----------------------------------------------------------------------

    async def _send_frame(self, frame: str | bytes) -> None:
        try:
            await self._ws.send(frame)
        except ConnectionClosed as exc:
            raise await self._why_closed() from exc

    async def _why_closed(self) -> GatewayError:
        """The reason the server gave for the close, once the reader has seen it."""
        if self._reader is not None:
            with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(self._reader), 5.0)
        if self._fatal is not None:
            return GatewayError(self._fatal.code, self._fatal.message, self._ws.close_code)
        code = self._ws.close_code
        return GatewayError("closed", self._ws.close_reason or "the session is closed", code)

    async def send(self, message: Mapping[str, Any]) -> None:
        """Send one control message as is (``None`` fields left out); for message types this SDK lacks."""
        body = _drop_none(message)
        frame: str | bytes
        if self._format == "json":
            frame = json.dumps(body, ensure_ascii=False, separators=(",", ":"))
        else:
            frame = msgpack.packb(body, use_bin_type=True)
        await self._send_frame(frame)

    async def send_audio(self, pcm: PcmChunk) -> None:
        """Send s16le mono PCM at the session's rate; long buffers are split to fit the frame limit.

        The send waits while the server is not reading (its engines are behind), which
        is how a file sent faster than real time is slowed to what the server can take.
        """
        data = _pcm_bytes(pcm)
        limit = self.ready.max_frame_bytes - (_MSGPACK_AUDIO_OVERHEAD if self._format == "msgpack" else 0)
        limit -= limit % 2
        for pos in range(0, len(data), limit) if data else ():
            piece = data[pos : pos + limit]
            if self._format == "json":
                await self._send_frame(piece)
            else:
                await self._send_frame(msgpack.packb({"type": "audio", "pcm": piece}, use_bin_type=True))
            # While the socket takes every write at once, ``send`` never suspends: a
            # loop of sends would starve this connection's reader and keepalive, so
            # events pile up unread until a ping times out (close 1006).
            await asyncio.sleep(0)

    async def flush(self) -> None:
        """End the utterance in progress now (a push-to-talk release); its ``final`` follows."""
        await self.send({"type": "flush"})

    async def stop(self) -> None:
        """Ask for an orderly end: remaining finals, translations and speech, then ``ended``.

        Keep reading :meth:`events` to get them; the server reads nothing after this.
        """
        self.stopped = True
        await self.send({"type": "stop"})

    async def ping(self) -> None:
        """Answered by a ``Pong`` event; also keeps an otherwise idle session alive."""
        await self.send({"type": "ping"})

    async def speak(self, text: str, voice: str | None = None, language: str | None = None,
                    id: str | None = None) -> str:
        """Synthesize ``text``; returns the request id found on its TtsStart/TtsAudio/TtsEnd and errors."""
        request_id = id or _new_id()
        await self.send({"type": "speak", "id": request_id, "text": text, "voice": voice, "language": language})
        return request_id

    async def translate(self, text: str, target: str, source: str | None = None, id: str | None = None) -> str:
        """Translate ``text``; returns the request id the ``Translation`` answer will carry."""
        request_id = id or _new_id()
        await self.send({"type": "translate", "id": request_id, "text": text, "source": source, "target": target})
        return request_id

    async def enroll(self, consent: bool, label: str | None = None, passphrase: str | None = None,
                     needed_ms: int | None = None, id: str | None = None) -> str:
        """Enroll the speaker of the next utterances; ``consent`` must be the speaker's own yes."""
        request_id = id or _new_id()
        await self.send({"type": "enroll", "id": request_id, "consent": consent, "label": label,
                         "passphrase": passphrase, "needed_ms": needed_ms})
        return request_id

    async def verify(self, voiceprint_id: str, id: str | None = None) -> str:
        """Check the speaker of the next utterance against a voiceprint; a ``Verified`` answers."""
        request_id = id or _new_id()
        await self.send({"type": "verify", "id": request_id, "voiceprint_id": voiceprint_id})
        return request_id

    async def export_voiceprint(self, voiceprint_id: str, id: str | None = None) -> str:
        request_id = id or _new_id()
        await self.send({"type": "voiceprint.export", "id": request_id, "voiceprint_id": voiceprint_id})
        return request_id

    async def import_voiceprint(self, voiceprint: str, id: str | None = None) -> str:
        request_id = id or _new_id()
        await self.send({"type": "voiceprint.import", "id": request_id, "voiceprint": voiceprint})
        return request_id

    async def delete_voiceprint(self, voiceprint_id: str, id: str | None = None) -> str:
        request_id = id or _new_id()
        await self.send({"type": "voiceprint.delete", "id": request_id, "voiceprint_id": voiceprint_id})
        return request_id


# Client ---------------------------------------------------------------------------


class Client:
    """Where the gateway is and how to authenticate; opens one connection per session.

    ``url`` is the stream URL (``ws://host:8000/v1/stream``) or just the server
    (``ws://host:8000``, ``http://host:8000``). ``api_key`` goes in an
    ``Authorization: Bearer`` header; ``token`` (a browser token from
    ``POST /v1/tokens``) in the query, for when all you have is a token.
    ``format`` picks the encoding; both give exactly the same events.
    """

    def __init__(self, url: str, *, token: str | None = None, api_key: str | None = None,
                 format: Format = "json", open_timeout_s: float = 30.0) -> None:  # noqa: A002 - the protocol's name
        if format not in ("json", "msgpack"):
            raise ValueError(f"format must be 'json' or 'msgpack', not {format!r}")
        self.url = _stream_url(url, format, token)
        self.format: Format = format
        self._api_key = api_key
        self._open_timeout_s = open_timeout_s

    def __repr__(self) -> str:
        # The URL may hold a token; never print it.
        return f"Client({urlunsplit(urlsplit(self.url)._replace(query=''))!r}, format={self.format!r})"

    async def _connect(self) -> ClientConnection:
        headers = {"Authorization": f"Bearer {self._api_key}"} if self._api_key else None
        try:
            return await connect(
                self.url, additional_headers=headers, open_timeout=self._open_timeout_s,
                # TTS chunks are at most 500 ms; audio does not compress, so no deflate.
                max_size=16 << 20, compression=None,
            )
        except InvalidStatus as exc:
            status = exc.response.status_code
            message, code = f"the server answered HTTP {status}", "http_error"
            with contextlib.suppress(ValueError, AttributeError, TypeError):
                body = json.loads(exc.response.body or b"")
                message = str(body.get("error") or message)
                code = str(body.get("code") or code)
            if status in (401, 403):
                code = "unauthorized"
            raise GatewayError(code, message, http_status=status) from exc
        except InvalidURI as exc:
            raise ValueError(str(exc)) from exc
        except (OSError, TimeoutError, InvalidHandshake) as exc:
            where = urlunsplit(urlsplit(self.url)._replace(query=""))
            raise GatewayError("unreachable", f"cannot connect to {where}: {exc or type(exc).__name__}") from exc

    @contextlib.asynccontextmanager
    async def session(
        self,
        rate: int = 16_000,
        *,
        language: str | None = None,
        partials: bool | None = None,
        words: bool | None = None,
        vad: Mapping[str, Any] | None = None,
        translate: Mapping[str, Any] | Iterable[str] | str | None = None,
        speak: Mapping[str, Any] | None = None,
        speakers: Mapping[str, Any] | None = None,
        **extra: Any,
    ) -> AsyncIterator[Session]:
        """Open a session: connect, send ``start``, wait for ``ready``.

        The options are the ``start`` fields of the protocol (``None``: the server's
        default); ``translate`` may also be a target or a list of targets. Unknown
        keywords are sent as they are, for options newer than this SDK. Leaving the
        block closes the connection: call :meth:`Session.finish` first to get every
        pending result.
        """
        if isinstance(translate, str):
            translate = {"targets": [translate]}
        elif translate is not None and not isinstance(translate, Mapping):
            translate = {"targets": list(translate)}
        start = _drop_none({
            "type": "start", "audio": {"sample_rate": rate}, "language": language, "partials": partials,
            "words": words, "vad": vad, "translate": translate, "speak": speak, "speakers": speakers, **extra,
        })
        ws = await self._connect()
        session = Session(ws, self.format)
        try:
            await session._open(start, self._open_timeout_s)
            yield session
        finally:
            await session.close()

    async def stream(
        self,
        pcm: Iterable[PcmChunk] | AsyncIterable[PcmChunk],
        rate: int = 16_000,
        *,
        resume: bool = True,
        **start: Any,
    ) -> AsyncIterator[Event | Resumed]:
        """Send every chunk of ``pcm`` while yielding the events, then stop; ``Ready`` comes first, ``Ended`` last.

        Sending and receiving run concurrently, so events arrive while a long file
        is still being sent; the sending slows to what the server can take. Pace an
        async iterable yourself for real-time streaming. ``start`` takes the options
        of :meth:`session`.

        With ``resume`` (the default), a server that drains (``ended`` with reason
        ``shutdown``) or vanishes mid-stream does not end the stream: a new session
        is opened (behind a load balancer, on another replica), the audio no final
        has covered yet is sent again, and a :class:`Resumed` event marks the seam.
        Times and utterance numbers continue as one stream (see ``resume.py``).
        """
        source = _Chunks(pcm)
        tail = AudioTail(rate)
        timeline = Timeline()
        replay = b""
        first = True
        try:
            while True:
                async with self._resumable_session(rate, retry=not first, **start) as s:
                    if first:
                        yield s.ready
                        first = False
                    else:
                        yield Resumed(offset_ms=timeline.offset_ms, resent_ms=len(replay) * 500 // rate)
                    pump = _Pump(s, source, tail, replay, resume=resume)
                    async for event in pump.events():
                        timeline.seen(event)
                        yield timeline.shift(event)
                    if pump.settled_ms is None:
                        return
                timeline.advance(pump.settled_ms, pump.utterances)
                replay = pump.replay
        finally:
            await source.aclose()

    @contextlib.asynccontextmanager
    async def _resumable_session(self, rate: int, *, retry: bool, **start: Any) -> AsyncIterator[Session]:
        """:meth:`session`; when resuming, retried with growing waits while replicas refuse or are unreachable."""
        wait_s = RESUME_FIRST_WAIT_S
        for attempt in range(RESUME_ATTEMPTS if retry else 1):
            try:
                context = self.session(rate, **start)
                session = await context.__aenter__()
            except GatewayError as exc:
                retryable = exc.code in ("unreachable", "overloaded", "engine_unavailable") or (
                    exc.close_code in RESUMABLE_CLOSE_CODES) or exc.http_status in (502, 503, 504)
                if not retry or not retryable or attempt == RESUME_ATTEMPTS - 1:
                    raise
                await asyncio.sleep(wait_s)
                wait_s *= 2
                continue
            try:
                yield session
            finally:
                await context.__aexit__(None, None, None)
            return

    async def speak(self, text: str, voice: str | None = None, sample_rate: int | None = None, *,
                    language: str | None = None) -> tuple[npt.NDArray[np.int16], int]:
        """Synthesize ``text`` over a short session: (int16 mono samples, their sample rate)."""
        speak = {"sample_rate": sample_rate} if sample_rate is not None else None
        async with self.session(16_000, partials=False, speak=speak) as s:
            request_id = await s.speak(text, voice=voice, language=language)
            chunks: list[bytes] = []
            rate: int | None = None
            async for event in s.events():
                if isinstance(event, ServerError) and event.id == request_id:
                    raise GatewayError(event.code, event.message)
                if getattr(event, "id", None) != request_id:
                    continue
                if isinstance(event, TtsStart):
                    rate = event.sample_rate
                elif isinstance(event, TtsAudio):
                    chunks.append(event.pcm)
                elif isinstance(event, TtsEnd):
                    break
            else:
                raise GatewayError("closed", "the session ended before the synthesis did", s.close_code)
            await s.finish(timeout_s=30.0)
        if rate is None:
            raise GatewayError("bad_event", "`tts.end` without `tts.start`")
        return np.frombuffer(b"".join(chunks), dtype="<i2").astype(np.int16), rate

    async def translate(self, text: str, target: str, source: str | None = None) -> str:
        """Translate ``text`` over a short session; raises GatewayError (e.g. ``engine_unavailable``) if it cannot."""
        async with self.session(16_000, partials=False) as s:
            request_id = await s.translate(text, target, source=source)
            async for event in s.events():
                if isinstance(event, ServerError) and event.id == request_id:
                    raise GatewayError(event.code, event.message)
                if isinstance(event, Translation) and event.id == request_id:
                    await s.finish(timeout_s=30.0)
                    return event.text
        raise GatewayError("closed", "the session ended before the translation came")


@dataclass(frozen=True, slots=True)
class Resumed:
    """SDK event: the stream went on in a new session after its server went away.

    ``offset_ms`` is where the new session's audio starts in the stream;
    ``resent_ms`` how much audio no final had covered and was sent again.
    """

    type: ClassVar[str] = "resumed"
    offset_ms: int
    resent_ms: int


async def _aiter_chunks(pcm: Iterable[PcmChunk] | AsyncIterable[PcmChunk]) -> AsyncIterator[bytes]:
    if isinstance(pcm, AsyncIterable):
        async for chunk in pcm:
            yield _pcm_bytes(chunk)
    else:
        for chunk in pcm:
            yield _pcm_bytes(chunk)


class _Chunks:
    """The caller's audio source, read across sessions.

    A sender cancelled at a resume may be waiting for the next chunk; cancelling
    that wait inside the caller's generator would end the generator, so the wait
    runs as its own future that the next session's sender picks up.
    """

    def __init__(self, pcm: Iterable[PcmChunk] | AsyncIterable[PcmChunk]) -> None:
        self._chunks = _aiter_chunks(pcm)
        self._pending: asyncio.Future[bytes | None] | None = None

    async def next(self) -> bytes | None:
        """The next chunk; None at the end of the source."""
        if self._pending is None:
            self._pending = asyncio.ensure_future(anext(self._chunks, None))
        try:
            chunk = await asyncio.shield(self._pending)
        except asyncio.CancelledError:
            raise
        except BaseException:
            self._pending = None
            raise
        self._pending = None
        return chunk

    async def aclose(self) -> None:
        if self._pending is not None:
            self._pending.cancel()
            await asyncio.gather(self._pending, return_exceptions=True)
        await self._chunks.aclose()


class _Pump:
    """One session of :meth:`Client.stream`: send the replay and the source, yield the events.

    Afterwards ``settled_ms`` is None when the stream is over, or the point of this
    session up to which finals settled the audio when it should go on elsewhere;
    ``replay`` is then the audio to send again.
    """

    def __init__(self, session: Session, source: _Chunks, tail: AudioTail, replay: bytes, *,
                 resume: bool) -> None:
        self._s = session
        self._source = source
        self._tail = tail
        self._replay = replay
        self._resume = resume
        self._source_done = False
        self.settled_ms: int | None = None
        self.utterances = 0
        self.replay = b""

    async def _send(self) -> None:
        if self._replay:
            self._tail.sent(self._replay)
            await self._s.send_audio(self._replay)
        while (chunk := await self._source.next()) is not None:
            # Kept before it is sent: a chunk lost with the connection is sent again.
            self._tail.sent(chunk)
            await self._s.send_audio(chunk)
        self._source_done = True
        await self._s.stop()

    async def events(self) -> AsyncIterator[Event]:
        sender = asyncio.create_task(self._send(), name="hushgate-sender")
        receiving: asyncio.Task[Event | None] = asyncio.ensure_future(self._s.receive())
        try:
            while True:
                watch: set[asyncio.Future[Any]] = {receiving}
                if not sender.done():
                    watch.add(sender)
                await asyncio.wait(watch, return_when=asyncio.FIRST_COMPLETED)
                if sender.done() and not sender.cancelled():
                    failure = sender.exception()
                    # A closed connection is reported by the receiving side, with its reason.
                    if failure is not None and not isinstance(failure, GatewayError):
                        raise failure
                if not receiving.done():
                    continue
                try:
                    event = receiving.result()
                except GatewayError as exc:
                    if self._resume and exc.close_code in RESUMABLE_CLOSE_CODES:
                        self._go_on_elsewhere(None)
                        return
                    raise
                if event is None:
                    return
                if isinstance(event, Final):
                    self._tail.settle(event.t1_ms)
                if isinstance(event, Ended) and event.reason == "shutdown" and self._resume and (
                        not self._source_done or event.audio_ms < self._tail.sent_ms):
                    self._go_on_elsewhere(event)
                    return
                yield event
                receiving = asyncio.ensure_future(self._s.receive())
        finally:
            for task in (sender, receiving):
                task.cancel()
            await asyncio.gather(sender, receiving, return_exceptions=True)

    def _go_on_elsewhere(self, ended: Ended | None) -> None:
        if ended is not None:
            # Everything the server took went into finals before `ended`.
            self._tail.settle(ended.audio_ms)
            self.utterances = ended.utterances
        self.settled_ms, self.replay = self._tail.restart()
