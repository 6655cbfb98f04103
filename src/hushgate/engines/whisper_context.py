"""What a streamed Whisper final needs beyond one decode: left context and loop checks.

Decoding each utterance alone loses what offline decoding of a whole file has:
the words before it. A 500 ms pause in the middle of a sentence then leaves a
1–2 s fragment that a small model guesses at. The stream therefore keeps the
end of the previous utterance (`LeftContext`: its last seconds of audio, cut
at a word boundary, and the words spoken in them). The next final decodes that
audio followed by the new audio, with those words forced as the decoder's
prefix, and keeps only the words generated after the prefix. The model sees
the sentence so far, as it would offline, yet cannot rewrite text already sent.

Whisper also loops ("However, however, however, …"), most of all on short or
unclear audio. `looks_looped` flags text that repeats an n-gram three times in
a row or compresses too well (faster-whisper's gzip compression-ratio test);
the engine then decodes again, and `collapse_repeats` is the last resort.

A long utterance is settled the same way from inside: when text endpointing's
decode at a pause turns out not to be the end (speech resumes), that decode is
kept (`Settled`) and every later decode of the utterance starts after it, with
its end as left context. The cost of a partial or final then depends on the
audio since the last settled pause, not on the whole utterance. A long
utterance without such a pause is settled inside its speech
(`hushgate.engines.whisper_inside`).

Everything here is pure: no model, no threads.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from hushgate.engines.base import Transcript, Word
from hushgate.engines.punctuation import CLAUSE_BREAK, SENTENCE_END, last_mark

# faster-whisper's threshold for its temperature fallback.
MAX_COMPRESSION_RATIO = 2.4
# Below this many characters, gzip's header dominates and the ratio says nothing.
MIN_COMPRESSIBLE_CHARS = 60
LOOP_REPEATS = 3
LOOP_MAX_NGRAM = 8
_TOKEN_RE = re.compile(r"[^\w']+")

Audio = npt.NDArray[np.float32]


@dataclass(frozen=True, slots=True)
class LeftContext:
    """The end of the previous utterance: audio, and the words said in it."""

    audio: Audio
    text: str


def left_context(
    audio: Audio, text: str, words: Sequence[Word], *, sample_rate_hz: int, max_s: float
) -> LeftContext | None:
    """The last ``max_s`` (or less) of ``audio`` that starts at a word, with its words.

    ``words`` carry times relative to the start of ``audio``; they are needed
    only when the audio is longer than ``max_s``. None when there is no text
    to force (an utterance of noise gives no context) or no word starts late
    enough.
    """
    if not any(ch.isalnum() for ch in text):
        return None
    if len(audio) <= max_s * sample_rate_hz:
        return LeftContext(audio, text.strip())
    earliest_ms = (len(audio) / sample_rate_hz - max_s) * 1000
    for i, word in enumerate(words):
        if word.t0_ms < earliest_ms or not word.w[:1].isalnum():
            continue  # too early, or the second half of a word Whisper split ("l" + "'école")
        # Start between the two words, so neither is cut: alignment times are
        # approximate, and a clipped syllable invites the model to invent one.
        gap_start_ms = words[i - 1].t1_ms if i else 0
        start_ms = max(gap_start_ms, word.t0_ms - 100) if gap_start_ms <= word.t0_ms else word.t0_ms
        kept = text_from(text, words, i)
        if not kept:
            return None
        return LeftContext(audio[int(start_ms * sample_rate_hz / 1000) :], kept)
    return None


@dataclass(frozen=True, slots=True)
class Settled:
    """The decode of an utterance's first ``samples``, kept while the utterance goes on."""

    transcript: Transcript
    samples: int
    language: str
    left: LeftContext
    """Its end, the left context of every later decode of the utterance."""


def ends_at_mark(text: str) -> bool:
    """Whether Whisper ended this text with a sentence end or a clause break."""
    last = last_mark(text)
    return bool(last) and last in SENTENCE_END + CLAUSE_BREAK


def _word_spans(text: str, words: Sequence[Word]) -> list[tuple[int, int]] | None:
    """Where each word stands in ``text``; None if they do not match it in order."""
    spans: list[tuple[int, int]] = []
    end = 0
    for word in words:
        found = text.find(word.w, end)
        if found < 0:
            return None
        end = found + len(word.w)
        spans.append((found, end))
    return spans


def text_through(text: str, words: Sequence[Word], last: int) -> str | None:
    """``text`` up to the end of ``words[last]``, as written: joined with spaces, the words would
    misspell languages written without them and elisions Whisper splits ("l" + "'école")."""
    spans = _word_spans(text, words[: last + 1])
    return text[: spans[-1][1]].strip() if spans else None


def text_from(text: str, words: Sequence[Word], first: int) -> str:
    """``text`` from the start of ``words[first]``, as written (see `text_through`); the words
    joined with spaces when they do not match the text."""
    spans = _word_spans(text, words[: first + 1])
    return text[spans[-1][0] :].strip() if spans else " ".join(w.w for w in words[first:]).strip()


def joined(settled: Transcript, rest: Transcript, offset_ms: int) -> Transcript:
    """One utterance's transcript from its settled part and the decode of what followed (``offset_ms`` in)."""
    if not rest.text:
        return settled
    words = settled.words + tuple(
        Word(w=w.w, t0_ms=w.t0_ms + offset_ms, t1_ms=w.t1_ms + offset_ms, conf=w.conf) for w in rest.words
    )
    return Transcript(f"{settled.text} {rest.text}".strip(), words, rest.language)


def bare_word(word: str) -> str:
    """A word as two decodes are compared: lower case, without punctuation."""
    return _TOKEN_RE.sub("", word.lower())


def _tokens(text: str) -> list[str]:
    return [t for t in _TOKEN_RE.split(text.lower()) if t]


def compression_ratio(text: str) -> float:
    data = text.encode("utf-8")
    return len(data) / len(zlib.compress(data)) if data else 0.0


def repeated_run(
    tokens: Sequence[str], *, repeats: int = LOOP_REPEATS, max_n: int = LOOP_MAX_NGRAM
) -> tuple[int, int, int] | None:
    """First n-gram repeated ``repeats`` times in a row: (start, n, count), else None."""
    for start in range(len(tokens)):
        for n in range(1, max_n + 1):
            gram = tokens[start : start + n]
            if len(gram) < n:
                break
            count = 1
            while tokens[start + count * n : start + (count + 1) * n] == gram:
                count += 1
            if count >= repeats:
                return start, n, count
    return None


def looks_looped(text: str) -> bool:
    """Whisper's looping: an n-gram three times in a row, or text that compresses too well."""
    if repeated_run(_tokens(text)) is not None:
        return True
    return len(text) >= MIN_COMPRESSIBLE_CHARS and compression_ratio(text) > MAX_COMPRESSION_RATIO


def collapse_repeats(text: str) -> str:
    """Every run of a repeated n-gram (three or more in a row) kept once.

    Works on the written words (punctuation attached) so that what is kept
    reads as the model wrote it.
    """
    words = text.split()
    while True:
        run = repeated_run([bare_word(w) for w in words])
        if run is None:
            return " ".join(words)
        start, n, count = run
        words = words[: start + n] + words[start + n * count :]
