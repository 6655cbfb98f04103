"""The Apertium engine against Debian's real Apertium (eng-spa).

The tests are skipped when Apertium or apertium-eng-spa is not installed
(``apt-get install apertium apertium-eng-spa``). The text format and the
pipelines' framing, restart and timeout are tested without Apertium in
``test_engine_apertium_pipeline.py``.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from hushgate.engines.apertium import ApertiumTranslator, create
from hushgate.engines.apertium_modes import DEFAULT_MODES_DIR
from hushgate.engines.base import EngineError, EngineOptions, ModelNotFound
from tests.process_helpers import running, wait_dead

HAVE_APERTIUM = shutil.which("lt-proc") is not None and (DEFAULT_MODES_DIR / "eng-spa.mode").is_file()
needs_apertium = pytest.mark.skipif(
    not HAVE_APERTIUM,
    reason="Apertium with apertium-eng-spa is not installed (apt-get install apertium apertium-eng-spa)",
)


@pytest.fixture(scope="module")
def translator() -> Iterator[ApertiumTranslator]:
    if not HAVE_APERTIUM:
        pytest.skip("Apertium with apertium-eng-spa is not installed (apt-get install apertium apertium-eng-spa)")
    engine = create(EngineOptions())
    yield engine
    engine.close()


# Real Apertium.


@needs_apertium
def test_installed_pairs_use_iso639_1_codes(translator: ApertiumTranslator) -> None:
    assert ("en", "es") in translator.pairs()
    assert all(len(source.split("-")[0]) == 2 for source, _ in translator.pairs())


@needs_apertium
def test_english_to_spanish(translator: ApertiumTranslator) -> None:
    cat, morning = translator.translate(["The cat is black.", "Good morning, my friend."], "en", "es")
    assert "gato" in cat and "negro" in cat, cat
    assert "amigo" in morning, morning
    # ISO 639-3 codes name the same direction.
    assert translator.translate(["The cat is black."], "eng", "spa") == [cat]


@needs_apertium
def test_a_batch_comes_back_in_order(translator: ApertiumTranslator) -> None:
    sentences = [
        "The cat is black.",
        "The dog is white.",
        "I like bread.",
        "The house is very big.",
        "Good morning, my friend.",
    ]
    expected = ["gato", "perro", "pan", "casa", "amigo"]
    out = translator.translate(sentences, "en", "es")
    assert len(out) == 5
    for text, word in zip(out, expected, strict=True):
        assert word in text, (word, out)
    assert out == [translator.translate([s], "en", "es")[0] for s in sentences]


@needs_apertium
def test_blank_texts_pass_through(translator: ApertiumTranslator) -> None:
    assert translator.translate(["", "  ", "The cat is black."], "en", "es")[:2] == ["", "  "]
    assert translator.translate([], "en", "es") == []


@needs_apertium
def test_spanish_to_english(translator: ApertiumTranslator) -> None:
    if ("es", "en") not in translator.pairs():
        pytest.skip("spa-eng is not installed")
    (out,) = translator.translate(["El gato es negro."], "es", "en")
    assert "cat" in out and "black" in out, out


@needs_apertium
def test_line_breaks_and_reserved_characters_survive(translator: ApertiumTranslator) -> None:
    (out,) = translator.translate(["The cat is black.\n\nThe dog is white.\tYes [1] ^ $ / <x> @ {y} \\"], "en", "es")
    first, second = out.split("\n\n")
    assert "gato" in first and "perro" in second and "\t" in second, out
    for kept in ("[1]", "^", "$", "/", "<x>", "@", "{y}", "\\"):
        assert kept in second, (kept, out)


@needs_apertium
def test_output_is_what_the_apertium_command_gives() -> None:
    texts = [
        "My brother works at the hospital near the station.",
        "Hello\n\nWorld",
        "tab\there  two  spaces",
        "Line one\nline two",
        "a [b] c\\d ^e$ f/g <h> @i {j} *k #l",
        "I like #hashtag and write to bob@example.com now.",
        "Is it? Yes! No.",
    ]
    engine = create(EngineOptions(extra={"mark_unknown": True})) if HAVE_APERTIUM else None
    if engine is None:
        pytest.skip("Apertium with apertium-eng-spa is not installed")
    try:
        out = engine.translate(texts, "en", "es")
    finally:
        engine.close()
    for text, got in zip(texts, out, strict=True):
        reference = subprocess.run(
            ["apertium", "eng-spa"], input=text.encode(), capture_output=True, check=True
        ).stdout.decode()
        # The engine drops the blank a dropped pronoun leaves at the start.
        assert got == reference.strip(), (text, got, reference)


@needs_apertium
def test_unknown_word_marks(translator: ApertiumTranslator) -> None:
    (plain,) = translator.translate(["Blorfzz is here."], "en", "es")
    assert "Blorfzz" in plain and "*" not in plain, plain
    marked_engine = create(EngineOptions(extra={"mark_unknown": True}))
    try:
        (marked,) = marked_engine.translate(["Blorfzz is here."], "en", "es")
    finally:
        marked_engine.close()
    assert "*Blorfzz" in marked, marked


@needs_apertium
def test_the_pipeline_is_reused(translator: ApertiumTranslator) -> None:
    translator.translate(["The cat is black."], "en", "es")
    pids = translator.pipeline_pids("en", "es")
    assert len(pids) > 1 and all(running(pid) for pid in pids)
    translator.translate(["The dog is white."], "en", "es")
    translator.translate(["I like bread.", "Good morning."], "en", "es")
    assert translator.pipeline_pids("en", "es") == pids


@needs_apertium
def test_a_killed_pipeline_is_restarted(translator: ApertiumTranslator) -> None:
    translator.translate(["The cat is black."], "en", "es")
    pids = translator.pipeline_pids("en", "es")
    victim = pids[len(pids) // 2]  # a program in the middle of the chain
    os.kill(victim, signal.SIGKILL)
    wait_dead(victim)
    (out,) = translator.translate(["The cat is black."], "en", "es")
    assert "gato" in out
    new_pids = translator.pipeline_pids("en", "es")
    assert new_pids and set(new_pids).isdisjoint(pids)
    assert not any(running(pid) for pid in pids), "the old pipeline was left running"


@needs_apertium
def test_threads_share_a_direction(translator: ApertiumTranslator) -> None:
    sentences = ["The cat is black.", "The dog is white.", "I like bread.", "Good morning, my friend."]
    expected = translator.translate(sentences, "en", "es")
    failures: list[str] = []

    def work(offset: int) -> None:
        for i in range(10):
            k = (offset + i) % len(sentences)
            got = translator.translate([sentences[k]], "en", "es")
            if got != [expected[k]]:
                failures.append(f"{sentences[k]!r} -> {got!r}")

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures


@needs_apertium
def test_an_unknown_pair_names_the_installed_ones(translator: ApertiumTranslator) -> None:
    with pytest.raises(EngineError, match=r"installed pairs: .*en-es"):
        translator.translate(["Hello."], "en", "xx")


@needs_apertium
def test_close_stops_the_processes() -> None:
    engine = create(EngineOptions())
    engine.translate(["The cat is black."], "en", "es")
    pids = engine.pipeline_pids("en", "es")
    engine.close()
    assert not any(running(pid) for pid in pids)
    with pytest.raises(EngineError, match="closed"):
        engine.translate(["The cat is black."], "en", "es")


@needs_apertium
def test_modes_dir_option(tmp_path: Path) -> None:
    shutil.copy(DEFAULT_MODES_DIR / "eng-spa.mode", tmp_path / "eng-spa.mode")
    engine = create(EngineOptions(extra={"modes_dir": str(tmp_path)}))
    try:
        assert engine.pairs() == [("en", "es")]
        assert "gato" in engine.translate(["The cat is black."], "en", "es")[0]
    finally:
        engine.close()
    with pytest.raises(ModelNotFound, match="no Apertium language pair"):
        create(EngineOptions(extra={"modes_dir": str(tmp_path / "none")}))


@needs_apertium
def test_without_apertium_wblank_mode_the_flags_are_added_here(
    translator: ApertiumTranslator, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_which = shutil.which
    monkeypatch.setattr(
        "hushgate.engines.apertium_modes.shutil.which",
        lambda name: None if name == "apertium-wblank-mode" else real_which(name),
    )
    engine = create(EngineOptions())
    try:
        sentences = ["The cat is black.", "Good morning, my friend.", "Line one\nline two"]
        assert engine.translate(sentences, "en", "es") == translator.translate(sentences, "en", "es")
    finally:
        engine.close()


def test_a_text_that_is_not_unicode_is_an_engine_error_and_the_pipeline_lives(translator: ApertiumTranslator) -> None:
    """A lone surrogate cannot be written to the pipeline: an EngineError for that call, and the
    pipeline that the other sessions share is neither killed nor out of step."""
    before = translator.pipeline_pids("en", "es")
    with pytest.raises(EngineError, match="surrogate"):
        translator.translate(["bad \ud800 text"], "en", "es")
    assert translator.translate(["The house is big."], "en", "es") == ["La casa es grande."]
    assert not before or translator.pipeline_pids("en", "es") == before
