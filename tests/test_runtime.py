"""The async/sync boundary: limits, overflow, and cancellation."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from hushgate.server.runtime import EngineRunner, Overloaded


async def test_concurrency_limit_holds() -> None:
    runner = EngineRunner("t", concurrency=2, max_waiting=100)
    running, peak, lock = 0, 0, threading.Lock()

    def work() -> None:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        time.sleep(0.02)
        with lock:
            running -= 1

    await asyncio.gather(*(runner.run(work) for _ in range(10)))
    assert peak == 2 and runner.stats.calls == 10
    runner.shutdown()


async def test_a_full_wait_queue_rejects_at_once() -> None:
    runner = EngineRunner("t", concurrency=1, max_waiting=2)
    gate = threading.Event()
    first = asyncio.ensure_future(runner.run(gate.wait))
    waiting = [asyncio.ensure_future(runner.run(lambda: None)) for _ in range(2)]
    await asyncio.sleep(0.05)
    with pytest.raises(Overloaded):
        await runner.run(lambda: None)
    assert runner.stats.rejected == 1
    gate.set()
    await asyncio.gather(first, *waiting)
    runner.shutdown()


async def test_event_loop_is_free_while_engines_work() -> None:
    runner = EngineRunner("t", concurrency=2, max_waiting=10)
    job = asyncio.gather(*(runner.run(time.sleep, 0.2) for _ in range(2)))
    started = time.perf_counter()
    await asyncio.sleep(0.01)
    assert time.perf_counter() - started < 0.1
    await job
    runner.shutdown()


async def test_a_cancelled_call_keeps_its_slot_until_the_thread_returns() -> None:
    runner = EngineRunner("t", concurrency=1, max_waiting=10)
    gate = threading.Event()
    call = asyncio.ensure_future(runner.run(gate.wait))
    await asyncio.sleep(0.05)
    call.cancel()
    await asyncio.sleep(0.05)
    assert runner.busy  # the thread still runs: the limit must still count it
    gate.set()
    await asyncio.sleep(0.05)
    assert not runner.busy
    runner.shutdown()


async def test_exceptions_reach_the_caller() -> None:
    runner = EngineRunner("t", concurrency=1, max_waiting=10)

    def boom() -> None:
        raise ValueError("engine broke")

    with pytest.raises(ValueError, match="engine broke"):
        await runner.run(boom)
    assert not runner.busy
    runner.shutdown()


async def test_urgent_calls_go_ahead_of_ordinary_waiters() -> None:
    runner = EngineRunner("t", concurrency=1, max_waiting=100)
    gate = threading.Event()
    order: list[str] = []
    first = asyncio.ensure_future(runner.run(gate.wait))
    await asyncio.sleep(0.02)
    ordinary = [asyncio.ensure_future(runner.run(order.append, f"partial{i}")) for i in range(3)]
    await asyncio.sleep(0.02)
    urgent = asyncio.ensure_future(runner.run_urgent(order.append, "final"))
    await asyncio.sleep(0.02)
    gate.set()
    await asyncio.gather(first, urgent, *ordinary)
    assert order == ["final", "partial0", "partial1", "partial2"]
    runner.shutdown()


async def test_reserved_slots_serve_urgent_calls_only() -> None:
    runner = EngineRunner("t", concurrency=1, max_waiting=100, urgent_reserve=1)
    gate = threading.Event()
    order: list[str] = []
    partial = asyncio.ensure_future(runner.run(gate.wait))
    await asyncio.sleep(0.02)
    # The shared slot is held: an ordinary call waits, an urgent one runs in the reserve.
    waiting = asyncio.ensure_future(runner.run(order.append, "partial"))
    await runner.run_urgent(order.append, "final")
    await asyncio.sleep(0.02)
    assert order == ["final"] and runner.waiting == 1 and runner.busy
    # With the reserve held too, the next urgent call waits ahead of the ordinary one.
    second_gate = threading.Event()
    held = asyncio.ensure_future(runner.run_urgent(second_gate.wait))
    await asyncio.sleep(0.02)
    queued = asyncio.ensure_future(runner.run_urgent(order.append, "final2"))
    await asyncio.sleep(0.02)
    assert order == ["final"] and runner.waiting == 2
    gate.set()  # the shared slot goes to the urgent waiter first
    await asyncio.gather(partial, queued)
    second_gate.set()  # the reserved slot is not the ordinary call's: it gets the shared one back
    await asyncio.gather(held, waiting)
    assert order == ["final", "final2", "partial"]
    assert await runner.run(lambda: 42) == 42 and not runner.busy
    runner.shutdown()


async def test_a_waiter_that_gives_up_leaves_no_hole() -> None:
    runner = EngineRunner("t", concurrency=1, max_waiting=100)
    gate = threading.Event()
    first = asyncio.ensure_future(runner.run(gate.wait))
    await asyncio.sleep(0.02)
    quitter = asyncio.ensure_future(runner.run(lambda: None))
    await asyncio.sleep(0.02)
    quitter.cancel()
    await asyncio.sleep(0.02)
    assert runner.waiting == 0
    gate.set()
    await first
    assert await runner.run(lambda: 42) == 42 and not runner.busy
    runner.shutdown()
