"""The printed tables of the speaker bench (bench/speakers.py); the figures come from `speaker_eval`."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .speaker_eval import Bands, Group, Row, Test, what_if_counts
from .speaker_material import Speaker


def _pct(rate: float) -> str:
    return f"{100 * rate:.1f} %"


def _ratio(hits: int, total: int) -> str:
    return "–" if total == 0 else f"{hits}/{total} ({100 * hits / total:.0f} %)"


def _cos(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def _thresholds(row: Row) -> str:
    return " / ".join(f"{t:.2f}" for t in sorted(row.thresholds)) or "–"


def _gap(row: Row) -> str:
    eer = row.eer
    if eer is None:
        return "–"
    return f"{eer.gap[0]:.3f} – {eer.gap[1]:.3f}" if eer.gap else "overlap"


def main_table(rows: Sequence[Row]) -> str:
    header = (
        "| length | test cuts (unseen) | no decision | mean speech ms | shipped cos threshold | target trials "
        "| impostor trials | EER | EER cosine | top-1 id (closed set) | FA @ 0.5 | FR @ 0.5 | unseen FA |"
    )
    lines = [header, "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        eer = r.eer
        mean_ms = f"{sum(r.speech_ms) / len(r.speech_ms):.0f}" if r.speech_ms else "–"
        skipped = f" +{r.skipped} too short" if r.skipped else ""
        lines.append(
            f"| {r.key} | {r.tests} ({r.unseen_tests}){skipped} | {r.undecided} | {mean_ms} | {_thresholds(r)} "
            f"| {len(r.targets)} | {len(r.impostors)} | {_pct(eer.rate) if eer else '–'} "
            f"| {_cos(eer.cosine if eer else None)} | {_ratio(sum(r.top1), len(r.top1))} "
            f"| {_ratio(r.false_accepts, len(r.impostors))} | {_ratio(r.false_rejects, len(r.targets))} "
            f"| {_ratio(sum(r.unseen_accepted), len(r.unseen_accepted))} |"
        )
    return "\n".join(lines)


def cosine_table(rows: Sequence[Row], what: str = "length") -> str:
    header = (
        f"| {what} | shipped cos threshold | target trials | impostor trials | target cos: min / mean "
        "| impostor cos: mean / max | EER | EER cosine | separation gap | FA @ 0.5 | FR @ 0.5 |"
    )
    lines = [header, "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        eer = r.eer
        target = f"{min(r.targets):.3f} / {np.mean(r.targets):.3f}" if r.targets else "–"
        impostor = f"{np.mean(r.impostors):.3f} / {max(r.impostors):.3f}" if r.impostors else "–"
        lines.append(
            f"| {r.key} | {_thresholds(r)} | {len(r.targets)} | {len(r.impostors)} | {target} | {impostor} "
            f"| {_pct(eer.rate) if eer else '–'} | {_cos(eer.cosine if eer else None)} | {_gap(r)} "
            f"| {_ratio(r.false_accepts, len(r.impostors))} | {_ratio(r.false_rejects, len(r.targets))} |"
        )
    return "\n".join(lines)


def what_if_table(tests: Sequence[Test], group: Group, bands: Bands) -> str:
    """False accepts and rejects of the same trials at the shipped thresholds and at ``bands``."""
    header = (
        "| speech band | what-if cos threshold | target trials | impostor trials | FA: shipped → what-if "
        "| FR: shipped → what-if |"
    )
    lines = [header, "|---|---|---|---|---|---|"]
    counts = what_if_counts(tests, group, bands)
    for (label, c), (_, threshold) in zip(counts.items(), bands, strict=True):
        lines.append(_what_if_row(label, f"{threshold:.2f}", c))
    lines.append(_what_if_row("all", "", [sum(column) for column in zip(*counts.values(), strict=True)]))
    return "\n".join(lines)


def _what_if_row(label: str, threshold: str, c: Sequence[int]) -> str:
    return (
        f"| {label} | {threshold} | {c[0]} | {c[1]} | {_ratio(c[2], c[1])} → {_ratio(c[3], c[1])} "
        f"| {_ratio(c[4], c[0])} → {_ratio(c[5], c[0])} |"
    )


def speakers_table(speakers: Sequence[Speaker], tests: Sequence[Test]) -> str:
    lines = [
        "| speaker | kind | role | enrolled from | counted enrollment speech ms | test recordings | note |",
        "|---|---|---|---|---|---|---|",
    ]
    for s in speakers:
        recordings = {t.recording.name for t in tests if t.speaker is s}
        lines.append(
            f"| {s.name} | {s.kind} | {'enrolled' if s.enrolled else 'unseen'} "
            f"| {', '.join(Path(r.name).name for r in s.enrolled_from) or '–'} "
            f"| {s.enroll_speech_ms or '–'} | {len(recordings)} | {s.note} |"
        )
    return "\n".join(lines)
