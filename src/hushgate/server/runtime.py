"""The one place where engine work leaves the event loop.

Each engine gets its own thread pool with a fixed number of workers and a
bounded wait queue in front of it:

* at most ``concurrency`` calls of one engine run at once (CPU threads inside a
  call are set by the engine, one by default);
* at most ``max_waiting`` calls wait; one more is refused with
  :class:`Overloaded` at once (overflow policy: reject, never queue unbounded);
* waiters are served first come, first served, so a session sending a file
  faster than real time cannot starve live ones of more than its turn;
  the one exception is ``urgent`` calls (a final a person is waiting for),
  which go ahead of every ordinary waiter (a partial can always come later);
* an engine that runs urgent work apart (Whisper decodes partials on a copy of
  the model whose threads yield the CPU) gets ``urgent_reserve`` more slots
  that only urgent calls may take, so a final never waits for a slot held by
  partials.

A call whose caller is cancelled still runs to the end in its thread (Python
threads cannot be interrupted); its slot is freed only then, so the limit holds.
At shutdown, calls still running after a bounded wait are abandoned and named,
so a stuck engine cannot hold the process forever (the CLI then exits without
joining their threads).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, ParamSpec, TypeVar

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


Slot = bool
"""Which slots a running call holds: True for the urgent reserve, False for the shared ones."""


class EngineRunner:
    def __init__(self, name: str, *, concurrency: int, max_waiting: int, urgent_reserve: int = 0) -> None:
        self.name = name
        self.concurrency = concurrency
        self.max_waiting = max_waiting
        self.urgent_reserve = urgent_reserve
        self.stats = EngineStats()
        self._executor = ThreadPoolExecutor(
            max_workers=concurrency + urgent_reserve, thread_name_prefix=f"engine-{name}"
        )
        self._free = concurrency
        self._reserve_free = urgent_reserve
        # (0 for urgent / 1 for ordinary, arrival order, future granted a slot of that kind)
        self._waiters: list[tuple[int, int, asyncio.Future[Slot]]] = []
        self._order = itertools.count()
        self._running = 0
        self._lock = threading.Lock()
        # Calls inside a worker thread right now (counted there, not on the loop, so
        # shutdown can wait for them after the loop stopped listening).
        self._in_threads = 0
        self._idle = threading.Condition()

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    @property
    def busy(self) -> bool:
        """True when a new ordinary call would have to wait."""
        return bool(self._waiters) or self._free == 0

    async def _acquire(self, urgent: bool) -> Slot:
        if urgent and self._reserve_free > 0:
            self._reserve_free -= 1
            return True
        if self._free > 0 and not self._waiters:
            self._free -= 1
            return False
        granted: asyncio.Future[Slot] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiters, (0 if urgent else 1, next(self._order), granted))
        try:
            return await granted
        except asyncio.CancelledError:
            if granted.done() and not granted.cancelled():
                self._release(granted.result())  # the slot arrived just as the caller gave up: pass it on
            else:
                self._waiters = [w for w in self._waiters if w[2] is not granted]
                heapq.heapify(self._waiters)
            raise

    def _release(self, reserved: Slot) -> None:
        while self._waiters:
            priority, _, granted = self._waiters[0]
            if reserved and priority != 0:
                break  # ordinary calls never take a reserved slot
            heapq.heappop(self._waiters)
            if not granted.done():
                granted.set_result(reserved)  # the slot goes straight to the next waiter
                return
        if reserved:
            self._reserve_free += 1
        else:
            self._free += 1

    async def run(self, fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
        return await self._run(False, fn, *args, **kwargs)

    async def run_urgent(self, fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
        return await self._run(True, fn, *args, **kwargs)

    async def _run(self, urgent: bool, fn: Callable[..., R], *args: Any, **kwargs: Any) -> R:
        if len(self._waiters) >= self.max_waiting:
            self.stats.rejected += 1
            raise Overloaded(f"engine {self.name} has {len(self._waiters)} calls waiting")
        loop = asyncio.get_running_loop()
        queued_at = time.perf_counter()
        reserved = await self._acquire(urgent)
        started_at = time.perf_counter()
        self._running += 1

        def call() -> R:
            with self._idle:
                self._in_threads += 1
            try:
                return fn(*args, **kwargs)
            finally:
                with self._idle:
                    self._in_threads -= 1
                    self._idle.notify_all()

        def done(_: Future[R]) -> None:
            ran_s = time.perf_counter() - started_at
            self.stats.record(ran_s, started_at - queued_at)

            def release() -> None:
                self._running -= 1
                self._release(reserved)

            try:
                loop.call_soon_threadsafe(release)
            except RuntimeError:
                pass  # the loop is gone: the server is shutting down

        try:
            future = self._executor.submit(call)
        except BaseException:
            self._running -= 1
            self._release(reserved)
            raise
        future.add_done_callback(done)
        return await asyncio.wrap_future(future)

    def shutdown(self, timeout_s: float | None = None) -> bool:
        """Stop taking calls; True once none runs, False if one still did after ``timeout_s``."""
        self._executor.shutdown(wait=False, cancel_futures=True)
        with self._idle:
            return self._idle.wait_for(lambda: self._in_threads == 0, timeout_s)


class Runtime:
    """All engine runners of one server."""

    def __init__(self, *, max_waiting: int) -> None:
        self._runners: dict[str, EngineRunner] = {}
        self._max_waiting = max_waiting

    def add(self, key: str, concurrency: int, urgent_reserve: int = 0) -> EngineRunner:
        runner = self._runners.get(key)
        if runner is None:
            runner = EngineRunner(
                key, concurrency=concurrency, max_waiting=self._max_waiting, urgent_reserve=urgent_reserve
            )
            self._runners[key] = runner
        return runner

    def runner(self, key: str) -> EngineRunner:
        return self._runners[key]

    @property
    def runners(self) -> dict[str, EngineRunner]:
        return dict(self._runners)

    def shutdown(self, timeout_s: float | None = None) -> list[str]:
        """Stop every runner, waiting at most ``timeout_s`` in all; returns the runners whose calls still run."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        stuck = []
        for name, runner in self._runners.items():
            left_s = None if deadline is None else max(deadline - time.monotonic(), 0.0)
            if not runner.shutdown(left_s):
                stuck.append(name)
        return stuck
