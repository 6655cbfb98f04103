"""Apertium's installed language pairs: the mode files, their language codes, their pipelines.

`find_modes` lists the translation modes (``<modes dir>/<pair>.mode``) of a
directory under the ISO 639-1 codes clients use; `pipeline_commands` turns one
mode into argument lists ready to be chained without a shell, every program in
null-flush mode (the form ``apertium-wblank-mode -z`` writes; without that
program ``-z`` is added here to the programs known to take it).
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Final

from hushgate.engines.base import EngineError

DEFAULT_MODES_DIR: Final = Path("/usr/share/apertium/modes")
WBLANK_MODE_TIMEOUT_S: Final = 10.0
"""How long ``apertium-wblank-mode`` may take to rewrite one mode file."""

# Apertium names languages with ISO 639-3 codes; clients use ISO 639-1.
ISO639_3_TO_1: Final[dict[str, str]] = {
    "afr": "af",
    "ara": "ar",
    "arg": "an",
    "bel": "be",
    "bos": "bs",
    "bre": "br",
    "bul": "bg",
    "cat": "ca",
    "ces": "cs",
    "cym": "cy",
    "dan": "da",
    "deu": "de",
    "ell": "el",
    "eng": "en",
    "epo": "eo",
    "est": "et",
    "eus": "eu",
    "fin": "fi",
    "fra": "fr",
    "gle": "ga",
    "glg": "gl",
    "heb": "he",
    "hin": "hi",
    "hrv": "hr",
    "hun": "hu",
    "ind": "id",
    "isl": "is",
    "ita": "it",
    "kaz": "kk",
    "lav": "lv",
    "lit": "lt",
    "mkd": "mk",
    "mlt": "mt",
    "msa": "ms",
    "nld": "nl",
    "nno": "nn",
    "nob": "nb",
    "oci": "oc",
    "pol": "pl",
    "por": "pt",
    "ron": "ro",
    "rus": "ru",
    "slk": "sk",
    "slv": "sl",
    "sme": "se",
    "spa": "es",
    "sqi": "sq",
    "srp": "sr",
    "swe": "sv",
    "tat": "tt",
    "tur": "tr",
    "ukr": "uk",
    "urd": "ur",
}

# A translation mode is LANG[_VARIANT]-LANG[_VARIANT]; source builds also
# install debugging modes (eng-spa-tagger, eng-spa-biltrans, ...), which have
# a third part and are not translations.
_MODE_NAME = re.compile(r"^([a-z]{2,3}(?:_[A-Za-z0-9]+)?)-([a-z]{2,3}(?:_[A-Za-z0-9]+)?)$")

# Programs that understand -z, for Apertium installs without apertium-wblank-mode.
_NULL_FLUSH_PROGRAMS: Final = frozenset(
    {
        "lt-proc",
        "hfst-proc",
        "cg-proc",
        "lrx-proc",
        "lsx-proc",
        "rtx-proc",
        "apertium-tagger",
        "apertium-pretransfer",
        "apertium-posttransfer",
        "apertium-transfer",
        "apertium-interchunk",
        "apertium-postchunk",
        "apertium-anaphora",
    }
)


def language_code(apertium: str) -> str:
    """An Apertium language name as a client would say it: ``eng`` → ``en``, ``eng_US`` → ``en-US``."""
    base, _, variant = apertium.partition("_")
    code = ISO639_3_TO_1.get(base, base)
    return f"{code}-{variant}" if variant else code


def request_key(code: str) -> str:
    """A requested language, matched case-insensitively, with 639-3 codes accepted too."""
    base, _, variant = code.strip().replace("_", "-").partition("-")
    base = ISO639_3_TO_1.get(base.lower(), base.lower())
    return f"{base}-{variant.lower()}" if variant else base


def find_modes(modes_dir: Path) -> dict[tuple[str, str], Path]:
    """(source, target) → mode file for every translation mode in ``modes_dir``."""
    modes: dict[tuple[str, str], Path] = {}
    if not modes_dir.is_dir():
        return modes
    for mode_file in sorted(modes_dir.glob("*.mode")):
        match = _MODE_NAME.match(mode_file.stem)
        if match is None:
            continue
        pair = (language_code(match.group(1)), language_code(match.group(2)))
        # Old two-letter packages (en-es.mode) and new ones (eng-spa.mode) can
        # both be installed; the first in name order wins, as a stable choice.
        modes.setdefault(pair, mode_file)
    return modes


def _null_flush_pipeline(mode_file: Path) -> tuple[str, bool]:
    """The mode's shell pipeline, and whether it already has every program in null-flush mode."""
    if shutil.which("apertium-wblank-mode") is None:
        return mode_file.read_text(encoding="utf-8"), False
    done = subprocess.run(
        ["apertium-wblank-mode", "-z", str(mode_file)],
        capture_output=True,
        text=True,
        timeout=WBLANK_MODE_TIMEOUT_S,
        check=False,
    )
    if done.returncode != 0:
        raise EngineError(f"apertium-wblank-mode could not read {mode_file}: {done.stderr.strip()}")
    return done.stdout, True


def pipeline_commands(mode_file: Path, *, mark_unknown: bool) -> list[list[str]]:
    """The mode's programs as argument lists, ready to be chained without a shell.

    ``$1`` is the generator's option and ``$2`` the tagger's, as in ``apertium``.
    """
    try:
        script, null_flush = _null_flush_pipeline(mode_file)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise EngineError(f"cannot read Apertium mode {mode_file}: {exc}") from exc
    lexer = shlex.shlex(script, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    lexer.commenters = ""
    try:
        tokens = list(lexer)
    except ValueError as exc:
        raise EngineError(f"cannot parse Apertium mode {mode_file}: {exc}") from exc
    commands: list[list[str]] = [[]]
    for token in tokens:
        if token == "|":
            commands.append([])
        elif token == "$1":
            commands[-1].append("-g" if mark_unknown else "-n")
        elif token == "$2":
            continue  # the tagger's option; empty unless ambiguity is shown
        elif token and (set(token) <= set("();<>|&") or token.startswith("$")):
            # Redirections, other variables, lists: no shell runs this pipeline.
            raise EngineError(f"Apertium mode {mode_file} uses shell syntax this engine does not run: {token!r}")
        else:
            commands[-1].append(token)
    if any(not command for command in commands):
        raise EngineError(f"Apertium mode {mode_file} has an empty command")
    if not null_flush:
        for command in commands:
            if Path(command[0]).name in _NULL_FLUSH_PROGRAMS and "-z" not in command:
                command.insert(1, "-z")
    return commands
