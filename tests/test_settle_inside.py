"""Settling a long Whisper utterance inside its speech, with scripted decodes (no model).

The real model's side of it (word error rates with and without) is measured by
``bench/accuracy.py``; these tests pin down where the cut falls and what the
decodes after it are given.
"""

from __future__ import annotations

import numpy as np
import pytest

from hushgate.engines.base import Transcript, Word
from hushgate.engines.whisper import WhisperStream
from hushgate.engines.whisper_context import ends_at_mark, text_through
from hushgate.engines.whisper_inside import settled_inside
from tests.scripted_whisper import ScriptedDecoder, timed

RATE_HZ = 16_000
SAID = "one two three four five, six seven eight nine"


def cut_of(transcript: Transcript, audio_s: float, agreed: int = 100) -> tuple[str, int] | None:
    found = settled_inside(
        np.zeros(int(audio_s * RATE_HZ), np.float32),
        transcript,
        agreed=agreed,
        sample_rate_hz=RATE_HZ,
        tail_s=3.0,
        min_piece_s=4.0,
        context_s=3.0,
    )
    return None if found is None else (found[0].text, found[1] * 1000 // RATE_HZ)


def test_the_cut_follows_a_mark_with_enough_audio_after_it() -> None:
    # Words every second, 900 ms long: between "five," and "six" the cut is at 4950 ms.
    assert cut_of(timed(SAID, 0, 1_000), 9.0) == ("one two three four five,", 4_950)


def test_the_cut_keeps_only_words_the_try_before_wrote_too() -> None:
    assert cut_of(timed(SAID, 0, 1_000), 9.0, agreed=6) == ("one two three four five,", 4_950)
    assert cut_of(timed(SAID, 0, 1_000), 9.0, agreed=5) is None  # "six" was new: the decodes differ at the cut


def test_of_two_marks_the_widest_gap_wins_and_without_a_mark_there_is_no_cut() -> None:
    said = ["one", "two", "three", "four", "five,", "six", "seven,", "eight", "nine", "ten"]
    # "five," ends 500 ms before "six" (the cut: 200 ms after it, at most); "seven," 100 ms before "eight".
    words = tuple(Word(w, i * 1_000, i * 1_000 + (500 if w == "five," else 900), 0.9) for i, w in enumerate(said))
    assert cut_of(Transcript(" ".join(said), words), 11.0) == ("one two three four five,", 4_700)
    bare = tuple(Word(w.w.rstrip(","), w.t0_ms, w.t1_ms, w.conf) for w in words)
    assert cut_of(Transcript(" ".join(w.w for w in bare), bare), 11.0) is None


def test_no_cut_leaves_too_short_a_piece_or_too_little_after_it() -> None:
    assert cut_of(timed(SAID, 0, 1_000), 7.5) is None  # 4 s before the cut leaves 2.5 s after it
    assert cut_of(timed("one, two", 0, 1_000), 9.0) is None  # a 1 s piece


def test_a_long_utterance_is_settled_by_a_partial_and_the_final_decodes_what_follows() -> None:
    """After 6 s without a settled pause, a partial decodes the utterance as a final would
    (words on, on the low-priority copy); the next such try, 2 s later, keeps the words
    before a cut that both wrote. The final decodes only the audio after the cut, with the
    cut's last words as left context."""
    owner = ScriptedDecoder(
        timed("one two three four five, six seven", 0, 1_000),  # the first try, at 7 s: no cut fits
        timed(SAID, 0, 1_000),  # the second, at 9 s: cut after "five,", which both wrote
        "six seven eight nine ten",  # the next partial: the words after the cut
        timed("six seven eight nine ten.", 50, 1_000),  # the final of the audio after the cut
        left_context_s=3.0,
        settle_inside_s=6.0,
    )
    stream = WhisperStream(owner, language="en", words=True)  # type: ignore[arg-type]
    stream.accept(np.zeros(7 * RATE_HZ, np.int16))
    assert stream.partial() == Transcript("one two three four five, six seven")
    stream.accept(np.zeros(2 * RATE_HZ, np.int16))
    assert stream.partial() == Transcript(SAID)
    stream.accept(np.zeros(RATE_HZ, np.int16))
    assert stream.partial() == Transcript("one two three four five, six seven eight nine ten")
    final = stream.finish()
    assert final.text == "one two three four five, six seven eight nine ten."
    assert [(w.w, w.t0_ms) for w in final.words[4:6]] == [("five,", 4_000), ("six", 5_000)]
    cut = 4_950 * RATE_HZ // 1000
    tries = ["short 112000 background", "short 144000 background"]
    assert owner.calls == [*tries, "partial", f"final {10 * RATE_HZ - cut}"]
    assert owner.lefts == [None, None, "three four five,", "three four five,"]


def test_a_first_try_alone_settles_nothing() -> None:
    owner = ScriptedDecoder(timed(SAID, 0, 1_000), timed(f"{SAID}.", 0, 1_000), settle_inside_s=6.0, left_context_s=3.0)
    stream = WhisperStream(owner, language="en", words=False)  # type: ignore[arg-type]
    stream.accept(np.zeros(9 * RATE_HZ, np.int16))
    stream.partial()
    assert stream.finish().text == f"{SAID}."
    assert owner.calls == ["short 144000 background", f"final {9 * RATE_HZ}"]


def test_a_failed_try_waits_for_two_more_seconds_and_finish_starts_afresh() -> None:
    owner = ScriptedDecoder(
        "one two",
        "one two three four",
        timed("one two three four five six", 0, 1_000),  # at 6 s: no cut leaves 4 s before and 3 s after
        "one two three four five six seven",  # at 7 s: an ordinary partial, one second after the try
        timed("one two three four five six seven.", 0, 1_000),
        timed("again", 0, 1_000),  # the next utterance is tried at its own 6 s
        left_context_s=3.0,
        settle_inside_s=6.0,
    )
    stream = WhisperStream(owner, language="en", words=False)  # type: ignore[arg-type]
    for seconds in (2, 2, 2, 1):
        stream.accept(np.zeros(seconds * RATE_HZ, np.int16))
        stream.partial()
    assert stream.finish().text == "one two three four five six seven."
    stream.accept(np.zeros(6 * RATE_HZ, np.int16))
    assert stream.partial() == Transcript("again")
    background = "short 96000 background"
    assert owner.calls == ["partial", "partial", background, "partial", "final 112000", background]


def test_the_settled_text_is_cut_from_the_text_as_written() -> None:
    """Words joined with spaces would misspell languages written without them, and French
    elisions that Whisper splits into two words ("l" + "'école")."""
    words = (Word("我们", 0, 900, 0.9), Word("明天，", 1_000, 1_900, 0.9), Word("见", 2_000, 2_900, 0.9))
    assert text_through("我们明天，见。", words, 1) == "我们明天，"
    french = (Word("de", 0, 100, 0.9), Word("l", 200, 300, 0.9), Word("'école", 300, 900, 0.9))
    assert text_through(" de l'école", french, 2) == "de l'école"
    assert text_through("something else", french, 1) is None


def test_no_cut_falls_inside_an_elision() -> None:
    said = ["un", "deux", "trois", "quatre", "cinq", "l,", "'école", "six", "sept,", "huit", "neuf"]
    # After "l," (a comma Whisper would not write there) comes the widest gap: still no cut.
    words = tuple(Word(w, i * 1_000, i * 1_000 + (500 if w == "l," else 900), 0.9) for i, w in enumerate(said))
    found = cut_of(Transcript("un deux trois quatre cinq l,'école six sept, huit neuf", words), 12.0)
    assert found is not None and found[0].endswith("sept,")


def test_audio_beyond_the_short_window_is_not_tried() -> None:
    owner = ScriptedDecoder("words", settle_inside_s=6.0, left_context_s=3.0)
    stream = WhisperStream(owner, language="en", words=False)  # type: ignore[arg-type]
    stream.accept(np.zeros(26 * RATE_HZ, np.int16))  # a 26 s utterance, 5 s of padding: over 30 s
    stream.partial()
    assert owner.calls == ["partial"]


@pytest.mark.parametrize(
    ("text", "marked"),
    [
        ("he said, “yes.”", True),
        ("one, two,", True),
        ("كيف حالك؟", True),
        ("and then...", False),  # trailing off: a pause inside a thought
        ("pour la capitale de l", False),
        ("", False),
    ],
)
def test_a_mark_is_a_sentence_end_or_clause_break_before_any_closing_quotes(text: str, marked: bool) -> None:
    assert ends_at_mark(text) is marked
