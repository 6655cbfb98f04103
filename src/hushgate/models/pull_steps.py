"""The steps every pull is made of: a staging directory, running pip, checking a digest, the final move."""

from __future__ import annotations

import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Final, TypeAlias

from hushgate.models.errors import ChecksumMismatch, PullError

CHUNK_BYTES: Final = 1 << 20
_STAGING_PREFIX: Final = ".pull-"

Run: TypeAlias = Callable[[Sequence[str]], None]
"""Runs a command; raises subprocess.CalledProcessError when it fails."""


def run_command(cmd: Sequence[str]) -> None:
    """Run ``cmd`` with the terminal attached, so pip shows its own progress."""
    subprocess.run(list(cmd), check=True)


@contextmanager
def staging(root: Path, name: str) -> Iterator[Path]:
    """A scratch directory beside the target, so the final move is one rename."""
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f"{_STAGING_PREFIX}{name}-", dir=root))
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def move_into_place(staged: Path, target: Path) -> None:
    if target.exists():
        raise PullError(f"{target} appeared while pulling; remove it and pull again")
    try:
        staged.rename(target)
    except OSError as exc:
        raise PullError(f"could not move the model into {target}: {exc}") from exc


def run_step(run: Run, cmd: Sequence[str]) -> None:
    try:
        run(cmd)
    except subprocess.CalledProcessError as exc:
        raise PullError(f"`{shlex.join(cmd)}` failed with exit status {exc.returncode}") from exc
    except OSError as exc:
        raise PullError(f"could not run `{shlex.join(cmd)}`: {exc}") from exc


def verify_sha256(expected: str | None, actual: str, what: str) -> None:
    if expected is not None and actual != expected:
        raise ChecksumMismatch(f"SHA-256 of {what} is {actual}, expected {expected}")
