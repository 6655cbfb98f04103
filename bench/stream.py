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
import json
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from core import wire as w
from core.audio import Playlist, load_playlist
from core.cli import add_live_tail, check_live_options, live_parser, live_settings, run_bench
from core.live import announce, raw_sessions, report_problems, run_clients, warm_up
from core.live_figures import Figures, analyse, capacity_line, server_table
from core.metrics import ServerView, scrape_async
from core.resources import sampling
from core.server import http_base
from core.stats import pct
from core.table import fmt, print_sections, table

LATENCY_SLACK_MS = 800


# Output --------------------------------------------------------------------------


def main_table(figures: list[Figures]) -> str:
    header = [
        "N",
        "utts",
        "finals",
        "partials/utt",
        "first partial p50",
        "first partial p95",
        "final p50",
        "final p95",
        "errors",
        "server CPU %",
        "peak RSS MB",
    ]
    rows = [
        [
            str(f.clients),
            str(f.utterances),
            str(f.finals),
            fmt(f.partials_per_utterance, 2),
            fmt(pct(f.first_partial_ms, 50)),
            fmt(pct(f.first_partial_ms, 95)),
            fmt(pct(f.final_ms, 50)),
            fmt(pct(f.final_ms, 95)),
            str(f.errors),
            fmt(f.server_cpu_mean),
            fmt(f.server_rss_peak_mb),
        ]
        for f in figures
    ]
    return table(header, rows, "r" * len(header))


def diagnostics_table(figures: list[Figures]) -> str:
    header = [
        "N",
        "speech.started lag p50",
        "p95",
        "ping RTT p50",
        "p95",
        "max send lag",
        "finals measured",
        "cut by stop",
        "utts without final",
        "host CPU %",
        "others CPU %",
        "bench CPU %",
        "RSS at start MB",
        "wall s",
    ]
    rows = [
        [
            str(f.clients),
            fmt(pct(f.started_lag_ms, 50)),
            fmt(pct(f.started_lag_ms, 95)),
            fmt(pct(f.ping_rtt_ms, 50), 1),
            fmt(pct(f.ping_rtt_ms, 95), 1),
            fmt(f.send_lag_max_ms),
            str(len(f.final_ms)),
            str(f.finals_cut_by_stop),
            str(f.missing_finals),
            fmt(f.host_cpu_mean),
            fmt(f.others_cpu_mean),
            fmt(f.bench_cpu_mean),
            fmt(f.server_rss_start_mb),
            f"{f.wall_s:.1f}",
        ]
        for f in figures
    ]
    return table(header, rows, "r" * len(header))


# Driver --------------------------------------------------------------------------


async def run_round(
    n: int, *, url: str, wire: w.Wire, playlist: Playlist, args: argparse.Namespace, server_pid: int | None
) -> tuple[Figures, dict[str, Any]]:
    """All N clients at once; the figures, and every event received (for ``--json``)."""
    http = http_base(url)
    metrics_before = await scrape_async(http)
    begun = time.perf_counter()
    async with sampling(server_pid, interval_s=0.5) as usage:
        runs = await run_clients(n, url, wire, playlist, args)
        wall_s = time.perf_counter() - begun
    metrics_after = await scrape_async(http) if metrics_before is not None else None
    figures = analyse(n, runs, args.silence_ms, wall_s)
    figures.add_usage(usage)
    if metrics_before is not None and metrics_after is not None:
        figures.server = ServerView.between(metrics_before, metrics_after)
    return figures, {"clients": n, "sessions": raw_sessions(runs, begun)}


async def bench(
    args: argparse.Namespace, url: str, server_pid: int | None
) -> tuple[list[Figures], list[dict[str, Any]]]:
    wire = w.Wire(args.format)
    playlist = load_playlist(args.audio_dir)
    announce(playlist, args.audio_dir)
    if not args.no_warmup:
        await warm_up(url, wire, playlist, chunk_ms=args.chunk_ms, silence_ms=args.silence_ms)
    results: list[Figures] = []
    raw: list[dict[str, Any]] = []
    for n in args.clients:
        print(f"# N={n}: {n} clients x {args.seconds:g} s of audio ...", file=sys.stderr, flush=True)
        fig, events = await run_round(n, url=url, wire=wire, playlist=playlist, args=args, server_pid=server_pid)
        results.append(fig)
        raw.append(events)
        report_problems(fig.problems)
        await asyncio.sleep(1.0)
    return results, raw


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = live_parser(__doc__, clients="1,2,4,8", what="client")
    add_live_tail(parser, json_help="write figures and every received event here")
    args = parser.parse_args(argv)
    check_live_options(parser, args)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    (figures, raw), url, server = run_bench(
        args, lambda url, pid: bench(args, url, pid), serve_args=["--max-sessions", "32"], fmt=args.format
    )
    print(
        f"\nstream bench: {url} format={args.format} seconds={args.seconds:g} chunk_ms={args.chunk_ms} "
        f"silence_ms={args.silence_ms} cpus={os.cpu_count()}\n"
    )
    print(main_table(figures))
    print()
    print(
        capacity_line([(f.clients, pct(f.final_ms, 95), f.errors) for f in figures], args.silence_ms, LATENCY_SLACK_MS)
    )
    print()
    print(
        "Latencies in ms, measured from when the audio left the client. `final` is measured from the audio at "
        "the final's t1_ms, which includes the ~200 ms hangover; the silence_ms end-of-speech wait is inside the "
        "figure. CPU % is of one core (200 % = two cores busy)."
    )
    print()
    print_sections(diagnostics_table(figures), server_table(figures))
    if server is not None:
        print(f"\nserver log: {server.log_path}")
    if args.json:
        payload = {
            **live_settings(args, url, LATENCY_SLACK_MS),
            "rounds": [
                {
                    **asdict(f),
                    "first_partial_p50_ms": pct(f.first_partial_ms, 50),
                    "first_partial_p95_ms": pct(f.first_partial_ms, 95),
                    "final_p50_ms": pct(f.final_ms, 50),
                    "final_p95_ms": pct(f.final_ms, 95),
                    "partials_per_utterance": f.partials_per_utterance,
                }
                for f in figures
            ],
            "raw": raw,
        }
        args.json.write_text(json.dumps(payload, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
