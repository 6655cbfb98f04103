"""Waiting for a client's next frame while the server may start draining."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


async def next_or_drain(receive: Callable[[], Awaitable[T]], draining: asyncio.Event, timeout_s: float) -> T | None:
    """The next frame; None once ``draining`` is set. Raises TimeoutError after ``timeout_s``."""
    frame = asyncio.ensure_future(receive())
    drain = asyncio.ensure_future(draining.wait())
    try:
        done, _ = await asyncio.wait({frame, drain}, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
        if frame in done:
            return frame.result()
        if drain in done:
            return None
        raise TimeoutError
    finally:
        # Also when the caller is cancelled: never leave an orphan receive behind.
        for task in (frame, drain):
            if not task.done():
                task.cancel()
        await asyncio.gather(frame, drain, return_exceptions=True)
