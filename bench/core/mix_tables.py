"""The tables bench/load.py prints (the figures come from `mix` and `live_figures`)."""

from __future__ import annotations

from .mix import TRANSLATING, Extra, Round, mix_label
from .stats import pct
from .table import fmt, table

P = pct
f_ = fmt


def main_table(rounds: list[Round]) -> str:
    header = [
        "N",
        "mix",
        "utts",
        "finals",
        "partials/utt",
        "first partial p50",
        "p95",
        "final p50",
        "final p95",
        "translation p50",
        "p95",
        "spoken p50",
        "p95",
        "errors",
        "server CPU %",
        "peak RSS MB",
    ]
    rows = []
    for r in rounds:
        b, x = r.base, r.extra
        rows.append(
            [
                str(r.clients),
                mix_label(r.features),
                str(b.utterances),
                str(b.finals),
                f_(b.partials_per_utterance, 2),
                *(
                    f_(P(values, q))
                    for values in (b.first_partial_ms, b.final_ms, x.translation_ms, x.spoken_ms)
                    for q in (50, 95)
                ),
                str(sum(x.error_codes.values()) + x.failed_sessions),
                f_(r.resources.server_cpu),
                r.resources.usage.peak_rss(),
            ]
        )
    return table(header, rows, "rl" + "r" * 14)


def drops_table(rounds: list[Round], bound_ms: int) -> str:
    header = [
        "N",
        "utts without final",
        f"finals > {bound_ms} ms",
        "translations missing / expected",
        "spoken missing / expected",
        "tts.start without tts.end",
        "speaker late / never",
        "error events by code",
        "failed sessions",
    ]
    rows = []
    for r in rounds:
        x = r.extra
        codes = ", ".join(f"{code} {count}" for code, count in sorted(x.error_codes.items())) or "none"
        rows.append(
            [
                str(r.clients),
                str(r.base.missing_finals),
                str(x.late_finals),
                f"{x.translations_missing} / {x.translations_expected}",
                f"{x.spoken_missing} / {x.spoken_expected}",
                str(x.tts_unended),
                f"{x.speaker_late} / {x.speaker_missing}",
                codes,
                str(x.failed_sessions),
            ]
        )
    return table(header, rows, "rrrrrrrlr")


def feature_note(name: str, x: Extra) -> str:
    """The figures only one kind of session has."""
    if name in TRANSLATING:
        note = (
            f"translation p50/p95 {f_(P(x.translation_ms, 50))}/{f_(P(x.translation_ms, 95))} ms, "
            f"{len(x.translation_ms)}/{x.translations_expected}"
        )
        if name == "speak":
            note += (
                f"; spoken p50/p95 {f_(P(x.spoken_ms, 50))}/{f_(P(x.spoken_ms, 95))} ms, "
                f"{x.tts_started} syntheses, {x.tts_audio_s:.0f} s of audio"
            )
        return note
    if name == "speakers":
        return (
            f"speaker on final {x.speaker_on_final}, too short {x.speaker_too_short}, "
            f"late {x.speaker_late}, failed {x.speaker_failed}, never {x.speaker_missing}"
        )
    return ""


def feature_table(rounds: list[Round]) -> str:
    header = [
        "N",
        "feature",
        "sessions",
        "utts",
        "finals",
        "first partial p50",
        "final p50",
        "final p95",
        "feature figures",
    ]
    rows = [
        [
            str(r.clients),
            name,
            str(x.sessions),
            str(fig.utterances),
            str(fig.finals),
            f_(P(fig.first_partial_ms, 50)),
            f_(P(fig.final_ms, 50)),
            f_(P(fig.final_ms, 95)),
            feature_note(name, x),
        ]
        for r in rounds
        for name, (fig, x) in r.per_feature.items()
    ]
    return table(header, rows, "rlrrrrrrl")


def diagnostics_table(rounds: list[Round]) -> str:
    header = [
        "N",
        "speech.started lag p50",
        "ping RTT p50",
        "p95",
        "max send lag",
        "finals measured",
        "cut by stop",
        "host CPU %",
        "others CPU %",
        "bench CPU %",
        "quiet before",
        "RSS at start MB",
        "wall s",
    ]
    rows = []
    for r in rounds:
        b, res = r.base, r.resources
        quiet = (
            "–"
            if r.quiet is None
            else (f"{'yes' if r.quiet[0] else 'NO'} ({r.quiet[2]:.0f} %, waited {r.quiet[1]:.0f} s)")
        )
        rows.append(
            [
                str(r.clients),
                f_(P(b.started_lag_ms, 50)),
                f_(P(b.ping_rtt_ms, 50), 1),
                f_(P(b.ping_rtt_ms, 95), 1),
                f_(b.send_lag_max_ms),
                str(len(b.final_ms)),
                str(b.finals_cut_by_stop),
                f_(res.host_cpu),
                f_(res.others_cpu),
                f_(res.bench_cpu),
                quiet,
                res.usage.rss_start(),
                f"{r.wall_s:.1f}",
            ]
        )
    return table(header, rows, "r" * 10 + "lrr")


def engines_table(rounds: list[Round]) -> str | None:
    if not any(r.engines for r in rounds):
        return None
    header = ["N", "engine", "calls", "busy s", "busy / wall", "mean call ms", "queue total s", "queue/call ms"]
    rows = []
    for r in rounds:
        for name, v in sorted((r.engines or {}).items()):
            calls, busy, queue = v.get("calls", 0.0), v.get("busy_seconds", 0.0), v.get("queue_delay_seconds", 0.0)
            if calls:
                rows.append(
                    [
                        str(r.clients),
                        name,
                        f"{calls:.0f}",
                        f"{busy:.1f}",
                        f"{busy / r.wall_s:.2f}",
                        f"{1000 * busy / calls:.1f}",
                        f"{queue:.1f}",
                        f"{1000 * queue / calls:.1f}",
                    ]
                )
    return table(header, rows, "rlrrrrrr")
