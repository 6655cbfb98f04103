"""Translation benchmark through the gateway's WebSocket (`translate` → `translation`).

Three parts, each printed as a markdown table (ms unless said):

(a) latency per utterance
    For N concurrent sessions (``--sessions``, default 1 and 4), each session
    sends ``--requests`` ``translate`` requests (en→es) with ids, one at a time:
    the next goes out when the ``translation`` with the previous id has
    arrived. Latency = receipt of that ``translation`` − send of the request.
    Texts cycle through a fixed list of 24 utterance-like English sentences of
    4-35 words, each session starting at a different one.
    Requests are paced to at most ``--rate`` per second per session (default
    40), under the server's ``control_rate_per_s`` (default 50 control messages
    per second per session, bursts of 100; more are refused as ``overloaded``).
(b) throughput
    ``--burst-sessions`` sessions (default 4) each fire ``--burst`` requests,
    unpaced, keeping ``--window`` of them in flight (below the 64 a session may
    have waiting). Translated per second = translations received / (last
    answer − first send); refusals are counted apart. With the default
    ``control_rate_per_s`` most of a burst is refused by the rate limit; to
    measure the translator's capacity, serve with a higher limit::

        python bench/translate.py --spawn --parts b --serve-args "--control-rate-per-s 100000"

    A session handles its own translations one at a time, so batches form
    *across* sessions in the server's batcher; mean batch size comes from
    ``GET /metrics`` (translations / engine calls).
(c) end to end
    Sessions with ``translate.targets: ["es"]`` stream the LibriSpeech WAVs and
    ``misc/jfk.wav`` (1 s of silence between files, 100 ms frames) as fast as the
    server reads them. Latency = receipt of ``translation`` for utterance u −
    receipt of ``final`` u (empty finals get no translation and are skipped).

Where the time goes: every part also reports, from ``GET /metrics``, the
translation engine runner's calls during the part, mean time inside one call
and mean wait for the engine slot. Part (a) measures the ``ping``→``pong``
round trip of each session first (the session's read, outbox and send path
without an engine), and the last table runs the same Apertium translator
inside this process with nothing in between, while the server is idle: one
sentence per call back to back, batches of 4, one sentence per call with the
pause of (a) between calls (an idle pipeline of eight processes is slower to
wake), and the finals' texts of (c). Host CPU and "others" (host minus
server minus this bench) show other work on the machine.

Usage::

    python bench/translate.py --spawn
    python bench/translate.py --url ws://127.0.0.1:8000/v1/stream --sessions 1,4 --requests 100

A measuring tool, not a test: it asserts nothing about timings.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

from core import wire as w
from core.audio import load_playlist
from core.cli import add_server_options, run_bench
from core.measure import Measured, measure
from core.server import get_json, http_base, server_alive
from core.stats import pct
from core.table import fmt
from core.texts import TRANSLATE_SENTENCES as SENTENCES
from core.translate_report import report
from core.translate_sessions import (
    SOURCE,
    TARGET,
    Part,
    StreamResult,
    burst_session,
    sequential_session,
    stream_session,
)

# Main -------------------------------------------------------------------------------------


def alive_or_exit(http: str, what: str) -> None:
    if not server_alive(http):
        raise SystemExit(f"the server went away (or is draining) before {what}")


async def bench(args: argparse.Namespace, url: str, pid: int | None) -> None:
    http = http_base(url)
    engines = get_json(f"{http}/v1/engines")
    pair = f"{SOURCE}-{TARGET}"
    if pair not in engines.get("translation_pairs", []):
        raise SystemExit(f"the server has no {pair} pair: {engines.get('translation_pairs')}")
    names = [t["engine"] for t in engines.get("engines", {}).get("translate", []) if pair in t.get("pairs", [])]
    engine_key = f"translate:{names[0]}" if names else "translate:apertium"
    parts = set(args.parts.split(","))
    wire = w.Wire(args.format)
    ws_url = w.stream_url(url, args.format)
    compression = None if args.compression == "none" else "deflate"
    async with w.connect(ws_url, compression=compression) as ws:
        ready = await w.open_session(ws, wire, w.start())
        await w.close_session(ws, wire)
    print(
        f"# translator for {pair}: {names[0] if names else '?'}; server control_rate_per_s: "
        f"{ready.get('limits', {}).get('control_rate_per_s', '?')}",
        file=sys.stderr,
        flush=True,
    )

    # Warm-up: starts the pipeline (its first call spawns the processes).
    await sequential_session(ws_url, wire, SENTENCES, 10, 0, 0, asyncio.Barrier(1), compression, args.rate)

    latency_parts: list[Part] = []
    if "a" in parts:
        for n in (int(s) for s in args.sessions.split(",")):
            alive_or_exit(http, f"part (a) with {n} session(s)")
            barrier = asyncio.Barrier(n)
            part = Part(
                f"{n}",
                n,
                await measure(
                    http,
                    pid,
                    engine_key,
                    [
                        sequential_session(
                            ws_url, wire, SENTENCES, args.requests, i * 6, args.pings, barrier, compression, args.rate
                        )
                        for i in range(n)
                    ],
                ),
            )
            latency_parts.append(part)
            print(f"# (a) {n} session(s): p95 {fmt(pct(part.latencies, 95), 1)} ms", file=sys.stderr, flush=True)

    burst: Part | None = None
    if "b" in parts:
        n = args.burst_sessions
        alive_or_exit(http, "part (b)")
        barrier = asyncio.Barrier(n)
        burst = Part(
            "burst",
            n,
            await measure(
                http,
                pid,
                engine_key,
                [
                    burst_session(ws_url, wire, SENTENCES, args.burst, args.window, i * 6, barrier, compression)
                    for i in range(n)
                ],
            ),
        )
        print(f"# (b) {fmt(burst.rate(), 0)} sentences/s", file=sys.stderr, flush=True)

    stream_parts: list[tuple[int, Measured[StreamResult]]] = []
    if "c" in parts and args.stream_sessions:
        playlist = load_playlist()
        for n in (int(s) for s in args.stream_sessions.split(",")):
            alive_or_exit(http, f"part (c) with {n} session(s)")
            barrier = asyncio.Barrier(n)
            measured = await measure(
                http,
                pid,
                engine_key,
                [
                    stream_session(ws_url, wire, playlist, (i * 3) % len(playlist), barrier, compression)
                    for i in range(n)
                ],
            )
            stream_parts.append((n, measured))
            lat = [v for r in measured.results for v in r.latencies()]
            print(f"# (c) {n} session(s): p95 {fmt(pct(lat, 95), 1)} ms", file=sys.stderr, flush=True)

    report(args, latency_parts, burst, stream_parts)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_server_options(parser, required=True, spawn_help="start `hushgate serve` on a free loopback port for the bench")
    parser.add_argument("--sessions", default="1,4", help="(a) concurrent session counts")
    parser.add_argument("--requests", type=int, default=100, help="(a) sequential requests per session")
    parser.add_argument("--pings", type=int, default=20, help="(a) ping round trips per session first")
    parser.add_argument(
        "--rate",
        type=float,
        default=40.0,
        help="(a) most requests per second per session (the server's default limit is 50); 0: unpaced",
    )
    parser.add_argument("--parts", default="a,b,c", help="which parts to run: a, b, c, comma-separated")
    parser.add_argument("--burst-sessions", type=int, default=4, help="(b) sessions")
    parser.add_argument("--burst", type=int, default=300, help="(b) requests per session")
    parser.add_argument("--window", type=int, default=48, help="(b) requests in flight per session (≤ 64)")
    parser.add_argument(
        "--stream-sessions", default="1,4", help="(c) concurrent streaming session counts; empty: skip (c)"
    )
    parser.add_argument("--format", choices=("json", "msgpack"), default="json")
    parser.add_argument("--compression", choices=("deflate", "none"), default="deflate")
    parser.add_argument("--no-direct", action="store_true", help="skip the in-process engine measurement")
    parser.add_argument("--direct-repeats", type=int, default=200)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    run_bench(
        args,
        lambda url, pid: bench(args, url, pid),
        env={
            "HUSHGATE_SPEAKER_ENCODER": "",
            "HUSHGATE_TRANSLATORS": "apertium",
            "HUSHGATE_SYNTHESIZERS": "",
        },
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
