"""Server → client events (protocol v1) as msgspec Structs.

The wire shape is part of the protocol and old clients depend on it: ``type``
comes first, then the fields in the order written here. Fields with a ``None``
default (``id``, ``utterance``, ``words``, ``speaker``, …) are left out of the
frame when they are ``None``; every other field is always sent, ``null``
included (``Speaker.voiceprint_id``, ``Enrolled.label``). That is why no other
field has a default here, and why some events are keyword-only: an omittable
``id`` comes first on the wire.

The few properties are conveniences for readers (the SDK's users); they are not
sent.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, TypeAlias, get_args

from msgspec import Meta, Struct

from hushgate.wire.codes import PROTOCOL_VERSION
from hushgate.wire.messages import tag_of

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

RequestId: TypeAlias = str | int
"""A request's ``id``; a spoken translation's synthesis is named by its utterance number."""


class WordTiming(Struct, frozen=True):
    """One timed word of a ``final``; times are on the session's audio clock."""

    w: str
    t0_ms: int
    t1_ms: int
    conf: float


class Speaker(Struct, frozen=True):
    """Who spoke an utterance: an enrolled voiceprint, or a guest label (``voiceprint_id`` None)."""

    voiceprint_id: str | None
    label: str
    score: float


class EngineInfo(Struct, frozen=True):
    """One engine a session uses, as ``ready.engines`` names it."""

    name: str
    model: str
    language: str | None = None


class _Event(Struct, frozen=True, omit_defaults=True, tag_field="type"):
    """A server event; ``type`` is the tag."""

    @property
    def type(self) -> str:
        return tag_of(type(self))


class Ready(_Event, frozen=True, tag="ready", omit_defaults=False):
    """First event of an accepted session: the audio format, the engines in use and the limits."""

    session: str
    audio: dict[str, Any]
    engines: dict[str, Any]
    limits: dict[str, Any]
    protocol: int = PROTOCOL_VERSION

    @property
    def stt(self) -> EngineInfo | None:
        return _engine_info(self.engines.get("stt"))

    @property
    def vad(self) -> EngineInfo | None:
        return _engine_info(self.engines.get("vad"))

    @property
    def tts(self) -> EngineInfo | None:
        """The voice the session speaks with by default (``model`` is the voice id)."""
        return _engine_info(self.engines.get("tts"))

    @property
    def translate(self) -> dict[str, EngineInfo]:
        """Target language → translator, for the targets the server could honour."""
        table = self.engines.get("translate")
        if not isinstance(table, dict):
            return {}
        found = {str(target): _engine_info(entry) for target, entry in table.items()}
        return {target: info for target, info in found.items() if info is not None}

    @property
    def sample_rate_hz(self) -> int | None:
        rate = self.audio.get("sample_rate")
        return rate if isinstance(rate, int) and not isinstance(rate, bool) else None

    @property
    def max_frame_bytes(self) -> int:
        value = self.limits.get("max_frame_bytes")
        return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 1 << 20


def _engine_info(entry: Any) -> EngineInfo | None:
    if not isinstance(entry, dict):
        return None
    # `name` is what the server sends; `engine` is accepted as an older spelling.
    name = entry.get("name", entry.get("engine"))
    model = entry.get("model", name)
    language = entry.get("language")
    if not isinstance(name, str):
        return None
    return EngineInfo(name, model if isinstance(model, str) else name, language if isinstance(language, str) else None)


class SpeechStarted(_Event, frozen=True, tag="speech.started"):
    utterance: int
    t_ms: int


class Partial(_Event, frozen=True, tag="partial"):
    """A provisional transcript: display it, do not store it."""

    utterance: int
    text: str
    t0_ms: int
    t1_ms: int


class Final(_Event, frozen=True, tag="final"):
    """The finished transcript of one utterance."""

    utterance: int
    text: str
    t0_ms: int
    t1_ms: int
    words: tuple[WordTiming, ...] | None = None
    speaker: Speaker | None = None
    undecided: str | None = None
    language: str | None = None
    language_probability: float | None = None


class SpeakerEvent(_Event, frozen=True, tag="speaker"):
    """The speaker of an utterance whose final went out before scoring was done."""

    utterance: int
    speaker: Speaker | None = None
    undecided: str | None = None


class EnrollProgress(_Event, frozen=True, tag="enroll.progress", kw_only=True):
    id: str | None = None
    speech_ms: int
    needed_ms: int
    passphrase_match: bool | None = None


class Enrolled(_Event, frozen=True, tag="enrolled", kw_only=True):
    id: str | None = None
    voiceprint_id: str
    label: str | None
    speech_ms: int


class Verified(_Event, frozen=True, tag="verified", kw_only=True):
    id: str | None = None
    voiceprint_id: str
    decision: str
    score: float
    passphrase_match: bool | None = None
    speech_ms: int

    @property
    def accepted(self) -> bool:
        return self.decision == "accept"


class VoiceprintExported(_Event, frozen=True, tag="voiceprint.exported"):
    """``voiceprint`` is sealed by the server: keep it as is, give it back with ``voiceprint.import``."""

    voiceprint_id: str
    voiceprint: str
    id: str | None = None


class VoiceprintImported(_Event, frozen=True, tag="voiceprint.imported", kw_only=True):
    voiceprint_id: str
    label: str | None
    id: str | None = None


class VoiceprintDeleted(_Event, frozen=True, tag="voiceprint.deleted"):
    voiceprint_id: str
    id: str | None = None


class Pong(_Event, frozen=True, tag="pong"):
    pass


class Error(_Event, frozen=True, tag="error"):
    """An ``error`` event; after a fatal one the server closes the connection."""

    code: Annotated[str, Meta(description="an ErrorCode; a newer server may send codes this version does not know")]
    message: str
    fatal: bool
    id: str | None = None
    utterance: int | None = None


class Ended(_Event, frozen=True, tag="ended"):
    """Last event of a session that ended in order (``reason``: stop, idle, max_duration, shutdown)."""

    reason: str
    stats: dict[str, int]

    @property
    def audio_ms(self) -> int:
        return int(self.stats.get("audio_ms", 0))

    @property
    def utterances(self) -> int:
        return int(self.stats.get("utterances", 0))


class Translation(_Event, frozen=True, tag="translation"):
    """A translation of utterance ``utterance``'s final (or partial, when
    ``provisional``), or the answer to a ``translate`` request ``id``."""

    source: str
    target: str
    text: str
    utterance: int | None = None
    id: str | None = None
    provisional: bool | None = None


class TtsStart(_Event, frozen=True, tag="tts.start"):
    """A synthesis begins; ``id`` is the ``speak`` id, or the utterance number for a spoken translation."""

    id: RequestId
    sample_rate: int
    voice: str


class TtsEnd(_Event, frozen=True, tag="tts.end"):
    id: RequestId
    duration_ms: int


class TtsAudio(_Event, frozen=True, tag="tts.audio", kw_only=True):
    """Synthesized s16le mono PCM at the ``sample_rate`` of its ``tts.start``.

    A bare binary frame in JSON sessions (the SDK gives it the id of the synthesis
    in progress), a map in msgpack.
    """

    id: RequestId | None = None
    pcm: bytes

    @property
    def samples(self) -> npt.NDArray[np.int16]:
        """The PCM as int16 samples (needs numpy: ``pip install hushgate-client[numpy]``)."""
        import numpy as np

        return np.frombuffer(self.pcm, dtype="<i2").astype(np.int16, copy=False)


ServerEvent: TypeAlias = (
    Ready
    | SpeechStarted
    | Partial
    | Final
    | Pong
    | Error
    | Ended
    | Translation
    | TtsStart
    | TtsAudio
    | TtsEnd
    | SpeakerEvent
    | EnrollProgress
    | Enrolled
    | Verified
    | VoiceprintExported
    | VoiceprintImported
    | VoiceprintDeleted
)
EVENT_TYPES: dict[str, type[ServerEvent]] = {tag_of(cls): cls for cls in get_args(ServerEvent)}


class UnknownEvent(Struct, frozen=True):
    """An event type this version does not know (a newer server); ``raw`` holds all of it."""

    type: str
    raw: dict[str, Any]
