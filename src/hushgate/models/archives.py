"""Unpack a downloaded model archive (zip or tar.gz) safely: nothing lands outside its directory."""

from __future__ import annotations

import shutil
import stat
import tarfile
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path, PurePosixPath
from typing import IO

from hushgate.models.errors import PullError, UnsafeArchive
from hushgate.models.pull_steps import CHUNK_BYTES
from hushgate.models.sources import ArchiveKind


def unpack(archive_path: Path, archive: ArchiveKind, dest: Path) -> None:
    """Unpack into ``dest``; `UnsafeArchive` (and nothing written) for a member that would escape it."""
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
        raise UnsafeArchive(f"archive member {member!r} would be written outside the model directory")
    return dest.joinpath(*pure.parts) if pure.parts else None


@dataclass(frozen=True, slots=True)
class _Member:
    """One archive member, whatever the archive's format."""

    name: str
    is_dir: bool
    open: Callable[[], IO[bytes]]


def _unpack_zip(archive_path: Path, dest: Path) -> None:
    with zipfile.ZipFile(archive_path) as archive:
        infos = archive.infolist()
        # check every member before writing any, so a bad archive writes nothing
        for info in infos:
            _member_path(dest, info.filename)
            if stat.S_ISLNK(info.external_attr >> 16):
                raise UnsafeArchive(f"archive member {info.filename!r} is a symbolic link")
        _extract([_Member(info.filename, info.is_dir(), partial(archive.open, info)) for info in infos], dest)


def _unpack_tar(archive_path: Path, dest: Path) -> None:
    with tarfile.open(archive_path, "r:gz") as archive:
        infos = archive.getmembers()
        for info in infos:
            _member_path(dest, info.name)
            if not (info.isdir() or info.isfile()):
                raise UnsafeArchive(f"archive member {info.name!r} is a link or special file; models hold neither")
        _extract([_Member(info.name, info.isdir(), partial(_tar_data, archive, info)) for info in infos], dest)


def _tar_data(archive: tarfile.TarFile, info: tarfile.TarInfo) -> IO[bytes]:
    data = archive.extractfile(info)
    if data is None:
        raise PullError(f"archive member {info.name!r} has no data")
    return data


def _extract(members: Sequence[_Member], dest: Path) -> None:
    """Write ``members`` below ``dest``; their names and kinds were checked before."""
    for member in members:
        path = _member_path(dest, member.name)
        if path is None:
            continue
        if member.is_dir:
            path.mkdir(parents=True, exist_ok=True)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        with member.open() as src, path.open("wb") as out:
            shutil.copyfileobj(src, out, CHUNK_BYTES)


def single_top_dir(payload: Path) -> Path:
    """The one directory an unpacked archive holds, else the unpacked directory itself."""
    # macOS zip tools add __MACOSX resource forks next to the real content
    children = [child for child in payload.iterdir() if child.name != "__MACOSX"]
    if not children:
        raise PullError("the downloaded archive is empty")
    if len(children) == 1 and children[0].is_dir():
        return children[0]
    return payload
