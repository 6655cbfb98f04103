"""CPU and memory of the server under test, the host and the bench itself.

Two ways of measuring CPU, for two kinds of server work:

* `Sampler` / `sampling`: every ``interval_s``, CPU % and RSS of the server
  process and its live children, host CPU and this bench's CPU (100 % is one
  core). Good for steady load; a child that lives shorter than the interval is missed.
* `CpuClock`: cumulative CPU seconds read at the start and the end of a round,
  including children the server has reaped (espeak-ng runs one short process per
  synthesis, which sampling would miss).

`wait_quiet` waits for other work on the machine to calm down before a round.
RSS is in MiB (2**20 bytes).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import numpy as np
import psutil

from .stats import mean

MIB = 2**20


@dataclass
class Usage:
    server_cpu: list[float] = field(default_factory=list)
    server_rss_mb: list[float] = field(default_factory=list)  # the server process itself
    tree_rss_mb: list[float] = field(default_factory=list)  # plus its children (may count shared pages twice)
    host_cpu: list[float] = field(default_factory=list)
    bench_cpu: list[float] = field(default_factory=list)

    def peak_rss(self) -> str:
        """``server`` or ``server (+children)`` peak RSS in MB."""
        if not self.server_rss_mb:
            return "–"
        own, tree = max(self.server_rss_mb), max(self.tree_rss_mb)
        return f"{own:.0f}" if tree - own < 1 else f"{own:.0f} ({tree:.0f})"

    def rss_start(self) -> str:
        return f"{self.server_rss_mb[0]:.0f}" if self.server_rss_mb else "–"

    def others_cpu(self) -> float | None:
        """Host CPU not used by the server or this bench (other work on the machine)."""
        if not self.host_cpu:
            return None
        server = mean(self.server_cpu) or 0.0
        return max(0.0, (mean(self.host_cpu) or 0.0) - server - (mean(self.bench_cpu) or 0.0))


class Sampler:
    """Samples the server (process tree) every ``interval_s``; 100 % is one core."""

    def __init__(self, pid: int | None, interval_s: float = 0.25) -> None:
        self._server = psutil.Process(pid) if pid is not None else None
        self._procs: dict[int, psutil.Process] = {}
        self._me = psutil.Process()
        self._interval_s = interval_s

    def _tree(self) -> list[psutil.Process]:
        if self._server is None:
            return []
        try:
            current = [self._server, *self._server.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []
        alive: dict[int, psutil.Process] = {}
        for proc in current:
            # Keep the same Process object so cpu_percent measures since the last call.
            alive[proc.pid] = self._procs.get(proc.pid, proc)
        self._procs = alive
        return list(alive.values())

    async def run(self, usage: Usage, stop: asyncio.Event) -> None:
        cores = psutil.cpu_count() or 1
        psutil.cpu_percent(None)
        self._me.cpu_percent(None)
        for proc in self._tree():
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.cpu_percent(None)
        while not stop.is_set():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), self._interval_s)
            usage.host_cpu.append(psutil.cpu_percent(None) * cores)
            usage.bench_cpu.append(self._me.cpu_percent(None))
            if self._server is None:
                continue
            cpu, rss, own = 0.0, 0, 0
            for proc in self._tree():
                with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                    cpu += proc.cpu_percent(None)
                    size = proc.memory_info().rss
                    rss += size
                    if proc is self._server:
                        own = size
            usage.server_cpu.append(cpu)
            usage.server_rss_mb.append(own / MIB)
            usage.tree_rss_mb.append(rss / MIB)


@contextlib.asynccontextmanager
async def sampling(pid: int | None, interval_s: float = 0.25) -> AsyncIterator[Usage]:
    usage = Usage()
    stop = asyncio.Event()
    task = asyncio.create_task(Sampler(pid, interval_s).run(usage, stop))
    try:
        yield usage
    finally:
        stop.set()
        await task


# Cumulative CPU ----------------------------------------------------------------------------


def host_cpu_s() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole host, summed over cores, as psutil counts them."""
    t = psutil.cpu_times()
    total = sum(t) - getattr(t, "guest", 0.0) - getattr(t, "guest_nice", 0.0)
    busy = total - t.idle - getattr(t, "iowait", 0.0)
    return busy, total


def tree_cpu_s(root: psutil.Process | None) -> float:
    """CPU seconds of a process, its live descendants and every child they have reaped."""
    if root is None:
        return 0.0
    try:
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0
    total = 0.0
    for proc in procs:
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            t = proc.cpu_times()
            total += t.user + t.system + t.children_user + t.children_system
    return total


class CpuClock:
    """Host, server-tree and this-process CPU between two readings, in % of one core."""

    def __init__(self, server_pid: int | None) -> None:
        self.server = psutil.Process(server_pid) if server_pid is not None else None
        self.me = psutil.Process()
        self.cores = psutil.cpu_count() or 1
        self._start = self._read()

    def _read(self) -> tuple[float, float, float, float, float]:
        busy, total = host_cpu_s()
        mine = self.me.cpu_times()
        return time.perf_counter(), busy, total, tree_cpu_s(self.server), mine.user + mine.system

    def lap(self) -> tuple[float, float | None, float]:
        """(host %, server %, bench %) since the previous lap; starts the next one."""
        now = self._read()
        (w0, b0, t0, s0, m0), (w1, b1, t1, s1, m1) = self._start, now
        self._start = now
        wall = max(w1 - w0, 1e-9)
        host = 100.0 * self.cores * (b1 - b0) / max(t1 - t0, 1e-9)
        server = 100.0 * (s1 - s0) / wall if self.server is not None else None
        return host, server, 100.0 * (m1 - m0) / wall


# A quiet machine ----------------------------------------------------------------------------


def wait_quiet(*, pct: float, hold_s: float, timeout_s: float, server_pid: int | None) -> tuple[bool, float, float]:
    """Block until other processes use under ``pct`` % of one core for ``hold_s`` s in a row.

    "Other" is the host minus this process and the server tree (if any). Returns
    (got quiet, seconds waited, mean others % over the last ``hold_s`` s).
    """
    clock = CpuClock(server_pid)
    begun = time.monotonic()
    window: list[float] = []
    last_report = -math.inf
    while True:
        time.sleep(1.0)
        host, server, me = clock.lap()
        others = max(0.0, host - (server or 0.0) - me)
        window.append(others)
        waited = time.monotonic() - begun
        # the last hold_s one-second readings must all be under the threshold
        recent = window[-int(hold_s) :]
        if len(recent) >= int(hold_s) and max(recent) < pct:
            print(
                f"# quiet: others {np.mean(recent):.1f} % of a core (max {max(recent):.1f} %) over the last "
                f"{hold_s:.0f} s, after waiting {waited:.0f} s",
                file=sys.stderr,
                flush=True,
            )
            return True, waited, float(np.mean(recent))
        if waited >= timeout_s:
            print(
                f"# NOT quiet after {waited:.0f} s (others {np.mean(recent):.1f} % over the last "
                f"{len(recent)} s); measuring anyway",
                file=sys.stderr,
                flush=True,
            )
            return False, waited, float(np.mean(recent))
        if waited - last_report >= 15:
            last_report = waited
            print(
                f"# waiting for a quiet machine: others {others:.0f} % now; busiest: {busiest(server_pid)}",
                file=sys.stderr,
                flush=True,
            )


def busiest(server_pid: int | None, count: int = 3) -> str:
    """The processes (not the server's, not this one) using the most CPU over half a second."""
    skip = {os.getpid()}
    if server_pid is not None:
        with contextlib.suppress(psutil.NoSuchProcess):
            skip |= {server_pid, *(p.pid for p in psutil.Process(server_pid).children(recursive=True))}
    procs = []
    for proc in psutil.process_iter(["pid", "name", "cmdline"]):
        if proc.pid in skip:
            continue
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            procs.append((proc, proc.cpu_percent(None)))
    time.sleep(0.5)
    rows = []
    for proc, _ in procs:
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            command = " ".join(" ".join(proc.info["cmdline"] or [proc.info["name"] or "?"]).split())
            rows.append((proc.cpu_percent(None), proc.pid, command))
    rows.sort(reverse=True)
    return "; ".join(f"{cpu:.0f}% {pid} {cmd[:70]}" for cpu, pid, cmd in rows[:count] if cpu >= 1) or "nothing"
