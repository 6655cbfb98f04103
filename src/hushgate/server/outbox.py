"""Events waiting to be sent to one client.

Overflow policy: a newer ``partial`` of an utterance replaces the older one
still waiting (only the latest guess matters); every other event is kept. When
``limit`` events are waiting the client is not keeping up, and the session is
ended with close 1013 rather than buffering without bound or dropping a final.
"""

from __future__ import annotations

import asyncio
from collections import deque

from hushgate.server.errors import Busy
from hushgate.wire import CloseCode, Partial, ServerEvent


class Outbox:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._events: deque[ServerEvent] = deque()
        self._ready = asyncio.Event()
        self._drained = asyncio.Event()
        self._closed = False
        self.coalesced = 0

    def __len__(self) -> int:
        return len(self._events)

    def put(self, event: ServerEvent) -> None:
        if self._closed:
            return
        if isinstance(event, Partial):
            for i in range(len(self._events) - 1, -1, -1):
                queued = self._events[i]
                if isinstance(queued, Partial) and queued.utterance == event.utterance:
                    self._events[i] = event
                    self.coalesced += 1
                    return
        if len(self._events) >= self.limit:
            raise Busy(f"client is not reading: {len(self._events)} events waiting", close=CloseCode.TRY_AGAIN_LATER)
        self._events.append(event)
        self._ready.set()

    async def get(self) -> ServerEvent | None:
        """The next event, or None once the outbox is closed and empty."""
        while not self._events:
            if self._closed:
                return None
            self._ready.clear()
            await self._ready.wait()
        event = self._events.popleft()
        self._drained.set()
        return event

    async def below(self, count: int) -> None:
        """Wait until fewer than ``count`` events wait: producers of bulk
        audio pace themselves here instead of overflowing the outbox."""
        while len(self._events) >= count and not self._closed:
            self._drained.clear()
            await self._drained.wait()

    def close(self) -> None:
        """No more events will be put; ``get`` drains what is left, then returns None."""
        self._closed = True
        self._ready.set()
