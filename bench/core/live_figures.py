"""What the live-streaming benches (stream.py, load.py) compute from their clients' events.

The figures and their definitions are documented in bench/stream.py's module docstring.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .live import ClientRun
from .metrics import ServerView
from .resources import Usage
from .stats import mean
from .table import fmt, table
from .wire import Event


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

    def add_usage(self, usage: Usage) -> None:
        """The sampled resources of the round (RSS: the server with its children)."""
        self.server_cpu_mean = mean(usage.server_cpu)
        self.server_rss_peak_mb = max(usage.tree_rss_mb) if usage.tree_rss_mb else None
        self.server_rss_start_mb = usage.tree_rss_mb[0] if usage.tree_rss_mb else None
        self.host_cpu_mean = mean(usage.host_cpu)
        self.others_cpu_mean = usage.others_cpu()
        self.bench_cpu_mean = mean(usage.bench_cpu)


def analyse(n: int, runs: list[ClientRun], silence_ms: int, wall_s: float) -> Figures:
    fig = Figures(clients=n, wall_s=wall_s)
    for run in runs:
        _analyse_run(fig, run, silence_ms)
    return fig


def _analyse_run(fig: Figures, run: ClientRun, silence_ms: int) -> None:
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
                fig.problems.append(f"{tag}: ended says {stats.get('utterances')} utterances, got {len(finals)} finals")
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
    fig.ping_rtt_ms.extend(1000 * (b - a) for a, b in zip(run.pings_sent_at, run.pongs_at, strict=False))
    if run.send_lag_s:
        fig.send_lag_max_ms = max(fig.send_lag_max_ms, 1000 * max(run.send_lag_s))
    if run.failed:
        fig.errors += 1
        fig.problems.append(f"{tag}: failure={run.failure!r} ended={run.ended} close_code={run.close_code}")


def capacity_line(
    rounds: list[tuple[int, float | None, int]], silence_ms: int, slack_ms: int, bad_label: str = "errors"
) -> str:
    """The sentence naming the largest N whose p95 final latency stayed within ``silence_ms + slack_ms``.

    ``rounds`` holds (N, p95 final latency or None, errors at that N) per round.
    """
    bound = silence_ms + slack_ms
    head = f"Largest N with p95 final latency <= {bound} ms (silence_ms {silence_ms} + {slack_ms}): "
    within = [r for r in rounds if r[1] is not None and r[1] <= bound]
    if not within:
        return head + "none of those tested"
    best, _, bad = max(within, key=lambda r: r[0])
    notes = [f"{bad} {bad_label} at that N"] if bad else []
    failing_below = [r[0] for r in rounds if r[0] < best and r not in within]
    if failing_below:
        notes.append(f"but N={','.join(map(str, failing_below))} missed the bound")
    return head + str(best) + (f" ({'; '.join(notes)})" if notes else "")


def server_table(figures: list[Figures]) -> str | None:
    """The speech-to-text engines' own counters per round, when the server answered ``GET /metrics``."""
    if not any(f.server for f in figures):
        return None
    header = [
        "N",
        "stt calls",
        "stt busy s",
        "slots busy",
        "queue/call ms",
        "queue total s",
        "RTF",
        "final (server) mean ms",
    ]
    rows = []
    for f in figures:
        v = f.server
        if v is None:
            rows.append([str(f.clients), *["–"] * 7])
            continue
        rows.append(
            [
                str(f.clients),
                f"{v.stt_calls:.0f}",
                f"{v.stt_busy_s:.1f}",
                f"{v.stt_busy_s / f.wall_s:.2f}",
                fmt(1000 * v.stt_queue_s / v.stt_calls if v.stt_calls else None),
                f"{v.stt_queue_s:.1f}",
                fmt(v.stt_busy_s / v.audio_s if v.audio_s else None, 2),
                fmt(1000 * v.final_latency_s / v.finals if v.finals else None),
            ]
        )
    return table(header, rows, "r" * len(header))
