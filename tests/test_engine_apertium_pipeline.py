"""Apertium's text format and pipelines, without Apertium.

The deformatter and reformatter are checked against Apertium's own
``apertium-destxt`` and ``apertium-retxt`` where those are installed. The fake
pipelines are small Python scripts named in mode files of a temporary modes
directory; they show the framing, the restart and the timeout.
"""

from __future__ import annotations

import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hushgate.engines.apertium import ApertiumTranslator
from hushgate.engines.apertium_format import deformat_txt, reformat_txt
from hushgate.engines.apertium_modes import language_code
from hushgate.engines.base import EngineError
from tests.process_helpers import running

needs_txt_tools = pytest.mark.skipif(
    shutil.which("apertium-destxt") is None or shutil.which("apertium-retxt") is None,
    reason="apertium-destxt/apertium-retxt are not installed (apt-get install apertium)",
)


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
    for text in [*_random_texts(300), "a.[]b", "\\", "x\0y"]:
        assert reformat_txt(deformat_txt(text)) == text.replace("\0", ""), repr(text)


def test_language_codes() -> None:
    assert [language_code(c) for c in ("eng", "spa", "cat", "fra", "por", "deu", "ita", "glg", "oci")] == [
        "en",
        "es",
        "ca",
        "fr",
        "pt",
        "de",
        "it",
        "gl",
        "oc",
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
        with pytest.raises(EngineError, match=r"no answer in 0\.5 s"):
            engine.translate(["hello"], "eee", "fff")
        assert time.monotonic() - started < 5
        replacement = engine.pipeline_pids("eee", "fff")
        assert replacement and all(running(pid) for pid in replacement)
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
