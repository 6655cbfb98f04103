"""One measured round: concurrent sessions, with the server sampled and its engine counters read around them."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from .metrics import EngineCounters, engine_counters
from .resources import Usage, sampling

T = TypeVar("T")


@dataclass
class Measured(Generic[T]):
    """What a batch of concurrent sessions returned, with the server's resources and engine counters meanwhile."""

    results: list[T]
    usage: Usage
    engine: EngineCounters | None
    wall_s: float


async def measure(
    http: str, pid: int | None, engine_key: str | None, coros: Sequence[Coroutine[Any, Any, T]]
) -> Measured[T]:
    """Run ``coros`` at once while sampling the server (``pid``) and counting engine ``engine_key``'s calls."""
    before = engine_counters(http, engine_key) if engine_key else None
    t0 = time.perf_counter()
    async with sampling(pid) as usage:
        results = await asyncio.gather(*coros)
    wall = time.perf_counter() - t0
    after = engine_counters(http, engine_key) if engine_key else None
    engine = after - before if before is not None and after is not None else None
    return Measured(list(results), usage, engine, wall)
