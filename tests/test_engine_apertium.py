"""The Apertium engine against Debian's real Apertium (eng-spa), plus fake pipelines.

The real-Apertium tests are skipped when Apertium or apertium-eng-spa is not
installed (``apt-get install apertium apertium-eng-spa``). The fake pipelines
are small Python scripts named in mode files of a temporary modes directory;
they show the framing, the restart and the timeout without Apertium.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from hushgate.engines.apertium import (
    DEFAULT_MODES_DIR,
    ApertiumTranslator,
    create,
    deformat_txt,
    language_code,
    reformat_txt,
)
from hushgate.engines.base import EngineError, EngineOptions, ModelNotFound

HAVE_APERTIUM = shutil.which("lt-proc") is not None and (DEFAULT_MODES_DIR / "eng-spa.mode").is_file()
needs_apertium = pytest.mark.skipif(
    not HAVE_APERTIUM,
    reason="Apertium with apertium-eng-spa is not installed (apt-get install apertium apertium-eng-spa)",
)
needs_txt_tools = pytest.mark.skipif(
    shutil.which("apertium-destxt") is None or shutil.which("apertium-retxt") is None,
    reason="apertium-destxt/apertium-retxt are not installed (apt-get install apertium)",
)


@pytest.fixture(scope="module")
def translator() -> Iterator[ApertiumTranslator]:
    if not HAVE_APERTIUM:
        pytest.skip("Apertium with apertium-eng-spa is not installed (apt-get install apertium apertium-eng-spa)")
    engine = create(EngineOptions())
    yield engine
    engine.close()


def _wait_dead(pid: int, timeout_s: float = 5.0) -> None:
    # The killed program stays a zombie until the engine reaps it; either way it is gone.
    deadline = time.monotonic() + timeout_s
    while _running(pid):
        if time.monotonic() > deadline:
            raise AssertionError(f"process {pid} did not die")
        time.sleep(0.01)


def _running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() not in (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD)
    except psutil.NoSuchProcess:
        return False


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
    assert len(pids) > 1 and all(_running(pid) for pid in pids)
    translator.translate(["The dog is white."], "en", "es")
    translator.translate(["I like bread.", "Good morning."], "en", "es")
    assert translator.pipeline_pids("en", "es") == pids


@needs_apertium
def test_a_killed_pipeline_is_restarted(translator: ApertiumTranslator) -> None:
    translator.translate(["The cat is black."], "en", "es")
    pids = translator.pipeline_pids("en", "es")
    victim = pids[len(pids) // 2]  # a program in the middle of the chain
    os.kill(victim, signal.SIGKILL)
    _wait_dead(victim)
    (out,) = translator.translate(["The cat is black."], "en", "es")
    assert "gato" in out
    new_pids = translator.pipeline_pids("en", "es")
    assert new_pids and set(new_pids).isdisjoint(pids)
    assert not any(_running(pid) for pid in pids), "the old pipeline was left running"


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
    with pytest.raises(EngineError, match="installed pairs: .*en-es"):
        translator.translate(["Hello."], "en", "xx")


@needs_apertium
def test_close_stops_the_processes() -> None:
    engine = create(EngineOptions())
    engine.translate(["The cat is black."], "en", "es")
    pids = engine.pipeline_pids("en", "es")
    engine.close()
    assert not any(_running(pid) for pid in pids)
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


# The text format, against Apertium's own deformatter and reformatter.

_ALPHABET = list("ab .,!?") + list("[]\\^$/<>@{}*#~") + ["\n", "\n\n", "\t", "  ", "\r\n", "é", "日", "\u00a0"]


def _random_texts(count: int) -> list[str]:
    rng = random.Random(1234)
    return ["".join(rng.choice(_ALPHABET) for _ in range(rng.randint(0, 12))) for _ in range(count)]


def _tool(program: str, text: str) -> str:
    return subprocess.run([program], input=text.encode(), capture_output=True, check=True).stdout.decode()


@needs_txt_tools
def test_deformat_matches_apertium_destxt() -> None:
    fixed = ["", " ", "x", "Hello\n\nWorld", "abc  ", "\n\nabc", "a\n \nb", "a\r\n\r\nb", "a ~ b", "No.", "x\n\n"]
    for text in fixed + _random_texts(150):
        assert deformat_txt(text) == _tool("apertium-destxt", text), repr(text)


@needs_txt_tools
def test_reformat_matches_apertium_retxt() -> None:
    streams = [deformat_txt(text) for text in _random_texts(100)]
    streams += ["a. []", "..[]", "x.[][  ]", "[[t:b]]x[[/]]", "a\\", "a.\\[\\]", "\\*\\#\\~", "a.[]]"]
    for stream in streams:
        assert reformat_txt(stream) == _tool("apertium-retxt", stream), repr(stream)


def test_deformat_then_reformat_gives_the_text_back() -> None:
    for text in _random_texts(300) + ["a.[]b", "\\", "x\0y"]:
        assert reformat_txt(deformat_txt(text)) == text.replace("\0", ""), repr(text)


def test_language_codes() -> None:
    assert [language_code(c) for c in ("eng", "spa", "cat", "fra", "por", "deu", "ita", "glg", "oci")] == [
        "en", "es", "ca", "fr", "pt", "de", "it", "gl", "oc",
    ]
    assert language_code("eng_US") == "en-US"
    assert language_code("ast") == "ast"  # no ISO 639-1 code: passed through


# Fake pipelines: one Python program per mode, told by its last argument how to behave.

FAKE_PROGRAM = """\
import sys

behaviour = sys.argv[-1]
stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
frames = 0
buffer = b""
while True:
    chunk = stdin.read1(65536)
    if not chunk:
        break
    buffer += chunk
    while b"\\0" in buffer:
        frame, buffer = buffer.split(b"\\0", 1)
        frames += 1
        if behaviour == "hang":
            continue
        if behaviour == "die" or (behaviour == "die-on-second" and frames == 2):
            sys.exit(3)
        stdout.write(frame + b"\\0")
        stdout.flush()
"""


@pytest.fixture
def fake_modes(tmp_path: Path) -> Path:
    program = tmp_path / "fake-apertium.py"
    program.write_text(f"#!{sys.executable}\n{FAKE_PROGRAM}")
    program.chmod(0o755)
    modes = tmp_path / "modes"
    modes.mkdir()
    for name, behaviour in {
        "aaa-bbb": "echo",
        "ccc-ddd": "die-on-second",
        "eee-fff": "hang",
        "ggg-hhh": "die",
    }.items():
        (modes / f"{name}.mode").write_text(f"'{program}' {behaviour}\n")
    (modes / "aaa-bbb-debug.mode").write_text("not a translation mode\n")
    return modes


def test_fake_pairs_pass_unknown_codes_through(fake_modes: Path) -> None:
    engine = ApertiumTranslator(fake_modes)
    try:
        assert engine.pairs() == [("aaa", "bbb"), ("ccc", "ddd"), ("eee", "fff"), ("ggg", "hhh")]
    finally:
        engine.close()


def test_framing_survives_any_text_and_a_large_batch(fake_modes: Path) -> None:
    engine = ApertiumTranslator(fake_modes)
    try:
        texts = [t for t in _random_texts(200) if t.strip()]
        texts.append("long " * 200_000)  # 1 MB: more than every pipe buffer holds
        assert engine.translate(texts, "aaa", "bbb") == texts
    finally:
        engine.close()


def test_a_pipeline_that_dies_mid_call_is_restarted_and_retried(fake_modes: Path) -> None:
    engine = ApertiumTranslator(fake_modes)
    try:
        assert engine.translate(["one"], "ccc", "ddd") == ["one"]
        first = engine.pipeline_pids("ccc", "ddd")
        assert engine.translate(["two"], "ccc", "ddd") == ["two"]
        assert engine.pipeline_pids("ccc", "ddd") != first
    finally:
        engine.close()


def test_a_pipeline_that_always_dies_fails_cleanly(fake_modes: Path) -> None:
    engine = ApertiumTranslator(fake_modes)
    try:
        with pytest.raises(EngineError, match="died twice"):
            engine.translate(["one"], "ggg", "hhh")
    finally:
        engine.close()


def test_a_silent_pipeline_times_out_and_is_replaced(fake_modes: Path) -> None:
    engine = ApertiumTranslator(fake_modes, timeout_s=0.5)
    try:
        engine.translate(["x"], "aaa", "bbb")  # another direction is not affected
        started = time.monotonic()
        with pytest.raises(EngineError, match="no answer in 0.5 s"):
            engine.translate(["hello"], "eee", "fff")
        assert time.monotonic() - started < 5
        replacement = engine.pipeline_pids("eee", "fff")
        assert replacement and all(_running(pid) for pid in replacement)
        assert engine.translate(["x"], "aaa", "bbb") == ["x"]
    finally:
        engine.close()


def test_a_mode_with_shell_redirection_is_refused(tmp_path: Path) -> None:
    (tmp_path / "xxx-yyy.mode").write_text("lt-proc -z a.bin 2> /dev/null | lt-proc -g b.bin\n")
    engine = ApertiumTranslator(tmp_path)
    try:
        with pytest.raises(EngineError, match="shell syntax"):
            engine.translate(["x"], "xxx", "yyy")
    finally:
        engine.close()


@needs_apertium
def test_without_apertium_wblank_mode_the_flags_are_added_here(
    translator: ApertiumTranslator, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_which = shutil.which
    monkeypatch.setattr(
        "hushgate.engines.apertium.shutil.which", lambda name: None if name == "apertium-wblank-mode" else real_which(name)
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
