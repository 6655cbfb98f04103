"""Shared pieces of the request benchmarks (`bench/tts.py`, `bench/translate.py`).

* `SpawnedServer`: ``hushgate serve`` as a subprocess on a free loopback
  port, with extra environment, waited for on ``/readyz`` and stopped with
  SIGTERM (then SIGKILL) at the end;
* `Sampler`: CPU % and RSS of the server process and its children (Apertium
  pipelines, espeak-ng processes), plus host CPU and this bench's own CPU, every
  ``interval_s`` with psutil, as an asyncio task;
* `Wire`: the two encodings of the protocol (json / msgpack) seen from a client;
* `EngineMetrics`: the per-engine counters of ``GET /metrics`` (calls, busy and
  queue-delay seconds), so a figure measured through the socket can be split
  into engine time, engine queueing and the rest;
* small statistics and markdown-table helpers.

Nothing here asserts anything about timings.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import msgpack
import numpy as np
import psutil

REPO_ROOT = Path(__file__).resolve().parent.parent
AUDIO_DIR = (REPO_ROOT / ".." / "shared" / "audio").resolve()

Event = dict[str, Any]


# Statistics and tables ------------------------------------------------------------


def pct(values: Sequence[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if len(values) else None


def mean(values: Sequence[float]) -> float | None:
    return float(np.mean(values)) if len(values) else None


def fmt(value: float | None, digits: int = 0) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


# The wire -----------------------------------------------------------------------


class Wire:
    """Encode client messages and decode server frames for one encoding.

    ``decode`` turns a JSON session's bare binary frame into
    ``{"type": "tts.audio", "pcm": bytes}`` so that both encodings look alike.
    """

    def __init__(self, fmt_name: str) -> None:
        if fmt_name not in ("json", "msgpack"):
            raise ValueError(fmt_name)
        self.format = fmt_name

    def encode(self, message: Event) -> str | bytes:
        if self.format == "json":
            return json.dumps(message, ensure_ascii=False)
        return msgpack.packb(message, use_bin_type=True)

    def decode(self, frame: str | bytes) -> Event:
        if self.format == "json":
            if isinstance(frame, bytes):
                return {"type": "tts.audio", "pcm": frame}
            return json.loads(frame)
        if isinstance(frame, str):
            raise ValueError("text frame on a msgpack session")
        return msgpack.unpackb(frame, raw=False)


def stream_url(base: str, fmt_name: str) -> str:
    sep = "&" if "?" in base else "?"
    return base if "format=" in base else f"{base}{sep}format={fmt_name}"


def http_base(ws_url: str) -> str:
    parts = urlsplit(ws_url)
    scheme = "https" if parts.scheme == "wss" else "http"
    return f"{scheme}://{parts.netloc}"


def server_alive(http: str) -> bool:
    """True while ``GET /readyz`` answers 200 (the server is up and not draining)."""
    try:
        with urllib.request.urlopen(f"{http}/readyz", timeout=5) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def get_json(url: str, timeout_s: float = 5.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout_s) as response:
        return json.loads(response.read())


# The server -----------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class SpawnedServer:
    """``hushgate serve`` on a free loopback port, for the length of a bench."""

    def __init__(self, extra_args: Sequence[str], env: dict[str, str], log_path: Path | None = None) -> None:
        self.port = free_port()
        exe = Path(sys.executable).with_name("hushgate")
        base = [str(exe)] if exe.exists() else [sys.executable, "-m", "hushgate.server.cli"]
        self.command = [*base, "serve", "--host", "127.0.0.1", "--port", str(self.port),
                        "--log-level", "warning", *extra_args]
        self.env_overrides = dict(env)
        if log_path is None:
            fd, name = tempfile.mkstemp(prefix="bench-server-", suffix=".log")
            os.close(fd)
            log_path = Path(name)
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/v1/stream"

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def describe(self) -> str:
        env = " ".join(f"{k}={shlex.quote(v)}" for k, v in self.env_overrides.items())
        return f"{env} {shlex.join(self.command)}".strip()

    def start(self, timeout_s: float = 180.0) -> None:
        env = {**os.environ, **self.env_overrides}
        log = self.log_path.open("wb")
        self.process = subprocess.Popen(self.command, stdout=log, stderr=subprocess.STDOUT, env=env,
                                        cwd=REPO_ROOT)
        log.close()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.process = None
                raise SystemExit(f"server exited with {self.process.returncode}; log: {self.log_path}\n"
                                 + self.log_path.read_text(errors="replace")[-3000:])
            try:
                with urllib.request.urlopen(f"{self.http}/readyz", timeout=2) as response:
                    if response.status == 200:
                        return
            except urllib.error.HTTPError as exc:
                body = exc.read().decode(errors="replace")
                with contextlib.suppress(ValueError):
                    reason = json.loads(body).get("error")
                    if reason not in (None, "loading"):
                        self.stop()
                        raise SystemExit(f"server not ready: {reason}") from exc
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                pass
            time.sleep(0.2)
        self.stop()
        raise SystemExit(f"server not ready after {timeout_s:.0f} s; log: {self.log_path}")

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=40)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# Resource sampling ------------------------------------------------------------------


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
                with contextlib.suppress(psutil.NoSuchProcess):
                    cpu += proc.cpu_percent(None)
                    size = proc.memory_info().rss
                    rss += size
                    if proc is self._server:
                        own = size
            usage.server_cpu.append(cpu)
            usage.server_rss_mb.append(own / 1e6)
            usage.tree_rss_mb.append(rss / 1e6)


@contextlib.asynccontextmanager
async def sampling(pid: int | None):  # type: ignore[no-untyped-def]
    usage = Usage()
    stop = asyncio.Event()
    task = asyncio.create_task(Sampler(pid).run(usage, stop))
    try:
        yield usage
    finally:
        stop.set()
        await task


# Engine counters from /metrics ---------------------------------------------------------

_METRIC_LINE = re.compile(r'^(hushgate_engine_\w+?)(?:_total)?\{engine="([^"]+)"\}\s+(\S+)$')


@dataclass(frozen=True)
class EngineCounters:
    calls: float = 0.0
    busy_s: float = 0.0
    queue_delay_s: float = 0.0

    def __sub__(self, other: EngineCounters) -> EngineCounters:
        return EngineCounters(self.calls - other.calls, self.busy_s - other.busy_s,
                              self.queue_delay_s - other.queue_delay_s)


def engine_counters(http: str, engine: str) -> EngineCounters | None:
    """Counters of one engine runner (``tts:piper``, ``translate:apertium``), None if unreadable."""
    try:
        with urllib.request.urlopen(f"{http}/metrics", timeout=5) as response:
            text = response.read().decode()
    except (urllib.error.URLError, OSError):
        return None
    values: dict[str, float] = {}
    for line in text.splitlines():
        match = _METRIC_LINE.match(line)
        if match and match.group(2) == engine:
            values[match.group(1)] = float(match.group(3))
    if not values:
        return None
    return EngineCounters(
        calls=values.get("hushgate_engine_calls", 0.0),
        busy_s=values.get("hushgate_engine_busy_seconds", 0.0),
        queue_delay_s=values.get("hushgate_engine_queue_delay_seconds", 0.0),
    )


# Sessions ----------------------------------------------------------------------------------


async def open_session(ws: Any, wire: Wire, start: Event) -> Event:
    """Send ``start``, return ``ready``; raise on a refusal. Non-fatal notices after it are left unread."""
    await ws.send(wire.encode(start))
    event = wire.decode(await ws.recv())
    if event.get("type") != "ready":
        raise RuntimeError(f"session refused: {event}")
    return event


async def close_session(ws: Any, wire: Wire, timeout_s: float = 30.0) -> None:
    """``stop``, then read until ``ended`` / close."""
    with contextlib.suppress(Exception):
        await ws.send(wire.encode({"type": "stop"}))
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            event = wire.decode(await asyncio.wait_for(ws.recv(), deadline - time.monotonic()))
            if event.get("type") == "ended":
                break
