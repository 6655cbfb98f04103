"""Loop detection and left-context selection for Whisper finals (pure functions, no model)."""

from __future__ import annotations

import numpy as np

from hushgate.engines.base import Word
from hushgate.engines.whisper_context import (
    collapse_repeats,
    compression_ratio,
    left_context,
    looks_looped,
    repeated_run,
)

RATE_HZ = 16_000


def test_a_word_said_three_times_in_a_row_is_a_loop() -> None:
    assert looks_looped("However, however, however, however, however due to the slow communication channels")
    assert repeated_run(["a", "b", "b", "b", "c"]) == (1, 1, 3)


def test_a_phrase_repeated_is_a_loop_whatever_its_punctuation() -> None:
    assert looks_looped("I went to the shop. I went to the shop, I went to the shop and")
    assert repeated_run(
        ["x", "i", "went", "to", "the", "shop", "i", "went", "to", "the", "shop", "i", "went", "to", "the", "shop"]
    ) == (1, 5, 3)


def test_ordinary_sentences_are_not_loops() -> None:
    for text in (
        "And so my fellow Americans, ask not what your country can do for you, ask what you can do for your country.",
        "He hoped there would be stew for dinner, turnips and carrots and bruised potatoes.",
        "That that is, is.",  # a word twice in a row is ordinary speech
        "Bonjour",
        "",
    ):
        assert not looks_looped(text), text


def test_text_that_compresses_too_well_is_a_loop_even_without_a_run() -> None:
    text = "the cat and the dog the cat or the dog the cat and the dog the cat or the dog the cat and the dog"
    assert compression_ratio(text) > 2.4
    assert looks_looped(text)


def test_collapsing_keeps_one_of_each_repeated_run_and_the_rest() -> None:
    assert (
        collapse_repeats("However, however, however, however, however due to the slow channels")
        == "However, due to the slow channels"
    )
    assert collapse_repeats("a b c a b c a b c d") == "a b c d"
    assert collapse_repeats("no loop here") == "no loop here"


def _words(*spans: tuple[str, int, int]) -> tuple[Word, ...]:
    return tuple(Word(w, t0, t1, 0.9) for w, t0, t1 in spans)


def test_a_short_utterance_is_context_whole() -> None:
    audio = np.ones(2 * RATE_HZ, np.float32)
    ctx = left_context(audio, " Hello there. ", (), sample_rate_hz=RATE_HZ, max_s=3.0)
    assert ctx is not None and ctx.text == "Hello there." and len(ctx.audio) == len(audio)


def test_a_long_utterance_gives_its_last_seconds_cut_between_words() -> None:
    audio = np.arange(8 * RATE_HZ, dtype=np.float32)
    words = _words(
        ("One", 0, 900),
        ("two", 1_000, 2_000),
        ("three", 4_000, 4_600),
        ("four,", 4_900, 5_700),
        ("five.", 6_200, 7_800),
    )
    ctx = left_context(audio, "One two three four, five.", words, sample_rate_hz=RATE_HZ, max_s=3.5)
    # 8 s - 3.5 s = 4.5 s: the first word starting after that is "four," (4.9 s);
    # the cut goes 100 ms before it, still after the end of "three".
    assert ctx is not None and ctx.text == "four, five."
    assert ctx.audio[0] == 4_800 * RATE_HZ // 1000
    assert len(ctx.audio) == len(audio) - 4_800 * RATE_HZ // 1000


def test_the_cut_never_goes_back_into_the_previous_word() -> None:
    audio = np.arange(6 * RATE_HZ, dtype=np.float32)
    words = _words(("a", 0, 3_950), ("b", 4_000, 5_000))
    ctx = left_context(audio, "a b", words, sample_rate_hz=RATE_HZ, max_s=3.0)
    assert ctx is not None and ctx.text == "b" and ctx.audio[0] == 3_950 * RATE_HZ // 1000


def test_no_context_from_noise_or_when_no_word_starts_late_enough() -> None:
    audio = np.zeros(5 * RATE_HZ, np.float32)
    assert left_context(audio, "", (), sample_rate_hz=RATE_HZ, max_s=3.0) is None
    assert left_context(audio, "...", (), sample_rate_hz=RATE_HZ, max_s=3.0) is None
    long_word = _words(("Supercalifragilistic", 0, 5_000))
    assert left_context(audio, "Supercalifragilistic", long_word, sample_rate_hz=RATE_HZ, max_s=3.0) is None


def test_the_context_words_are_the_text_as_written() -> None:
    """Whisper's word split writes "l'État" as "l" + "'État": the forced words must read as
    the model wrote them, and the context never starts at the second half of such a word."""
    audio = np.arange(8 * RATE_HZ, dtype=np.float32)
    words = _words(("Visite", 0, 900), ("de", 1_000, 2_000), ("la", 2_100, 3_000))
    words += _words(("capitale", 3_100, 4_000), ("de", 4_100, 4_500), ("l", 4_600, 4_700), ("'État.", 4_700, 7_900))
    text = "Visite de la capitale de l'État."
    ctx = left_context(audio, text, words, sample_rate_hz=RATE_HZ, max_s=3.95)
    assert ctx is not None and ctx.text == "de l'État."
    late = left_context(audio, text, words, sample_rate_hz=RATE_HZ, max_s=3.35)  # "'État." alone is late enough
    assert late is None
