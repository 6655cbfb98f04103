"""Helpers shared by the model store tests: a private home, a models directory, fake downloads.

The two fixtures are imported by the test modules under their function names
and requested by their fixture names (``private_home``, ``models_dir``).
"""

from __future__ import annotations

import hashlib
import io
import tarfile
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from hushgate.models.catalogue import CatalogueEntry
from hushgate.models.download import Fetch
from hushgate.models.sources import Source


@pytest.fixture(name="private_home")
def private_home_fixture(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Anything that falls back to the default models directory stays in tmp_path."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))


@pytest.fixture(name="models_dir")
def models_dir_fixture(tmp_path: Path) -> Path:
    return tmp_path / "models"


def no_network(url: str) -> Iterator[bytes]:
    raise AssertionError(f"test tried to download {url}")


def no_commands(cmd: Sequence[str]) -> None:
    raise AssertionError(f"test tried to run {cmd}")


def zip_bytes(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def tar_gz_bytes(members: dict[str, bytes], *, symlink: str | None = None) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
        if symlink is not None:
            link = tarfile.TarInfo(symlink)
            link.type = tarfile.SYMTYPE
            link.linkname = "/etc/passwd"
            archive.addfile(link)
    return buffer.getvalue()


def serve(payloads: dict[str, bytes], requested: list[str] | None = None) -> Fetch:
    def fetch(url: str) -> Iterator[bytes]:
        if requested is not None:
            requested.append(url)
        data = payloads[url]
        # several chunks, as a real response arrives
        for start in range(0, len(data), 7):
            yield data[start : start + 7]

    return fetch


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def fake_entry(name: str, source: Source, *, engine: str = "vosk", language: str = "xx") -> CatalogueEntry:
    return CatalogueEntry(name, engine, language, "MIT", "test model", False, source)
