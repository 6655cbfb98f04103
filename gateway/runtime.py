"""The one place where engine work leaves the event loop.

Each engine gets its own thread pool with a fixed number of workers and a
bounded wait queue in front of it:

* at most ``concurrency`` calls of one engine run at once (CPU threads inside a
  call are set by the engine, one by default);
* at most ``max_waiting`` calls wait; one more is refused with
  :class:`Overloaded` at once (overflow policy: reject, never queue unbounded);
* waiters are served first come, first served, so a session sending a file
  faster than real time cannot starve live ones of more than its turn.

A call whose caller is cancelled still runs to the end in its thread (Python
threads cannot be interrupted); its slot is freed only then, so the limit holds.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
R = TypeVar("R")


class Overloaded(Exception):
    """An engine's wait queue is full."""


@dataclass(slots=True)
class EngineStats:
    calls: int = 0
    busy_s: float = 0.0
    queue_delay_s: float = 0.0
    rejected: int = 0
    latencies_s: list[float] = field(default_factory=list)

    def record(self, run_s: float, delay_s: float) -> None:
        self.calls += 1
        self.busy_s += run_s
        self.queue_delay_s += delay_s
        # Keep a bounded window for percentiles.
        self.latencies_s.append(run_s)
        if len(self.latencies_s) > 2048:
            del self.latencies_s[:1024]


class EngineRunner:
    def __init__(self, name: str, *, concurrency: int, max_waiting: int) -> None:
        self.name = name
        self.concurrency = concurrency
        self.max_waiting = max_waiting
        self.stats = EngineStats()
        self._executor = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix=f"engine-{name}")
        self._slots: asyncio.Semaphore | None = None
        self._waiting = 0
        self._running = 0
        self._lock = threading.Lock()

    @property
    def waiting(self) -> int:
        return self._waiting

    @property
    def busy(self) -> bool:
        """True when a new call would have to wait."""
        return self._waiting > 0 or self._running >= self.concurrency

    async def run(self, fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.concurrency)
        if self._waiting >= self.max_waiting:
            self.stats.rejected += 1
            raise Overloaded(f"engine {self.name} has {self._waiting} calls waiting")
        loop = asyncio.get_running_loop()
        queued_at = time.perf_counter()
        self._waiting += 1
        try:
            await self._slots.acquire()
        finally:
            self._waiting -= 1
        slots = self._slots
        started_at = time.perf_counter()
        self._running += 1

        def call() -> R:
            return fn(*args, **kwargs)

        def done(_: Future[R]) -> None:
            ran_s = time.perf_counter() - started_at
            self.stats.record(ran_s, started_at - queued_at)

            def release() -> None:
                self._running -= 1
                slots.release()

            try:
                loop.call_soon_threadsafe(release)
            except RuntimeError:
                pass  # the loop is gone: the server is shutting down

        try:
            future = self._executor.submit(call)
        except BaseException:
            self._running -= 1
            slots.release()
            raise
        future.add_done_callback(done)
        return await asyncio.wrap_future(future)

    def shutdown(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)


class Runtime:
    """All engine runners of one server."""

    def __init__(self, *, max_waiting: int) -> None:
        self._runners: dict[str, EngineRunner] = {}
        self._max_waiting = max_waiting

    def add(self, key: str, concurrency: int) -> EngineRunner:
        runner = self._runners.get(key)
        if runner is None:
            runner = EngineRunner(key, concurrency=concurrency, max_waiting=self._max_waiting)
            self._runners[key] = runner
        return runner

    def runner(self, key: str) -> EngineRunner:
        return self._runners[key]

    @property
    def runners(self) -> dict[str, EngineRunner]:
        return dict(self._runners)

    def shutdown(self) -> None:
        for runner in self._runners.values():
            runner.shutdown()
