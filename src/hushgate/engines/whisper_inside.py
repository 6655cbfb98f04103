"""Settling a long Whisper utterance inside its speech: when to try, and where to cut.

A long utterance that no pause settles costs more per decode the longer it
gets: the encoder window grows with it, and so do the tokens to write. Once
``SETTLE_INSIDE_S`` of it are unsettled, the stream's next partial decodes that
audio as a final would (word times on, on the low-priority copy of the model)
and asks `InsideCuts.cut` where to settle it: after a sentence end or clause
break Whisper wrote, with ``TAIL_S`` of audio after it, so the words before the
cut were decoded hearing how the sentence goes on, and only where the try before
wrote the same words on both sides of the cut (LocalAgreement, as in
whisper_streaming: unstable words are not kept). The piece before the cut is at
least ``PIECE_S`` long, since a shorter one saves less than its left context
costs. A try that finds no cut is repeated after ``RETRY_S`` more audio. Cut
at any word gap, without agreement, this held more sessions per machine but
lost words at the seam (docs/engines.md, "Settling inside speech").

Everything here is pure: no model, no threads.
"""

from __future__ import annotations

from collections.abc import Sequence

from hushgate.engines.base import Transcript, Word
from hushgate.engines.whisper_context import Audio, LeftContext, bare_word, ends_at_mark, left_context, text_through

SETTLE_INSIDE_S = 6.0
RETRY_S = 2.0
TAIL_S = 3.0
PIECE_S = 4.0
MAX_CUT_AFTER_MS = 200


class InsideCuts:
    """One stream's tries at settling inside speech, on a clock that starts at the last settled sample."""

    def __init__(self, *, after_s: float, context_s: float, sample_rate_hz: int, max_s: float) -> None:
        self._after_s = after_s if context_s > 0 else 0.0  # a cut needs left context after it
        self._context_s = context_s
        self._rate_hz = sample_rate_hz
        self._max_s = max_s
        self._tried_at = 0
        self._words: tuple[Word, ...] = ()

    def reset(self) -> None:
        """A new utterance, or a cut made elsewhere (at a pause): nothing to agree with."""
        self._tried_at = 0
        self._words = ()

    def due(self, samples: int, start: int) -> bool:
        """Whether to try now, with ``samples`` received and the first ``start`` settled."""
        unsettled_s = (samples - start) / self._rate_hz
        since_try_s = (samples - max(start, self._tried_at)) / self._rate_hz
        # Past ``max_s`` the final is decoded another way: nothing to settle for.
        return 0 < self._after_s <= unsettled_s <= self._max_s and since_try_s >= RETRY_S

    def cut(self, audio: Audio, decode: Transcript, samples: int) -> tuple[Transcript, int, LeftContext] | None:
        """Where to settle ``decode`` of the unsettled ``audio`` (see `settled_inside`), remembered for the next try."""
        self._tried_at = samples
        found = settled_inside(
            audio,
            decode,
            agreed=agreed_words(self._words, decode.words),
            sample_rate_hz=self._rate_hz,
            tail_s=TAIL_S,
            min_piece_s=PIECE_S,
            context_s=self._context_s,
        )
        self._words = decode.words
        if found is not None:
            cut_ms = found[1] * 1000 // self._rate_hz
            self._words = tuple(
                Word(w.w, w.t0_ms - cut_ms, w.t1_ms - cut_ms, w.conf) for w in decode.words[len(found[0].words) :]
            )
        return found


def settled_inside(
    audio: Audio,
    transcript: Transcript,
    *,
    agreed: int,
    sample_rate_hz: int,
    tail_s: float,
    min_piece_s: float,
    context_s: float,
) -> tuple[Transcript, int, LeftContext] | None:
    """Where to settle a decode of ``audio``: the words before the cut, the sample to cut at, the left context there.

    The cut follows a sentence end or clause break Whisper wrote, with at least
    ``tail_s`` of audio after it and ``min_piece_s`` before, where the word
    before and the word after it are among the first ``agreed`` (those an
    earlier decode wrote too), never in front of a
    word that continues the one before it ("'école"); of those, the widest
    gap between two words wins (the latest of equals). Cut at any word, the
    decodes after it lost words at the seam ("flour fat and sauce" for
    "flour-fatten sauce"). None when no mark fits. Word times are relative
    to the start of ``audio``.
    """
    end_ms = len(audio) * 1000 / sample_rate_hz
    words = transcript.words
    best: tuple[int, int] | None = None  # (gap ms, index)
    for i in range(min(agreed, len(words)) - 1):
        word, after = words[i], words[i + 1]
        cut_ms = _cut_ms(word, after)
        if cut_ms < min_piece_s * 1000 or end_ms - cut_ms < tail_s * 1000 or not after.w[:1].isalnum():
            continue
        if ends_at_mark(word.w) and (best is None or (after.t0_ms - word.t1_ms, i) >= best):
            best = (after.t0_ms - word.t1_ms, i)
    if best is None:
        return None
    i = best[1]
    cut = int(_cut_ms(words[i], words[i + 1]) * sample_rate_hz / 1000)
    text = text_through(transcript.text, words, i)
    if text is None:
        return None
    piece = Transcript(text, words[: i + 1], transcript.language)
    left = left_context(audio[:cut], piece.text, piece.words, sample_rate_hz=sample_rate_hz, max_s=context_s)
    return (piece, cut, left) if left is not None else None


def _cut_ms(word: Word, after: Word) -> int:
    # Mid-gap, but no further than MAX_CUT_AFTER_MS past the word: a long gap in the
    # alignment may hold words the decode skipped ("Chaque année" after "l'État.").
    return word.t1_ms + min(max(0, after.t0_ms - word.t1_ms) // 2, MAX_CUT_AFTER_MS)


def agreed_words(earlier: Sequence[Word], later: Sequence[Word]) -> int:
    """How many words two decodes of the same audio's start begin with alike (case and punctuation aside)."""
    agreed = 0
    for a, b in zip(earlier, later, strict=False):
        if bare_word(a.w) != bare_word(b.w):
            break
        agreed += 1
    return agreed
