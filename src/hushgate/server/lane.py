"""A bounded queue of jobs for one of a session's helper tasks.

Overflow policy: for a client's requests, ``put`` never waits; a full lane
raises :class:`LaneFull` and the caller turns that into an ``overloaded`` error
for the request, so a client learns at once that it is asking faster than the
engines answer. Work the session makes for itself (speaking each translation)
uses ``put_when_room`` instead: its producer waits, and the wait propagates to
the producer's own bounded lane. ``close`` lets the consumer drain what is
queued and then see ``None``.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import Generic, TypeVar

J = TypeVar("J")


class LaneFull(Exception):
    pass


class Lane(Generic[J]):
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._jobs: deque[J] = deque()
        self._ready = asyncio.Event()
        self._room = asyncio.Event()
        self._closed = False

    def __len__(self) -> int:
        return len(self._jobs)

    def put(self, job: J, *, supersedes: Callable[[J], bool] | None = None) -> None:
        """Queue ``job``, first dropping queued jobs it makes pointless."""
        if self._closed:
            return
        if supersedes is not None:
            self._jobs = deque(j for j in self._jobs if not supersedes(j))
        if len(self._jobs) >= self.limit:
            raise LaneFull(f"{len(self._jobs)} jobs waiting")
        self._jobs.append(job)
        self._ready.set()

    async def put_when_room(self, job: J) -> None:
        while len(self._jobs) >= self.limit and not self._closed:
            self._room.clear()
            await self._room.wait()
        self.put(job)

    async def get(self) -> J | None:
        while not self._jobs:
            if self._closed:
                return None
            self._ready.clear()
            await self._ready.wait()
        self._room.set()
        return self._jobs.popleft()

    def close(self) -> None:
        self._closed = True
        self._ready.set()
