"""Open-set trials, decision rules, their calibration and cross-validation over voices (bench/speaker_open_set.py).

Everything works on a `Bank` of embedded cuts and a score matrix (one row per
voice's voiceprint, one column per cut), so that a fold or a draw only indexes
arrays: the encoder runs once per bench run.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from .speaker_bank import Bank, Flags, Ints, Matrix

Vector = npt.NDArray[np.float64]
Points = tuple[tuple[int, float], ...]  # (speech ms, threshold from there on), as THRESHOLDS
COHORT_TOP_K = 20


# --- scores ----------------------------------------------------------------------------


def cosine_scores(bank: Bank, cohort: Flags | None) -> Matrix:
    return bank.models @ bank.vectors.T


def snorm_scores(bank: Bank, cohort: Flags | None) -> Matrix:
    """Adaptive S-norm: each side's cosine z-normed by its top-k cohort cosines, the two averaged.

    ``cohort``: the cuts that may serve; of those, the first two of each length and the whole recordings a
    stranger would say (never a test cut)."""
    if cohort is None:
        raise ValueError("S-norm needs cohort voices")
    in_cohort = cohort & ~bank.genuine & (bank.rank < 2)
    vectors = bank.vectors[in_cohort]

    def top_stats(rows: Matrix) -> tuple[Vector, Vector]:
        top = np.sort(rows @ vectors.T, axis=1)[:, -COHORT_TOP_K:]
        return top.mean(axis=1), np.maximum(top.std(axis=1), 1e-9)

    raw = bank.models @ bank.vectors.T
    mean_m, std_m = top_stats(bank.models)
    mean_u, std_u = top_stats(bank.vectors)
    return 0.5 * ((raw - mean_m[:, None]) / std_m[:, None] + (raw - mean_u[None, :]) / std_u[None, :])


# --- trials ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Trials:
    """One row per heard cut in one draw: its best and second-best score over the enrolled voiceprints."""

    cut_ms: Ints  # the cut's nominal length (0: a whole recording)
    length_ms: Ints  # the speech it holds
    best: Vector
    second: Vector
    own_best: Flags  # an enrolled person's own voiceprint scored best
    genuine: Flags  # an enrolled person's cut (else a stranger's)
    cross: Flags  # an enrolled person's cut from another recording than the enrollment


def open_set_trials(
    bank: Bank, scores: Matrix, voices: Flags, cuts: Flags, enrolled: int, draws: int, rng: np.random.Generator
) -> Trials:
    """``enrolled`` of ``voices`` enrolled per draw; every other one of them is a stranger."""
    pool = np.flatnonzero(voices & bank.enrollable)
    heard_from = voices[bank.owner] & cuts
    parts: list[tuple[Ints, Vector, Vector, Flags]] = []
    for _ in range(draws):
        chosen = pool[rng.choice(len(pool), size=min(enrolled, len(pool)), replace=False)]
        is_enrolled = np.zeros(len(voices), bool)
        is_enrolled[chosen] = True
        heard = np.flatnonzero(heard_from & (bank.genuine == is_enrolled[bank.owner]))
        s = scores[np.ix_(chosen, heard)]
        top2 = np.sort(s, axis=0)[-2:] if len(chosen) > 1 else np.vstack([np.full(len(heard), -np.inf), s])
        parts.append((heard, top2[1], top2[0], chosen[s.argmax(axis=0)] == bank.owner[heard]))
    heard = np.concatenate([p[0] for p in parts])
    return Trials(
        cut_ms=bank.cut_ms[heard],
        length_ms=bank.length_ms[heard],
        best=np.concatenate([p[1] for p in parts]),
        second=np.concatenate([p[2] for p in parts]),
        own_best=np.concatenate([p[3] for p in parts]),
        genuine=bank.genuine[heard],
        cross=bank.cross[heard],
    )


# --- decisions -------------------------------------------------------------------------


@dataclass(frozen=True)
class Decision:
    """Name the best-scoring voiceprint when it reaches its length's threshold and leads the next one by ``margin``.

    ``points`` give a threshold from each length on: held until the next point (bands), or with ``interpolate``
    linear between points as ``hushgate.server.speakers.threshold_for`` does; the first value holds below the
    first point and the last beyond the last."""

    points: Points
    margin: float = 0.0
    interpolate: bool = False

    def thresholds(self, length_ms: Ints) -> Vector:
        edges, values = np.array([at for at, _ in self.points]), np.array([t for _, t in self.points])
        if self.interpolate:
            return np.asarray(np.interp(length_ms, edges, values), np.float64)
        return values[np.maximum(np.searchsorted(edges, length_ms, side="right") - 1, 0)]

    def accepted(self, trials: Trials) -> Flags:
        return (trials.best >= self.thresholds(trials.length_ms)) & (trials.best - trials.second >= self.margin)


@dataclass(frozen=True)
class Method:
    """A score and the rule that calibrates a `Decision` on it: per band, the lowest threshold on a grid of
    ``step`` at which at most ``target_fa[i]`` of the calibration strangers' cuts of ``lengths_ms`` are named.
    Band i runs from ``edges_ms[i]`` (the first from 0) to the next edge (the last without end)."""

    name: str
    score: Callable[[Bank, Flags | None], Matrix]  # (bank, cohort cuts or None) -> [voice, cut]
    uses_cohort: bool
    step: float
    edges_ms: tuple[int, ...]
    target_fa: tuple[float, ...]  # one per band
    margin: float = 0.0
    interpolate: bool = False

    def calibrate(self, trials: Trials, lengths_ms: Sequence[int]) -> Decision:
        strangers = ~trials.genuine & np.isin(trials.cut_ms, lengths_ms)
        passes = trials.best - trials.second >= self.margin
        points: list[tuple[int, float]] = []
        for i, edge in enumerate(self.edges_ms):
            lower_ms = 0 if i == 0 else edge
            upper_ms = self.edges_ms[i + 1] if i + 1 < len(self.edges_ms) else np.iinfo(np.int64).max
            in_band = strangers & (trials.length_ms >= lower_ms) & (trials.length_ms < upper_ms)
            scores = np.where(passes[in_band], trials.best[in_band], -np.inf)
            finite = scores[np.isfinite(scores)]
            threshold = float(np.ceil(np.max(finite) / self.step) * self.step) if len(finite) else 0.0
            for candidate in np.sort(np.unique(np.ceil(finite / self.step) * self.step)):
                if np.mean(scores >= candidate) <= self.target_fa[i]:
                    threshold = float(candidate)
                    break
            points.append((edge, round(threshold, 4)))
        return Decision(tuple(points), self.margin, self.interpolate)


@dataclass
class Counts:
    """False accepts of strangers' cuts, false rejects of enrolled people's cuts (same / another recording)."""

    fa: int = 0
    strangers: int = 0
    fr_same: int = 0
    genuine_same: int = 0
    fr_cross: int = 0
    genuine_cross: int = 0

    @property
    def fr(self) -> int:
        return self.fr_same + self.fr_cross

    @property
    def genuine(self) -> int:
        return self.genuine_same + self.genuine_cross

    def add(self, other: Counts) -> None:
        for name, value in vars(other).items():
            setattr(self, name, getattr(self, name) + value)


def counts(trials: Trials, decision: Decision, lengths_ms: Sequence[int]) -> dict[int, Counts]:
    """Per nominal cut length (0: whole recordings)."""
    accepted = decision.accepted(trials)
    missed = trials.genuine & ~(accepted & trials.own_best)
    result: dict[int, Counts] = {}
    for length in lengths_ms:
        at = trials.cut_ms == length
        same, cross = at & trials.genuine & ~trials.cross, at & trials.cross
        result[length] = Counts(
            int(np.sum(at & ~trials.genuine & accepted)),
            int(np.sum(at & ~trials.genuine)),
            int(np.sum(missed & same)),
            int(np.sum(same)),
            int(np.sum(missed & cross)),
            int(np.sum(cross)),
        )
    return result


# --- folds -----------------------------------------------------------------------------


def assign_folds(bank: Bank, folds: int, rng: np.random.Generator) -> Ints:
    """A fold per voice: units shuffled within each stratum, then dealt out in turn, so every fold gets its share
    of each stratum (women and men, enrollable or not, the LibriSpeech readers, other material)."""
    dealt: list[str] = []
    for stratum in sorted(set(bank.strata)):
        units = list(dict.fromkeys(u for u, s in zip(bank.units, bank.strata, strict=True) if s == stratum))
        dealt += [units[i] for i in rng.permutation(len(units))]
    fold_of = {unit: i % folds for i, unit in enumerate(dealt)}
    return np.array([fold_of[u] for u in bank.units], np.int64)


@dataclass
class FoldResult:
    decision: Decision
    counts: dict[int, Counts]


@dataclass
class CrossValidation:
    folds: list[FoldResult] = field(default_factory=list)

    def pooled(self, length: int) -> Counts:
        total = Counts()
        for fold in self.folds:
            total.add(fold.counts[length])
        return total


@dataclass(frozen=True)
class Draws:
    """How open-set trials are drawn, and which cut lengths are scored and which calibrate."""

    enrolled: int
    draws: int
    lengths_ms: tuple[int, ...]  # nominal cut lengths scored (0: whole recordings)
    calibration_ms: tuple[int, ...]  # those a rule is calibrated on; the others show what it does in between
    cuts: Flags  # the bank's cuts of ``lengths_ms``

    def cohort(self, bank: Bank, voices: Flags) -> Flags:
        """The cuts of ``voices`` a score normalisation may use as its cohort (of the calibration lengths)."""
        return voices[bank.owner] & np.isin(bank.cut_ms, self.calibration_ms)

    def trials(self, bank: Bank, scores: Matrix, voices: Flags, rng: np.random.Generator) -> Trials:
        return open_set_trials(bank, scores, voices, self.cuts, self.enrolled, self.draws, rng)


def cross_validate(bank: Bank, method: Method, draws: Draws, folds: int, repeats: int, seed: int) -> CrossValidation:
    """Calibrate on all folds but one (a cohort fold apart for a score that needs one), evaluate on that one."""
    result = CrossValidation()
    fixed_scores = None if method.uses_cohort else method.score(bank, None)
    for repeat in range(repeats):
        fold_of = assign_folds(bank, folds, np.random.default_rng([seed, repeat]))
        for fold in range(folds):
            held_out = fold_of == fold
            cohort = (fold_of == (fold + 1) % folds) if method.uses_cohort else np.zeros_like(held_out)
            scores = fixed_scores if fixed_scores is not None else method.score(bank, draws.cohort(bank, cohort))
            calibration = draws.trials(
                bank, scores, ~held_out & ~cohort, np.random.default_rng([seed, repeat, fold, 1])
            )
            decision = method.calibrate(calibration, draws.calibration_ms)
            trials = draws.trials(bank, scores, held_out, np.random.default_rng([seed, repeat, fold, 2]))
            result.folds.append(FoldResult(decision, counts(trials, decision, draws.lengths_ms)))
    return result
