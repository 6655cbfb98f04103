"""The translation bench's sessions (bench/translate.py): requests one at a time, bursts, and streaming speech.

Every coroutine here returns what it measured and reports failures as text
instead of raising, so one broken session does not hide the others' figures.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from . import wire as w
from .audio import SAMPLE_RATE_HZ, Playlist, client_audio, once_through_s
from .measure import Measured
from .metrics import EngineCounters
from .resources import Usage
from .wire import Wire

FRAME_MS = 100
SOURCE, TARGET = "en", "es"


@dataclass
class SessionResult:
    latencies_ms: list[float] = field(default_factory=list)
    pings_ms: list[float] = field(default_factory=list)
    sent_first: float | None = None
    last_answer: float | None = None
    refused: int = 0
    errors: list[str] = field(default_factory=list)


async def _start(ws: Any, wire: Wire) -> None:
    await w.open_session(ws, wire, w.start(partials=False))


async def sequential_session(
    url: str,
    wire: Wire,
    texts: Sequence[str],
    count: int,
    offset: int,
    pings: int,
    barrier: asyncio.Barrier,
    compression: str | None,
    rate: float,
) -> SessionResult:
    result = SessionResult()
    gap_s = 1 / rate if rate > 0 else 0.0
    next_send = 0.0
    try:
        async with w.connect(url, compression=compression) as ws:
            await _start(ws, wire)
            await barrier.wait()
            for _ in range(pings):
                t0 = time.perf_counter()
                await ws.send(wire.encode(w.plain("ping")))
                while wire.decode(await asyncio.wait_for(ws.recv(), 30)).get("type") != "pong":
                    pass
                result.pings_ms.append(1000 * (time.perf_counter() - t0))
            await barrier.wait()
            for k in range(count):
                req_id = f"t{k}"
                text = texts[(offset + k) % len(texts)]
                # At most `rate` requests per second: the server refuses more than
                # `control_rate_per_s` (default 50) control messages per session.
                if (wait_s := next_send - time.perf_counter()) > 0:
                    await asyncio.sleep(wait_s)
                t0 = time.perf_counter()
                next_send = t0 + gap_s
                result.sent_first = result.sent_first or t0
                await ws.send(wire.encode(w.translate(req_id, text, SOURCE, TARGET)))
                while True:
                    event = wire.decode(await asyncio.wait_for(ws.recv(), 60))
                    if event.get("id") != req_id:
                        continue
                    now = time.perf_counter()
                    if event.get("type") == "translation":
                        result.latencies_ms.append(1000 * (now - t0))
                        result.last_answer = now
                    else:
                        result.errors.append(f"{event.get('code')}: {event.get('message')}")
                        result.refused += event.get("code") == "overloaded"
                    break
            await w.close_session(ws, wire)
    except Exception as exc:  # noqa: BLE001 - reported
        result.errors.append(f"session failed: {exc!r}")
    return result


async def burst_session(
    url: str,
    wire: Wire,
    texts: Sequence[str],
    count: int,
    window: int,
    offset: int,
    barrier: asyncio.Barrier,
    compression: str | None,
) -> SessionResult:
    result = SessionResult()
    try:
        async with w.connect(url, compression=compression) as ws:
            await _start(ws, wire)
            await barrier.wait()
            sent_at: dict[str, float] = {}
            room = asyncio.Semaphore(window)
            done = asyncio.Event()
            answered = 0

            async def read() -> None:
                nonlocal answered
                while answered < count:
                    event = wire.decode(await asyncio.wait_for(ws.recv(), 120))
                    req_id = event.get("id")
                    if req_id not in sent_at:
                        continue
                    now = time.perf_counter()
                    if event.get("type") == "translation":
                        result.latencies_ms.append(1000 * (now - sent_at.pop(req_id)))
                        result.last_answer = now
                    else:
                        sent_at.pop(req_id)
                        result.errors.append(f"{event.get('code')}: {event.get('message')}")
                        result.refused += event.get("code") == "overloaded"
                    answered += 1
                    room.release()
                done.set()

            reader = asyncio.create_task(read())
            for k in range(count):
                await room.acquire()
                req_id = f"b{k}"
                now = time.perf_counter()
                result.sent_first = result.sent_first or now
                sent_at[req_id] = now
                await ws.send(wire.encode(w.translate(req_id, texts[(offset + k) % len(texts)], SOURCE, TARGET)))
            await reader
            await w.close_session(ws, wire)
    except Exception as exc:  # noqa: BLE001 - reported
        result.errors.append(f"session failed: {exc!r}")
    return result


@dataclass
class Part:
    """Parts (a) and (b): request sessions measured together."""

    label: str
    sessions: int
    measured: Measured[SessionResult]

    @property
    def results(self) -> list[SessionResult]:
        return self.measured.results

    @property
    def usage(self) -> Usage:
        return self.measured.usage

    @property
    def engine(self) -> EngineCounters | None:
        return self.measured.engine

    @property
    def latencies(self) -> list[float]:
        return [v for r in self.results for v in r.latencies_ms]

    @property
    def pings(self) -> list[float]:
        return [v for r in self.results for v in r.pings_ms]

    @property
    def errors(self) -> list[str]:
        return [e for r in self.results for e in r.errors]

    @property
    def refused(self) -> int:
        return sum(r.refused for r in self.results)

    def rate(self) -> float | None:
        firsts = [r.sent_first for r in self.results if r.sent_first]
        lasts = [r.last_answer for r in self.results if r.last_answer]
        if not firsts or not lasts:
            return None
        return len(self.latencies) / (max(lasts) - min(firsts))


# (c): streaming speech with translate.targets -----------------------------------------------


@dataclass
class StreamResult:
    final_at: dict[int, float] = field(default_factory=dict)
    final_text: dict[int, str] = field(default_factory=dict)
    translation_at: dict[int, float] = field(default_factory=dict)
    audio_s: float = 0.0
    send_s: float = 0.0
    lag_warnings: int = 0
    errors: list[str] = field(default_factory=list)

    def latencies(self) -> list[float]:
        return [1000 * (self.translation_at[u] - t) for u, t in self.final_at.items() if u in self.translation_at]


async def stream_session(
    url: str, wire: Wire, playlist: Playlist, offset: int, barrier: asyncio.Barrier, compression: str | None
) -> StreamResult:
    result = StreamResult()
    audio = client_audio(playlist, offset, once_through_s(playlist)).astype("<i2").tobytes()
    result.audio_s = len(audio) / 2 / SAMPLE_RATE_HZ
    frame_bytes = SAMPLE_RATE_HZ * FRAME_MS // 1000 * 2
    try:
        async with w.connect(url, compression=compression) as ws:
            await w.open_session(ws, wire, w.start(partials=False, words=False, translate=w.translate_options(TARGET)))
            await barrier.wait()

            async def read() -> None:
                while True:
                    event = wire.decode(await asyncio.wait_for(ws.recv(), 300))
                    now = time.perf_counter()
                    kind = event.get("type")
                    utt = event.get("utterance")
                    if kind == "final" and isinstance(utt, int):
                        if event.get("text", "").strip():
                            result.final_at[utt] = now
                            result.final_text[utt] = event["text"]
                    elif kind == "translation" and isinstance(utt, int) and not event.get("provisional"):
                        result.translation_at[utt] = now
                    elif kind == "error":
                        message = str(event.get("message"))
                        if event.get("code") == "overloaded" and not event.get("fatal") and "behind" in message:
                            result.lag_warnings += 1  # speech-to-text lagging: expected at max pace
                        else:
                            result.errors.append(f"{event.get('code')}: {message}")
                        if event.get("fatal"):
                            return
                    elif kind == "ended":
                        return

            reader = asyncio.create_task(read())
            t0 = time.perf_counter()
            for i in range(0, len(audio), frame_bytes):
                chunk = audio[i : i + frame_bytes]
                await ws.send(wire.audio(chunk))
            result.send_s = time.perf_counter() - t0
            await ws.send(wire.encode(w.plain("stop")))
            await reader
    except Exception as exc:  # noqa: BLE001 - reported
        result.errors.append(f"session failed: {exc!r}")
    missing = set(result.final_at) - set(result.translation_at)
    if missing:
        result.errors.append(f"no translation for utterances {sorted(missing)}")
    return result
