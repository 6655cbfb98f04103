"""Client → server messages (protocol v1) as msgspec Structs.

The constraints in the annotations are the protocol's parse limits; decoding
checks them (see :mod:`hushgate.wire.validate` for how a failure becomes an
error code). Encoding leaves out every field that has its default, so the SDK
sends only what it sets. Field names are the Python names; where the wire
spells a field differently (``sample_rate``) the struct renames it.
"""

from __future__ import annotations

from typing import Annotated, TypeAlias

from msgspec import Meta, Struct, field

from hushgate.wire.codes import (
    MAX_ID_CHARS,
    MAX_LANGUAGE_CHARS,
    MAX_TEXT_CHARS_WIRE,
    MAX_VOICEPRINT_CHARS,
    MAX_SAMPLE_RATE_HZ,
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


class AudioFormat(_Options):
    sample_rate_hz: AnyRate = field(name="sample_rate")
    encoding: Id = "pcm_s16le"
    channels: Annotated[int, Meta(ge=0, le=1 << 16)] = 1


class VadOptions(_Options):
    aggressiveness: Annotated[int, Meta(ge=0, le=3)] | None = None
    silence_ms: Annotated[int, Meta(ge=100, le=5000)] | None = None
    max_utterance_ms: Annotated[int, Meta(ge=1000, le=30_000)] | None = None


class TranslateOptions(_Options):
    targets: Annotated[tuple[Language, ...], Meta(max_length=8)] = ()
    partials: bool = False


class SpeakOptions(_Options):
    translations: bool = False
    voice: Id | None = None
    sample_rate_hz: SpeakRate | None = field(default=None, name="sample_rate")


class SpeakerOptions(_Options):
    identify: bool = False
    diarize: bool = False
    voiceprints: Annotated[tuple[SealedVoiceprint, ...], Meta(max_length=50)] = ()


class _Message(Struct, frozen=True, omit_defaults=True, tag_field="type"):
    """One control frame; ``type`` is the tag."""

    @property
    def type(self) -> str:
        return str(self.__struct_config__.tag)


class Start(_Message, tag="start"):
    audio: AudioFormat
    language: Language | None = None
    partials: bool = True
    words: bool = True
    vad: VadOptions = field(default_factory=VadOptions)
    translate: TranslateOptions = field(default_factory=TranslateOptions)
    speak: SpeakOptions = field(default_factory=SpeakOptions)
    speakers: SpeakerOptions = field(default_factory=SpeakerOptions)


class Audio(_Message, tag="audio"):
    """PCM s16le mono; in JSON sessions a bare binary frame instead of this map."""

    pcm: bytes


class Flush(_Message, tag="flush"):
    pass


class Stop(_Message, tag="stop"):
    pass


class Ping(_Message, tag="ping"):
    pass


class Speak(_Message, tag="speak"):
    text: Text
    id: Id | None = None
    voice: Id | None = None
    language: Language | None = None


class Translate(_Message, tag="translate"):
    text: Text
    target: Language
    id: Id | None = None
    source: Language | None = None


class Enroll(_Message, tag="enroll"):
    consent: bool = False
    id: Id | None = None
    label: Id | None = None
    passphrase: Annotated[str, Meta(max_length=1000)] | None = None
    needed_ms: Annotated[int, Meta(ge=0, le=600_000)] | None = None


class Verify(_Message, tag="verify"):
    voiceprint_id: Id
    id: Id | None = None


class VoiceprintExport(_Message, tag="voiceprint.export"):
    voiceprint_id: Id
    id: Id | None = None


class VoiceprintImport(_Message, tag="voiceprint.import"):
    voiceprint: SealedVoiceprint
    id: Id | None = None


class VoiceprintDelete(_Message, tag="voiceprint.delete"):
    voiceprint_id: Id
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
# A JSON session sends audio as bare binary frames: a JSON `audio` map is not
# audio (its `pcm` would be base64 text), so JSON control frames exclude it.
JsonControlMessage: TypeAlias = (
    Start | Flush | Stop | Ping | Speak | Translate | Enroll | Verify | VoiceprintExport | VoiceprintImport
    | VoiceprintDelete
)
MESSAGE_TYPES: dict[str, type[ClientMessage]] = {
    cls.__struct_config__.tag: cls  # type: ignore[misc]
    for cls in (Start, Audio, Flush, Stop, Ping, Speak, Translate, Enroll, Verify, VoiceprintExport,
                VoiceprintImport, VoiceprintDelete)
}
