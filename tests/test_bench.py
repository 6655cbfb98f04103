"""bench/ cannot rot silently: every script imports, answers --help, and leans only on bench/core."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "bench"
SCRIPTS = sorted(p for p in BENCH.glob("*.py"))
CORE = sorted((BENCH / "core").glob("*.py"))

# Runs each script as `python bench/NAME.py --help` would (bench/ first on sys.path,
# __name__ == "__main__"), all in one interpreter so the test stays fast.
DRIVER = """
import contextlib, io, runpy, sys
sys.path.insert(0, sys.argv[1])
for path in sys.argv[2:]:
    sys.argv = [path, "--help"]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        try:
            runpy.run_path(path, run_name="__main__")
        except SystemExit as exc:
            code = exc.code
        else:
            code = "returned without exiting"
    if code != 0 or "usage:" not in out.getvalue():
        raise SystemExit(f"{path} --help: exit {code!r}, output {out.getvalue()[:200]!r}")
    print("ok", path)
"""


def test_every_script_answers_help() -> None:
    assert {p.stem for p in SCRIPTS} >= {
        "load",
        "speakers",
        "stream",
        "translate",
        "tts",
        "whisper_decode",
        "whisper_final",
    }
    result = subprocess.run(
        [sys.executable, "-c", DRIVER, str(BENCH), *map(str, SCRIPTS)],
        capture_output=True,
        text=True,
        timeout=180,
        env=os.environ.copy(),
        cwd=BENCH.parent,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("ok ") == len(SCRIPTS)


def test_every_core_module_imports() -> None:
    names = [f"core.{p.stem}" for p in CORE if p.stem != "__init__"]
    code = f"import importlib, sys\nsys.path.insert(0, {str(BENCH)!r})\nfor n in {names!r}: importlib.import_module(n)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]


def _imported(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_scripts_import_the_core_never_each_other() -> None:
    scripts = {p.stem for p in SCRIPTS}
    for path in [*SCRIPTS, *CORE]:
        text = path.read_text()
        assert "sys.path.insert" not in text and "sys.path.append" not in text, f"{path.name} changes sys.path"
        crossing = _imported(path) & scripts
        assert not crossing, f"{path.relative_to(BENCH)} imports the script(s) {sorted(crossing)}"
