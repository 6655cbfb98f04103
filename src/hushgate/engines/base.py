"""The small contracts every engine implements.

Engines are plain synchronous Python: they know nothing of asyncio or Starlette.
The gateway's runtime calls them from worker threads, one call at a time per
stream, so a stream needs no locking of its own; the shared model object must be
safe to use from several threads at once (each backend documents how it is).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

# Re-exported: engines raise the store's error for a model that is not installed.
from hushgate.models.errors import ModelNotFound as ModelNotFound
from hushgate.wire import WordTiming

Pcm16 = npt.NDArray[np.int16]
"""Mono signed 16-bit samples at the engine's own ``sample_rate_hz``."""

Capability = Literal["stt", "vad", "translate", "tts", "speaker"]


class EngineError(Exception):
    """An engine could not do what was asked; the message is safe to show a client.

    A missing model is :class:`ModelNotFound` instead (defined by the model store,
    re-exported here): catch ``ENGINE_FAILURES`` for either.
    """


ENGINE_FAILURES: tuple[type[Exception], ...] = (EngineError, ModelNotFound)
"""What an engine raises on purpose; any other exception is a bug."""


Word = WordTiming
"""A timed word: the protocol's own type; an engine times it from the start of the utterance."""


@dataclass(frozen=True, slots=True)
class Transcript:
    """Text of one utterance (or the best guess so far).

    Word times are relative to the first sample the stream received for this
    utterance; the session moves them onto the session's audio clock.
    """

    text: str
    words: tuple[Word, ...] = ()
    language: str | None = None
    """Set when the engine identified the language (a session asked for "auto")."""
    language_probability: float | None = None
    translation: str | None = None
    """English decoded from the speech itself, when the stream was asked for it."""


class TranscriberStream(Protocol):
    """Per-session recogniser state: light, owned by one session."""

    def accept(self, pcm: Pcm16) -> None:
        """Append audio of the current utterance."""
        ...

    def partial(self) -> Transcript | None:
        """Best guess for the utterance so far, or None when there is nothing new."""
        ...

    def finish(self) -> Transcript:
        """End the current utterance, return its final text, and get ready for the next."""
        ...

    def close(self) -> None: ...


@runtime_checkable
class PunctuatedStream(TranscriberStream, Protocol):
    """Optional: a stream whose text ends its sentences with punctuation (Whisper's does).

    The gateway then judges a pause by the text before it (text endpointing):
    a finished sentence ends the utterance sooner, a sentence that goes on
    keeps it open longer. Engines that write no punctuation must not offer
    this, or every pause would look like a sentence going on.
    """

    def text_so_far(self) -> Transcript:
        """Text of all audio accepted so far, however little came since the last partial.

        A stream may decode it as its final and keep it for ``finish`` when no
        audio comes in between (Whisper's does).
        """
        ...


@runtime_checkable
class Transcriber(Protocol):
    """A loaded speech-to-text model, shared by every session that uses it."""

    name: str
    model: str
    languages: tuple[str, ...]
    sample_rate_hz: int
    partial_interval_ms: int
    """How much new audio makes another ``partial()`` worth its cost."""

    def open_stream(self, *, language: str, words: bool) -> TranscriberStream: ...

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class SpeechOptions:
    """What a multilingual stream is asked to do beyond transcribing one known language."""

    language: str | None
    """The spoken language, or None to identify it."""
    candidates: tuple[str, ...] = ()
    """Languages to choose from when identifying; empty: any the model knows."""
    switching: bool = False
    """Whether an identified language may change from one utterance to the next."""
    translate_to_english: bool = False


@runtime_checkable
class PrioritisedTranscriber(Transcriber, Protocol):
    """Optional: a transcriber that decodes finals apart from partials, at a higher CPU priority.

    The gateway then keeps ``urgent_workers`` engine slots for finals on top
    of the shared ones, so a final never waits for partials to finish.
    """

    urgent_workers: int


@runtime_checkable
class SpeechTranscriber(Transcriber, Protocol):
    """A transcriber that can identify the language and translate speech into English."""

    def open_speech_stream(self, *, options: SpeechOptions, words: bool) -> TranscriberStream: ...


class VoiceActivity(Protocol):
    """Per-session frame classifier used by the segmenter (it may keep state)."""

    frame_samples: int
    sample_rate_hz: int

    def is_speech(self, frame: Pcm16) -> bool: ...


@runtime_checkable
class VoiceDetector(Protocol):
    """A loaded voice activity model; opens one classifier per session.

    Detectors cost microseconds per frame, so the gateway runs them inline
    with the audio it receives rather than through an engine thread pool.
    """

    name: str

    def open(self, *, aggressiveness: int) -> VoiceActivity: ...


@runtime_checkable
class Translator(Protocol):
    """Text translation, batched: one call may carry every utterance that is waiting."""

    name: str

    def pairs(self) -> list[tuple[str, str]]:
        """Installed (source, target) language pairs, ISO 639-1 codes."""
        ...

    def translate(self, texts: Sequence[str], source: str, target: str) -> list[str]:
        """One translation per input text, in order; raises EngineError for an unknown pair."""
        ...

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Voice:
    id: str
    language: str
    sample_rate_hz: int
    engine: str
    description: str = ""


@runtime_checkable
class Synthesizer(Protocol):
    """Text-to-speech that yields audio as soon as each piece is ready."""

    name: str

    def voices(self) -> list[Voice]: ...

    def synthesize(self, text: str, voice: str) -> Iterator[Pcm16]:
        """Mono int16 chunks at the voice's ``sample_rate_hz``; the first as early as possible."""
        ...

    def close(self) -> None: ...


Embedding = npt.NDArray[np.float32]
"""An L2-normalised speaker vector."""


@runtime_checkable
class SpeakerEncoder(Protocol):
    """Turns speech into a fixed-size vector; same speaker → nearby vectors."""

    name: str
    model: str
    sample_rate_hz: int
    dimensions: int

    def embed(self, pcm: Pcm16) -> Embedding:
        """One L2-normalised vector for a stretch of speech at ``sample_rate_hz``."""
        ...

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class EngineOptions:
    """What the gateway tells an engine factory.

    ``model`` is a catalogue name or a filesystem path; ``None`` means the
    engine's own built-in default.
    """

    model: str | None = None
    models_dir: Path | None = None
    threads: int = 1
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class EngineSpec:
    """How an engine registers: by name, with the capability it provides.

    Third-party engines expose one of these through the ``hushgate.engines``
    entry-point group.
    """

    name: str
    capability: Capability
    factory: Callable[[EngineOptions], Any]
    description: str = ""
