"""Mixed-feature live-streaming load benchmark for the speech gateway.

For each session count N (run one after another), N clients connect to
``/v1/stream`` at once and each streams real speech at real-time pace, exactly
as ``bench/stream.py`` does (same audio, same wall-clock pacing, same mapping of
the audio clock back to send times: its ``run_client`` is used unchanged), but
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
    as in ``bench/stream.py`` (computed by its ``analyse``): first partial is
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
import contextlib
import json
import math
import os
import re
import shlex
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))

import stream as sb  # noqa: E402  (bench/stream.py: pacing, measurement, spawned server)

LATENCY_SLACK_MS = 500

FEATURES: dict[str, dict[str, Any]] = {
    "stt": {},
    "translate": {"translate": {"targets": ["es"]}},
    "speak": {"translate": {"targets": ["es"]}, "speak": {"translations": True}},
    "speakers": {"speakers": {"identify": True, "diarize": True}},
    "nopartials": {"partials": False},
}
TRANSLATING = ("translate", "speak")
Event = dict[str, Any]


class FeatureWire(sb.Wire):
    """``bench/stream.py``'s wire, with the feature options merged into ``start``."""

    def __init__(self, fmt: str, options: dict[str, Any]) -> None:
        super().__init__(fmt)
        self.options = options

    def control(self, message: Event) -> str | bytes:
        if message.get("type") == "start":
            message = {**message, **self.options}
        return super().control(message)


def merged(features: Sequence[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in features:
        for key, value in FEATURES[name].items():
            out[key] = {**out.get(key, {}), **value} if isinstance(value, dict) else value
    return out


# Resources -----------------------------------------------------------------------------


def host_cpu_s() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole host, summed over cores, as psutil counts them."""
    t = psutil.cpu_times()
    total = sum(t) - getattr(t, "guest", 0.0) - getattr(t, "guest_nice", 0.0)
    busy = total - t.idle - getattr(t, "iowait", 0.0)
    return busy, total


def own_cpu_s(proc: psutil.Process) -> float:
    t = proc.cpu_times()
    return t.user + t.system


def tree_cpu_s(root: psutil.Process | None) -> float:
    """CPU seconds of a process, its live descendants and every child they have reaped."""
    if root is None:
        return 0.0
    try:
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0
    total = 0.0
    for proc in procs:
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            t = proc.cpu_times()
            total += t.user + t.system + t.children_user + t.children_system
    return total


class CpuClock:
    """Host, server-tree and this-process CPU between two readings, in % of one core."""

    def __init__(self, server_pid: int | None) -> None:
        self.server = psutil.Process(server_pid) if server_pid is not None else None
        self.me = psutil.Process()
        self.cores = psutil.cpu_count() or 1
        self._start = self._read()

    def _read(self) -> tuple[float, float, float, float, float]:
        busy, total = host_cpu_s()
        return time.perf_counter(), busy, total, tree_cpu_s(self.server), own_cpu_s(self.me)

    def lap(self) -> tuple[float, float | None, float]:
        """(host %, server %, bench %) since the previous lap; starts the next one."""
        now = self._read()
        (w0, b0, t0, s0, m0), (w1, b1, t1, s1, m1) = self._start, now
        self._start = now
        wall = max(w1 - w0, 1e-9)
        host = 100.0 * self.cores * (b1 - b0) / max(t1 - t0, 1e-9)
        server = 100.0 * (s1 - s0) / wall if self.server is not None else None
        return host, server, 100.0 * (m1 - m0) / wall


@dataclass
class Resources:
    server_cpu: float | None = None
    host_cpu: float | None = None
    bench_cpu: float | None = None
    others_cpu: float | None = None
    rss_own_mb: list[float] = field(default_factory=list)
    rss_tree_mb: list[float] = field(default_factory=list)

    def peak_rss(self) -> str:
        if not self.rss_own_mb:
            return "–"
        own, tree = max(self.rss_own_mb), max(self.rss_tree_mb)
        return f"{own:.0f}" if tree - own < 1 else f"{own:.0f} ({tree:.0f})"

    def rss_start(self) -> str:
        return f"{self.rss_own_mb[0]:.0f}" if self.rss_own_mb else "–"


async def sample_rss(pid: int | None, res: Resources, stop: asyncio.Event, interval_s: float = 0.5) -> None:
    if pid is None:
        return
    root = psutil.Process(pid)
    while True:
        own = tree = 0
        with contextlib.suppress(psutil.NoSuchProcess):
            for proc in [root, *root.children(recursive=True)]:
                with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                    size = proc.memory_info().rss
                    tree += size
                    if proc.pid == root.pid:
                        own = size
        res.rss_own_mb.append(own / 2**20)
        res.rss_tree_mb.append(tree / 2**20)
        if stop.is_set():
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval_s)


def wait_quiet(*, pct: float, hold_s: float, timeout_s: float, server_pid: int | None) -> tuple[bool, float, float]:
    """Block until other processes use under ``pct`` % of one core for ``hold_s`` s in a row.

    "Other" is the host minus this process and the server tree (if any). Returns
    (got quiet, seconds waited, mean others % over the last ``hold_s`` s).
    """
    clock = CpuClock(server_pid)
    begun = time.monotonic()
    window: list[float] = []
    last_report = -math.inf
    while True:
        time.sleep(1.0)
        host, server, me = clock.lap()
        others = max(0.0, host - (server or 0.0) - me)
        window.append(others)
        waited = time.monotonic() - begun
        # the last hold_s one-second readings must all be under the threshold
        recent = window[-int(hold_s):]
        if len(recent) >= int(hold_s) and max(recent) < pct:
            print(f"# quiet: others {np.mean(recent):.1f} % of a core (max {max(recent):.1f} %) over the last "
                  f"{hold_s:.0f} s, after waiting {waited:.0f} s", file=sys.stderr, flush=True)
            return True, waited, float(np.mean(recent))
        if waited >= timeout_s:
            print(f"# NOT quiet after {waited:.0f} s (others {np.mean(recent):.1f} % over the last "
                  f"{len(recent)} s); measuring anyway", file=sys.stderr, flush=True)
            return False, waited, float(np.mean(recent))
        if waited - last_report >= 15:
            last_report = waited
            print(f"# waiting for a quiet machine: others {others:.0f} % now; busiest: {busiest(server_pid)}",
                  file=sys.stderr, flush=True)


def busiest(server_pid: int | None, count: int = 3) -> str:
    skip = {os.getpid()}
    if server_pid is not None:
        with contextlib.suppress(psutil.NoSuchProcess):
            skip |= {server_pid, *(p.pid for p in psutil.Process(server_pid).children(recursive=True))}
    procs = []
    for proc in psutil.process_iter(["pid", "name", "cmdline"]):
        if proc.pid in skip:
            continue
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            procs.append((proc, proc.cpu_percent(None)))
    time.sleep(0.5)
    rows = []
    for proc, _ in procs:
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            command = " ".join(" ".join(proc.info["cmdline"] or [proc.info["name"] or "?"]).split())
            rows.append((proc.cpu_percent(None), proc.pid, command))
    rows.sort(reverse=True)
    return "; ".join(f"{cpu:.0f}% {pid} {cmd[:70]}" for cpu, pid, cmd in rows[:count] if cpu >= 1) or "nothing"


# Engine counters --------------------------------------------------------------------------

_ENGINE_KEY = re.compile(r'^hushgate_engine_(calls|busy_seconds|queue_delay_seconds)_total\{engine="([^"]+)"\}$')


def engine_deltas(before: dict[str, float], after: dict[str, float]) -> dict[str, dict[str, float]]:
    """{engine: {calls, busy_seconds, queue_delay_seconds}} over the round."""
    out: dict[str, dict[str, float]] = {}
    for key, value in after.items():
        match = _ENGINE_KEY.match(key)
        if match:
            out.setdefault(match.group(2), {})[match.group(1)] = value - before.get(key, 0.0)
    return out


# Analysis ------------------------------------------------------------------------------


@dataclass
class Extra:
    """What bench/stream.py's analyse does not look at: translations, speech, speakers, error codes."""

    sessions: int = 0
    late_finals: int = 0
    translation_ms: list[float] = field(default_factory=list)
    translations_expected: int = 0
    translations_missing: int = 0
    spoken_ms: list[float] = field(default_factory=list)
    spoken_expected: int = 0
    spoken_missing: int = 0
    tts_started: int = 0
    tts_unended: int = 0
    tts_audio_s: float = 0.0
    speaker_on_final: int = 0
    speaker_too_short: int = 0
    speaker_late: int = 0
    speaker_failed: int = 0
    speaker_missing: int = 0
    error_codes: Counter[str] = field(default_factory=Counter)
    failed_sessions: int = 0

    def add(self, other: Extra) -> None:
        for name, value in vars(other).items():
            mine = getattr(self, name)
            if isinstance(mine, list | Counter):
                mine.extend(value) if isinstance(mine, list) else mine.update(value)
            else:
                setattr(self, name, mine + value)


def extra_of(run: sb.ClientRun, feature: str, silence_ms: int, bound_ms: int) -> Extra:
    x = Extra(sessions=1)
    finals: dict[int, tuple[float, Event]] = {}
    translations: dict[int, tuple[float, Event]] = {}
    tts_open: Any = None
    tts_started: dict[Any, float] = {}
    tts_ids: set[Any] = set()
    first_audio: dict[Any, float] = {}
    late_speaker: set[int] = set()
    pending_speaker: set[int] = set()
    sample_rate = 22050
    for received, ev in run.events:
        kind = ev.get("type")
        utt = ev.get("utterance")
        if kind == "final" and isinstance(utt, int):
            finals[utt] = (received, ev)
            t1 = int(ev["t1_ms"])
            if t1 + silence_ms <= run.audio_ms and (sent := run.sent_wall(t1)) is not None \
                    and 1000 * (received - sent) > bound_ms:
                x.late_finals += 1
            if feature == "speakers":
                if "speaker" in ev:
                    x.speaker_on_final += 1
                elif ev.get("undecided") == "too_short":
                    x.speaker_too_short += 1
                elif "undecided" in ev:
                    x.speaker_failed += 1
                else:
                    pending_speaker.add(utt)
        elif kind == "speaker" and isinstance(utt, int):
            if utt in pending_speaker:
                pending_speaker.discard(utt)
                late_speaker.add(utt)
                if ev.get("undecided") == "failed":
                    x.speaker_failed += 1
        elif kind == "translation" and isinstance(utt, int) and not ev.get("provisional"):
            translations[utt] = (received, ev)
            if utt in finals:
                x.translation_ms.append(1000 * (received - finals[utt][0]))
        elif kind == "tts.start":
            tts_open = ev.get("id")
            tts_started[tts_open] = received
            tts_ids.add(tts_open)
            sample_rate = int(ev.get("sample_rate") or sample_rate)
            x.tts_started += 1
        elif kind in ("<binary>", "tts.audio"):
            key = ev.get("id", tts_open)
            first_audio.setdefault(key, received)
            size = ev["bytes"] if kind == "<binary>" else len(ev.get("pcm") or b"")
            x.tts_audio_s += size / 2 / sample_rate
        elif kind == "tts.end":
            tts_started.pop(ev.get("id"), None)
            tts_open = None
        elif kind == "error":
            x.error_codes[str(ev.get("code"))] += 1
    x.tts_unended = len(tts_started)
    x.speaker_late = len(late_speaker)
    x.speaker_missing = len(pending_speaker)
    if feature in TRANSLATING:
        expected = [u for u, (_, ev) in finals.items() if ev.get("text")]
        x.translations_expected = len(expected)
        x.translations_missing = sum(1 for u in expected if u not in translations)
    if feature == "speak":
        spoken = [u for u, (_, ev) in translations.items() if str(ev.get("text", "")).strip()]
        x.spoken_expected = len(spoken)
        x.spoken_missing = sum(1 for u in spoken if u not in tts_ids)
        x.spoken_ms.extend(1000 * (first_audio[u] - translations[u][0]) for u in spoken if u in first_audio)
    if run.failure is not None or not run.ended or run.close_code not in (1000, None):
        x.failed_sessions = 1
    return x


@dataclass
class Round:
    clients: int
    features: list[str]
    base: sb.Figures
    extra: Extra
    per_feature: dict[str, tuple[sb.Figures, Extra]]
    resources: Resources
    engines: dict[str, dict[str, float]] | None
    wall_s: float
    quiet: tuple[bool, float, float] | None = None


def analyse_round(n: int, runs: list[sb.ClientRun], features: list[str], silence_ms: int,
                  wall_s: float) -> tuple[sb.Figures, Extra, dict[str, tuple[sb.Figures, Extra]]]:
    bound = silence_ms + LATENCY_SLACK_MS
    base = sb.analyse(n, runs, sb.Usage(), silence_ms, wall_s)
    extra = Extra()
    per_feature: dict[str, tuple[sb.Figures, Extra]] = {}
    for name in dict.fromkeys(features):
        subset = [r for r, f in zip(runs, features) if f == name]
        fx = Extra()
        for run in subset:
            fx.add(extra_of(run, name, silence_ms, bound))
        per_feature[name] = (sb.analyse(len(subset), subset, sb.Usage(), silence_ms, wall_s), fx)
        extra.add(fx)
    return base, extra, per_feature


# Output ----------------------------------------------------------------------------------

P = sb.percentile
f_ = sb._fmt


def mix_label(features: Sequence[str]) -> str:
    counts = Counter(features)
    return " ".join(f"{counts[name]}×{name}" if counts[name] > 1 else name for name in dict.fromkeys(features))


def main_table(rounds: list[Round]) -> str:
    rows = [
        "| N | mix | utts | finals | partials/utt | first partial p50 | p95 | final p50 | final p95 "
        "| translation p50 | p95 | spoken p50 | p95 | errors | server CPU % | peak RSS MB |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rounds:
        b, x = r.base, r.extra
        rows.append(
            f"| {r.clients} | {mix_label(r.features)} | {b.utterances} | {b.finals} | {f_(b.partials_per_utterance, 2)} "
            f"| {f_(P(b.first_partial_ms, 50))} | {f_(P(b.first_partial_ms, 95))} "
            f"| {f_(P(b.final_ms, 50))} | {f_(P(b.final_ms, 95))} "
            f"| {f_(P(x.translation_ms, 50))} | {f_(P(x.translation_ms, 95))} "
            f"| {f_(P(x.spoken_ms, 50))} | {f_(P(x.spoken_ms, 95))} "
            f"| {sum(x.error_codes.values()) + x.failed_sessions} | {f_(r.resources.server_cpu)} "
            f"| {r.resources.peak_rss()} |"
        )
    return "\n".join(rows)


def drops_table(rounds: list[Round], silence_ms: int) -> str:
    bound = silence_ms + LATENCY_SLACK_MS
    rows = [
        f"| N | utts without final | finals > {bound} ms | translations missing / expected "
        "| spoken missing / expected | tts.start without tts.end | speaker late / never "
        "| error events by code | failed sessions |",
        "|---:|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    for r in rounds:
        x = r.extra
        codes = ", ".join(f"{code} {count}" for code, count in sorted(x.error_codes.items())) or "none"
        rows.append(
            f"| {r.clients} | {r.base.missing_finals} | {x.late_finals} | {x.translations_missing} / "
            f"{x.translations_expected} | {x.spoken_missing} / {x.spoken_expected} | {x.tts_unended} "
            f"| {x.speaker_late} / {x.speaker_missing} | {codes} | {x.failed_sessions} |"
        )
    return "\n".join(rows)


def feature_table(rounds: list[Round]) -> str:
    rows = [
        "| N | feature | sessions | utts | finals | first partial p50 | final p50 | final p95 | feature figures |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rounds:
        for name, (fig, x) in r.per_feature.items():
            if name in TRANSLATING:
                note = (f"translation p50/p95 {f_(P(x.translation_ms, 50))}/{f_(P(x.translation_ms, 95))} ms, "
                        f"{len(x.translation_ms)}/{x.translations_expected}")
                if name == "speak":
                    note += (f"; spoken p50/p95 {f_(P(x.spoken_ms, 50))}/{f_(P(x.spoken_ms, 95))} ms, "
                             f"{x.tts_started} syntheses, {x.tts_audio_s:.0f} s of audio")
            elif name == "speakers":
                note = (f"speaker on final {x.speaker_on_final}, too short {x.speaker_too_short}, "
                        f"late {x.speaker_late}, failed {x.speaker_failed}, never {x.speaker_missing}")
            else:
                note = ""
            rows.append(
                f"| {r.clients} | {name} | {x.sessions} | {fig.utterances} | {fig.finals} "
                f"| {f_(P(fig.first_partial_ms, 50))} | {f_(P(fig.final_ms, 50))} | {f_(P(fig.final_ms, 95))} "
                f"| {note} |"
            )
    return "\n".join(rows)


def diagnostics_table(rounds: list[Round]) -> str:
    rows = [
        "| N | speech.started lag p50 | ping RTT p50 | p95 | max send lag | finals measured | cut by stop "
        "| host CPU % | others CPU % | bench CPU % | quiet before | RSS at start MB | wall s |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|",
    ]
    for r in rounds:
        b, res = r.base, r.resources
        quiet = "–" if r.quiet is None else (
            f"{'yes' if r.quiet[0] else 'NO'} ({r.quiet[2]:.0f} %, waited {r.quiet[1]:.0f} s)")
        rows.append(
            f"| {r.clients} | {f_(P(b.started_lag_ms, 50))} | {f_(P(b.ping_rtt_ms, 50), 1)} "
            f"| {f_(P(b.ping_rtt_ms, 95), 1)} | {f_(b.send_lag_max_ms)} | {len(b.final_ms)} | {b.finals_cut_by_stop} "
            f"| {f_(res.host_cpu)} | {f_(res.others_cpu)} | {f_(res.bench_cpu)} | {quiet} | {res.rss_start()} "
            f"| {r.wall_s:.1f} |"
        )
    return "\n".join(rows)


def engines_table(rounds: list[Round]) -> str | None:
    if not any(r.engines for r in rounds):
        return None
    rows = [
        "| N | engine | calls | busy s | busy / wall | mean call ms | queue total s | queue/call ms |",
        "|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rounds:
        for name, v in sorted((r.engines or {}).items()):
            calls, busy, queue = v.get("calls", 0.0), v.get("busy_seconds", 0.0), v.get("queue_delay_seconds", 0.0)
            if not calls:
                continue
            rows.append(
                f"| {r.clients} | {name} | {calls:.0f} | {busy:.1f} | {busy / r.wall_s:.2f} "
                f"| {1000 * busy / calls:.1f} | {queue:.1f} | {1000 * queue / calls:.1f} |"
            )
    return "\n".join(rows)


def capacity_line(rounds: list[Round], silence_ms: int) -> str:
    bound = silence_ms + LATENCY_SLACK_MS
    head = f"Largest N with p95 final latency <= {bound} ms (silence_ms {silence_ms} + {LATENCY_SLACK_MS}): "
    within = [r for r in rounds if r.base.final_ms and (P(r.base.final_ms, 95) or math.inf) <= bound]
    if not within:
        return head + "none of those tested"
    best = max(within, key=lambda r: r.clients)
    notes = []
    bad = sum(best.extra.error_codes.values()) + best.extra.failed_sessions + best.base.missing_finals \
        + best.extra.translations_missing + best.extra.spoken_missing + best.extra.tts_unended
    if bad:
        notes.append(f"{bad} errors / drops at that N")
    failing_below = [r.clients for r in rounds if r.clients < best.clients and r not in within]
    if failing_below:
        notes.append(f"but N={','.join(map(str, failing_below))} missed the bound")
    return head + str(best.clients) + (f" ({'; '.join(notes)})" if notes else "")


# Driver ----------------------------------------------------------------------------------


async def run_round(n: int, *, url: str, playlist: list[tuple[str, np.ndarray]], args: argparse.Namespace,
                    server_pid: int | None) -> tuple[Round, dict[str, Any]]:
    features = [args.mix[i % len(args.mix)] for i in range(n)]
    metrics_url = sb.metrics_url(url)
    before = await sb.scrape_metrics(metrics_url)
    res, stop = Resources(), asyncio.Event()
    rss_task = asyncio.create_task(sample_rss(server_pid, res, stop))
    clock = CpuClock(server_pid)
    begun = time.perf_counter()
    runs = await asyncio.gather(*(
        sb.run_client(
            url=url, wire=FeatureWire(args.format, FEATURES[features[i]]), index=i, offset=i % len(playlist),
            pcm=sb.client_audio(playlist, i % len(playlist), args.seconds),
            chunk_ms=args.chunk_ms, silence_ms=args.silence_ms,
            ended_timeout_s=max(30.0, float(args.seconds)), ping_every_s=args.ping_every_s,
        )
        for i in range(n)
    ))
    wall_s = time.perf_counter() - begun
    res.host_cpu, res.server_cpu, res.bench_cpu = clock.lap()
    res.others_cpu = max(0.0, res.host_cpu - (res.server_cpu or 0.0) - res.bench_cpu)
    stop.set()
    await rss_task
    after = await sb.scrape_metrics(metrics_url) if before is not None else None
    base, extra, per_feature = analyse_round(n, list(runs), features, args.silence_ms, wall_s)
    engines = None
    if before is not None and after is not None:
        base.server = sb.ServerView.between(before, after)
        engines = engine_deltas(before, after)
    raw = {"clients": n, "sessions": [
        {"index": r.index, "feature": features[r.index], "offset": r.offset, "audio_ms": r.audio_ms,
         "ended": r.ended, "close_code": r.close_code, "failure": r.failure,
         "events": [{"recv_s": round(t - begun, 4), **{k: v for k, v in ev.items() if k not in ("words", "pcm")}}
                    for t, ev in r.events if ev.get("type") not in ("<binary>", "tts.audio")]}
        for r in runs
    ]}
    return Round(n, features, base, extra, per_feature, res, engines, wall_s), raw


async def warm_up(url: str, playlist: list[tuple[str, np.ndarray]], args: argparse.Namespace) -> None:
    """One session with every feature of the mix, so no round pays for first use (pipelines, voices)."""
    pcm = np.concatenate([playlist[0][1][: 5 * sb.SAMPLE_RATE_HZ], np.zeros(sb.SAMPLE_RATE_HZ * 3 // 2, np.int16)])
    run = await sb.run_client(url=url, wire=FeatureWire(args.format, merged(args.mix)), index=-1, offset=0, pcm=pcm,
                              chunk_ms=args.chunk_ms, silence_ms=args.silence_ms, ended_timeout_s=30.0)
    if run.failure or not run.ended:
        raise SystemExit(f"warm-up session failed: {run.failure or 'no ended'} (close {run.close_code})")
    kinds = Counter(ev.get("type") for _, ev in run.events)
    errors = [ev for _, ev in run.events if ev.get("type") == "error"]
    print(f"# warm-up events: {dict(kinds)}", file=sys.stderr)
    for ev in errors:
        print(f"#   warm-up error {ev.get('code')}: {ev.get('message')}", file=sys.stderr)


async def bench(args: argparse.Namespace, url: str, server_pid: int | None) -> tuple[list[Round], list[dict[str, Any]]]:
    playlist = sb.load_playlist(args.audio_dir)
    print(f"# {len(playlist)} files from {args.audio_dir}: {', '.join(name for name, _ in playlist)}", file=sys.stderr)
    if not args.no_warmup:
        await warm_up(url, playlist, args)
    rounds: list[Round] = []
    raw: list[dict[str, Any]] = []
    for n in args.clients:
        quiet = None
        if args.wait_quiet:
            quiet = await asyncio.to_thread(wait_quiet, pct=args.quiet_pct, hold_s=args.quiet_hold_s,
                                            timeout_s=args.quiet_timeout_s, server_pid=server_pid)
        print(f"# N={n}: {mix_label([args.mix[i % len(args.mix)] for i in range(n)])} x {args.seconds:g} s "
              "of audio ...", file=sys.stderr, flush=True)
        rnd, events = await run_round(n, url=url, playlist=playlist, args=args, server_pid=server_pid)
        rnd.quiet = quiet
        rounds.append(rnd)
        raw.append(events)
        for problem in rnd.base.problems:
            print(f"#   {problem}", file=sys.stderr)
        print(f"#   others CPU {f_(rnd.resources.others_cpu)} %, server CPU {f_(rnd.resources.server_cpu)} %",
              file=sys.stderr, flush=True)
        await asyncio.sleep(1.0)
    return rounds, raw


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    target = parser.add_mutually_exclusive_group()
    target.add_argument("--url", default="ws://127.0.0.1:8000/v1/stream", help="running server's stream URL")
    target.add_argument("--spawn", action="store_true",
                        help="start `hushgate serve` on a free port and measure it")
    parser.add_argument("--clients", default="1,2,4,6", help="comma-separated session counts, run in order")
    parser.add_argument("--mix", default="stt,translate,speak,speakers",
                        help=f"features given round-robin to sessions; of {', '.join(FEATURES)}")
    parser.add_argument("--audio-dir", type=Path, default=sb.DEFAULT_AUDIO_DIR)
    parser.add_argument("--seconds", type=float, default=60.0, help="audio per session")
    parser.add_argument("--silence-ms", type=int, default=500, help="vad.silence_ms sent in `start`")
    parser.add_argument("--chunk-ms", type=int, default=100)
    parser.add_argument("--format", choices=("json", "msgpack"), default="json")
    parser.add_argument("--json", type=Path, help="write figures and every received event (no audio) here")
    parser.add_argument("--ping-every-s", type=float, default=2.0,
                        help="audio seconds between diagnostic pings (0: none)")
    parser.add_argument("--no-warmup", action="store_true", help="skip the unmeasured warm-up session")
    parser.add_argument("--serve-args", default="", help="extra `hushgate serve` flags with --spawn")
    parser.add_argument("--server-log", type=Path, help="with --spawn: server output (default: a temp file)")
    parser.add_argument("--wait-quiet", action="store_true",
                        help="before each round, wait until other processes are (nearly) idle")
    parser.add_argument("--wait-quiet-only", action="store_true",
                        help="only wait for a quiet machine, then exit (0 quiet, 3 timed out)")
    parser.add_argument("--quiet-pct", type=float, default=20.0, help="others' CPU under this %% of one core ...")
    parser.add_argument("--quiet-hold-s", type=float, default=30.0, help="... for this many seconds in a row ...")
    parser.add_argument("--quiet-timeout-s", type=float, default=900.0, help="... waiting at most this long")
    args = parser.parse_args(argv)
    try:
        args.clients = [int(part) for part in args.clients.split(",") if part.strip()]
    except ValueError:
        parser.error("--clients takes comma-separated integers, e.g. 1,2,4,6")
    if not args.clients or min(args.clients) < 1:
        parser.error("--clients needs positive integers")
    args.mix = [part.strip() for part in args.mix.split(",") if part.strip()]
    if not args.mix or any(name not in FEATURES for name in args.mix):
        parser.error(f"--mix takes comma-separated features of: {', '.join(FEATURES)}")
    if args.chunk_ms < 10 or args.seconds <= 0:
        parser.error("--chunk-ms must be >= 10 and --seconds > 0")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.wait_quiet_only:
        quiet, _, _ = wait_quiet(pct=args.quiet_pct, hold_s=args.quiet_hold_s, timeout_s=args.quiet_timeout_s,
                                 server_pid=None)
        return 0 if quiet else 3
    server: sb.SpawnedServer | None = None
    url = args.url
    if args.spawn:
        log_path = args.server_log or Path(tempfile.mkstemp(prefix="hushgate-load-", suffix=".log")[1])
        server = sb.SpawnedServer(shlex.split(args.serve_args), log_path)
        print(f"# spawning: {shlex.join(server.command)} (log {log_path})", file=sys.stderr, flush=True)
        server.start()
        url = server.url
    if args.format == "msgpack" and "format=" not in url:
        url += ("&" if "?" in url else "?") + "format=msgpack"
    try:
        rounds, raw = asyncio.run(bench(args, url, server.proc.pid if server and server.proc else None))
    finally:
        if server is not None:
            server.stop()
    print(f"\nload bench: {url} format={args.format} seconds={args.seconds:g} chunk_ms={args.chunk_ms} "
          f"silence_ms={args.silence_ms} mix={','.join(args.mix)} cpus={os.cpu_count()}\n")
    print(main_table(rounds))
    print()
    print(capacity_line(rounds, args.silence_ms))
    print()
    print("Latencies in ms. first partial / final as in bench/stream.py (from when the audio left the client; final "
          "from the audio at t1_ms, the silence_ms wait inside it). translation = recv(translation) - recv(final); "
          "spoken = recv(first TTS audio) - recv(translation). CPU % of one core (200 % = both cores), server "
          "process tree incl. reaped children; peak RSS of the server (with children in brackets).")
    print()
    print(drops_table(rounds, args.silence_ms))
    print()
    print(feature_table(rounds))
    print()
    print(diagnostics_table(rounds))
    if (view := sb.server_table([r.base for r in rounds])) is not None:
        print()
        print(view)
    if (table := engines_table(rounds)) is not None:
        print()
        print(table)
    if server is not None:
        print(f"\nserver log: {server.log_path}")
    if args.json:
        payload = {
            "url": url, "format": args.format, "seconds": args.seconds, "chunk_ms": args.chunk_ms,
            "silence_ms": args.silence_ms, "mix": args.mix, "bound_ms": args.silence_ms + LATENCY_SLACK_MS,
            "rounds": [
                {"clients": r.clients, "features": r.features,
                 "final_p50_ms": P(r.base.final_ms, 50), "final_p95_ms": P(r.base.final_ms, 95),
                 "first_partial_p50_ms": P(r.base.first_partial_ms, 50),
                 "first_partial_p95_ms": P(r.base.first_partial_ms, 95),
                 "translation_ms": r.extra.translation_ms, "spoken_ms": r.extra.spoken_ms,
                 "final_ms": r.base.final_ms, "missing_finals": r.base.missing_finals,
                 "extra": {k: (dict(v) if isinstance(v, Counter) else v) for k, v in vars(r.extra).items()},
                 "server_cpu": r.resources.server_cpu, "others_cpu": r.resources.others_cpu,
                 "host_cpu": r.resources.host_cpu, "bench_cpu": r.resources.bench_cpu,
                 "peak_rss_mb": max(r.resources.rss_own_mb, default=None), "engines": r.engines,
                 "wall_s": r.wall_s, "problems": r.base.problems}
                for r in rounds
            ],
            "raw": raw,
        }
        args.json.write_text(json.dumps(payload, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
