"""Text-to-speech benchmark through the gateway's WebSocket (`speak` → `tts.*`).

For every voice × text class × session count N (run one after another), N
sessions connect at once; each sends M ``speak`` requests one after another
(the next only after the previous ``tts.end``), cycling through the texts of
the class. Every event is stamped on receipt.

Text classes:

short
    a few words ("Hello there.", "Yes, I can hear you.", ...): one chunk.
long, 1-word 1st clause
    40-80 words opening with "Sure," / "Okay," / "Right," and then one long
    sentence: Piper's first chunk is that one word, its second the next
    ~160 characters.
long, short 1st sentence
    40-80 words opening with a short sentence ("Sure, I can help with
    that. ..."): it fits Piper's 40-character first chunk whole.
    (The server's Piper engine cuts text into chunks, the first one short, so
    first audio should not depend on the whole length.)
long, long 1st clause
    40-80 words whose first sentence has no clause boundary for well over a
    hundred characters: the first chunk is long (up to 160 characters).

Figures per row (ms unless said; p50/p95 over all N×M requests of the row):

first audio
    receipt of the first audio frame (a bare binary frame in ``format=json``,
    ``tts.audio`` in msgpack) minus the moment ``speak`` was sent.
total
    receipt of ``tts.end`` minus the moment ``speak`` was sent.
RTF
    total / audio duration (``tts.end.duration_ms``): synthesis wall time per
    second of audio, as seen by the client. Below 1 means faster than real time.
stall
    what a player starting at the first audio frame and playing at real time
    would have had to wait, summed over the request: each frame due (by the
    audio before it) earlier than it arrived delays the rest. 0 means the
    audio kept ahead of playback from the first frame on.
server CPU %, peak RSS MB
    mean CPU of the server process and its children (espeak-ng runs one
    process per request) over the row, sampled every 0.25 s; 100 % is one core.
    Only with ``--spawn``.

The diagnostics table splits the time: ``tts.start`` (speak → tts.start: the
session's read, validation and outbox path, no engine work), and from
``GET /metrics`` the engine runner's calls during the row (one call per
``next()`` on the synthesiser's chunk iterator, i.e. per chunk, plus the last
empty one), mean time inside a call, and mean time a call waited for a free
engine slot (``--tts-concurrency``, default 1: concurrent sessions queue here).
Host CPU and "others" (host minus server minus this bench) show other work on
the machine, which distorts every figure.

The engine table (skip with ``--no-direct``) runs the same synthesisers inside
this process, with nothing in between: in the 1-session rows, right after each
``speak`` has ended (server idle, same text, so same machine load), the bench
times ``synthesize()`` itself, first chunk and total. "socket − engine" is the
median of the paired differences of first audio: the gateway's own cost
(event loop, encoding, WebSocket, thread hand-offs), robust to load drift.

Usage::

    python bench/tts.py --spawn
    python bench/tts.py --url ws://127.0.0.1:8000/v1/stream --sessions 1,4 --requests 10
    python bench/tts.py --spawn --voices en_US-joe-medium --classes "short;long, 1-word 1st clause"

A measuring tool, not a test: it asserts nothing about timings.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from core import wire as w
from core.cli import add_server_options, run_bench
from core.server import get_json, http_base, server_alive
from core.stats import mean, pct
from core.table import fmt, table
from core.texts import TTS_TEXTS as TEXTS
from core.tts_sessions import DirectEngines, Row, run_row, warm_up

FIRST_AUDIO_TARGET_MS = 150.0


def first_chunk_chars(voice_engine: str, text_class: str) -> str:
    if voice_engine != "piper":
        return "whole text"
    from hushgate.engines.piper_chunks import split_text

    return ", ".join(str(len(split_text(t)[0])) for t in TEXTS[text_class])


# Output --------------------------------------------------------------------------------


def main_table(rows: list[Row]) -> str:
    header = [
        "voice",
        "text",
        "sessions",
        "requests",
        "first audio p50",
        "first audio p95",
        "total p50",
        "total p95",
        "RTF p50",
        "RTF p95",
        "stall p95",
        "audio s (mean)",
        "server CPU %",
        "peak RSS MB (with children)",
        "errors",
    ]
    body = []
    for r in rows:
        body.append(
            [
                r.voice,
                r.text_class,
                str(r.sessions),
                str(r.requests),
                fmt(pct(r.first_audio_ms, 50)),
                fmt(pct(r.first_audio_ms, 95)),
                fmt(pct(r.total_ms, 50)),
                fmt(pct(r.total_ms, 95)),
                fmt(pct(r.rtf, 50), 3),
                fmt(pct(r.rtf, 95), 3),
                fmt(pct(r.stall_ms, 95)),
                fmt(mean(r.audio_s), 1),
                fmt(mean(r.usage.server_cpu)),
                r.usage.peak_rss(),
                str(r.errors),
            ]
        )
    return table(header, body)


def diagnostics_table(rows: list[Row]) -> str:
    header = [
        "voice",
        "text",
        "sessions",
        "speak→tts.start p50",
        "first audio max",
        "engine calls",
        "engine ms/call",
        "engine queue ms/call",
        "host CPU %",
        "others CPU %",
        "wall s",
    ]
    body = []
    for r in rows:
        e = r.engine
        busy_ms = 1000 * e.busy_s / e.calls if e and e.calls else None
        queue_ms = 1000 * e.queue_delay_s / e.calls if e and e.calls else None
        body.append(
            [
                r.voice,
                r.text_class,
                str(r.sessions),
                fmt(pct(r.start_ms, 50), 1),
                fmt(max(r.first_audio_ms) if r.first_audio_ms else None),
                fmt(e.calls if e else None),
                fmt(busy_ms, 1),
                fmt(queue_ms, 1),
                fmt(mean(r.usage.host_cpu)),
                fmt(r.usage.others_cpu()),
                fmt(r.wall_s, 1),
            ]
        )
    return table(header, body)


def direct_table(rows: list[Row], engines_by_voice: dict[str, str]) -> str:
    header = [
        "voice",
        "text",
        "1st chunk chars",
        "pairs",
        "engine first chunk p50",
        "engine first chunk p95",
        "socket first audio p50",
        "socket first audio p95",
        "socket − engine p50 (paired)",
        "socket − engine max (paired)",
        "engine total p50",
        "engine RTF p50",
    ]
    body = []
    for r in rows:
        if r.sessions != 1 or not r.direct_first_ms:
            continue
        rtf = [t / 1000 / a for t, a in zip(r.direct_total_ms, r.audio_s, strict=False)]
        body.append(
            [
                r.voice,
                r.text_class,
                first_chunk_chars(engines_by_voice.get(r.voice, ""), r.text_class),
                str(len(r.direct_first_ms)),
                fmt(pct(r.direct_first_ms, 50)),
                fmt(pct(r.direct_first_ms, 95)),
                fmt(pct(r.first_audio_ms, 50)),
                fmt(pct(r.first_audio_ms, 95)),
                fmt(pct(r.paired_gap_ms, 50), 1),
                fmt(max(r.paired_gap_ms), 1),
                fmt(pct(r.direct_total_ms, 50)),
                fmt(pct(rtf, 50), 3),
            ]
        )
    return table(header, body)


def target_lines(rows: list[Row]) -> str:
    lines = []
    for r in rows:
        if r.text_class == "long, long 1st clause":
            continue  # not a target case: its first clause is long
        p95 = pct(r.first_audio_ms, 95)
        if p95 is None:
            continue
        verdict = "met" if p95 <= FIRST_AUDIO_TARGET_MS else f"MISSED by {p95 - FIRST_AUDIO_TARGET_MS:.0f} ms"
        lines.append(
            f"- {r.voice}, {r.text_class}, {r.sessions} session(s): first audio p95 {p95:.0f} ms "
            f"(target ≤ {FIRST_AUDIO_TARGET_MS:.0f}): {verdict}"
        )
    return "\n".join(lines)


# Main ----------------------------------------------------------------------------------


def pick_voices(engines: dict[str, Any], wanted: str | None) -> list[dict[str, Any]]:
    voices = engines.get("voices") or []
    if wanted:
        chosen = []
        for name in wanted.split(","):
            match = [v for v in voices if v["id"] == name.strip()]
            if not match:
                raise SystemExit(f"no voice {name!r}; the server has: {', '.join(v['id'] for v in voices)}")
            chosen += match
        return chosen
    chosen = []
    piper = [v for v in voices if v["engine"] == "piper" and v["language"].startswith("en")]
    joe = [v for v in piper if "joe" in v["id"]]
    if joe or piper:
        chosen.append((joe or piper)[0])
    espeak = [v for v in voices if v["engine"] == "espeak"]
    for preferred in ("espeak-en-us", "espeak-en"):
        hit = [v for v in espeak if v["id"] == preferred]
        if hit:
            chosen.append(hit[0])
            break
    else:
        english = [v for v in espeak if v["language"].lower().startswith("en")]
        if english:
            chosen.append(english[0])
    if not chosen:
        raise SystemExit(f"no English voice on the server: {[v['id'] for v in voices]}")
    return chosen


async def bench(args: argparse.Namespace, url: str, pid: int | None) -> None:
    http = http_base(url)
    engines = get_json(f"{http}/v1/engines")
    voices = pick_voices(engines, args.voices)
    classes = [c.strip() for c in args.classes.split(";")] if args.classes else list(TEXTS)
    for c in classes:
        if c not in TEXTS:
            raise SystemExit(f"unknown text class {c!r}; have: {', '.join(TEXTS)}")
    sessions = [int(s) for s in args.sessions.split(",")]
    wire = w.Wire(args.format)
    ws_url = w.stream_url(url, args.format)
    compression = None if args.compression == "none" else "deflate"
    print(
        f"# voices: {', '.join(v['id'] + ' (' + v['engine'] + ')' for v in voices)}; "
        f"format={args.format}, compression={args.compression}, {args.requests} requests per session",
        file=sys.stderr,
        flush=True,
    )
    direct = None if args.no_direct else DirectEngines(voices)
    rows: list[Row] = []
    gone = False
    for voice in voices:
        if gone:
            break
        await warm_up(ws_url, wire, voice["id"], [TEXTS[c][0] for c in TEXTS], compression)
        timer = direct.timer(voice["id"]) if direct is not None else None
        for text_class in classes:
            for n in sessions:
                if not server_alive(http):
                    print(
                        f"\n**The server went away (or is draining) before {voice['id']} / {text_class} / {n}; "
                        "the rows below stop there.**"
                    )
                    gone = True
                    break
                row = await run_row(
                    ws_url,
                    http,
                    pid,
                    wire,
                    voice["id"],
                    f"tts:{voice['engine']}",
                    text_class,
                    TEXTS[text_class],
                    n,
                    args.requests,
                    compression,
                    timer,
                )
                rows.append(row)
                print(
                    f"# {voice['id']} / {text_class} / {n}: first audio p95 "
                    f"{fmt(pct(row.first_audio_ms, 95))} ms, errors {row.errors}",
                    file=sys.stderr,
                    flush=True,
                )
            if gone:
                break
    print(f"\n## TTS through the WebSocket ({args.format}, {args.requests} sequential speak requests per session)\n")
    print(main_table(rows))
    print("\n## Where the time goes (socket side and engine runner, from GET /metrics)\n")
    print(diagnostics_table(rows))
    if direct is not None:
        print(
            "\n## The synthesiser alone vs through the socket (1 session; the engine timed in the bench process "
            "right after each `speak`, same text, server idle)\n"
        )
        print(direct_table(rows, {v["id"]: v["engine"] for v in voices}))
    print("\n## Target: first audio p95 ≤ 150 ms (texts whose first clause is short)\n")
    print(target_lines(rows))
    problems = [p for r in rows for p in r.problems]
    if problems:
        print(f"\n{len(problems)} problem(s):")
        for p in problems[:30]:
            print(f"- {p}")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_server_options(parser, required=True, spawn_help="start `hushgate serve` on a free loopback port for the bench")
    parser.add_argument("--sessions", default="1,4", help="concurrent session counts, comma-separated")
    parser.add_argument("--requests", type=int, default=16, help="sequential speak requests per session (M)")
    parser.add_argument("--voices", help="voice ids, comma-separated (default: Piper joe and espeak en-us)")
    parser.add_argument("--classes", help=f"text classes, separated by ';': {'; '.join(TEXTS)}")
    parser.add_argument("--format", choices=("json", "msgpack"), default="json")
    parser.add_argument(
        "--compression",
        choices=("deflate", "none"),
        default="deflate",
        help="permessage-deflate as browsers negotiate it (default), or none",
    )
    parser.add_argument("--no-direct", action="store_true", help="skip the in-process engine measurement")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    run_bench(
        args, lambda url, pid: bench(args, url, pid), env={"HUSHGATE_SPEAKER_ENCODER": "", "HUSHGATE_TRANSLATORS": ""}
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
