"""Cuts a session's audio into utterances with a frame-level voice detector.

The segmenter is pure bookkeeping over a :class:`hushgate.engines.base.VoiceActivity`:
it keeps a pre-roll so that the first syllable before the detector fires is not
clipped, confirms onset over a short window so a click does not open an
utterance, keeps a short hangover after the last voiced frame, and holds back
the rest of a pause so the engine never decodes long silences.
All times are milliseconds on the session's audio clock.

With text endpointing (:class:`TextEndpointing`) a pause is also judged by
what was said: once a pause reaches the hangover the segmenter emits
:class:`PauseSeen`, the session decodes the utterance so far and hands back a
:data:`Verdict` with :meth:`Segmenter.judge`. A finished sentence then ends
the utterance after ``early_ms`` of pause, text that plainly goes on waits
``hold_ms`` longer than ``silence_ms`` for speech to resume, and without a
verdict (none yet, or an engine that does not punctuate) ``silence_ms`` ends
it as before: the segmenter never waits for a decode.

With ``probe_pauses`` alone (``vad`` endpointing) pauses are announced the
same way but no verdict changes when the utterance ends: the decode at the
pause only lets the final be ready sooner when the pause is the end.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Literal, TypeAlias

import numpy as np

from hushgate.engines.base import Pcm16, VoiceActivity
from hushgate.engines.punctuation import CLAUSE_BREAK, DASHES, SENTENCE_END, last_mark

EndReason = Literal["silence", "flush", "max_length"]
Verdict = Literal["ends", "continues"]
ONSET_WINDOW_MS = 100
ONSET_FRACTION = 0.6
# An utterance this close to its longest (or within a fifth of it, for short
# limits) is ended at the first short pause rather than cut at the limit, where
# the cut may fall inside a word and leave both halves to be guessed at. Read
# speech has few long pauses: 60 ms is the gap between two words.
CUT_LOOKAHEAD_MS = 3_000
CUT_PAUSE_MS = 60
# Text endpointing judges no pause of a shorter utterance: Whisper's text of
# less audio is mostly invented ("Thank you.", "y", "A"), not heard.
PROBE_MIN_AUDIO_MS = 1_000


@dataclass(frozen=True, slots=True)
class UtteranceStart:
    utterance: int
    onset_ms: int
    """When the detector confirmed speech."""
    t0_ms: int
    """Where the utterance's audio begins (pre-roll included)."""


@dataclass(frozen=True, slots=True)
class UtteranceAudio:
    utterance: int
    pcm: Pcm16


@dataclass(frozen=True, slots=True)
class UtteranceEnd:
    utterance: int
    t0_ms: int
    t1_ms: int
    reason: EndReason


@dataclass(frozen=True, slots=True)
class PauseSeen:
    """A pause inside an utterance reached the hangover: a verdict on it is welcome."""

    utterance: int
    pause: int
    """Which pause of the session this is; a verdict names it so a stale one is ignored."""


@dataclass(frozen=True, slots=True)
class TextEndpointing:
    early_ms: int
    """Pause that ends an utterance whose text ends a sentence (at least the hangover, at most ``silence_ms``)."""
    hold_ms: int
    """Pause beyond ``silence_ms`` an utterance whose text goes on waits for more speech."""


Segment: TypeAlias = UtteranceStart | UtteranceAudio | UtteranceEnd | PauseSeen


def text_verdict(text: str) -> Verdict | None:
    """What the text heard before a pause says about it; None: nothing to go by."""
    last = last_mark(text)
    if not last or last == "…":
        return None
    if last in SENTENCE_END:
        return "ends"
    if last in CLAUSE_BREAK or last in DASHES or last.isalnum():
        return "continues"
    return None


class Segmenter:
    def __init__(
        self,
        vad: VoiceActivity,
        *,
        silence_ms: int,
        max_utterance_ms: int,
        preroll_ms: int,
        hangover_ms: int,
        text: TextEndpointing | None = None,
        probe_pauses: bool = False,
    ) -> None:
        self._vad = vad
        self._frame = vad.frame_samples
        self._rate = vad.sample_rate_hz
        frame_ms = self._frame * 1000 / self._rate
        self._onset_frames = max(1, round(ONSET_WINDOW_MS / frame_ms))
        self._onset_needed = max(1, math.ceil(self._onset_frames * ONSET_FRACTION))
        self._silence_frames = max(1, math.ceil(silence_ms / frame_ms))
        self._hangover_frames = min(self._silence_frames, max(0, round(hangover_ms / frame_ms)))
        self._max_frames = max(1, int(max_utterance_ms / frame_ms))
        self._cut_from_frames = self._max_frames - round(min(CUT_LOOKAHEAD_MS, max_utterance_ms / 5) / frame_ms)
        self._cut_pause_frames = min(self._silence_frames, max(1, round(CUT_PAUSE_MS / frame_ms)))
        self._preroll_frames = round(preroll_ms / frame_ms)
        # A pause is judged from where its audio stops being sent (the hangover).
        self._probing = text is not None or probe_pauses
        self._probe_frames = max(1, self._hangover_frames)
        early_frames = math.ceil(text.early_ms / frame_ms) if text else self._silence_frames
        self._early_frames = min(self._silence_frames, max(self._probe_frames, early_frames))
        self._held_frames = self._silence_frames + (math.ceil(text.hold_ms / frame_ms) if text else 0)
        self._pauses = 0  # pauses probed so far in the session
        self._probed: int | None = None  # the pause going on, once probed
        self._verdict: Verdict | None = None  # on that pause
        # Room for the pre-roll before the onset plus the onset window itself.
        self._ring: deque[tuple[Pcm16, bool]] = deque(maxlen=self._preroll_frames + self._onset_frames)
        self._leftover = np.zeros(0, np.int16)
        self._samples_seen = 0  # position on the session's audio clock
        self._utterance = -1
        self._in_speech = False
        self._t0_sample = 0
        self._emitted_samples = 0
        self._pending: list[Pcm16] = []  # unvoiced frames inside speech
        self._sent = 0  # of those, how many were sent already (the hangover, at a probed pause)

    @property
    def in_speech(self) -> bool:
        return self._in_speech

    @property
    def next_utterance(self) -> int:
        """Index the next utterance to start will get (one in progress has started already)."""
        return self._utterance + 1

    def wants_verdict(self, utterance: int, pause: int) -> bool:
        """Whether ``pause`` of ``utterance`` is still going on and not judged yet."""
        return self._in_speech and utterance == self._utterance and pause == self._probed and self._verdict is None

    def judge(self, utterance: int, pause: int, verdict: Verdict) -> None:
        """What the text says about a pause; ignored once speech resumed or the utterance ended.

        It takes effect from the next frame pushed: an utterance whose pause is
        already past what the verdict allows ends then.
        """
        if self.wants_verdict(utterance, pause):
            self._verdict = verdict

    def judge_text(self, pause: PauseSeen, text: str) -> Verdict | None:
        """Judge ``pause`` by the text decoded up to it (:func:`text_verdict`); the verdict, if any."""
        verdict = text_verdict(text)
        if verdict is not None:
            self.judge(pause.utterance, pause.pause, verdict)
        return verdict

    def _probe_worthy(self) -> bool:
        return self._emitted_samples * 1000 >= PROBE_MIN_AUDIO_MS * self._rate

    def _silence_needed(self) -> int:
        if self._verdict == "ends":
            return self._early_frames
        if self._verdict == "continues":
            return self._held_frames
        return self._silence_frames

    def _ms(self, samples: int) -> int:
        return samples * 1000 // self._rate

    def push(self, pcm: Pcm16) -> list[Segment]:
        out: list[Segment] = []
        data = np.concatenate([self._leftover, pcm]) if len(self._leftover) else pcm
        whole = len(data) // self._frame * self._frame
        for i in range(0, whole, self._frame):
            frame = data[i : i + self._frame]
            self._step(frame, self._vad.is_speech(frame), out)
        self._leftover = data[whole:].copy()
        return out

    def flush(self) -> list[Segment]:
        """End the current utterance now (push-to-talk release, or the client stopping)."""
        out: list[Segment] = []
        if self._in_speech:
            tail = list(self._pending[self._sent : self._hangover_frames])
            if len(self._leftover) and len(self._pending) <= self._hangover_frames:
                tail.append(self._leftover)  # contiguous with what was sent: keep it
            self._end("flush", tail, out)
        # The partial frame is consumed either way (sent above, or dropped as
        # silence); the clock must count it or every later time runs early.
        self._samples_seen += len(self._leftover)
        self._leftover = np.zeros(0, np.int16)
        self._ring.clear()
        return out

    def _step(self, frame: Pcm16, voiced: bool, out: list[Segment]) -> None:
        self._samples_seen += len(frame)
        if not self._in_speech:
            self._ring.append((frame, voiced))
            recent = list(self._ring)[-self._onset_frames :]
            if sum(v for _, v in recent) >= self._onset_needed:
                self._begin(out)
            return
        if voiced:
            self._send(self._pending[self._sent :] + [frame], out)
            self._pending, self._sent = [], 0
            self._probed, self._verdict = None, None
        else:
            self._pending.append(frame)
            if self._probing and len(self._pending) == self._probe_frames and self._probe_worthy():
                self._pauses += 1
                self._probed = self._pauses
                # The hangover is audio the final will have whatever happens
                # next: sent now, the decode that judges the pause can serve
                # as the final when the pause turns out to be the end.
                self._sent = min(len(self._pending), self._hangover_frames)
                self._send(self._pending[: self._sent], out)
                out.append(PauseSeen(self._utterance, self._pauses))
            length_frames = self._emitted_samples // self._frame + len(self._pending) - self._sent
            near_limit = length_frames >= self._cut_from_frames and len(self._pending) >= self._cut_pause_frames
            if len(self._pending) >= self._silence_needed() or near_limit:
                held = self._pending[self._hangover_frames :]
                tail = self._pending[self._sent : self._hangover_frames]
                self._end("silence" if not near_limit else "max_length", tail, out)
                # The held-back pause becomes pre-roll for whatever comes next.
                for f in held[-(self._ring.maxlen or 1) :]:
                    self._ring.append((f, False))
                return
        if self._emitted_samples // self._frame + len(self._pending) - self._sent >= self._max_frames:
            carried = self._pending[self._sent :]
            self._end("max_length", [], out)
            # Speech goes on: the next utterance starts right here, with no pre-roll.
            self._in_speech = True
            self._utterance += 1
            self._t0_sample = self._samples_seen - len(carried) * self._frame
            self._pending = carried
            out.append(UtteranceStart(self._utterance, self._ms(self._t0_sample), self._ms(self._t0_sample)))

    def _begin(self, out: list[Segment]) -> None:
        frames = list(self._ring)
        self._ring.clear()
        window_start = max(0, len(frames) - self._onset_frames)
        onset = next((i for i in range(window_start, len(frames)) if frames[i][1]), window_start)
        # Keep exactly the pre-roll before the onset.
        frames = frames[max(0, onset - self._preroll_frames) :]
        onset_sample = self._samples_seen - (len(frames) - min(onset, self._preroll_frames)) * self._frame
        self._utterance += 1
        self._in_speech = True
        self._emitted_samples = 0
        self._pending, self._sent = [], 0
        self._t0_sample = self._samples_seen - len(frames) * self._frame
        out.append(UtteranceStart(self._utterance, self._ms(onset_sample), self._ms(self._t0_sample)))
        self._send([f for f, _ in frames], out)

    def _send(self, frames: list[Pcm16], out: list[Segment]) -> None:
        if not frames:
            return
        pcm = np.concatenate(frames)
        self._emitted_samples += len(pcm)
        out.append(UtteranceAudio(self._utterance, pcm))

    def _end(self, reason: EndReason, tail: list[Pcm16], out: list[Segment]) -> None:
        self._send(tail, out)
        t0_ms = self._ms(self._t0_sample)
        t1_ms = t0_ms + self._emitted_samples * 1000 // self._rate
        out.append(UtteranceEnd(self._utterance, t0_ms, t1_ms, reason))
        self._in_speech = False
        self._pending, self._sent = [], 0
        self._emitted_samples = 0
        self._probed, self._verdict = None, None
