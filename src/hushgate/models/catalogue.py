"""The catalogue: every model hushgate knows, read from ``catalogue.json``.

The file ships in this package; `load_catalogue` reads it and `parse_catalogue`
checks every entry (names that are plain directory names, known engines, at
most one default per engine and language, well-formed sources and checksums)
before anything else uses it. What each kind of source means is described in
`hushgate.models.sources`.
"""

from __future__ import annotations

import importlib.resources
import json
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any, Final

from hushgate.models.errors import CatalogueError
from hushgate.models.sources import (
    ARCHIVE_KINDS,
    DebianSource,
    FilesSource,
    HuggingfaceSource,
    PypiSource,
    RemoteFile,
    Source,
    UrlSource,
    WheelFile,
    WheelFileSource,
    WheelMember,
)

ENGINES: Final[tuple[str, ...]] = (
    "whisper",
    "vosk",
    "pocketsphinx",
    "piper",
    "argos",
    "apertium",
    "resemblyzer",
)
ANY_LANGUAGE: Final = "*"
"""Language of models that work whatever is spoken (speaker embeddings, indexes)."""

CATALOGUE_PACKAGE: Final = "hushgate.models"
CATALOGUE_RESOURCE: Final = "catalogue.json"
PULL_COMMAND: Final = "hushgate models pull"
LIST_ALL_COMMAND: Final = "hushgate models list --all"
_SHA256_HEX: Final = frozenset("0123456789abcdef")


@dataclass(frozen=True, slots=True)
class CatalogueEntry:
    name: str
    engine: str
    language: str
    licence: str
    description: str
    default: bool
    source: Source


def load_catalogue() -> dict[str, CatalogueEntry]:
    """The catalogue shipped with this package, by model name, in file order."""
    text = importlib.resources.files(CATALOGUE_PACKAGE).joinpath(CATALOGUE_RESOURCE).read_text(encoding="utf-8")
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CatalogueError(f"{CATALOGUE_RESOURCE} is not valid JSON: {exc}") from exc
    return parse_catalogue(raw)


def parse_catalogue(raw: object) -> dict[str, CatalogueEntry]:
    """Validate decoded catalogue JSON and turn it into entries."""
    if not isinstance(raw, dict) or not isinstance(raw.get("models"), list):
        raise CatalogueError('the catalogue must be an object with a "models" list')
    entries: dict[str, CatalogueEntry] = {}
    defaults: dict[tuple[str, str], str] = {}
    for index, item in enumerate(raw["models"]):
        if not isinstance(item, dict):
            raise CatalogueError(f"models[{index}] is not an object")
        entry = _parse_entry(item, f"models[{index}]")
        if entry.name in entries:
            raise CatalogueError(f"model {entry.name!r} is listed twice")
        if entry.default:
            key = (entry.engine, entry.language)
            if key in defaults:
                raise CatalogueError(
                    f"{entry.name!r} and {defaults[key]!r} are both the default "
                    f"for {entry.engine} in {entry.language!r}"
                )
            defaults[key] = entry.name
        entries[entry.name] = entry
    return entries


def _parse_entry(item: dict[str, Any], where: str) -> CatalogueEntry:
    name = _text(item, "name", where)
    where = f"model {name!r}"
    if not is_valid_model_name(name):
        raise CatalogueError(f"{where}: a name must be a plain directory name")
    engine = _text(item, "engine", where)
    if engine not in ENGINES:
        raise CatalogueError(f"{where}: unknown engine {engine!r}")
    default = item.get("default")
    if not isinstance(default, bool):
        raise CatalogueError(f'{where}: "default" must be true or false')
    source = item.get("source")
    if not isinstance(source, dict):
        raise CatalogueError(f'{where}: "source" must be an object')
    return CatalogueEntry(
        name=name,
        engine=engine,
        language=_text(item, "language", where),
        licence=_text(item, "licence", where),
        description=_text(item, "description", where),
        default=default,
        source=_parse_source(source, where),
    )


def _parse_source(raw: dict[str, Any], where: str) -> Source:
    kind = raw.get("kind")
    where = f"{where} source"
    if kind == "pypi":
        attr = _optional_text(raw, "attr", where)
        subpath = _optional_text(raw, "subpath", where)
        if (attr is None) == (subpath is None):
            raise CatalogueError(f'{where}: give exactly one of "attr" and "subpath"')
        if subpath is not None:
            _check_relative(subpath, where)
        return PypiSource(_text(raw, "package", where), _text(raw, "module", where), attr, subpath)
    if kind == "wheel-file":
        if "files" not in raw:
            return WheelFileSource((_wheel_file(raw, where),))
        files = raw.get("files")
        if not isinstance(files, list) or not files:
            raise CatalogueError(f'{where}: "files" must be a non-empty list')
        parsed = tuple(_wheel_file(item, f"{where} files[{i}]") for i, item in enumerate(files))
        names = [f.name for f in parsed]
        if len(set(names)) != len(names):
            raise CatalogueError(f"{where}: two files would have the same name")
        return WheelFileSource(parsed)
    if kind == "url":
        archive = raw.get("archive")
        if archive is not None and archive not in ARCHIVE_KINDS:
            raise CatalogueError(f"{where}: unknown archive kind {archive!r}")
        remote = _remote_file(raw, where)
        return UrlSource(remote.url, remote.sha256, archive, remote.size_bytes)
    if kind == "files":
        files = raw.get("files")
        if not isinstance(files, list) or not files:
            raise CatalogueError(f'{where}: "files" must be a non-empty list')
        remotes: list[RemoteFile] = []
        for index, item in enumerate(files):
            if not isinstance(item, dict):
                raise CatalogueError(f"{where} files[{index}] is not an object")
            remotes.append(_remote_file(item, f"{where} files[{index}]"))
        names = [remote.filename for remote in remotes]
        if len(set(names)) != len(names):
            raise CatalogueError(f"{where}: two files would have the same name")
        return FilesSource(tuple(remotes))
    if kind == "huggingface":
        repo = _text(raw, "repo", where)
        if repo.count("/") != 1 or not all(is_valid_model_name(p) for p in repo.split("/")):
            raise CatalogueError(f"{where}: repo must be OWNER/NAME, not {repo!r}")
        return HuggingfaceSource(repo, _optional_text(raw, "revision", where) or "main")
    if kind == "debian":
        path = _text(raw, "path", where)
        if not path.startswith("/"):
            raise CatalogueError(f'{where}: "path" must be absolute')
        return DebianSource(_text(raw, "package", where), path)
    raise CatalogueError(f"{where}: unknown kind {kind!r}")


def _wheel_member(raw: object, where: str) -> WheelMember:
    if not isinstance(raw, dict):
        raise CatalogueError(f"{where} is not an object")
    member = _text(raw, "member", where)
    _check_relative(member, where)
    return WheelMember(_text(raw, "package", where), _text(raw, "version", where), member, _sha256(raw, where))


def _wheel_file(raw: object, where: str) -> WheelFile:
    """``{"name", "sha256", "parts": [member, ...]}``, or one member standing for itself."""
    if not isinstance(raw, dict):
        raise CatalogueError(f"{where} is not an object")
    if "parts" not in raw:
        part = _wheel_member(raw, where)
        return WheelFile(PurePosixPath(part.member).name, (part,), part.sha256)
    parts = raw.get("parts")
    if not isinstance(parts, list) or not parts:
        raise CatalogueError(f'{where}: "parts" must be a non-empty list')
    name = _text(raw, "name", where)
    if not is_valid_model_name(name):
        raise CatalogueError(f"{where}: {name!r} is not a plain file name")
    return WheelFile(
        name, tuple(_wheel_member(p, f"{where} parts[{i}]") for i, p in enumerate(parts)), _sha256(raw, where)
    )


def _remote_file(raw: dict[str, Any], where: str) -> RemoteFile:
    url = _text(raw, "url", where)
    if urllib.parse.urlsplit(url).scheme != "https":
        raise CatalogueError(f"{where}: {url} is not an https URL")
    remote = RemoteFile(url, _sha256(raw, where), _optional_size(raw, where))
    if not is_valid_model_name(remote.filename):
        raise CatalogueError(f"{where}: {url} does not end in a file name")
    return remote


def _text(raw: dict[str, Any], key: str, where: str) -> str:
    value = raw.get(key)
    if not isinstance(value, str) or not value.strip():
        raise CatalogueError(f"{where}: {key!r} must be a non-empty string")
    return value


def _optional_text(raw: dict[str, Any], key: str, where: str) -> str | None:
    return None if raw.get(key) is None else _text(raw, key, where)


def _sha256(raw: dict[str, Any], where: str) -> str | None:
    value = raw.get("sha256")
    if value is None:
        return None
    if not isinstance(value, str) or len(value) != 64 or not set(value) <= _SHA256_HEX:
        raise CatalogueError(f"{where}: sha256 must be 64 lowercase hex digits or null")
    return value


def _optional_size(raw: dict[str, Any], where: str) -> int | None:
    value = raw.get("size_bytes")
    # bool is an int subclass; true is not a size
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise CatalogueError(f"{where}: size_bytes must be a positive integer or null")
    return value


def _check_relative(path: str, where: str) -> None:
    pure = PurePosixPath(path)
    if pure.is_absolute() or ".." in pure.parts or "\\" in path:
        raise CatalogueError(f"{where}: {path!r} must be a relative path inside the package")


def is_valid_model_name(name: str) -> bool:
    """Whether ``name`` can be a directory directly under the models directory."""
    return (
        bool(name)
        and name not in (".", "..")
        and not name.startswith(".")
        and "/" not in name
        and "\\" not in name
        and "\0" not in name
    )


def default_model_name(
    engine: str,
    language: str | None = None,
    *,
    catalogue: Mapping[str, CatalogueEntry] | None = None,
) -> str | None:
    """The catalogue's default model for ``engine``, for ``language`` when given.

    Without a language this is the engine's first default in catalogue order. A
    regional tag falls back to its language ("en-US" finds the "en" default), and
    models for any language ("*") match last.
    """
    entries = catalogue if catalogue is not None else load_catalogue()
    defaults = [e for e in entries.values() if e.engine == engine and e.default]
    if language is None:
        return defaults[0].name if defaults else None
    wanted = _normalise_language(language)
    primary = wanted.split("-", 1)[0]
    for candidate in (wanted, primary, ANY_LANGUAGE):
        for entry in defaults:
            if _normalise_language(entry.language) == candidate:
                return entry.name
    return None


def install_command(entry: CatalogueEntry) -> str:
    """The shell command a user runs to install ``entry``."""
    match entry.source:
        case PypiSource(package=package):
            return f"pip install {package}"
        case DebianSource(package=package):
            return f"apt-get install {package}"
        case _:
            return f"{PULL_COMMAND} {entry.name}"


def _normalise_language(language: str) -> str:
    return language.strip().replace("_", "-").lower()
