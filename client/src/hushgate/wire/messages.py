"""Client → server messages (protocol v1) as msgspec Structs.

The constraints in the annotations are the protocol's parse limits; decoding
checks them (see :mod:`hushgate.wire.validate` for how a failure becomes an
error code). Encoding leaves out every field that has its default, so the SDK
sends only what it sets. Field names are the Python names; where the wire
spells a field differently (``sample_rate``) the struct renames it.
"""

from __future__ import annotations

from typing import Annotated, TypeAlias, get_args

from msgspec import Meta, Struct, field

from hushgate.wire.codes import (
    MAX_ID_CHARS,
    MAX_LANGUAGE_CHARS,
    MAX_SAMPLE_RATE_HZ,
    MAX_TEXT_CHARS_WIRE,
    MAX_VOICEPRINT_CHARS,
    MIN_SAMPLE_RATE_HZ,
)

Id = Annotated[str, Meta(max_length=MAX_ID_CHARS)]
Language = Annotated[str, Meta(max_length=MAX_LANGUAGE_CHARS)]
Text = Annotated[str, Meta(max_length=MAX_TEXT_CHARS_WIRE)]
SealedVoiceprint = Annotated[str, Meta(max_length=MAX_VOICEPRINT_CHARS)]
# Any 64-bit whole number parses, so that every out-of-range rate is "unsupported", not "malformed".
AnyRate = Annotated[int, Meta(ge=-(1 << 63), le=(1 << 63) - 1)]
SpeakRate = Annotated[int, Meta(ge=MIN_SAMPLE_RATE_HZ, le=MAX_SAMPLE_RATE_HZ)]


class _Options(Struct, frozen=True, omit_defaults=True, forbid_unknown_fields=False):
    """A nested object of ``start``."""


class AudioFormat(_Options, frozen=True):
    sample_rate_hz: AnyRate = field(name="sample_rate")
    encoding: Annotated[str, Meta(max_length=MAX_ID_CHARS, description="pcm_s16le, or mulaw / alaw at 8000 Hz")] = (
        "pcm_s16le"
    )
    channels: Annotated[int, Meta(ge=0, le=1 << 16)] = 1


class VadOptions(_Options, frozen=True):
    aggressiveness: Annotated[int, Meta(ge=0, le=3)] | None = None
    silence_ms: Annotated[int, Meta(ge=100, le=5000)] | None = None
    max_utterance_ms: Annotated[int, Meta(ge=1000, le=30_000)] | None = None


class TranslateOptions(_Options, frozen=True):
    targets: Annotated[tuple[Language, ...], Meta(max_length=8)] = ()
    partials: bool = False


class SpeakOptions(_Options, frozen=True):
    translations: bool = False
    voice: Id | None = None
    sample_rate_hz: SpeakRate | None = field(default=None, name="sample_rate")


class SpeakerOptions(_Options, frozen=True):
    identify: bool = False
    diarize: bool = False
    voiceprints: Annotated[tuple[SealedVoiceprint, ...], Meta(max_length=50)] = ()


class _Message(Struct, frozen=True, omit_defaults=True, tag_field="type"):
    """One control frame; ``type`` is the tag."""

    @property
    def type(self) -> str:
        return tag_of(type(self))


class Start(_Message, frozen=True, tag="start"):
    audio: AudioFormat
    language: (
        Annotated[str, Meta(max_length=MAX_LANGUAGE_CHARS, description='a language code, or "auto" to identify it')]
        | None
    ) = None
    languages: Annotated[
        tuple[Language, ...],
        Meta(max_length=32, description='with "auto": the languages to choose from (empty: any the model knows)'),
    ] = ()
    partials: bool = True
    words: bool = True
    vad: VadOptions = field(default_factory=VadOptions)
    translate: TranslateOptions = field(default_factory=TranslateOptions)
    speak: SpeakOptions = field(default_factory=SpeakOptions)
    speakers: SpeakerOptions = field(default_factory=SpeakerOptions)


class Audio(_Message, frozen=True, tag="audio"):
    """PCM s16le mono; in JSON sessions a bare binary frame instead of this map."""

    pcm: bytes


class Flush(_Message, frozen=True, tag="flush"):
    pass


class Stop(_Message, frozen=True, tag="stop"):
    pass


class Ping(_Message, frozen=True, tag="ping"):
    pass


class Speak(_Message, frozen=True, tag="speak"):
    text: Text
    id: Id | None = None
    voice: Id | None = None
    language: Language | None = None


class Translate(_Message, frozen=True, tag="translate"):
    text: Text
    target: Language
    id: Id | None = None
    source: Language | None = None


class Enroll(_Message, frozen=True, tag="enroll"):
    consent: bool = False
    id: Id | None = None
    label: Id | None = None
    passphrase: Annotated[str, Meta(max_length=1000)] | None = None
    needed_ms: Annotated[int, Meta(ge=0, le=600_000)] | None = None


class _OnVoiceprint(_Message, frozen=True):
    """A request about one voiceprint of the session."""

    voiceprint_id: Id
    id: Id | None = None


class Verify(_OnVoiceprint, frozen=True, tag="verify"):
    """Check the speaker of the next utterance against ``voiceprint_id``."""


class VoiceprintExport(_OnVoiceprint, frozen=True, tag="voiceprint.export"):
    """Seal ``voiceprint_id`` for the client to keep."""


class VoiceprintDelete(_OnVoiceprint, frozen=True, tag="voiceprint.delete"):
    """Forget ``voiceprint_id`` in this session."""


class VoiceprintImport(_Message, frozen=True, tag="voiceprint.import"):
    voiceprint: SealedVoiceprint
    id: Id | None = None


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


def tag_of(cls: type[Struct]) -> str:
    """The ``type`` a struct is sent with."""
    return str(cls.__struct_config__.tag)


MESSAGE_TYPES: dict[str, type[ClientMessage]] = {tag_of(cls): cls for cls in get_args(ClientMessage)}
# A JSON session sends audio as bare binary frames: a JSON `audio` map is not
# audio (its `pcm` would be base64 text), so JSON control frames exclude it.
JSON_CONTROL_TYPES: tuple[type[ClientMessage], ...] = tuple(c for c in MESSAGE_TYPES.values() if c is not Audio)
