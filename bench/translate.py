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
import time
from collections.abc import Sequence

from core import wire as w
from core.audio import load_playlist
from core.cli import add_server_options, run_bench
from core.measure import Measured, measure
from core.metrics import EngineCounters
from core.server import get_json, http_base, server_alive
from core.stats import mean, pct
from core.table import fmt, table
from core.translate_sessions import (
    SOURCE,
    TARGET,
    Part,
    StreamResult,
    burst_session,
    sequential_session,
    stream_session,
)

TARGET_P95_MS = 50.0

SENTENCES = [
    "Good morning.",
    "Can you hear me now?",
    "Let's get started with today's meeting.",
    "I think we should move the deadline to next Friday.",
    "The weather is supposed to be nice this weekend.",
    "Could you send me the report before lunch?",
    "My flight was delayed by two hours, so I missed the connection.",
    "We need to buy more milk, bread and eggs.",
    "Thank you very much for your help.",
    "The new version of the software will be released in March.",
    "Please turn left at the next traffic light and park behind the blue building.",
    "I don't know where she put the keys.",
    "And so, my fellow Americans, ask not what your country can do for you, "
    "ask what you can do for your country.",
    "He hoped there would be stew for dinner, turnips and carrots and bruised potatoes "
    "and fat mutton pieces to be ladled out in thick peppered flour fattened sauce.",
    "The children are playing in the garden.",
    "How much does a ticket to the museum cost?",
    "If the reader will excuse me, I will say nothing of my antecedents nor of the circumstances "
    "which led me to leave my native country.",
    "We finished the project on time and under budget.",
    "Where is the nearest train station?",
    "She works at the hospital as a nurse.",
    "It is important to drink enough water every day.",
    "The meeting has been cancelled because half of the team is sick.",
    "Yes, that's right.",
    "I would like to book a table for four people at eight o'clock tonight, "
    "preferably near the window, if that is possible.",
]


def engine_cells(e: EngineCounters | None, answered: int) -> list[str]:
    if e is None or not e.calls:
        return ["–", "–", "–", "–"]
    return [fmt(e.calls), fmt(answered / e.calls, 2), fmt(1000 * e.busy_s / e.calls, 1),
            fmt(1000 * e.queue_delay_s / e.calls, 1)]


# The engine alone ------------------------------------------------------------------------


def direct_rows(repeats: int, finals: list[str], gap_s: float) -> list[list[str]]:
    from hushgate.engines.apertium import create
    from hushgate.engines.base import EngineOptions

    translator = create(EngineOptions())
    try:
        translator.translate(["warm up"], SOURCE, TARGET)
        rows = []
        sets = [("(a)/(b) sentences, back to back", SENTENCES, 1, 0.0),
                ("(a)/(b) sentences, back to back", SENTENCES, 4, 0.0)]
        if gap_s > 0:
            sets.append((f"(a)/(b) sentences, {1000 * gap_s:.0f} ms apart like (a)", SENTENCES, 1, gap_s))
        if finals:
            sets.append(("(c) finals' texts, back to back", finals, 1, 0.0))
        for label, texts_all, batch, gap in sets:
            times: list[float] = []
            for k in range(repeats):
                texts = [texts_all[(k * batch + j) % len(texts_all)] for j in range(batch)]
                t0 = time.perf_counter()
                translator.translate(texts, SOURCE, TARGET)
                times.append(1000 * (time.perf_counter() - t0))
                if gap:
                    time.sleep(gap)
            words = mean([len(t.split()) for t in texts_all])
            rows.append([f"apertium {SOURCE}→{TARGET}", label, fmt(words, 0), str(batch), str(len(times)),
                         fmt(pct(times, 50), 1), fmt(pct(times, 95), 1), fmt(mean(times), 1), fmt(max(times), 1),
                         fmt(1000 * batch / sum(times) * len(times), 0)])
        return rows
    finally:
        translator.close()


# Main -------------------------------------------------------------------------------------


def _verdict(p95: float) -> str:
    return "met" if p95 <= TARGET_P95_MS else f"MISSED by {p95 - TARGET_P95_MS:.1f} ms"


def _problems(errors: list[str]) -> str:
    counts: dict[str, int] = {}
    for e in errors:
        counts[e] = counts.get(e, 0) + 1
    return "; ".join(f"{n}× {e}" for e, n in sorted(counts.items(), key=lambda kv: -kv[1])[:5])


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
    print(f"# translator for {pair}: {names[0] if names else '?'}; server control_rate_per_s: "
          f"{ready.get('limits', {}).get('control_rate_per_s', '?')}", file=sys.stderr, flush=True)

    # Warm-up: starts the pipeline (its first call spawns the processes).
    await sequential_session(ws_url, wire, SENTENCES, 10, 0, 0, asyncio.Barrier(1), compression, args.rate)

    latency_parts: list[Part] = []
    if "a" in parts:
        for n in (int(s) for s in args.sessions.split(",")):
            alive_or_exit(http, f"part (a) with {n} session(s)")
            barrier = asyncio.Barrier(n)
            part = Part(f"{n}", n, await measure(http, pid, engine_key, [
                sequential_session(ws_url, wire, SENTENCES, args.requests, i * 6, args.pings, barrier, compression,
                                   args.rate)
                for i in range(n)
            ]))
            latency_parts.append(part)
            print(f"# (a) {n} session(s): p95 {fmt(pct(part.latencies, 95), 1)} ms", file=sys.stderr, flush=True)

    burst: Part | None = None
    if "b" in parts:
        n = args.burst_sessions
        alive_or_exit(http, "part (b)")
        barrier = asyncio.Barrier(n)
        burst = Part("burst", n, await measure(http, pid, engine_key, [
            burst_session(ws_url, wire, SENTENCES, args.burst, args.window, i * 6, barrier, compression)
            for i in range(n)
        ]))
        print(f"# (b) {fmt(burst.rate(), 0)} sentences/s", file=sys.stderr, flush=True)

    stream_parts: list[tuple[int, Measured[StreamResult]]] = []
    if "c" in parts and args.stream_sessions:
        playlist = load_playlist()
        for n in (int(s) for s in args.stream_sessions.split(",")):
            alive_or_exit(http, f"part (c) with {n} session(s)")
            barrier = asyncio.Barrier(n)
            measured = await measure(http, pid, engine_key, [
                stream_session(ws_url, wire, playlist, (i * 3) % len(playlist), barrier, compression)
                for i in range(n)
            ])
            stream_parts.append((n, measured))
            lat = [v for r in measured.results for v in r.latencies()]
            print(f"# (c) {n} session(s): p95 {fmt(pct(lat, 95), 1)} ms", file=sys.stderr, flush=True)

    if latency_parts:
        rate = f"at most {args.rate:g} requests/s per session" if args.rate > 0 else "unpaced"
        print(f"\n## (a) Latency per utterance: `translate` → `translation`, {SOURCE}→{TARGET}, one request at a "
              f"time per session ({args.requests} per session, {rate}, {args.format})\n")
        header = ["sessions", "answered", "refused", "p50", "p95", "mean", "max", "ping RTT p50", "ping RTT p95",
                  "engine calls", "sentences/call", "engine ms/call", "engine queue ms/call", "server CPU %",
                  "host CPU %", "others CPU %"]
        rows = []
        for p in latency_parts:
            lat = p.latencies
            rows.append([str(p.sessions), str(len(lat)), str(p.refused), fmt(pct(lat, 50), 1),
                         fmt(pct(lat, 95), 1), fmt(mean(lat), 1), fmt(max(lat) if lat else None, 1),
                         fmt(pct(p.pings, 50), 1), fmt(pct(p.pings, 95), 1), *engine_cells(p.engine, len(lat)),
                         fmt(mean(p.usage.server_cpu)), fmt(mean(p.usage.host_cpu)), fmt(p.usage.others_cpu())])
        print(table(header, rows))

    if burst is not None:
        print(f"\n## (b) Throughput: {args.burst_sessions} sessions × {args.burst} requests, "
              f"up to {args.window} in flight per session, unpaced\n")
        lat = burst.latencies
        header = ["sessions", "sent", "translated", "refused", "translated/s", "latency p50", "latency p95",
                  "engine calls", "sentences/call", "engine ms/call", "engine queue ms/call", "server CPU %",
                  "peak RSS MB (with children)", "others CPU %"]
        print(table(header, [[str(burst.sessions), str(burst.sessions * args.burst), str(len(lat)),
                              str(burst.refused), fmt(burst.rate(), 0), fmt(pct(lat, 50)), fmt(pct(lat, 95)),
                              *engine_cells(burst.engine, len(lat)), fmt(mean(burst.usage.server_cpu)),
                              burst.usage.peak_rss(), fmt(burst.usage.others_cpu())]]))

    if stream_parts:
        print(f"\n## (c) End to end: `final` → its `translation`, streaming speech at max pace with "
              f"translate.targets [\"{TARGET}\"]\n")
        header = ["sessions", "audio s/session", "wall s", "finals (non-empty)", "translations", "p50", "p95",
                  "mean", "max", "engine calls", "sentences/call", "engine ms/call", "engine queue ms/call",
                  "server CPU %", "peak RSS MB (with children)", "others CPU %", "STT lag warnings", "errors"]
        rows = []
        for n, m in stream_parts:
            results, usage, engine, wall = m.results, m.usage, m.engine, m.wall_s
            lat = [v for r in results for v in r.latencies()]
            translations = sum(len(r.translation_at) for r in results)
            rows.append([str(n), fmt(results[0].audio_s, 1), fmt(wall, 1),
                         str(sum(len(r.final_at) for r in results)), str(translations),
                         fmt(pct(lat, 50), 1), fmt(pct(lat, 95), 1), fmt(mean(lat), 1),
                         fmt(max(lat) if lat else None, 1), *engine_cells(engine, translations),
                         fmt(mean(usage.server_cpu)), usage.peak_rss(), fmt(usage.others_cpu()),
                         str(sum(r.lag_warnings for r in results)), str(sum(len(r.errors) for r in results))])
        print(table(header, rows))

    if not args.no_direct:
        print("\n## The translator alone, in the bench process (no socket; server idle)\n")
        header = ["engine", "texts", "words/text (mean)", "texts/call", "calls", "p50 ms/call", "p95 ms/call",
                  "mean ms/call", "max ms/call", "texts/s in calls"]
        finals = sorted({t for _, m in stream_parts for r in m.results for t in r.final_text.values()})
        print(table(header, direct_rows(args.direct_repeats, finals, 1 / args.rate if args.rate > 0 else 0.0)))

    print(f"\n## Target: translation p95 ≤ {TARGET_P95_MS:.0f} ms per utterance\n")
    for p in latency_parts:
        p95 = pct(p.latencies, 95)
        if p95 is not None:
            print(f"- (a) {p.sessions} session(s), request → translation: p95 {p95:.1f} ms: {_verdict(p95)}")
    for n, m in stream_parts:
        p95 = pct([v for r in m.results for v in r.latencies()], 95)
        if p95 is not None:
            print(f"- (c) {n} session(s), final → translation while streaming: p95 {p95:.1f} ms: {_verdict(p95)}")

    problems = [(f"(a) {p.sessions}", p.errors) for p in latency_parts]
    if burst is not None:
        problems.append(("(b)", burst.errors))
    problems += [(f"(c) {n}", [e for r in m.results for e in r.errors]) for n, m in stream_parts]
    problems = [(label, errors) for label, errors in problems if errors]
    if problems:
        print("\nErrors received:")
        for label, errors in problems:
            print(f"- {label}: {_problems(errors)}")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_server_options(parser, required=True, spawn_help="start `hushgate serve` on a free loopback port for the bench")
    parser.add_argument("--sessions", default="1,4", help="(a) concurrent session counts")
    parser.add_argument("--requests", type=int, default=100, help="(a) sequential requests per session")
    parser.add_argument("--pings", type=int, default=20, help="(a) ping round trips per session first")
    parser.add_argument("--rate", type=float, default=40.0,
                        help="(a) most requests per second per session (the server's default limit is 50); 0: unpaced")
    parser.add_argument("--parts", default="a,b,c", help="which parts to run: a, b, c, comma-separated")
    parser.add_argument("--burst-sessions", type=int, default=4, help="(b) sessions")
    parser.add_argument("--burst", type=int, default=300, help="(b) requests per session")
    parser.add_argument("--window", type=int, default=48, help="(b) requests in flight per session (≤ 64)")
    parser.add_argument("--stream-sessions", default="1,4",
                        help="(c) concurrent streaming session counts; empty: skip (c)")
    parser.add_argument("--format", choices=("json", "msgpack"), default="json")
    parser.add_argument("--compression", choices=("deflate", "none"), default="deflate")
    parser.add_argument("--no-direct", action="store_true", help="skip the in-process engine measurement")
    parser.add_argument("--direct-repeats", type=int, default=200)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    run_bench(args, lambda url, pid: bench(args, url, pid), env={
        "HUSHGATE_SPEAKER_ENCODER": "",
        "HUSHGATE_TRANSLATORS": "apertium",
        "HUSHGATE_SYNTHESIZERS": "",
    })
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
