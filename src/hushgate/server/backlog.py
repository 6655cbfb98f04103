"""Audio and utterance boundaries waiting for a session's speech-to-text.

Overflow policy: when ``limit_samples`` of audio (or ``max_items`` entries) are
waiting, ``put`` blocks. The session's reader is the only producer, so it stops
reading from the socket and TCP pushes back on the client: a file sent faster
than real time is accepted, just no faster than the engine can take it.
Boundaries (start, end, stop) never wait: they carry no audio and at most one
follows each stretch of audio.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass
from typing import TypeAlias

from hushgate.server.segmenter import Segment, UtteranceAudio


@dataclass(frozen=True, slots=True)
class EndOfStream:
    """The client stopped; everything before this must still be processed."""


Item: TypeAlias = Segment | EndOfStream


class Backlog:
    """One producer (the session's reader), one consumer (its worker), one loop."""

    def __init__(self, limit_samples: int, max_items: int = 4096) -> None:
        self.limit_samples = limit_samples
        self.max_items = max_items
        self._items: deque[tuple[Item, float]] = deque()
        self.last_arrival = 0.0  # when the item most recently taken was put
        self._samples = 0
        self._space = asyncio.Event()
        self._space.set()
        self._data = asyncio.Event()

    @property
    def samples(self) -> int:
        return self._samples

    def __len__(self) -> int:
        return len(self._items)

    async def put(self, item: Item) -> None:
        if isinstance(item, UtteranceAudio):
            while self._samples >= self.limit_samples or len(self._items) >= self.max_items:
                self._space.clear()
                await self._space.wait()
            self._samples += len(item.pcm)
        self._items.append((item, time.monotonic()))
        self._data.set()

    async def get(self) -> Item:
        while not self._items:
            self._data.clear()
            await self._data.wait()
        return self._take()

    def get_nowait(self) -> Item | None:
        return self._take() if self._items else None

    def peek(self) -> Item | None:
        return self._items[0][0] if self._items else None

    def _take(self) -> Item:
        item, self.last_arrival = self._items.popleft()
        if isinstance(item, UtteranceAudio):
            self._samples -= len(item.pcm)
        self._space.set()
        return item
