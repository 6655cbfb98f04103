"""Mixed-feature live-streaming load benchmark for the speech gateway.

For each session count N (run one after another), N clients connect to
``/v1/stream`` at once and each streams real speech at real-time pace, exactly
as ``bench/stream.py`` does (same audio, same wall-clock pacing, same mapping of
the audio clock back to send times: both use ``core.live.run_client``), but
each session asks for a different set of features. Session *i* gets feature
``MIX[i % len(MIX)]`` (``--mix``, default ``stt,translate,speak,speakers``):

stt
    plain speech-to-text (partials and words on, as in ``bench/stream.py``);
translate
    plus ``translate.targets: ["es"]`` (a ``translation`` after each non-empty
    final);
speak
    plus ``translate.targets: ["es"]`` and ``speak.translations: true`` (each
    translation spoken back: ``tts.start``, audio, ``tts.end``);
speakers
    plus ``speakers.identify`` and ``speakers.diarize`` (each final of 1 s or
    more labelled with a speaker, on the final or in a later ``speaker`` event);
nopartials
    plain speech-to-text with ``partials: false`` (not in the default mix: it
    shows what partials cost, e.g. ``--mix nopartials``).

So N=1 is plain STT only, N=2 adds a translating session, N=4 has one of each
and N=6 two plain and two translating sessions besides one of each other kind.

Figures per N (ms; p50/p95 pooled over every utterance of every session):

first partial, final
    as in ``bench/stream.py`` (computed by the same ``core.live_figures.analyse``): first partial is
    ``recv(first partial) - sent(speech.started.t_ms)``, final is
    ``recv(final) - sent(final.t1_ms)`` -- end of speech (hangover included) to
    final, the ``silence_ms`` end-of-speech wait inside it. Finals cut short by
    ``stop`` are left out of the final figure.
translation
    ``recv(translation of utterance u) - recv(final u)``: what translating adds
    after the caption is on screen (non-provisional translations only).
spoken
    ``recv(first TTS audio frame of utterance u) - recv(translation u)``.

Dropped or late (second table):

* utterances with ``speech.started`` but no ``final``;
* finals later than the bound (``silence_ms + 500`` ms);
* translations missing for finals (every non-empty final of a translating
  session should get one per target, also those cut by ``stop``: ``stop``
  drains translations);
* spoken translations missing (a translation of a ``speak`` session with text
  but no ``tts.start`` with its utterance number) and ``tts.start`` without
  ``tts.end``;
* speaker decisions that came late (a ``speaker`` event after the final, which
  the protocol allows) or never (a final with neither ``speaker`` nor
  ``undecided`` and no ``speaker`` event after it);
* ``error`` events by code, and sessions that failed (no ``ended``, a close
  other than 1000, a connection error).

Resources: server CPU % is the CPU time the server process *tree* used during
the round divided by its wall time (100 % = one core), from cumulative
``cpu_times`` read at the start and end of the round, including reaped
children: espeak-ng runs one short process per spoken translation, which
periodic sampling would miss. Peak RSS is sampled every 0.5 s: the server
process itself, and in brackets with its children (Apertium pipelines) when
they add at least 1 MB. "others CPU %" is host CPU minus the server tree minus
this bench, over the same interval: other work on the machine distorts every
figure. ``--wait-quiet`` waits, before each round, until others stay under
``--quiet-pct`` % of one core for ``--quiet-hold-s`` seconds (at most
``--quiet-timeout-s``, then it measures anyway and says so);
``--wait-quiet-only`` only does that wait (nothing else running of this bench)
and exits 0 when it got quiet, 3 when it timed out, so it can precede another
bench: ``python bench/load.py --wait-quiet-only && python bench/stream.py ...``.

Server view: per engine runner, deltas of the ``GET /metrics`` counters over
the round (calls, seconds inside calls, seconds waiting for a slot), and the
speech-to-text summary of ``bench/stream.py``.

The line after the first table names the largest N whose p95 final latency
stays within ``silence_ms + 500`` ms (``bench/stream.py`` uses ``+ 800``).

Usage::

    python bench/load.py --spawn --clients 1,2,4,6 --seconds 60
    python bench/load.py --spawn --clients 4,8 --mix speak --seconds 120 --json /tmp/load.json

This is a measuring tool, not a test: it asserts nothing about timings.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

from core import wire as w
from core.audio import Playlist, load_playlist
from core.cli import add_live_tail, check_live_options, live_parser, live_settings, run_bench
from core.live import announce, raw_sessions, report_problems, run_clients, warm_up
from core.live_figures import capacity_line, server_table
from core.metrics import ServerView, engine_deltas, scrape_async
from core.mix import FEATURES, Resources, Round, analyse_round, merged, mix_label
from core.mix_tables import diagnostics_table, drops_table, engines_table, feature_table, main_table
from core.resources import CpuClock, sampling, wait_quiet
from core.server import http_base
from core.stats import pct
from core.table import fmt, print_sections

LATENCY_SLACK_MS = 500


# Driver ----------------------------------------------------------------------------------


async def run_round(
    n: int, *, url: str, playlist: Playlist, args: argparse.Namespace, server_pid: int | None
) -> tuple[Round, dict[str, Any]]:
    features = [args.mix[i % len(args.mix)] for i in range(n)]
    wire = w.Wire(args.format)
    http = http_base(url)
    before = await scrape_async(http)
    res = Resources()
    clock = CpuClock(server_pid)
    begun = time.perf_counter()
    async with sampling(server_pid, interval_s=0.5) as res.usage:
        runs = await run_clients(n, url, wire, playlist, args, [FEATURES[feature] for feature in features])
        wall_s = time.perf_counter() - begun
        res.host_cpu, res.server_cpu, res.bench_cpu = clock.lap()
    res.others_cpu = max(0.0, res.host_cpu - (res.server_cpu or 0.0) - res.bench_cpu)
    after = await scrape_async(http) if before is not None else None
    base, extra, per_feature = analyse_round(
        n, runs, features, args.silence_ms, args.silence_ms + LATENCY_SLACK_MS, wall_s
    )
    engines = None
    if before is not None and after is not None:
        base.server = ServerView.between(before, after)
        engines = engine_deltas(before, after)
    raw = {"clients": n, "sessions": raw_sessions(runs, begun, features)}
    return Round(n, features, base, extra, per_feature, res, engines, wall_s), raw


async def warm_up_all(url: str, playlist: Playlist, args: argparse.Namespace) -> None:
    """One session with every feature of the mix, so no round pays for first use (pipelines, voices)."""
    run = await warm_up(
        url, w.Wire(args.format), playlist, chunk_ms=args.chunk_ms, silence_ms=args.silence_ms, options=merged(args.mix)
    )
    kinds = Counter(ev.get("type") for _, ev in run.events)
    print(f"# warm-up events: {dict(kinds)}", file=sys.stderr)
    for _, ev in run.events:
        if ev.get("type") == "error":
            print(f"#   warm-up error {ev.get('code')}: {ev.get('message')}", file=sys.stderr)


async def bench(args: argparse.Namespace, url: str, server_pid: int | None) -> tuple[list[Round], list[dict[str, Any]]]:
    playlist = load_playlist(args.audio_dir)
    announce(playlist, args.audio_dir)
    if not args.no_warmup:
        await warm_up_all(url, playlist, args)
    rounds: list[Round] = []
    raw: list[dict[str, Any]] = []
    for n in args.clients:
        quiet = None
        if args.wait_quiet:
            quiet = await asyncio.to_thread(
                wait_quiet,
                pct=args.quiet_pct,
                hold_s=args.quiet_hold_s,
                timeout_s=args.quiet_timeout_s,
                server_pid=server_pid,
            )
        print(
            f"# N={n}: {mix_label([args.mix[i % len(args.mix)] for i in range(n)])} x {args.seconds:g} s of audio ...",
            file=sys.stderr,
            flush=True,
        )
        rnd, events = await run_round(n, url=url, playlist=playlist, args=args, server_pid=server_pid)
        rnd.quiet = quiet
        rounds.append(rnd)
        raw.append(events)
        report_problems(rnd.base.problems)
        print(
            f"#   others CPU {fmt(rnd.resources.others_cpu)} %, server CPU {fmt(rnd.resources.server_cpu)} %",
            file=sys.stderr,
            flush=True,
        )
        await asyncio.sleep(1.0)
    return rounds, raw


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = live_parser(__doc__, clients="1,2,4,6", what="session")
    parser.add_argument(
        "--mix",
        default="stt,translate,speak,speakers",
        help=f"features given round-robin to sessions; of {', '.join(FEATURES)}",
    )
    add_live_tail(parser, json_help="write figures and every received event (no audio) here")
    parser.add_argument(
        "--wait-quiet", action="store_true", help="before each round, wait until other processes are (nearly) idle"
    )
    parser.add_argument(
        "--wait-quiet-only", action="store_true", help="only wait for a quiet machine, then exit (0 quiet, 3 timed out)"
    )
    parser.add_argument("--quiet-pct", type=float, default=20.0, help="others' CPU under this %% of one core ...")
    parser.add_argument("--quiet-hold-s", type=float, default=30.0, help="... for this many seconds in a row ...")
    parser.add_argument("--quiet-timeout-s", type=float, default=900.0, help="... waiting at most this long")
    args = parser.parse_args(argv)
    check_live_options(parser, args)
    args.mix = [part.strip() for part in args.mix.split(",") if part.strip()]
    if not args.mix or any(name not in FEATURES for name in args.mix):
        parser.error(f"--mix takes comma-separated features of: {', '.join(FEATURES)}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.wait_quiet_only:
        quiet, _, _ = wait_quiet(
            pct=args.quiet_pct, hold_s=args.quiet_hold_s, timeout_s=args.quiet_timeout_s, server_pid=None
        )
        return 0 if quiet else 3
    (rounds, raw), url, server = run_bench(
        args, lambda url, pid: bench(args, url, pid), serve_args=["--max-sessions", "32"], fmt=args.format
    )
    print(
        f"\nload bench: {url} format={args.format} seconds={args.seconds:g} chunk_ms={args.chunk_ms} "
        f"silence_ms={args.silence_ms} mix={','.join(args.mix)} cpus={os.cpu_count()}\n"
    )
    print(main_table(rounds))
    print()
    print(
        capacity_line(
            [(r.clients, pct(r.base.final_ms, 95), r.extra.bad + r.base.missing_finals) for r in rounds],
            args.silence_ms,
            LATENCY_SLACK_MS,
            "errors / drops",
        )
    )
    print()
    print(
        "Latencies in ms. first partial / final as in bench/stream.py (from when the audio left the client; final "
        "from the audio at t1_ms, the silence_ms wait inside it). translation = recv(translation) - recv(final); "
        "spoken = recv(first TTS audio) - recv(translation). CPU % of one core (200 % = both cores), server "
        "process tree incl. reaped children; peak RSS of the server (with children in brackets)."
    )
    print()
    print_sections(
        drops_table(rounds, args.silence_ms + LATENCY_SLACK_MS),
        feature_table(rounds),
        diagnostics_table(rounds),
        server_table([r.base for r in rounds]),
        engines_table(rounds),
    )
    if server is not None:
        print(f"\nserver log: {server.log_path}")
    if args.json:
        payload = {
            **live_settings(args, url, LATENCY_SLACK_MS),
            "mix": args.mix,
            "rounds": [
                {
                    "clients": r.clients,
                    "features": r.features,
                    "final_p50_ms": pct(r.base.final_ms, 50),
                    "final_p95_ms": pct(r.base.final_ms, 95),
                    "first_partial_p50_ms": pct(r.base.first_partial_ms, 50),
                    "first_partial_p95_ms": pct(r.base.first_partial_ms, 95),
                    "translation_ms": r.extra.translation_ms,
                    "spoken_ms": r.extra.spoken_ms,
                    "final_ms": r.base.final_ms,
                    "missing_finals": r.base.missing_finals,
                    "extra": {k: (dict(v) if isinstance(v, Counter) else v) for k, v in vars(r.extra).items()},
                    "server_cpu": r.resources.server_cpu,
                    "others_cpu": r.resources.others_cpu,
                    "host_cpu": r.resources.host_cpu,
                    "bench_cpu": r.resources.bench_cpu,
                    "peak_rss_mb": max(r.resources.usage.server_rss_mb, default=None),
                    "engines": r.engines,
                    "wall_s": r.wall_s,
                    "problems": r.base.problems,
                }
                for r in rounds
            ],
            "raw": raw,
        }
        args.json.write_text(json.dumps(payload, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
