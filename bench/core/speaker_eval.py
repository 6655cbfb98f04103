"""Evaluation of the speaker bench (bench/speakers.py): trials, cosines, EER, FA / FR, identification.

What a test cut yielded (`Test`, one `Trial` per enrolled voiceprint) is turned
into figures here and nowhere else; `speaker_tables` only prints them. Rows
are keyed by cut length or by threshold band (`figures`), and `what_if_counts`
replays the same trials against other cosine thresholds.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from hushgate.server.speakers import SCORE_SLOPE, THRESHOLDS, threshold_for

from .speaker_material import Recording, Speaker

SCORE_ROUNDING = 5e-5  # verified.score has 4 decimals


@dataclass(frozen=True, slots=True)
class Trial:
    voiceprint: Speaker
    score: float
    cosine: float
    accepted: bool


@dataclass(slots=True)
class Test:
    recording: Recording
    speaker: Speaker
    length: str
    speech_ms: int = 0
    trials: list[Trial] = field(default_factory=list)
    identified: str | None = None  # the enrolled speaker the server named, if any
    undecided: str | None = None

    @property
    def unseen(self) -> bool:
        return not self.speaker.enrolled


def cosine_of(score: float, speech_ms: int) -> float:
    """Invert the shipped calibration: score = 1 / (1 + exp(-SLOPE * (cos - threshold)))."""
    s = min(max(score, SCORE_ROUNDING), 1.0 - SCORE_ROUNDING)
    return threshold_for(speech_ms) + math.log(s / (1.0 - s)) / SCORE_SLOPE


@dataclass(frozen=True, slots=True)
class Eer:
    rate: float
    cosine: float
    gap: tuple[float, float] | None  # (highest impostor, lowest target) when they do not overlap


def equal_error(targets: Sequence[float], impostors: Sequence[float]) -> Eer | None:
    """EER over thresholds between observed cosines (accept when cosine >= threshold)."""
    if not targets or not impostors:
        return None
    t, i = np.sort(np.asarray(targets)), np.sort(np.asarray(impostors))
    if i[-1] < t[0]:
        return Eer(0.0, float((i[-1] + t[0]) / 2), (float(i[-1]), float(t[0])))
    values = np.unique(np.concatenate([t, i]))
    candidates = np.concatenate([[values[0] - 1e-3], (values[:-1] + values[1:]) / 2, [values[-1] + 1e-3]])
    frr = np.searchsorted(t, candidates, side="left") / len(t)
    far = 1.0 - np.searchsorted(i, candidates, side="left") / len(i)
    diff = far - frr  # falls from +1 towards -1 as the threshold rises
    k = int(np.argmax(diff <= 0))  # the first threshold at which FAR no longer exceeds FRR (never the lowest)
    if diff[k] == 0:
        ties = np.flatnonzero(diff == 0)
        j = int(ties[len(ties) // 2])
        return Eer(float((far[j] + frr[j]) / 2), float(candidates[j]), None)
    # interpolate the crossing between candidates k-1 (FAR > FRR) and k (FAR <= FRR)
    w = diff[k - 1] / (diff[k - 1] - diff[k])
    rate = float((1 - w) * (far[k - 1] + frr[k - 1]) / 2 + w * (far[k] + frr[k]) / 2)
    return Eer(rate, float((1 - w) * candidates[k - 1] + w * candidates[k]), None)


@dataclass(frozen=True, slots=True)
class Group:
    """Which cuts and which voiceprints a table is about."""

    title: str
    cuts: Callable[[Speaker], bool]
    voiceprints: Callable[[Speaker], bool]


def everyone(_: Speaker) -> bool:
    return True


def is_real(speaker: Speaker) -> bool:
    return speaker.synthetic is None


def is_synthetic(speaker: Speaker) -> bool:
    return speaker.synthetic is not None


@dataclass(slots=True)
class Row:
    key: str
    tests: int = 0
    unseen_tests: int = 0
    undecided: int = 0
    skipped: int = 0
    speech_ms: list[int] = field(default_factory=list)
    targets: list[float] = field(default_factory=list)
    impostors: list[float] = field(default_factory=list)
    false_rejects: int = 0
    false_accepts: int = 0
    top1: list[bool] = field(default_factory=list)
    unseen_accepted: list[bool] = field(default_factory=list)
    thresholds: set[float] = field(default_factory=set)

    @property
    def eer(self) -> Eer | None:
        return equal_error(self.targets, self.impostors)


Bands = tuple[tuple[int, float], ...]  # (upper bound of the band in ms, cosine threshold), a step rule
# The shipped thresholds are points on a curve (linear in between); the rows of the tables
# group cuts between two points, each band labelled with the threshold at its lower edge.
SHIPPED_BANDS: Bands = tuple(zip((*(at for at, _ in THRESHOLDS[1:]), 10**9), (t for _, t in THRESHOLDS), strict=True))


def band_of(speech_ms: int, bands: Bands = SHIPPED_BANDS) -> str:
    """The threshold band a speech length falls in, e.g. ``2–4 s``."""
    lower = 0
    for upper, _ in bands[:-1]:
        if speech_ms < upper:
            return f"< {upper / 1000:g} s" if lower == 0 else f"{lower / 1000:g}–{upper / 1000:g} s"
        lower = upper
    return f"≥ {lower / 1000:g} s"


def band_labels(bands: Bands) -> tuple[str, ...]:
    return tuple(band_of(lower, bands) for lower in (0, *(upper for upper, _ in bands[:-1])))


def threshold_in(bands: Bands, speech_ms: int) -> float:
    return next((cosine for upper, cosine in bands if speech_ms < upper), bands[-1][1])


BANDS = band_labels(SHIPPED_BANDS)


def figures(
    tests: Sequence[Test],
    keys: Sequence[str],
    key_of: Callable[[Test], str],
    group: Group,
    skipped: Sequence[tuple[Speaker, str]] = (),
) -> list[Row]:
    """One row per key (a cut length, or a threshold band), over the cuts and voiceprints of ``group``."""
    rows = {key: Row(key) for key in keys}
    for speaker, key in skipped:
        if group.cuts(speaker) and key in rows:
            rows[key].skipped += 1
    for test in tests:
        row = rows.get(key_of(test))
        if row is None or not group.cuts(test.speaker):
            continue
        row.tests += 1
        row.unseen_tests += test.unseen
        if test.undecided is not None:
            row.undecided += 1
            continue
        row.speech_ms.append(test.speech_ms)
        row.thresholds.add(threshold_for(test.speech_ms))
        trials = [t for t in test.trials if group.voiceprints(t.voiceprint)]
        for trial in trials:
            if trial.voiceprint is test.speaker:
                row.targets.append(trial.cosine)
                row.false_rejects += not trial.accepted
            else:
                row.impostors.append(trial.cosine)
                row.false_accepts += trial.accepted
        if not trials:
            continue
        if test.unseen:
            row.unseen_accepted.append(any(t.accepted for t in trials))
        elif group.voiceprints(test.speaker):
            best = max(trials, key=lambda t: t.cosine)
            row.top1.append(best.voiceprint is test.speaker)
    return list(rows.values())


def what_if_counts(tests: Sequence[Test], group: Group, bands: Bands) -> dict[str, list[int]]:
    """Per band of ``bands``: target trials, impostor trials, FA shipped, FA what-if, FR shipped, FR what-if."""
    counts = {label: [0] * 6 for label in band_labels(bands)}
    for test in tests:
        if test.undecided is not None or not group.cuts(test.speaker):
            continue
        c, threshold = counts[band_of(test.speech_ms, bands)], threshold_in(bands, test.speech_ms)
        for trial in (t for t in test.trials if group.voiceprints(t.voiceprint)):
            if trial.voiceprint is test.speaker:
                c[0], c[4], c[5] = c[0] + 1, c[4] + (not trial.accepted), c[5] + (trial.cosine < threshold)
            else:
                c[1], c[2], c[3] = c[1] + 1, c[2] + trial.accepted, c[3] + (trial.cosine >= threshold)
    return counts
