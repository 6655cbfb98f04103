"""Argos Translate packages on disk: find them, read their metadata, keep the newest per pair.

An Argos package is a directory holding ``metadata.json`` (``from_code``,
``to_code``, ``package_version``, ...), a CTranslate2 model in ``model/`` and
its SentencePiece tokenizer ``sentencepiece.model``. A zipped package
(``.argosmodel``) is refused rather than unpacked into a temporary directory at
run time: CTranslate2 loads only from a directory and the gateway writes
nothing while serving, so the package has to be unpacked beforehand, which
``hushgate models pull`` does.
"""

from __future__ import annotations

import json
import re
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from hushgate.engines.base import EngineError, ModelNotFound

METADATA_FILE: Final = "metadata.json"
MODEL_DIR: Final = "model"


def language_key(code: str) -> str:
    """A language code as packages and requests are matched: ``en_US`` → ``en-us``."""
    return code.strip().replace("_", "-").lower()


@dataclass(frozen=True, slots=True)
class ArgosMetadata:
    """What the engine reads from an Argos package's ``metadata.json``."""

    from_code: str
    to_code: str
    version: tuple[int, ...]
    target_prefix: str


def _version(raw: Any) -> tuple[int, ...]:
    # "1.0", "1.9.1", 1.1: used only to prefer the newer of two packages.
    numbers = re.findall(r"\d+", str(raw)) if raw is not None else []
    return tuple(int(n) for n in numbers)


def read_metadata(package_dir: Path) -> ArgosMetadata:
    """Parse ``metadata.json``; EngineError naming the file when it is not an Argos package's."""
    path = package_dir / METADATA_FILE
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise EngineError(f"cannot read Argos package metadata {path}: {exc}") from exc
    if not isinstance(raw, dict):
        raise EngineError(f"Argos package metadata {path} is not a JSON object")
    from_code, to_code = raw.get("from_code"), raw.get("to_code")
    if not isinstance(from_code, str) or not isinstance(to_code, str) or not from_code or not to_code:
        raise EngineError(f"Argos package metadata {path} lacks from_code/to_code")
    target_prefix = raw.get("target_prefix") or ""
    if not isinstance(target_prefix, str):
        raise EngineError(f"Argos package metadata {path}: target_prefix must be a string")
    return ArgosMetadata(
        from_code=language_key(from_code),
        to_code=language_key(to_code),
        version=_version(raw.get("package_version")),
        target_prefix=target_prefix,
    )


def is_zip(path: Path) -> bool:
    return path.suffix == ".argosmodel" or (path.is_file() and zipfile.is_zipfile(path))


def zip_refusal(path: Path) -> EngineError:
    return EngineError(
        f"{path} is a zipped Argos package; CTranslate2 loads only from a directory and the "
        f"gateway writes nothing while serving, so unpack it first: `hushgate models pull` "
        f"installs packages unpacked, or run `unzip {path.name} -d <models dir>` and point the "
        "engine at the directory that holds metadata.json"
    )


def find_packages(path: Path) -> list[Path]:
    """Package directories at ``path``: the package itself, or its subdirectories that are packages.

    A zipped package is refused with how to unpack it. Subdirectories that are
    not Argos packages are skipped (a models directory holds other engines'
    models too).
    """
    if is_zip(path):
        raise zip_refusal(path)
    if not path.is_dir():
        raise ModelNotFound(f"no Argos package at {path}")
    if (path / METADATA_FILE).is_file():
        return [path]
    packages: list[Path] = []
    zipped: list[Path] = []
    for child in sorted(path.iterdir()):
        if child.name.startswith("."):
            continue  # unfinished pulls
        if child.is_dir() and (child / METADATA_FILE).is_file() and (child / MODEL_DIR).is_dir():
            packages.append(child)
        elif child.is_file() and is_zip(child):
            zipped.append(child)
    if not packages and zipped:
        raise zip_refusal(zipped[0])
    return packages


def newest_packages(package_dirs: Sequence[Path]) -> list[tuple[Path, ArgosMetadata]]:
    """One package per language pair, the highest ``package_version``, before any is loaded."""
    chosen: dict[tuple[str, str], tuple[Path, ArgosMetadata]] = {}
    for package_dir in package_dirs:
        metadata = read_metadata(package_dir)
        pair = (metadata.from_code, metadata.to_code)
        known = chosen.get(pair)
        if known is None or metadata.version > known[1].version:
            chosen[pair] = (package_dir, metadata)
    return list(chosen.values())
