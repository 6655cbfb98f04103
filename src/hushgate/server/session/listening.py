"""Listening: a session's audio becomes utterances, text and speaker decisions.

The reader side (:meth:`Listening.audio`, :meth:`flush`, :meth:`stop`) resamples
and segments inline (DSP that costs microseconds) and queues the segments in
the backlog; the worker (:meth:`Listening.work`) takes them in order and moves
speech-to-text to threads through :class:`Recognition`, one call in flight at a
time, sending ``partial`` and ``final`` events and handing what was heard to
speaking (translation) and voiceprints (who spoke).
"""

from __future__ import annotations

import logging
import time

import numpy as np

from hushgate.engines.base import Pcm16, Transcript
from hushgate.server.backlog import Backlog, EndOfStream
from hushgate.server.errors import Busy, to_wire
from hushgate.server.hub import SttRoute
from hushgate.server.languages import SpeechPlan
from hushgate.server.segmenter import (
    PauseSeen,
    Segment,
    UtteranceAudio,
    UtteranceEnd,
    UtteranceStart,
)
from hushgate.server.session.context import SessionContext
from hushgate.server.session.recognition import (
    Recognition,
    Step,
    Utterance,
    final_latency_s,
    open_audio_path,
    placed_words,
)
from hushgate.server.session.speaking import Speaking
from hushgate.server.session.voiceprints import Voiceprints
from hushgate.wire import Final, Partial, SpeechStarted, Start

log = logging.getLogger("hushgate.session")
# Behind by more than this much audio, a session stops asking for partials.
PARTIALS_PAUSED_BACKLOG_MS = 2_000


class Listening:
    def __init__(
        self, context: SessionContext, start: Start, route: SttRoute, speaking: Speaking, voiceprints: Voiceprints
    ) -> None:
        self._start = start
        self._settings = settings = context.settings
        self._outbox = context.outbox
        self._speaking = speaking
        self._voiceprints = voiceprints
        self._on_event = context.on_event
        self._session_id = context.id
        rate_hz = route.transcriber.sample_rate_hz
        self._input, self._segmenter = open_audio_path(
            context.hub,
            settings,
            start.vad,
            source_rate_hz=start.audio.sample_rate_hz,
            engine_rate_hz=rate_hz,
            encoding=start.audio.encoding,
        )
        self._backlog = Backlog(limit_samples=settings.backlog_ms * rate_hz // 1000)
        self.recognition = Recognition(route, settings, context.calls, context.on_event)
        self.utterances = 0
        self._ended_at: dict[int, float] = {}
        self._lagging = False

    async def open(self, plan: SpeechPlan) -> None:
        words = self._start.words
        await self.recognition.open(plan.language, words, lambda: plan.open_stream(words))

    @property
    def audio_ms(self) -> int:
        return self._input.audio_ms

    @property
    def next_utterance(self) -> int:
        return self._segmenter.next_utterance

    # Reader side ---------------------------------------------------------------

    async def audio(self, pcm: bytes) -> None:
        samples = self._input.push(pcm)
        self._on_event("audio_ms", len(samples) * 1000 // self._input.target_rate_hz)
        if len(samples):
            await self._queue(self._segmenter.push(samples))

    async def flush(self) -> None:
        await self._queue(self._segmenter.flush())

    async def stop(self) -> None:
        """The client stopped: what the resampler and segmenter hold goes to the worker, then the end."""
        tail = self._input.drain()
        if len(tail):
            await self._queue(self._segmenter.push(tail))
        await self._queue(self._segmenter.flush())
        await self._backlog.put(EndOfStream())

    async def _queue(self, segments: list[Segment]) -> None:
        for segment in segments:
            if isinstance(segment, UtteranceStart):
                self._outbox.put(SpeechStarted(utterance=segment.utterance, t_ms=segment.onset_ms))
            elif isinstance(segment, UtteranceEnd):
                self._ended_at[segment.utterance] = time.monotonic()
            await self._backlog.put(segment)

    # Worker ----------------------------------------------------------------------

    async def work(self) -> None:
        """Transcribe the backlog in order until the end of the stream."""
        current: Utterance | None = None
        while True:
            item = await self._backlog.get()
            match item:
                case UtteranceStart():
                    current = self.recognition.begin(item, keep_audio=self._voiceprints.wants_audio())
                case UtteranceAudio(pcm=pcm):
                    self._check_lag()  # against the oldest chunk, before more are taken
                    chunks = [pcm]
                    # Take all audio already waiting in one thread hop.
                    while isinstance(self._backlog.peek(), UtteranceAudio):
                        nxt = self._backlog.get_nowait()
                        if isinstance(nxt, UtteranceAudio):
                            chunks.append(nxt.pcm)
                    if current is not None:
                        # With the end already queued, a partial would only delay the final;
                        # with a pause to judge, the probe is the partial.
                        nxt = self._backlog.peek()
                        ending = isinstance(nxt, UtteranceEnd) or (isinstance(nxt, PauseSeen) and self._judging(nxt))
                        await self._transcribe(current, np.concatenate(chunks), partial_allowed=not ending)
                case PauseSeen():
                    if current is not None and self._judging(item):
                        await self._judge(current, item)
                case UtteranceEnd():
                    if current is not None:
                        await self._finish(current, item)
                    current = None
                case EndOfStream():
                    self._speaking.end_of_speech()
                    return

    def _check_lag(self) -> None:
        """Tell the client once per episode when its audio waits too long for the engine."""
        lag_ms = int((time.monotonic() - self._backlog.last_arrival) * 1000)
        limit_ms = self._settings.lag_warning_ms
        if lag_ms > limit_ms and not self._lagging:
            self._lagging = True
            self._on_event("rejected", "lagging")
            self._outbox.put(
                Busy(f"speech-to-text is {lag_ms / 1000:.1f} s behind the audio; results will be late").event()
            )
        elif lag_ms < limit_ms // 2:
            self._lagging = False

    def _want_partial(self, utt: Utterance) -> bool:
        if not self._start.partials:
            return False
        if self._backlog.samples > PARTIALS_PAUSED_BACKLOG_MS * self.recognition.rate_hz // 1000:
            return False  # behind real time: catch up first; the final matters more
        return self.recognition.partial_due(utt)

    async def _transcribe(self, utt: Utterance, pcm: Pcm16, *, partial_allowed: bool) -> None:
        if utt.failed:
            return
        recognition = self.recognition
        recognition.hear(utt, pcm)
        steps: list[Step] = []
        if partial_allowed and self._want_partial(utt):
            recognition.ask_partial(utt, steps)
        else:
            recognition.feed(utt, steps)
        try:
            results = await recognition.run(steps)
        except Exception as exc:  # noqa: BLE001 - reported to the client
            self._failed(utt, exc)
            return
        partial = results[0] if results else None
        if partial is not None and partial.text:
            self._show_partial(utt, partial.text)

    def _show_partial(self, utt: Utterance, text: str) -> None:
        utt.text = text
        t1_ms = self.recognition.t1_ms(utt)
        self._outbox.put(Partial(utterance=utt.index, text=text, t0_ms=utt.t0_ms, t1_ms=t1_ms))
        self._speaking.heard_partial(utt.index, text, t1_ms)

    def _judging(self, pause: PauseSeen) -> bool:
        return self.recognition.judges(self._segmenter, pause)

    async def _judge(self, utt: Utterance, pause: PauseSeen) -> None:
        """Decode the utterance so far and tell the segmenter what its text says about the pause."""
        if utt.failed:
            return
        steps: list[Step] = []
        self.recognition.ask_partial(utt, steps, probe=True)
        try:
            (heard,) = await self.recognition.run(steps)
        except Exception as exc:  # noqa: BLE001 - reported to the client
            self._failed(utt, exc)
            return
        text = heard.text if heard is not None else ""
        verdict = self._segmenter.judge_text(pause, text)
        log.debug("session %s utterance %d pause %d: %s", self._session_id, utt.index, pause.pause, verdict)
        if text and text != utt.text and self._start.partials:
            self._show_partial(utt, text)

    def _failed(self, utt: Utterance, exc: Exception) -> None:
        if utt.failed:
            return  # one error per utterance
        utt.failed = True
        error = to_wire(
            exc, f"utterance {utt.index} could not be transcribed", utterance=utt.index, session=self._session_id
        )
        self._outbox.put(error.event())

    async def _finish(self, utt: Utterance, end: UtteranceEnd) -> None:
        ended_at = self._ended_at.pop(utt.index, None)
        # Scoring runs beside the final decode so it never delays the text.
        audio, utt.audio = utt.audio, None
        embedding = None if utt.failed else self._voiceprints.embed(audio)
        steps: list[Step] = []
        self.recognition.ask_final(utt, steps)
        try:
            (final,) = await self.recognition.run(steps)
        except Exception as exc:  # noqa: BLE001 - reported to the client
            self._failed(utt, exc)
            self.recognition.reopen()
            return
        if utt.failed:
            return  # already reported; the finish above only reset the stream
        result = final or Transcript("")
        self.utterances += 1
        words = placed_words(result.words, end.t0_ms, end.t1_ms) if self._start.words else None
        if self._settings.log_content:
            log.info("session %s utterance %d: %s", self._session_id, utt.index, result.text)
        self._on_event("final", final_latency_s(ended_at))
        speech_ms = end.t1_ms - end.t0_ms
        speaker, undecided = self._voiceprints.decide(embedding, speech_ms)
        self._outbox.put(
            Final(
                utterance=utt.index,
                text=result.text,
                t0_ms=end.t0_ms,
                t1_ms=end.t1_ms,
                words=words,
                speaker=speaker,
                undecided=undecided,
                language=result.language,
                language_probability=result.language_probability,
            )
        )
        if result.language is not None:
            self._speaking.heard_language(result.language)
        if result.translation is not None:
            await self._speaking.heard_speech_translation(utt.index, result.translation)
        if embedding is not None:
            follow_up = self._voiceprints.identifying and speaker is None and undecided is None
            await self._voiceprints.after_final(utt.index, speech_ms, result.text, embedding, follow_up=follow_up)
        if result.text:
            self._speaking.heard_final(utt.index, result.text)
