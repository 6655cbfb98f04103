"""What bench/translate.py prints: its tables, the translator timed alone, the target lines, the errors."""

from __future__ import annotations

import argparse
import time

from .measure import Measured
from .metrics import EngineCounters
from .stats import mean, pct
from .table import fmt, table
from .texts import TRANSLATE_SENTENCES as SENTENCES
from .translate_sessions import SOURCE, TARGET, Part, StreamResult

TARGET_P95_MS = 50.0


def engine_cells(e: EngineCounters | None, answered: int) -> list[str]:
    if e is None or not e.calls:
        return ["–", "–", "–", "–"]
    return [
        fmt(e.calls),
        fmt(answered / e.calls, 2),
        fmt(1000 * e.busy_s / e.calls, 1),
        fmt(1000 * e.queue_delay_s / e.calls, 1),
    ]


# The engine alone ------------------------------------------------------------------------


def direct_rows(repeats: int, finals: list[str], gap_s: float) -> list[list[str]]:
    from hushgate.engines.apertium import create
    from hushgate.engines.base import EngineOptions

    translator = create(EngineOptions())
    try:
        translator.translate(["warm up"], SOURCE, TARGET)
        rows = []
        sets = [
            ("(a)/(b) sentences, back to back", SENTENCES, 1, 0.0),
            ("(a)/(b) sentences, back to back", SENTENCES, 4, 0.0),
        ]
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
            rows.append(
                [
                    f"apertium {SOURCE}→{TARGET}",
                    label,
                    fmt(words, 0),
                    str(batch),
                    str(len(times)),
                    fmt(pct(times, 50), 1),
                    fmt(pct(times, 95), 1),
                    fmt(mean(times), 1),
                    fmt(max(times), 1),
                    fmt(1000 * batch / sum(times) * len(times), 0),
                ]
            )
        return rows
    finally:
        translator.close()


def _verdict(p95: float) -> str:
    return "met" if p95 <= TARGET_P95_MS else f"MISSED by {p95 - TARGET_P95_MS:.1f} ms"


def _problems(errors: list[str]) -> str:
    counts: dict[str, int] = {}
    for e in errors:
        counts[e] = counts.get(e, 0) + 1
    return "; ".join(f"{n}× {e}" for e, n in sorted(counts.items(), key=lambda kv: -kv[1])[:5])


def report(
    args: argparse.Namespace,
    latency_parts: list[Part],
    burst: Part | None,
    stream_parts: list[tuple[int, Measured[StreamResult]]],
) -> None:
    """Every table of the run, the target lines and the errors received, on stdout."""
    if latency_parts:
        rate = f"at most {args.rate:g} requests/s per session" if args.rate > 0 else "unpaced"
        print(
            f"\n## (a) Latency per utterance: `translate` → `translation`, {SOURCE}→{TARGET}, one request at a "
            f"time per session ({args.requests} per session, {rate}, {args.format})\n"
        )
        header = [
            "sessions",
            "answered",
            "refused",
            "p50",
            "p95",
            "mean",
            "max",
            "ping RTT p50",
            "ping RTT p95",
            "engine calls",
            "sentences/call",
            "engine ms/call",
            "engine queue ms/call",
            "server CPU %",
            "host CPU %",
            "others CPU %",
        ]
        rows = []
        for p in latency_parts:
            lat = p.latencies
            rows.append(
                [
                    str(p.sessions),
                    str(len(lat)),
                    str(p.refused),
                    fmt(pct(lat, 50), 1),
                    fmt(pct(lat, 95), 1),
                    fmt(mean(lat), 1),
                    fmt(max(lat) if lat else None, 1),
                    fmt(pct(p.pings, 50), 1),
                    fmt(pct(p.pings, 95), 1),
                    *engine_cells(p.engine, len(lat)),
                    fmt(mean(p.usage.server_cpu)),
                    fmt(mean(p.usage.host_cpu)),
                    fmt(p.usage.others_cpu()),
                ]
            )
        print(table(header, rows))

    if burst is not None:
        print(
            f"\n## (b) Throughput: {args.burst_sessions} sessions × {args.burst} requests, "
            f"up to {args.window} in flight per session, unpaced\n"
        )
        lat = burst.latencies
        header = [
            "sessions",
            "sent",
            "translated",
            "refused",
            "translated/s",
            "latency p50",
            "latency p95",
            "engine calls",
            "sentences/call",
            "engine ms/call",
            "engine queue ms/call",
            "server CPU %",
            "peak RSS MB (with children)",
            "others CPU %",
        ]
        print(
            table(
                header,
                [
                    [
                        str(burst.sessions),
                        str(burst.sessions * args.burst),
                        str(len(lat)),
                        str(burst.refused),
                        fmt(burst.rate(), 0),
                        fmt(pct(lat, 50)),
                        fmt(pct(lat, 95)),
                        *engine_cells(burst.engine, len(lat)),
                        fmt(mean(burst.usage.server_cpu)),
                        burst.usage.peak_rss(),
                        fmt(burst.usage.others_cpu()),
                    ]
                ],
            )
        )

    if stream_parts:
        print(
            f"\n## (c) End to end: `final` → its `translation`, streaming speech at max pace with "
            f'translate.targets ["{TARGET}"]\n'
        )
        header = [
            "sessions",
            "audio s/session",
            "wall s",
            "finals (non-empty)",
            "translations",
            "p50",
            "p95",
            "mean",
            "max",
            "engine calls",
            "sentences/call",
            "engine ms/call",
            "engine queue ms/call",
            "server CPU %",
            "peak RSS MB (with children)",
            "others CPU %",
            "STT lag warnings",
            "errors",
        ]
        rows = []
        for n, m in stream_parts:
            results, usage, engine, wall = m.results, m.usage, m.engine, m.wall_s
            lat = [v for r in results for v in r.latencies()]
            translations = sum(len(r.translation_at) for r in results)
            rows.append(
                [
                    str(n),
                    fmt(results[0].audio_s, 1),
                    fmt(wall, 1),
                    str(sum(len(r.final_at) for r in results)),
                    str(translations),
                    fmt(pct(lat, 50), 1),
                    fmt(pct(lat, 95), 1),
                    fmt(mean(lat), 1),
                    fmt(max(lat) if lat else None, 1),
                    *engine_cells(engine, translations),
                    fmt(mean(usage.server_cpu)),
                    usage.peak_rss(),
                    fmt(usage.others_cpu()),
                    str(sum(r.lag_warnings for r in results)),
                    str(sum(len(r.errors) for r in results)),
                ]
            )
        print(table(header, rows))

    if not args.no_direct:
        print("\n## The translator alone, in the bench process (no socket; server idle)\n")
        header = [
            "engine",
            "texts",
            "words/text (mean)",
            "texts/call",
            "calls",
            "p50 ms/call",
            "p95 ms/call",
            "mean ms/call",
            "max ms/call",
            "texts/s in calls",
        ]
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
