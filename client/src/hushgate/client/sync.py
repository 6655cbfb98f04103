"""The one-shot calls of :class:`hushgate.client.Client` for code without an event loop.

::

    from hushgate.client import Client
    from hushgate.client.sync import SyncClient

    gateway = SyncClient(Client("ws://127.0.0.1:8000", api_key="sgw_..."))
    for final in gateway.transcribe(pcm_chunks, 16_000):
        print(final.text)
    pcm, rate = gateway.speak_pcm("Your table is ready.")
    print(gateway.translate("good morning", "es"))

Each call runs its own event loop (``asyncio.run``), so it must not be made
from inside a running loop: use the async :class:`Client` there.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hushgate.client.api import Client
from hushgate.client.session import PcmChunk
from hushgate.client.streaming import Resumed
from hushgate.wire import Event, Final

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt


class SyncClient:
    """Blocking wrappers around a :class:`Client`'s one-shot calls; the arguments are the same."""

    def __init__(self, client: Client) -> None:
        self.client = client

    def events(self, pcm: Iterable[PcmChunk], rate: int = 16_000, **start: Any) -> list[Event | Resumed]:
        """Send every chunk of ``pcm`` and return every event, ``Ready`` first and ``Ended`` last
        (with a ``Resumed`` where the stream moved to another server; see :meth:`Client.stream`)."""

        async def collect() -> list[Event | Resumed]:
            return [event async for event in self.client.stream(pcm, rate, **start)]

        return asyncio.run(collect())

    def transcribe(self, pcm: Iterable[PcmChunk], rate: int = 16_000, **start: Any) -> list[Final]:
        """The finals of the audio in ``pcm`` (s16le bytes or numpy arrays), in order."""
        return [event for event in self.events(pcm, rate, **start) if isinstance(event, Final)]

    def speak_pcm(
        self, text: str, voice: str | None = None, sample_rate: int | None = None, *, language: str | None = None
    ) -> tuple[bytes, int]:
        """(s16le mono PCM, its sample rate) for ``text``."""
        return asyncio.run(self.client.speak_pcm(text, voice, sample_rate, language=language))

    def speak(
        self, text: str, voice: str | None = None, sample_rate: int | None = None, *, language: str | None = None
    ) -> tuple[npt.NDArray[np.int16], int]:
        """(int16 samples, their sample rate) for ``text``; needs numpy."""
        return asyncio.run(self.client.speak(text, voice, sample_rate, language=language))

    def translate(self, text: str, target: str, source: str | None = None) -> str:
        return asyncio.run(self.client.translate(text, target, source=source))

    def transcribe_file(self, path: str | Path, **start: Any) -> list[Final]:
        """The finals of a WAV file (any PCM WAV; see :class:`hushgate.client.wavfile.WavSource`)."""
        from hushgate.client.wavfile import WavSource

        source = WavSource(Path(path))
        return self.transcribe(source.chunks(500), source.rate_hz, **start)
