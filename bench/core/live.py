"""Clients that stream speech at real-time pace, as a live microphone would (bench/stream.py, bench/load.py).

Chunk *k* (audio ``[k*chunk, (k+1)*chunk)``) is sent when the wall clock reaches
``t0 + (k+1)*chunk``; sleeps target the absolute schedule, so pacing does not
drift. A reader task stamps every event with its receive time, and
`ClientRun.sent_wall` maps the session's audio clock back to the wall time the
audio left the client, which is what every latency is measured against.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from . import wire as w
from .audio import SAMPLE_RATE_HZ, Pcm, Playlist, client_audio
from .wire import Event, Wire

READY_TIMEOUT_S = 30.0


@dataclass
class ClientRun:
    index: int
    offset: int
    chunk_ms: int
    audio_ms: int = 0
    sent_at: list[float] = field(default_factory=list)
    """perf_counter() just after chunk k was handed to the socket."""
    send_lag_s: list[float] = field(default_factory=list)
    events: list[tuple[float, Event]] = field(default_factory=list)
    pings_sent_at: list[float] = field(default_factory=list)
    pongs_at: list[float] = field(default_factory=list)
    stop_sent_at: float | None = None
    ended: bool = False
    close_code: int | None = None
    failure: str | None = None

    def sent_wall(self, t_ms: int) -> float | None:
        """Wall time at which audio up to ``t_ms`` (session clock) had been sent."""
        if not self.sent_at:
            return None
        k = max(0, math.ceil(t_ms / self.chunk_ms) - 1)
        return self.sent_at[min(k, len(self.sent_at) - 1)]

    @property
    def failed(self) -> bool:
        return self.failure is not None or not self.ended or self.close_code not in (1000, None)


async def run_client(
    *,
    url: str,
    wire: Wire,
    index: int,
    offset: int,
    pcm: Pcm,
    chunk_ms: int,
    silence_ms: int,
    ended_timeout_s: float,
    ping_every_s: float = 0.0,
    options: Mapping[str, Any] | None = None,
) -> ClientRun:
    """One session: ``start`` (with ``options`` merged in), the paced audio, ``stop``, read until closed."""
    run = ClientRun(index=index, offset=offset, chunk_ms=chunk_ms)
    ready = asyncio.Event()
    chunk = SAMPLE_RATE_HZ * chunk_ms // 1000
    start = w.start(vad=w.vad_options(silence_ms=silence_ms), **(options or {}))
    try:
        async with w.connect(url) as ws:

            async def read() -> None:
                try:
                    async for frame in ws:
                        received = time.perf_counter()
                        event = wire.decode(frame)
                        run.events.append((received, event))
                        kind = event.get("type")
                        if kind == "ready":
                            ready.set()
                        elif kind == "pong":
                            run.pongs_at.append(received)
                        elif kind == "ended":
                            run.ended = True
                except ConnectionClosed:
                    pass
                finally:
                    ready.set()  # never leave the sender waiting on a dead socket

            reader = asyncio.create_task(read())
            try:
                await _stream(ws, wire, run, reader, ready, start, pcm, chunk, ping_every_s)
                try:
                    await asyncio.wait_for(asyncio.shield(reader), ended_timeout_s)
                except TimeoutError:
                    run.failure = run.failure or f"no close within {ended_timeout_s:.0f} s of stop"
            finally:
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reader
            run.close_code = ws.close_code
    except (OSError, InvalidHandshake, ConnectionClosed, TimeoutError) as exc:
        run.failure = run.failure or f"{type(exc).__name__}: {exc}"
    return run


async def _stream(
    ws: ClientConnection,
    wire: Wire,
    run: ClientRun,
    reader: asyncio.Task[None],
    ready: asyncio.Event,
    start: w.Message,
    pcm: Pcm,
    chunk: int,
    ping_every_s: float,
) -> None:
    """Send `start`, the audio on the wall-clock schedule (with a `ping` now and then), then `stop`."""
    ping_every = round(ping_every_s * 1000 / run.chunk_ms) if ping_every_s > 0 else 0
    await ws.send(wire.encode(start))
    try:
        await asyncio.wait_for(ready.wait(), READY_TIMEOUT_S)
    except TimeoutError:
        run.failure = "no `ready` in time"
        return
    if reader.done():
        run.failure = "closed before `ready`"
        return
    t0 = time.perf_counter()
    for k, i in enumerate(range(0, len(pcm), chunk)):
        due = t0 + (k + 1) * run.chunk_ms / 1000
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        if reader.done():
            run.failure = "connection closed while streaming"
            return
        piece = pcm[i : i + chunk]
        await ws.send(wire.audio(piece.tobytes()))
        now = time.perf_counter()
        run.sent_at.append(now)
        run.send_lag_s.append(now - due)
        run.audio_ms = (i + len(piece)) * 1000 // SAMPLE_RATE_HZ
        if ping_every and k % ping_every == ping_every // 2:
            run.pings_sent_at.append(time.perf_counter())
            await ws.send(wire.encode(w.plain("ping")))
    await ws.send(wire.encode(w.plain("stop")))
    run.stop_sent_at = time.perf_counter()


async def run_clients(
    n: int,
    url: str,
    wire: Wire,
    playlist: Playlist,
    args: argparse.Namespace,
    options: Sequence[Mapping[str, Any] | None] | None = None,
) -> list[ClientRun]:
    """N clients at once, client *i* from file *i* of the playlist (with ``options[i]`` in its ``start``).

    ``args`` holds the live options of `cli.add_live_options` and ``--ping-every-s``.
    """
    runs = await asyncio.gather(
        *(
            run_client(
                url=url,
                wire=wire,
                index=i,
                offset=i % len(playlist),
                pcm=client_audio(playlist, i % len(playlist), args.seconds),
                chunk_ms=args.chunk_ms,
                silence_ms=args.silence_ms,
                ended_timeout_s=max(30.0, float(args.seconds)),
                ping_every_s=args.ping_every_s,
                options=options[i] if options else None,
            )
            for i in range(n)
        )
    )
    return list(runs)


def announce(playlist: Playlist, audio_dir: object) -> None:
    print(f"# {len(playlist)} files from {audio_dir}: {', '.join(name for name, _ in playlist)}", file=sys.stderr)


def report_problems(problems: list[str]) -> None:
    for problem in problems:
        print(f"#   {problem}", file=sys.stderr)


async def warm_up(
    url: str,
    wire: Wire,
    playlist: Playlist,
    *,
    chunk_ms: int,
    silence_ms: int,
    options: Mapping[str, Any] | None = None,
) -> ClientRun:
    """One unmeasured session through 5 s of a file and a pause, so no round pays for first use."""
    pcm = np.concatenate([playlist[0][1][: 5 * SAMPLE_RATE_HZ], np.zeros(SAMPLE_RATE_HZ * 3 // 2, np.int16)])
    run = await run_client(
        url=url,
        wire=wire,
        index=-1,
        offset=0,
        pcm=pcm,
        chunk_ms=chunk_ms,
        silence_ms=silence_ms,
        ended_timeout_s=30.0,
        options=options,
    )
    if run.failure or not run.ended:
        raise SystemExit(f"warm-up session failed: {run.failure or 'no ended'} (close {run.close_code})")
    return run


def raw_sessions(runs: list[ClientRun], begun: float, features: list[str] | None = None) -> list[dict[str, Any]]:
    """Every session's received events (no words, no audio) with receive times, for ``--json``."""
    return [
        {
            "index": r.index,
            **({"feature": features[r.index]} if features else {}),
            "offset": r.offset,
            "audio_ms": r.audio_ms,
            "ended": r.ended,
            "close_code": r.close_code,
            "failure": r.failure,
            "send_lag_max_ms": round(1000 * max(r.send_lag_s), 1) if r.send_lag_s else None,
            "events": [
                {"recv_s": round(t - begun, 4), **{k: v for k, v in ev.items() if k not in ("words", "pcm")}}
                for t, ev in r.events
                if ev.get("type") != "tts.audio"
            ],
        }
        for r in runs
    ]
