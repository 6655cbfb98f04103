"""Open-set speaker decisions measured on voices the thresholds were not set on.

Runs the real GE2E encoder in-process (no server) over the public voices in
``../shared/audio`` and answers one question: when a session has enrolled some
people, how often is a *stranger* named as one of them (false accept, FA), and
how often is an enrolled person not named, or named as somebody else (false
reject, FR)? Reported per test length (cuts of 1 to 6 s and the whole
recording).

Voices (``bench/core/speaker_bank.py``): 80 ``strangers/`` readers, LibriSpeech
readers 1089, 1221, 2412 and 251, and as strangers only ``misc/jfk.wav``,
``misc/vosk_test.wav`` and the 16 ``fleurs/`` recordings (other languages; never
enrolled, and files of one language always kept together, because they may
share a speaker). A ``strangers/`` reader whose recording has at least 12 s of
speech is enrolled from its first 8 s and tested on the rest: the *same
recording*, so those genuine scores are optimistic. LibriSpeech readers are
enrolled from one or two recordings and tested on the others: *another
recording* (same book), reported apart. A voice takes part as a stranger with
its whole recording(s) and the first three cuts of each length.

Open-set trials, as a session sees them: ``--enrolled`` voices of a group (the
voices calibrated on, or a held-out fold) are enrolled (``--draws`` random
draws); every other voice of that group is a stranger. A stranger's cut is a
false accept when it is named; an enrolled person's cut is a false reject unless
their own voiceprint scores best and is named. A voiceprint is named when its score reaches the threshold for the cut's
length and, for a rule with a margin, leads the second-best voiceprint by that
margin. A method's rule sets, per band of length, the lowest threshold at which at
most its target share of the calibration strangers' cuts is named; the threshold
holds across the band, or is interpolated between the bands' lower edges as
``hushgate.server.speakers.threshold_for`` does. Rules are calibrated on 1, 2, 3,
4 and 6 s cuts and whole recordings; the 2.5 s and 5 s cuts are only scored, to
show what a rule does between the lengths it was set on.

**Cross-validation** (the figures that count). The voices are dealt into
``--folds`` folds, stratified by sex and enrollability (the LibriSpeech readers
and the other material dealt apart), ``--repeats`` times with seeded shuffles.
For each fold, each method is calibrated on the other folds and scored on that
one; the held-out counts are pooled over every fold and repeat, and the range
over folds is shown. Adaptive S-norm (cosine minus the mean of the top-k cosines
to a cohort, over their standard deviation, averaged over both sides) takes one
of the other folds as its cohort and calibrates on the rest.

**What ships**: the winning rule (``SHIPPED``) applied to all voices, with
``SHIPPED_DRAWS`` draws, which the bench compares with ``THRESHOLDS`` in
``hushgate.server.speakers``. The
cross-validation is its estimate on voices it was not set on (calibrated there
on four fifths of the voices, so if anything pessimistic).

    python bench/speaker_open_set.py                      # ../shared/audio beside the repo
    python bench/speaker_open_set.py --folds 3 --seed 1 --embeddings /tmp/bank.npz

The machine does not change the figures (the encoder is deterministic). Embedding
the ~2 700 cuts takes about 1.5 minutes of CPU, the rest seconds; ``--embeddings`` keeps them in a file
(loaded when it exists: delete it after changing the encoder or the audio).
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from core.speaker_bank import Bank, embed_bank, load_voices
from core.speaker_open import (
    Counts,
    CrossValidation,
    Decision,
    Draws,
    Method,
    cosine_scores,
    counts,
    cross_validate,
    snorm_scores,
)
from hushgate.engines.base import EngineOptions
from hushgate.engines.resemblyzer import create
from hushgate.server.speakers import THRESHOLDS

CUT_LENGTHS_MS = (1_000, 2_000, 2_500, 3_000, 4_000, 5_000, 6_000)
CALIBRATION_LENGTHS_MS = (1_000, 2_000, 3_000, 4_000, 6_000)  # and whole recordings; 2.5 s and 5 s only score
TARGET_FA, TARGET_FR, TARGET_FROM_MS = 0.02, 0.05, 2_000
SHIPPED_DRAWS = 200
SHIPPED = "cosine, 1/2/3/4/6 s interpolated, FA 1 % from 3 s"  # its rule on all voices gives THRESHOLDS


def methods(target_fa: float) -> list[Method]:
    """Band edges in ms (the first band starts at 0, where it holds down to ``MIN_DECISION_MS``)."""
    bands, finer = (1_000, 2_000, 4_000), (1_000, 2_000, 3_000, 4_000, 6_000)
    plain, strict = (target_fa,) * len(finer), (0.01,) * len(finer)
    safe_from_3s = tuple(target_fa if edge < 3_000 else 0.01 for edge in finer)  # where FR has room for it
    return [
        Method("cosine, bands 1/2/4 s", cosine_scores, False, 0.005, bands, plain[:3]),
        Method("cosine, bands 1/2/4 s, FA 1 %", cosine_scores, False, 0.005, bands, strict[:3]),
        Method("cosine, bands 1/2/4 s, margin 0.02", cosine_scores, False, 0.005, bands, plain[:3], margin=0.02),
        Method("cosine, bands 1/2/3/4/6 s", cosine_scores, False, 0.005, finer, plain),
        Method("cosine, 1/2/3/4/6 s interpolated", cosine_scores, False, 0.005, finer, plain, interpolate=True),
        Method(
            "cosine, 1/2/3/4/6 s interpolated, FA 1 %", cosine_scores, False, 0.005, finer, strict, interpolate=True
        ),
        Method(SHIPPED, cosine_scores, False, 0.005, finer, safe_from_3s, interpolate=True),
        Method("adaptive S-norm, bands 1/2/4 s", snorm_scores, True, 0.05, bands, plain[:3]),
    ]


def label(length_ms: int) -> str:
    return f"{length_ms / 1000:g} s" if length_ms else "full"


def percent(count: int, total: int) -> str:
    return f"{count}/{total} ({100 * count / total:.1f} %)" if total else "–"


def span(rates: Sequence[float]) -> str:
    return f"{100 * min(rates):.1f}–{100 * max(rates):.1f} %" if rates else "–"


def shown(decision: Decision) -> str:
    margin = f", margin {decision.margin:g}" if decision.margin else ""
    joined = ", interpolated" if decision.interpolate else ""
    return " / ".join(f"{t:g}" for _, t in decision.points) + joined + margin


def meets(c: Counts) -> bool:
    return c.fa <= TARGET_FA * c.strangers and c.fr <= TARGET_FR * c.genuine


def cv_table(results: dict[str, CrossValidation], lengths: Sequence[int]) -> list[str]:
    lines = [
        "| method | length | held-out FA | FA, range over folds | held-out FR | FR, range over folds "
        "| FR, same recording | FR, another recording |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, cv in results.items():
        for length in lengths:
            c = cv.pooled(length)
            per_fold = [f.counts[length] for f in cv.folds]
            fa = [f.fa / f.strangers for f in per_fold if f.strangers]
            fr = [f.fr / f.genuine for f in per_fold if f.genuine]
            lines.append(
                f"| {name} | {label(length)} | {percent(c.fa, c.strangers)} | {span(fa)} | {percent(c.fr, c.genuine)} "
                f"| {span(fr)} | {percent(c.fr_same, c.genuine_same)} | {percent(c.fr_cross, c.genuine_cross)} |"
            )
    return lines


def cv_summary(results: dict[str, CrossValidation], lengths: Sequence[int]) -> list[str]:
    """Per method: the thresholds the folds chose, and where the target was met."""
    lines = []
    for name, cv in results.items():
        target_lengths = [n for n in lengths if n == 0 or n >= TARGET_FROM_MS]
        pooled = all(meets(cv.pooled(n)) for n in target_lengths)
        folds_met = sum(all(meets(f.counts[n]) for n in target_lengths) for f in cv.folds)
        columns = zip(*(f.decision.points for f in cv.folds), strict=True)
        ranges = " / ".join(f"{min(t for _, t in c):g}–{max(t for _, t in c):g}" for c in columns)
        lines.append(
            f"* {name}: thresholds over folds {ranges}; target met at ≥ {label(TARGET_FROM_MS)} pooled: "
            f"{'yes' if pooled else 'no'}, in {folds_met} of {len(cv.folds)} folds"
        )
    return lines


def shipped(bank: Bank, draws: Draws, method: Method) -> list[str]:
    """``method``'s rule applied to every voice (the calibration the server ships; the cross-validation above
    is its estimate on unseen voices), next to the server's THRESHOLDS. More draws than a fold's, because
    this one calibration is all that ships: 40 draws moved single points by 0.005 from seed to seed."""
    fit = dataclasses.replace(draws, draws=SHIPPED_DRAWS)
    trials = fit.trials(bank, method.score(bank, None), np.ones(len(bank.names), bool), np.random.default_rng(1))
    calibrated, server = method.calibrate(trials, draws.calibration_ms), Decision(THRESHOLDS, interpolate=True)
    lines = [
        f"{method.name}, calibrated on all {len(bank.names)} voices ({SHIPPED_DRAWS} draws): {shown(calibrated)}",
        f"hushgate.server.speakers.THRESHOLDS: {shown(server)} ({'the same' if calibrated == server else 'DIFFERENT'})",
        "",
        "The server's THRESHOLDS on the voices they were calibrated on (all of them; the held-out estimate is the "
        "cross-validation above):",
        "",
        "| length | calibration FA | calibration FR | FR, same recording | FR, another recording |",
        "|---|---|---|---|---|",
    ]
    for length, c in counts(trials, server, draws.lengths_ms).items():
        lines.append(
            f"| {label(length)} | {percent(c.fa, c.strangers)} | {percent(c.fr, c.genuine)} "
            f"| {percent(c.fr_same, c.genuine_same)} | {percent(c.fr_cross, c.genuine_cross)} |"
        )
    return lines


def material(bank: Bank, lengths: Sequence[int]) -> list[str]:
    enrollable = int(np.sum(bank.enrollable))
    lines = [f"{len(bank.names)} voices ({enrollable} enrollable), {len(bank.vectors)} embedded cuts"]
    genuine = bank.genuine & bank.enrollable[bank.owner]
    per_length = ", ".join(
        f"{label(n)} {int(np.sum(genuine & bank.cross & (bank.cut_ms == n)))}"
        f"/{int(np.sum(genuine & (bank.cut_ms == n)))}"
        for n in lengths
    )
    readers = sorted({bank.names[i] for i in bank.owner[genuine & bank.cross]})
    lines.append(f"genuine test cuts from another recording / all, per length: {per_length} ({', '.join(readers)})")
    return lines


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--audio", type=Path, default=Path(__file__).resolve().parents[1].parent / "shared" / "audio")
    parser.add_argument("--models-dir", type=Path, default=None, help="where resemblyzer-ge2e is installed")
    parser.add_argument("--embeddings", type=Path, default=None, help="an .npz of the embedded cuts: read, or written")
    parser.add_argument("--enrolled", type=int, default=10, help="voiceprints in a session (default 10)")
    parser.add_argument("--draws", type=int, default=40, help="random draws of the enrolled voices (default 40)")
    parser.add_argument("--target-fa", type=float, default=0.015, help="calibration FA per band (default 0.015)")
    parser.add_argument("--folds", type=int, default=5, help="cross-validation folds over voices (default 5)")
    parser.add_argument("--repeats", type=int, default=10, help="re-dealt fold assignments (default 10)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the fold assignments (default 0)")
    parser.add_argument(
        "--lengths",
        default=",".join(f"{n / 1000:g}" for n in CUT_LENGTHS_MS),
        help="cut lengths in s that are scored, of those embedded (default: all, 1,2,2.5,3,4,5,6)",
    )
    args = parser.parse_args(argv)

    if args.embeddings is not None and args.embeddings.exists():
        bank = Bank.load(args.embeddings)
    else:
        encoder = create(EngineOptions(models_dir=args.models_dir))
        bank = embed_bank(encoder, load_voices(args.audio), CUT_LENGTHS_MS)
        encoder.close()
        if args.embeddings is not None:
            bank.save(args.embeddings)
    lengths = (*(round(1000 * float(n)) for n in args.lengths.split(",")), 0)
    calibration_lengths = tuple(n for n in lengths if n in (*CALIBRATION_LENGTHS_MS, 0))
    draws = Draws(args.enrolled, args.draws, lengths, calibration_lengths, np.isin(bank.cut_ms, lengths))
    all_methods = methods(args.target_fa)

    print("\n".join(material(bank, draws.lengths_ms)))
    print(
        f"open set: {args.enrolled} enrolled per draw, {args.draws} draws; each method's rule: per band, the lowest "
        f"threshold with calibration FA <= its target ({args.target_fa:.1%} where no other is named), on cuts of "
        f"{', '.join(map(label, calibration_lengths))}; target: FA <= {TARGET_FA:.0%} at FR <= {TARGET_FR:.0%} "
        f"from {label(TARGET_FROM_MS)}\n"
    )
    if np.sum(bank.enrollable) // args.folds < args.enrolled:
        print(f"NOTE: a held-out fold has fewer than {args.enrolled} enrollable voices: its sessions enroll fewer\n")
    results = {m.name: cross_validate(bank, m, draws, args.folds, args.repeats, args.seed) for m in all_methods}
    print(f"### Cross-validation: {args.folds} folds over voices, {args.repeats} repeats (seed {args.seed})\n")
    print("\n".join(cv_table(results, draws.lengths_ms)))
    print()
    print("\n".join(cv_summary(results, draws.lengths_ms)))
    print("\n### What ships\n")
    print("\n".join(shipped(bank, draws, next(m for m in all_methods if m.name == SHIPPED))))
    print(
        "\nFA: a stranger's cut named as an enrolled person; FR: an enrolled person's cut not named as themselves. "
        "Counts are over all draws (and folds), so one voice weighs in many times."
    )


if __name__ == "__main__":
    main()
