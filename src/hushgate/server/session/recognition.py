"""Speech-to-text for one connection: audio path, recogniser stream, utterance being heard.

This is the part of listening that ``/v1/stream`` and ``/vosk`` share: how the
audio path is set up from the settings, how audio reaches the engine (several
steps in one thread hop), when a partial is due, where word times land on the
connection's audio clock, and how the stream is opened and freed.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from hushgate.engines.base import EngineError, Pcm16, PunctuatedStream, TranscriberStream, Transcript, Word
from hushgate.server.audio import AudioInput
from hushgate.server.errors import EngineUnavailable
from hushgate.server.hub import EngineHub, SttRoute
from hushgate.server.runtime import Overloaded
from hushgate.server.segmenter import PauseSeen, Segmenter, TextEndpointing, UtteranceStart
from hushgate.server.session.calls import EngineCalls
from hushgate.server.settings import Settings
from hushgate.wire import CloseCode, VadOptions, WordTiming

EventSink = Callable[[str, Any], None]
# Audio between two partials is at least this many times the wait for the last one.
PARTIAL_DUTY = 3
Step = tuple[Literal["accept", "partial", "probe", "finish"], Pcm16 | None]


def open_audio_path(
    hub: EngineHub,
    settings: Settings,
    vad: VadOptions,
    *,
    source_rate_hz: int,
    engine_rate_hz: int,
    encoding: str = "pcm_s16le",
) -> tuple[AudioInput, Segmenter]:
    """The resampler and segmenter for a connection; ``vad`` may tune the server's defaults."""
    s = settings
    # Opening a detector takes microseconds: done inline.
    detector = hub.vad.open(aggressiveness=_pick(vad.aggressiveness, s.vad_aggressiveness))
    segmenter = Segmenter(
        detector,
        silence_ms=_pick(vad.silence_ms, s.silence_ms),
        max_utterance_ms=min(_pick(vad.max_utterance_ms, s.max_utterance_ms), s.max_utterance_ms),
        preroll_ms=s.preroll_ms,
        hangover_ms=s.hangover_ms,
        text=TextEndpointing(s.endpoint_early_ms, s.endpoint_hold_ms) if s.endpointing == "text" else None,
        probe_pauses=s.speculative_finals,
    )
    return AudioInput(source_rate_hz, engine_rate_hz, encoding), segmenter


def stt_route(hub: EngineHub, language: str) -> SttRoute:
    """The speech-to-text engine for ``language``; refused with 1003 when there is none."""
    route = hub.stt(language)
    if route is None:
        raise EngineUnavailable(
            f"no speech-to-text engine for language {language[:16]!r}; available: {', '.join(hub.languages)}",
            close=CloseCode.UNSUPPORTED_DATA,
        )
    return route


def placed_words(words: Sequence[Word], t0_ms: int, t1_ms: int) -> tuple[WordTiming, ...]:
    """Engine word times (relative to the utterance) on the audio clock, capped at the utterance's end."""
    return tuple(
        WordTiming(w=w.w, t0_ms=min(t1_ms, t0_ms + w.t0_ms), t1_ms=min(t1_ms, t0_ms + w.t1_ms), conf=w.conf)
        for w in words
    )


@dataclass(slots=True)
class Utterance:
    index: int
    t0_ms: int
    samples: int = 0  # at the engine's rate, given to the engine or pending
    samples_at_partial: int = 0
    partial_ms: int = 0  # how long the session waited for its last partial (queue included)
    text: str = ""  # of the latest partial decode
    failed: bool = False
    pending: list[Pcm16] = field(default_factory=list)  # heard, not yet given to the engine
    audio: list[Pcm16] | None = None  # kept only while a speaker decision needs it


def _run_steps(stream: TranscriberStream, steps: list[Step]) -> list[Transcript | None]:
    """One thread hop for a batch of engine work, in order; a result per partial and finish."""
    results: list[Transcript | None] = []
    for kind, pcm in steps:
        if kind == "accept" and pcm is not None:
            stream.accept(pcm)
        elif kind == "partial":
            results.append(stream.partial())
        elif kind == "probe":
            results.append(stream.text_so_far() if isinstance(stream, PunctuatedStream) else None)
        elif kind == "finish":
            results.append(stream.finish())
    return results


class Recognition:
    """One connection's recogniser stream on a shared engine (light state over a heavy model)."""

    def __init__(self, route: SttRoute, settings: Settings, calls: EngineCalls, on_event: EventSink) -> None:
        self.route = route
        self._settings = settings
        self._calls = calls
        self._on_event = on_event
        self._stream: TranscriberStream | None = None
        self.punctuated = False
        """Whether the stream's text can judge a pause (text endpointing)."""
        self._opener: Callable[[], TranscriberStream] = lambda: route.transcriber.open_stream(language="", words=False)
        self._timed: Utterance | None = None  # whose partial the next run decodes

    @property
    def rate_hz(self) -> int:
        return self.route.transcriber.sample_rate_hz

    async def open(self, language: str, words: bool, opener: Callable[[], TranscriberStream] | None = None) -> None:
        """Open the stream: a plain one for ``language``, or what ``opener`` makes (a speech plan's)."""
        transcriber = self.route.transcriber
        self._opener = opener or (lambda: transcriber.open_stream(language=language, words=words))
        try:
            self._stream = await self._calls.run(self.route.runner, self._opener)
        except EngineError as exc:
            raise EngineUnavailable(str(exc), close=CloseCode.UNSUPPORTED_DATA) from None
        self.punctuated = isinstance(self._stream, PunctuatedStream)

    def reopen(self) -> None:
        """A fresh stream after a failed final, so the next utterance starts clean."""
        old, self._stream = self._stream, None
        if old is not None:
            old.close()
        self._stream = self._opener()

    async def close(self) -> None:
        # A call cancelled with its connection still runs in its thread with
        # the stream: the stream must outlive it.
        await self._calls.settle()
        stream, self._stream = self._stream, None
        if stream is None:
            return
        try:
            await self.route.runner.run(stream.close)
        except (Overloaded, RuntimeError):
            # The runner is full or already shut down (server exit); closing
            # decodes nothing, it only frees the stream's memory.
            stream.close()

    # Utterances --------------------------------------------------------------

    @staticmethod
    def begin(start: UtteranceStart, *, keep_audio: bool = False) -> Utterance:
        return Utterance(start.utterance, start.t0_ms, audio=[] if keep_audio else None)

    @staticmethod
    def hear(utt: Utterance, pcm: Pcm16) -> None:
        """Audio of the utterance, held back until a partial or the final needs it."""
        utt.pending.append(pcm)
        utt.samples += len(pcm)
        if utt.audio is not None:
            utt.audio.append(pcm)

    def t1_ms(self, utt: Utterance) -> int:
        """Where the audio heard so far ends, on the audio clock."""
        return utt.t0_ms + utt.samples * 1000 // self.rate_hz

    def partial_due(self, utt: Utterance) -> bool:
        """Enough new audio for another partial, at the engine's cadence."""
        interval_ms = self._settings.partial_interval_ms or self.route.transcriber.partial_interval_ms
        # Under contention partials come less often; finals never wait for them.
        interval_ms *= 1 + self.route.runner.waiting
        # A session spends at most about a third of its time waiting for partials: after
        # a slow one (a long utterance, a busy machine) the next comes later, so that a
        # pause seldom finds the session still waiting for its own partial (the decode
        # at the pause, which may be the final, would wait behind it).
        interval_ms = max(interval_ms, PARTIAL_DUTY * utt.partial_ms)
        return (utt.samples - utt.samples_at_partial) * 1000 // self.rate_hz >= interval_ms

    def judges(self, segmenter: Segmenter, pause: PauseSeen) -> bool:
        """Whether ``pause`` is worth a decode: the engine punctuates and the segmenter still waits on it."""
        return self.punctuated and segmenter.wants_verdict(pause.utterance, pause.pause)

    def feed(self, utt: Utterance, steps: list[Step]) -> None:
        """Add the utterance's pending audio to ``steps``."""
        if not utt.pending:
            return
        pcm = np.concatenate(utt.pending) if len(utt.pending) > 1 else utt.pending[0]
        utt.pending = []
        steps.append(("accept", pcm))
        self._on_event("stt_audio_ms", (self.route.runner.name, len(pcm) * 1000 // self.rate_hz))

    def ask_partial(self, utt: Utterance, steps: list[Step], *, probe: bool = False) -> None:
        """A partial decode; a ``probe`` one decodes everything heard to judge the pause after it."""
        self.feed(utt, steps)
        steps.append(("probe" if probe else "partial", None))
        utt.samples_at_partial = utt.samples
        self._timed = None if probe else utt

    def ask_final(self, utt: Utterance, steps: list[Step]) -> None:
        self.feed(utt, steps)
        steps.append(("finish", None))

    async def run(self, steps: list[Step]) -> list[Transcript | None]:
        """Do ``steps`` in one thread hop: a result per partial and final asked for.

        A batch with a final is urgent: a person is waiting for that text, while
        other connections' partials can wait. So is a probe: at a pause that
        ends the utterance, its decode is the final.
        """
        stream = self._stream
        if stream is None:
            raise RuntimeError("the recogniser stream is not open")
        urgent = any(kind in ("finish", "probe") for kind, _ in steps)
        timed, self._timed = self._timed, None
        started = time.monotonic()
        results = await self._calls.run(self.route.runner, _run_steps, stream, steps, urgent=urgent)
        if timed is not None:
            timed.partial_ms = int((time.monotonic() - started) * 1000)
        return results


def final_latency_s(ended_at: float | None) -> float:
    """Seconds from an utterance's end being seen to its final, for the metrics."""
    return time.monotonic() - ended_at if ended_at is not None else 0.0


def _pick(value: int | None, default: int) -> int:
    return default if value is None else value
