"""The TTS bench's sessions (bench/tts.py): sequential ``speak`` requests, and the synthesisers timed alone."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from . import wire as w
from .measure import measure
from .metrics import EngineCounters
from .resources import Usage
from .wire import Wire


@dataclass
class Request:
    text: str
    sent: float
    started: float | None = None
    first_audio: float | None = None
    ended: float | None = None
    duration_ms: int | None = None
    audio_bytes: int = 0
    sample_rate: int = 0
    frames: list[tuple[float, int]] = field(default_factory=list)  # (received, samples)
    error: str | None = None
    direct_first_ms: float | None = None
    direct_total_ms: float | None = None

    def stall_ms(self) -> float:
        """Playback wait of a real-time player started at the first frame."""
        if not self.frames or not self.sample_rate:
            return 0.0
        clock = self.frames[0][0]  # wall time at which the next frame's audio is due
        stalled = 0.0
        for received, samples in self.frames:
            if received > clock:
                stalled += received - clock
                clock = received
            clock += samples / self.sample_rate
        return 1000 * stalled


@dataclass
class SessionRun:
    requests: list[Request] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


async def run_session(
    url: str,
    wire: Wire,
    voice: str,
    texts: Sequence[str],
    count: int,
    offset: int,
    barrier: asyncio.Barrier,
    compression: str | None,
    direct: Callable[[str], tuple[float, float]] | None = None,
) -> SessionRun:
    run = SessionRun()
    try:
        async with w.connect(url, compression=compression) as ws:
            await w.open_session(ws, wire, w.start(partials=False))
            await barrier.wait()
            for k in range(count):
                text = texts[(offset + k) % len(texts)]
                req_id = f"s{k}"
                request = Request(text=text, sent=time.perf_counter())
                await ws.send(wire.encode(w.speak(req_id, text, voice)))
                while True:
                    frame = await asyncio.wait_for(ws.recv(), 120)
                    now = time.perf_counter()
                    event = wire.decode(frame)
                    kind = event.get("type")
                    if kind == "tts.start" and event.get("id") == req_id:
                        request.started = now
                        request.sample_rate = int(event["sample_rate"])
                    elif kind == "tts.audio" and request.started is not None:
                        if request.first_audio is None and len(event["pcm"]):
                            request.first_audio = now
                        request.audio_bytes += len(event["pcm"])
                        request.frames.append((now, len(event["pcm"]) // 2))
                    elif kind == "tts.end" and event.get("id") == req_id:
                        request.ended = now
                        request.duration_ms = int(event["duration_ms"])
                        break
                    elif kind == "error":
                        request.error = f"{event.get('code')}: {event.get('message')}"
                        run.problems.append(f"request {req_id}: {request.error}")
                        if event.get("fatal") or request.started is None:
                            break
                run.requests.append(request)
                if direct is not None:
                    request.direct_first_ms, request.direct_total_ms = direct(text)
                if request.duration_ms is not None and request.audio_bytes == 0:
                    run.problems.append(f"request {req_id}: no audio")
            await w.close_session(ws, wire)
    except Exception as exc:  # noqa: BLE001 - reported in the table
        run.problems.append(f"session failed: {exc!r}")
    return run


@dataclass
class Row:
    voice: str
    text_class: str
    sessions: int
    requests: int = 0
    first_audio_ms: list[float] = field(default_factory=list)
    total_ms: list[float] = field(default_factory=list)
    rtf: list[float] = field(default_factory=list)
    start_ms: list[float] = field(default_factory=list)
    audio_s: list[float] = field(default_factory=list)
    stall_ms: list[float] = field(default_factory=list)
    direct_first_ms: list[float] = field(default_factory=list)
    direct_total_ms: list[float] = field(default_factory=list)
    paired_gap_ms: list[float] = field(default_factory=list)
    errors: int = 0
    problems: list[str] = field(default_factory=list)
    usage: Usage = field(default_factory=Usage)
    engine: EngineCounters | None = None
    wall_s: float = 0.0


async def run_row(
    url: str,
    http: str,
    pid: int | None,
    wire: Wire,
    voice: str,
    engine_key: str | None,
    text_class: str,
    texts: Sequence[str],
    n: int,
    m: int,
    compression: str | None,
    direct: Callable[[str], tuple[float, float]] | None,
) -> Row:
    """N sessions of M requests each, at once; one row of the tables."""
    row = Row(voice=voice, text_class=text_class, sessions=n)
    barrier = asyncio.Barrier(n)
    measured = await measure(
        http,
        pid,
        engine_key,
        [
            run_session(url, wire, voice, texts, m, i, barrier, compression, direct if n == 1 else None)
            for i in range(n)
        ],
    )
    row.wall_s, row.engine, row.usage = measured.wall_s, measured.engine, measured.usage
    for run in measured.results:
        row.problems += run.problems
        row.errors += len(run.problems)
        for r in run.requests:
            row.requests += 1
            if r.ended is None or r.first_audio is None or not r.duration_ms:
                continue
            row.first_audio_ms.append(1000 * (r.first_audio - r.sent))
            row.total_ms.append(1000 * (r.ended - r.sent))
            row.rtf.append((r.ended - r.sent) / (r.duration_ms / 1000))
            row.audio_s.append(r.duration_ms / 1000)
            row.stall_ms.append(r.stall_ms())
            if r.started is not None:
                row.start_ms.append(1000 * (r.started - r.sent))
            if r.direct_first_ms is not None and r.direct_total_ms is not None:
                row.direct_first_ms.append(r.direct_first_ms)
                row.direct_total_ms.append(r.direct_total_ms)
                row.paired_gap_ms.append(1000 * (r.first_audio - r.sent) - r.direct_first_ms)
    return row


async def warm_up(url: str, wire: Wire, voice: str, texts: Sequence[str], compression: str | None) -> None:
    await run_session(url, wire, voice, texts, len(texts), 0, asyncio.Barrier(1), compression)


# The engine alone ----------------------------------------------------------------------


class DirectEngines:
    """The server's synthesisers loaded in this process, timed without the gateway."""

    def __init__(self, voices: list[dict[str, Any]]) -> None:
        from hushgate.engines.base import EngineOptions

        self._synths: dict[str, Any] = {}
        for info in voices:
            engine = info["engine"]
            if engine == "piper":
                from hushgate.engines import piper as module
            elif engine == "espeak":
                from hushgate.engines import espeak as module  # type: ignore[no-redef]
            else:
                continue
            synth = next((s for s in self._synths.values() if s.name == engine), None) or module.create(EngineOptions())
            self._synths[info["id"]] = synth
            for _ in synth.synthesize("Hi.", info["id"]):  # warm up, as the server does at load
                pass

    def timer(self, voice: str) -> Callable[[str], tuple[float, float]] | None:
        synth = self._synths.get(voice)
        if synth is None:
            return None

        def run(text: str) -> tuple[float, float]:
            t0 = time.perf_counter()
            first = None
            for _ in synth.synthesize(text, voice):
                if first is None:
                    first = time.perf_counter()
            t1 = time.perf_counter()
            return 1000 * ((first or t1) - t0), 1000 * (t1 - t0)

        return run
