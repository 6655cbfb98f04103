"""Download one file over https: streamed, size and SHA-256 checked, with an optional progress bar."""

from __future__ import annotations

import hashlib
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Final, TypeAlias

from hushgate.models.errors import PullError
from hushgate.models.pull_steps import CHUNK_BYTES, verify_sha256
from hushgate.models.sources import RemoteFile

DOWNLOAD_TIMEOUT_S: Final = 60.0
USER_AGENT: Final = "hushgate-models/1 (Python urllib)"

Fetch: TypeAlias = Callable[[str], Iterable[bytes]]
"""Streams the body of an https URL in chunks; raises OSError on failure."""


def urllib_fetch(url: str, *, timeout: float = DOWNLOAD_TIMEOUT_S) -> Iterator[bytes]:
    """Stream ``url`` (https only) in chunks of `CHUNK_BYTES`."""
    if urllib.parse.urlsplit(url).scheme != "https":
        # urlopen would also read file:// and plain http; models come over TLS only
        raise PullError(f"refusing to download {url}: not an https URL")
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        while chunk := response.read(CHUNK_BYTES):
            yield chunk


def download(remote: RemoteFile, dest: Path, fetch: Fetch, progress: bool) -> None:
    """Write ``remote`` to ``dest`` through ``fetch``; `PullError` when its size or SHA-256 is wrong."""
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
    verify_sha256(remote.sha256, digest.hexdigest(), remote.url)


class _ProgressBar:
    """The part of tqdm we use, so the rest of the module does not depend on its types."""

    def __init__(self, label: str, total: int | None) -> None:
        # imported when a bar is drawn: only an interactive pull needs tqdm
        from tqdm import tqdm  # type: ignore[import-untyped,unused-ignore]

        self._bar = tqdm(total=total, desc=label, unit="B", unit_scale=True, unit_divisor=1024)

    def update(self, count: int) -> None:
        self._bar.update(count)

    def close(self) -> None:
        self._bar.close()
