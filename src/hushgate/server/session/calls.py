"""A connection's engine calls: moved to threads by the runtime, and waited for before anything is freed."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

from hushgate.server.runtime import EngineRunner

R = TypeVar("R")


class EngineCalls:
    """Every engine call one connection makes goes through here.

    Calls are shielded: if the connection is cancelled, a call still owns
    connection state (a recogniser stream, a synthesis generator) until its
    thread returns, since Python threads cannot be interrupted. :meth:`settle`
    waits for exactly those calls, so state is freed only after its last user.
    """

    def __init__(self) -> None:
        self._in_flight: set[asyncio.Future[Any]] = set()

    async def run(self, runner: EngineRunner, fn: Callable[..., R], *args: Any, urgent: bool = False) -> R:
        future: asyncio.Future[R] = asyncio.ensure_future((runner.run_urgent if urgent else runner.run)(fn, *args))
        self._in_flight.add(future)
        future.add_done_callback(self._in_flight.discard)
        return await asyncio.shield(future)

    def start(self, runner: EngineRunner, fn: Callable[..., R], *args: Any) -> asyncio.Future[R]:
        """A call that runs beside the caller's own work; await the future when its result is wanted."""
        return asyncio.ensure_future(self.run(runner, fn, *args))

    async def settle(self) -> None:
        """Wait until no call of this connection is running in a thread."""
        if self._in_flight:
            await asyncio.gather(*self._in_flight, return_exceptions=True)
