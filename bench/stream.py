"""Concurrent live-streaming benchmark for the speech gateway.

For each client count N (run one after another), N clients connect to
``/v1/stream`` at once and each streams real speech at real-time pace: the WAVs
of the audio folder (``librispeech/*.wav`` then ``misc/jfk.wav``) concatenated
with 1 s of silence between files, client *i* starting at file *i* so that the
clients are not all saying the same thing at the same moment. Audio goes out in
``--chunk-ms`` chunks; chunk *k* (audio ``[k*chunk, (k+1)*chunk)``) is sent when
the wall clock reaches ``t0 + (k+1)*chunk``, i.e. when a live microphone would
have delivered it. Sleeps target the absolute schedule, so pacing does not drift.
After ``--seconds`` of audio the client sends ``stop`` and reads until ``ended``.
A reader task per client stamps every event with its receive time. Clients use
the ``websockets`` defaults, so permessage-deflate is negotiated, as browsers do.

Every latency is measured against the moment the relevant audio *left the
client*: the audio clock of the session (``t_ms`` fields) is mapped back to the
wall time at which the chunk holding that millisecond was sent. Client-side
lateness (a chunk sent after its scheduled time) therefore does not count
against the server; it is reported separately as "send lag".

Figures, per N (all latencies in ms, p50/p95 pooled over every utterance of
every client of that run; with few utterances p95 is close to the maximum):

first partial
    ``recv(first partial of utterance u) - sent(speech.started.t_ms of u)``.
    ``t_ms`` is the speech onset the detector confirmed. The gateway asks Whisper for
    a partial only once the utterance holds about 1 s of audio (pre-roll
    included), so roughly 0.7 s of this figure is waiting for audio, the rest is
    queueing and decoding. Utterances that never got a partial (short ones, or
    partials skipped under load) are left out of this figure but count as zero
    in "partials/utt".
final
    ``recv(final of u) - sent(final.t1_ms of u)``. ``t1_ms`` includes the
    segmenter's hangover (about 200 ms of silence kept after the last voiced
    frame), and the ``silence_ms`` detection wait lies *inside* the figure: the
    server cannot know speech ended until ``silence_ms`` of silence has arrived,
    i.e. until ``silence_ms - hangover`` after ``t1_ms``. With the defaults the
    floor is about 300 ms plus chunking before any decoding happens. Finals of
    utterances cut short by ``stop`` (``t1_ms + silence_ms`` beyond the audio
    sent) are not end-of-speech finals and are excluded (column "cut by stop").
partials/utt
    Partials received divided by ``speech.started`` events.
finals
    ``final`` events received (all of them, including those cut by stop).
errors
    ``error`` events, connections that failed or closed with a code other than
    1000, and sessions that produced no ``ended``.
server CPU %
    Mean CPU of the server process (and its children) over the run, sampled
    every 0.5 s with psutil; 100 % is one core fully busy. Only with ``--spawn``
    (the bench needs the process), otherwise shown as "–".
peak RSS MB
    Largest resident set size of the server process seen while sampling.

Diagnostics (second table):

* ``speech.started`` lag: its receive time minus the send time of the audio at
  ``t_ms``. The detector confirms onset over a 100 ms window, so up to about one
  chunk of this is audio the server had to wait for, not server delay;
* ping RTT: each client sends a ``ping`` every ``--ping-every-s`` seconds of
  audio and times the ``pong``. It crosses the session's reader, outbox and
  sender, so it shows event-loop and socket delay, apart from engine time;
* the largest client send lag, finals measured / excluded as cut by stop,
  utterances without a final;
* host CPU % (every process on the machine) and "others" (host minus server
  minus this bench; without ``--spawn`` it includes the server): other work on
  the machine distorts every figure above;
* the bench's own CPU %, and the server's RSS at the start of the round (after
  the previous round's sessions ended: growth here means memory not returned).

Server view (third table, when the server answers ``GET /metrics``): deltas of
its counters over the round. ``stt busy`` is wall seconds spent inside Whisper
calls (on a contended host that includes waiting for a CPU) and ``slots busy``
that divided by the round's wall time (how many of the ``stt_concurrency``
slots were in use on average); ``queue/call`` is the mean wait for a slot over
all calls (most calls are cheap audio appends, so it understates the wait of a
decode); ``RTF`` is engine seconds per second of audio; ``final (server)`` is the
server's own mean from end of speech (as its detector saw it) to the final being
ready to send, over every final including those cut by stop. Client ``final``
minus this is roughly the silence wait plus transport.

The line after the first table names the largest N whose p95 final latency
stays within ``silence_ms + 800`` ms.

Usage::

    python bench/stream.py --spawn --clients 1,2,4,8 --seconds 60
    python bench/stream.py --url ws://127.0.0.1:8000/v1/stream --clients 1,2 --format msgpack

This is a measuring tool, not a test: it asserts nothing about timings.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import wave
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO

import msgpack
import numpy as np
import psutil
import websockets
from websockets.exceptions import ConnectionClosed

SAMPLE_RATE_HZ = 16_000
GAP_S = 1.0
LATENCY_SLACK_MS = 800
READY_TIMEOUT_S = 30.0
REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_AUDIO_DIR = (REPO_ROOT / ".." / "shared" / "audio").resolve()

Event = dict[str, Any]


# Audio ------------------------------------------------------------------------


def load_wav(path: Path) -> np.ndarray:
    with wave.open(str(path), "rb") as wav:
        rate, channels, width = wav.getframerate(), wav.getnchannels(), wav.getsampwidth()
        if (rate, channels, width) != (SAMPLE_RATE_HZ, 1, 2):
            raise SystemExit(f"{path}: need 16 kHz mono 16-bit PCM, got {rate} Hz, {channels} ch, {8 * width} bit")
        return np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2").copy()


def load_playlist(audio_dir: Path) -> list[tuple[str, np.ndarray]]:
    """``librispeech/*.wav`` (sorted) then ``misc/jfk.wav``."""
    paths = sorted((audio_dir / "librispeech").glob("*.wav"))
    jfk = audio_dir / "misc" / "jfk.wav"
    if jfk.exists():
        paths.append(jfk)
    if not paths:
        raise SystemExit(f"no WAVs under {audio_dir}/librispeech or {audio_dir}/misc/jfk.wav")
    return [(str(p.relative_to(audio_dir)), load_wav(p)) for p in paths]


def client_audio(playlist: list[tuple[str, np.ndarray]], offset: int, seconds: float) -> np.ndarray:
    """The playlist from file ``offset`` on, cycling, 1 s of silence between files, cut to ``seconds``."""
    total = int(seconds * SAMPLE_RATE_HZ)
    gap = np.zeros(int(GAP_S * SAMPLE_RATE_HZ), np.int16)
    parts: list[np.ndarray] = []
    have, i = 0, offset
    while have < total:
        if parts:
            parts.append(gap)
            have += len(gap)
        pcm = playlist[i % len(playlist)][1]
        parts.append(pcm)
        have += len(pcm)
        i += 1
    return np.concatenate(parts)[:total]


# Wire -------------------------------------------------------------------------


class Wire:
    """Encodes client messages and decodes server frames for one ``format``."""

    def __init__(self, fmt: str) -> None:
        self.fmt = fmt

    def control(self, message: Event) -> str | bytes:
        if self.fmt == "msgpack":
            return bytes(msgpack.packb(message, use_bin_type=True))
        return json.dumps(message)

    def audio(self, pcm: bytes) -> str | bytes:
        if self.fmt == "msgpack":
            return bytes(msgpack.packb({"type": "audio", "pcm": pcm}, use_bin_type=True))
        return pcm

    def decode(self, frame: str | bytes) -> Event:
        if isinstance(frame, str):
            obj = json.loads(frame)
        elif self.fmt == "msgpack":
            obj = msgpack.unpackb(frame, raw=False)
        else:
            return {"type": "<binary>", "bytes": len(frame)}  # TTS audio; not asked for here
        return obj if isinstance(obj, dict) else {"type": "<non-map>", "value": repr(obj)[:80]}


# One client -------------------------------------------------------------------


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


async def run_client(
    *,
    url: str,
    wire: Wire,
    index: int,
    offset: int,
    pcm: np.ndarray,
    chunk_ms: int,
    silence_ms: int,
    ended_timeout_s: float,
    ping_every_s: float = 0.0,
) -> ClientRun:
    run = ClientRun(index=index, offset=offset, chunk_ms=chunk_ms)
    ready = asyncio.Event()
    chunk = SAMPLE_RATE_HZ * chunk_ms // 1000
    try:
        async with websockets.connect(url, open_timeout=30, close_timeout=10, max_size=None) as ws:

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
                await _stream(ws, wire, run, reader, ready, pcm, chunk, silence_ms, ping_every_s)
                try:
                    await asyncio.wait_for(asyncio.shield(reader), ended_timeout_s)
                except TimeoutError:
                    run.failure = run.failure or f"no close within {ended_timeout_s:.0f} s of stop"
            finally:
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reader
            run.close_code = ws.close_code
    except (OSError, websockets.InvalidHandshake, ConnectionClosed, TimeoutError) as exc:
        run.failure = run.failure or f"{type(exc).__name__}: {exc}"
    return run


async def _stream(
    ws: websockets.ClientConnection,
    wire: Wire,
    run: ClientRun,
    reader: asyncio.Task[None],
    ready: asyncio.Event,
    pcm: np.ndarray,
    chunk: int,
    silence_ms: int,
    ping_every_s: float,
) -> None:
    """Send `start`, the audio on the wall-clock schedule (with a `ping` now and then), then `stop`."""
    ping_every = round(ping_every_s * 1000 / run.chunk_ms) if ping_every_s > 0 else 0
    await ws.send(wire.control({
        "type": "start",
        "audio": {"encoding": "pcm_s16le", "sample_rate": SAMPLE_RATE_HZ, "channels": 1},
        "vad": {"silence_ms": silence_ms},
    }))
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
            await ws.send(wire.control({"type": "ping"}))
    await ws.send(wire.control({"type": "stop"}))
    run.stop_sent_at = time.perf_counter()


# Resource sampling --------------------------------------------------------------


@dataclass
class Usage:
    server_cpu: list[float] = field(default_factory=list)
    server_rss: list[int] = field(default_factory=list)
    host_cpu: list[float] = field(default_factory=list)
    bench_cpu: list[float] = field(default_factory=list)


class Sampler:
    """Samples the server process (and its children), the host and this process every ``interval_s``."""

    def __init__(self, pid: int | None, interval_s: float = 0.5) -> None:
        self._server = psutil.Process(pid) if pid is not None else None
        self._procs: dict[int, psutil.Process] = {}
        self._me = psutil.Process()
        self._interval_s = interval_s

    def _server_procs(self) -> list[psutil.Process]:
        if self._server is None:
            return []
        found = [self._server, *self._server.children(recursive=True)]
        for proc in found:
            if proc.pid not in self._procs:
                proc.cpu_percent(None)  # the first reading of a process is always 0: prime it
                self._procs[proc.pid] = proc
        return [self._procs[p.pid] for p in found]

    async def run(self, usage: Usage, stop: asyncio.Event) -> None:
        self._server_procs()
        psutil.cpu_percent(None)
        self._me.cpu_percent(None)
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self._interval_s)
            usage.host_cpu.append(psutil.cpu_percent(None) * psutil.cpu_count())
            usage.bench_cpu.append(self._me.cpu_percent(None))
            cpu, rss = 0.0, 0
            for proc in self._server_procs():
                with contextlib.suppress(psutil.NoSuchProcess):
                    cpu += proc.cpu_percent(None)
                    rss += proc.memory_info().rss
            if self._server is not None:
                usage.server_cpu.append(cpu)
                usage.server_rss.append(rss)


# Server metrics -------------------------------------------------------------------


def metrics_url(ws_url: str) -> str:
    scheme, _, rest = ws_url.partition("://")
    host = rest.split("/", 1)[0]
    return f"{'https' if scheme == 'wss' else 'http'}://{host}/metrics"


def parse_prometheus(text: str) -> dict[str, float]:
    """``{'name{labels}': value}`` for every sample line of a Prometheus text page."""
    samples: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        key, _, value = line.rpartition(" ")
        with contextlib.suppress(ValueError):
            samples[key] = float(value)
    return samples


async def scrape_metrics(url: str) -> dict[str, float] | None:
    """The server's counters now, or None when it has no (reachable) ``/metrics``."""

    def get() -> dict[str, float] | None:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return parse_prometheus(response.read().decode("utf-8", "replace"))
        except (urllib.error.URLError, OSError, ValueError):
            return None

    return await asyncio.to_thread(get)


@dataclass
class ServerView:
    """Deltas of the server's own counters over one round (speech-to-text engines only)."""

    stt_calls: float
    stt_busy_s: float
    stt_queue_s: float
    audio_s: float
    finals: float
    final_latency_s: float

    @classmethod
    def between(cls, before: dict[str, float], after: dict[str, float]) -> ServerView:
        def delta(prefix: str) -> float:
            return sum(v - before.get(k, 0.0) for k, v in after.items() if k.startswith(prefix))

        stt = '{engine="stt:'
        return cls(
            stt_calls=delta("hushgate_engine_calls_total" + stt),
            stt_busy_s=delta("hushgate_engine_busy_seconds_total" + stt),
            stt_queue_s=delta("hushgate_engine_queue_delay_seconds_total" + stt),
            audio_s=delta("hushgate_audio_seconds_total"),
            finals=delta("hushgate_final_latency_seconds_count"),
            final_latency_s=delta("hushgate_final_latency_seconds_sum"),
        )


# Figures ------------------------------------------------------------------------


@dataclass
class Figures:
    clients: int
    utterances: int = 0
    finals: int = 0
    finals_cut_by_stop: int = 0
    partials: int = 0
    first_partial_ms: list[float] = field(default_factory=list)
    final_ms: list[float] = field(default_factory=list)
    started_lag_ms: list[float] = field(default_factory=list)
    ping_rtt_ms: list[float] = field(default_factory=list)
    send_lag_max_ms: float = 0.0
    missing_finals: int = 0
    errors: int = 0
    problems: list[str] = field(default_factory=list)
    server_cpu_mean: float | None = None
    server_rss_peak_mb: float | None = None
    server_rss_start_mb: float | None = None
    host_cpu_mean: float | None = None
    others_cpu_mean: float | None = None
    bench_cpu_mean: float | None = None
    wall_s: float = 0.0
    server: ServerView | None = None

    @property
    def partials_per_utterance(self) -> float | None:
        return self.partials / self.utterances if self.utterances else None


def percentile(values: Sequence[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


def mean(values: Sequence[float]) -> float | None:
    return float(np.mean(values)) if values else None


def analyse(n: int, runs: list[ClientRun], usage: Usage, silence_ms: int, wall_s: float) -> Figures:
    fig = Figures(clients=n, wall_s=wall_s)
    for run in runs:
        tag = f"client {run.index} (file offset {run.offset})"
        started: dict[int, tuple[float, int]] = {}
        first_partial: dict[int, float] = {}
        finals: dict[int, Event] = {}
        final_at: dict[int, float] = {}
        for received, ev in run.events:
            kind = ev.get("type")
            utt = ev.get("utterance")
            if kind == "speech.started" and isinstance(utt, int):
                if utt in started:
                    fig.problems.append(f"{tag}: speech.started repeated for utterance {utt}")
                started[utt] = (received, int(ev["t_ms"]))
                fig.started_lag_ms.append(1000 * (received - (run.sent_wall(int(ev["t_ms"])) or received)))
            elif kind == "partial" and isinstance(utt, int):
                fig.partials += 1
                first_partial.setdefault(utt, received)
                if utt in finals:
                    fig.problems.append(f"{tag}: partial of utterance {utt} after its final")
                if utt not in started:
                    fig.problems.append(f"{tag}: partial of utterance {utt} before its speech.started")
            elif kind == "final" and isinstance(utt, int):
                if utt in finals:
                    fig.problems.append(f"{tag}: second final for utterance {utt}")
                finals[utt] = ev
                final_at[utt] = received
            elif kind == "error":
                fig.errors += 1
                fig.problems.append(f"{tag}: error {ev.get('code')}: {ev.get('message')} (fatal={ev.get('fatal')})")
            elif kind == "ended":
                stats = ev.get("stats") or {}
                if stats.get("utterances") != len(finals):
                    fig.problems.append(
                        f"{tag}: ended says {stats.get('utterances')} utterances, got {len(finals)} finals"
                    )
                if stats.get("audio_ms") is not None and abs(int(stats["audio_ms"]) - run.audio_ms) > run.chunk_ms:
                    fig.problems.append(f"{tag}: ended says audio_ms={stats['audio_ms']}, sent {run.audio_ms}")
        if list(started) != list(range(len(started))):
            fig.problems.append(f"{tag}: utterance indexes not 0..n-1 in order: {list(started)[:20]}")
        fig.utterances += len(started)
        fig.finals += len(finals)
        fig.missing_finals += len(set(started) - set(finals))
        for utt, (_, t_ms) in started.items():
            if utt in first_partial and (sent := run.sent_wall(t_ms)) is not None:
                fig.first_partial_ms.append(1000 * (first_partial[utt] - sent))
        for utt, ev in finals.items():
            t1_ms = int(ev["t1_ms"])
            if t1_ms + silence_ms > run.audio_ms:
                fig.finals_cut_by_stop += 1
            elif (sent := run.sent_wall(t1_ms)) is not None:
                fig.final_ms.append(1000 * (final_at[utt] - sent))
        if len(run.pongs_at) != len(run.pings_sent_at):
            fig.problems.append(f"{tag}: {len(run.pings_sent_at)} pings sent, {len(run.pongs_at)} pongs received")
        fig.ping_rtt_ms.extend(1000 * (b - a) for a, b in zip(run.pings_sent_at, run.pongs_at))
        if run.send_lag_s:
            fig.send_lag_max_ms = max(fig.send_lag_max_ms, 1000 * max(run.send_lag_s))
        failed = run.failure is not None or not run.ended or run.close_code not in (1000, None)
        if failed:
            fig.errors += 1
            fig.problems.append(
                f"{tag}: failure={run.failure!r} ended={run.ended} close_code={run.close_code}"
            )
    fig.server_cpu_mean = mean(usage.server_cpu)
    fig.server_rss_peak_mb = max(usage.server_rss) / 2**20 if usage.server_rss else None
    fig.server_rss_start_mb = usage.server_rss[0] / 2**20 if usage.server_rss else None
    fig.host_cpu_mean = mean(usage.host_cpu)
    others = [h - s - b for h, s, b in zip(usage.host_cpu, usage.server_cpu or [0.0] * len(usage.host_cpu),
                                           usage.bench_cpu)]
    fig.others_cpu_mean = max(0.0, mean(others) or 0.0) if others else None
    fig.bench_cpu_mean = mean(usage.bench_cpu)
    return fig


# Output --------------------------------------------------------------------------


def _fmt(value: float | None, digits: int = 0) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def main_table(figures: list[Figures]) -> str:
    rows = [
        "| N | utts | finals | partials/utt | first partial p50 | first partial p95 | final p50 | final p95 "
        "| errors | server CPU % | peak RSS MB |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for f in figures:
        rows.append(
            f"| {f.clients} | {f.utterances} | {f.finals} | {_fmt(f.partials_per_utterance, 2)} "
            f"| {_fmt(percentile(f.first_partial_ms, 50))} | {_fmt(percentile(f.first_partial_ms, 95))} "
            f"| {_fmt(percentile(f.final_ms, 50))} | {_fmt(percentile(f.final_ms, 95))} "
            f"| {f.errors} | {_fmt(f.server_cpu_mean)} | {_fmt(f.server_rss_peak_mb)} |"
        )
    return "\n".join(rows)


def diagnostics_table(figures: list[Figures]) -> str:
    rows = [
        "| N | speech.started lag p50 | p95 | ping RTT p50 | p95 | max send lag | finals measured | cut by stop "
        "| utts without final | host CPU % | others CPU % | bench CPU % | RSS at start MB | wall s |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for f in figures:
        rows.append(
            f"| {f.clients} | {_fmt(percentile(f.started_lag_ms, 50))} | {_fmt(percentile(f.started_lag_ms, 95))} "
            f"| {_fmt(percentile(f.ping_rtt_ms, 50), 1)} | {_fmt(percentile(f.ping_rtt_ms, 95), 1)} "
            f"| {_fmt(f.send_lag_max_ms)} | {len(f.final_ms)} | {f.finals_cut_by_stop} | {f.missing_finals} "
            f"| {_fmt(f.host_cpu_mean)} | {_fmt(f.others_cpu_mean)} | {_fmt(f.bench_cpu_mean)} "
            f"| {_fmt(f.server_rss_start_mb)} | {f.wall_s:.1f} |"
        )
    return "\n".join(rows)


def server_table(figures: list[Figures]) -> str | None:
    if not any(f.server for f in figures):
        return None
    rows = [
        "| N | stt calls | stt busy s | slots busy | queue/call ms | queue total s | RTF | final (server) mean ms |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for f in figures:
        v = f.server
        if v is None:
            rows.append(f"| {f.clients} | – | – | – | – | – | – | – |")
            continue
        rows.append(
            f"| {f.clients} | {v.stt_calls:.0f} | {v.stt_busy_s:.1f} | {v.stt_busy_s / f.wall_s:.2f} "
            f"| {_fmt(1000 * v.stt_queue_s / v.stt_calls if v.stt_calls else None)} | {v.stt_queue_s:.1f} "
            f"| {_fmt(v.stt_busy_s / v.audio_s if v.audio_s else None, 2)} "
            f"| {_fmt(1000 * v.final_latency_s / v.finals if v.finals else None)} |"
        )
    return "\n".join(rows)


def capacity_line(figures: list[Figures], silence_ms: int) -> str:
    bound = silence_ms + LATENCY_SLACK_MS
    within = [f for f in figures if f.final_ms and (percentile(f.final_ms, 95) or math.inf) <= bound]
    if not within:
        return (f"Largest N with p95 final latency <= {bound} ms (silence_ms {silence_ms} + {LATENCY_SLACK_MS}): "
                "none of those tested")
    best = max(within, key=lambda f: f.clients)
    notes = []
    if best.errors:
        notes.append(f"{best.errors} errors at that N")
    failing_below = [f.clients for f in figures if f.clients < best.clients and f not in within]
    if failing_below:
        notes.append(f"but N={','.join(map(str, failing_below))} missed the bound")
    tail = f" ({'; '.join(notes)})" if notes else ""
    return (
        f"Largest N with p95 final latency <= {bound} ms (silence_ms {silence_ms} + {LATENCY_SLACK_MS}): "
        f"{best.clients}{tail}"
    )


# Server --------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class SpawnedServer:
    """``hushgate serve`` on a free loopback port, owned by this bench."""

    def __init__(self, extra_args: list[str], log_path: Path) -> None:
        self.port = free_port()
        self.log_path = log_path
        exe = Path(sys.executable).parent / "hushgate"
        command = [str(exe)] if exe.exists() else [shutil.which("hushgate") or "hushgate"]
        self.command = [*command, "serve", "--host", "127.0.0.1", "--port", str(self.port),
                        "--max-sessions", "32", *extra_args]
        self._log: TextIO | None = None
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/v1/stream"

    def start(self, timeout_s: float = 180.0) -> None:
        self._log = open(self.log_path, "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(self.command, stdout=self._log, stderr=subprocess.STDOUT, cwd=REPO_ROOT)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"server exited with {self.proc.returncode}; log: {self.log_path}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/readyz", timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.25)
        self.stop()
        raise SystemExit(f"server not ready within {timeout_s:.0f} s; log: {self.log_path}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._log is not None:
            self._log.close()
            self._log = None


# Driver --------------------------------------------------------------------------


async def run_round(
    n: int, *, url: str, wire: Wire, playlist: list[tuple[str, np.ndarray]], args: argparse.Namespace,
    server_pid: int | None,
) -> tuple[Figures, dict[str, Any]]:
    """All N clients at once; the figures, and every event received (for ``--json``)."""
    usage, stop = Usage(), asyncio.Event()
    metrics_before = await scrape_metrics(metrics_url(url))
    sampler = asyncio.create_task(Sampler(server_pid).run(usage, stop))
    begun = time.perf_counter()
    runs = await asyncio.gather(*(
        run_client(
            url=url, wire=wire, index=i, offset=i % len(playlist),
            pcm=client_audio(playlist, i % len(playlist), args.seconds),
            chunk_ms=args.chunk_ms, silence_ms=args.silence_ms,
            ended_timeout_s=max(30.0, float(args.seconds)), ping_every_s=args.ping_every_s,
        )
        for i in range(n)
    ))
    wall_s = time.perf_counter() - begun
    stop.set()
    await sampler
    metrics_after = await scrape_metrics(metrics_url(url)) if metrics_before is not None else None
    raw = {"clients": n, "sessions": [
        {"index": r.index, "offset": r.offset, "audio_ms": r.audio_ms, "ended": r.ended,
         "close_code": r.close_code, "failure": r.failure,
         "send_lag_max_ms": round(1000 * max(r.send_lag_s), 1) if r.send_lag_s else None,
         "events": [{"recv_s": round(t - begun, 4), **{k: v for k, v in ev.items() if k != "words"}}
                    for t, ev in r.events]}
        for r in runs
    ]}
    figures = analyse(n, list(runs), usage, args.silence_ms, wall_s)
    if metrics_before is not None and metrics_after is not None:
        figures.server = ServerView.between(metrics_before, metrics_after)
    return figures, raw


async def warm_up(url: str, wire: Wire, playlist: list[tuple[str, np.ndarray]], args: argparse.Namespace) -> None:
    """One session through a file and a pause, so the first measured round does not pay for first use."""
    pcm = np.concatenate([playlist[0][1][: 5 * SAMPLE_RATE_HZ], np.zeros(SAMPLE_RATE_HZ * 3 // 2, np.int16)])
    run = await run_client(url=url, wire=wire, index=-1, offset=0, pcm=pcm, chunk_ms=args.chunk_ms,
                           silence_ms=args.silence_ms, ended_timeout_s=30.0)
    if run.failure or not run.ended:
        raise SystemExit(f"warm-up session failed: {run.failure or 'no ended'} (close {run.close_code})")


async def bench(
    args: argparse.Namespace, url: str, server_pid: int | None
) -> tuple[list[Figures], list[dict[str, Any]]]:
    wire = Wire(args.format)
    playlist = load_playlist(args.audio_dir)
    print(f"# {len(playlist)} files from {args.audio_dir}: {', '.join(name for name, _ in playlist)}", file=sys.stderr)
    if not args.no_warmup:
        await warm_up(url, wire, playlist, args)
    results: list[Figures] = []
    raw: list[dict[str, Any]] = []
    for n in args.clients:
        print(f"# N={n}: {n} clients x {args.seconds:g} s of audio ...", file=sys.stderr, flush=True)
        fig, events = await run_round(n, url=url, wire=wire, playlist=playlist, args=args, server_pid=server_pid)
        results.append(fig)
        raw.append(events)
        for problem in fig.problems:
            print(f"#   {problem}", file=sys.stderr)
        await asyncio.sleep(1.0)
    return results, raw


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    target = parser.add_mutually_exclusive_group()
    target.add_argument("--url", default="ws://127.0.0.1:8000/v1/stream", help="running server's stream URL")
    target.add_argument("--spawn", action="store_true",
                        help="start `hushgate serve` on a free port and measure it")
    parser.add_argument("--clients", default="1,2,4,8", help="comma-separated client counts, run in order")
    parser.add_argument("--audio-dir", type=Path, default=DEFAULT_AUDIO_DIR)
    parser.add_argument("--seconds", type=float, default=60.0, help="audio per client")
    parser.add_argument("--silence-ms", type=int, default=500, help="vad.silence_ms sent in `start`")
    parser.add_argument("--chunk-ms", type=int, default=100)
    parser.add_argument("--format", choices=("json", "msgpack"), default="json")
    parser.add_argument("--json", type=Path, help="write figures and every received event here")
    parser.add_argument("--ping-every-s", type=float, default=2.0,
                        help="audio seconds between diagnostic pings (0: none)")
    parser.add_argument("--no-warmup", action="store_true", help="skip the unmeasured warm-up session")
    parser.add_argument("--serve-args", default="", help="extra `hushgate serve` flags with --spawn")
    parser.add_argument("--server-log", type=Path, help="with --spawn: server output (default: a temp file)")
    args = parser.parse_args(argv)
    try:
        args.clients = [int(part) for part in args.clients.split(",") if part.strip()]
    except ValueError:
        parser.error("--clients takes comma-separated integers, e.g. 1,2,4,8")
    if not args.clients or min(args.clients) < 1:
        parser.error("--clients needs positive integers")
    if args.chunk_ms < 10 or args.seconds <= 0:
        parser.error("--chunk-ms must be >= 10 and --seconds > 0")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    server: SpawnedServer | None = None
    url = args.url
    if args.spawn:
        log_path = args.server_log or Path(tempfile.mkstemp(prefix="hushgate-bench-", suffix=".log")[1])
        server = SpawnedServer(shlex.split(args.serve_args), log_path)
        print(f"# spawning: {shlex.join(server.command)} (log {log_path})", file=sys.stderr, flush=True)
        server.start()
        url = server.url
    if args.format == "msgpack" and "format=" not in url:
        url += ("&" if "?" in url else "?") + "format=msgpack"
    try:
        figures, raw = asyncio.run(bench(args, url, server.proc.pid if server and server.proc else None))
    finally:
        if server is not None:
            server.stop()
    print(f"\nstream bench: {url} format={args.format} seconds={args.seconds:g} chunk_ms={args.chunk_ms} "
          f"silence_ms={args.silence_ms} cpus={os.cpu_count()}\n")
    print(main_table(figures))
    print()
    print(capacity_line(figures, args.silence_ms))
    print()
    print("Latencies in ms, measured from when the audio left the client. `final` is measured from the audio at "
          "the final's t1_ms, which includes the ~200 ms hangover; the silence_ms end-of-speech wait is inside the "
          "figure. CPU % is of one core (200 % = two cores busy).")
    print()
    print(diagnostics_table(figures))
    if (view := server_table(figures)) is not None:
        print()
        print(view)
    if server is not None:
        print(f"\nserver log: {server.log_path}")
    if args.json:
        payload = {
            "url": url, "format": args.format, "seconds": args.seconds, "chunk_ms": args.chunk_ms,
            "silence_ms": args.silence_ms, "bound_ms": args.silence_ms + LATENCY_SLACK_MS,
            "rounds": [
                {**asdict(f),
                 "first_partial_p50_ms": percentile(f.first_partial_ms, 50),
                 "first_partial_p95_ms": percentile(f.first_partial_ms, 95),
                 "final_p50_ms": percentile(f.final_ms, 50), "final_p95_ms": percentile(f.final_ms, 95),
                 "partials_per_utterance": f.partials_per_utterance}
                for f in figures
            ],
            "raw": raw,
        }
        args.json.write_text(json.dumps(payload, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
