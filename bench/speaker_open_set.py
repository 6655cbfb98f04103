"""Open-set speaker decisions measured on voices the thresholds were not set on.

Runs the real GE2E encoder in-process (no server) over the public voices in
``../shared/audio`` and answers one question: when a session has enrolled some
people, how often is a *stranger* named as one of them (false accept, FA), and
how often is an enrolled person not named, or named as somebody else (false
reject, FR)? Reported per test length (1 s, 2 s, 4 s cuts and the full
recording), for the calibration voices and for the held-out voices separately.

Voices have three disjoint roles (the lists below; the split was drawn once,
stratified by sex and by recording length, and is fixed so runs compare):

* **cohort** — 29 ``strangers/`` readers, used only as the cohort of the score
  normalisation being measured (adaptive S-norm); never enrolled, never tested;
* **calibration** — 26 ``strangers/`` readers and LibriSpeech readers 2412 and
  251: the thresholds are chosen on these;
* **held-out** — 25 ``strangers/`` readers, LibriSpeech readers 1089 and 1221,
  and as strangers only ``misc/jfk.wav``, ``misc/vosk_test.wav`` and the 16
  ``fleurs/`` recordings (other languages; never enrolled, because files of one
  language may share a speaker): the figures that count.

Enrollment: a ``strangers/`` reader whose recording has at least 12 s of speech
is enrolled from its first 8 s and tested on the rest (the same recording, so
their genuine scores are optimistic); LibriSpeech readers are enrolled from one
or two recordings and tested on the others (another recording, same book).
Shorter ``strangers/`` recordings are never enrolled. A voice takes part as a
stranger with its whole recording and its first three 1 s, 2 s and 4 s cuts.

Open-set trials, as a session sees them: ``--enrolled`` voices of a group are
enrolled (``--draws`` random draws); every other voice of that group is a
stranger. A stranger's cut is a false accept when its best score over the
enrolled voiceprints reaches the threshold; an enrolled person's cut is a false
reject unless their own voiceprint scores best *and* reaches it. The threshold
depends on the cut's length band, as in ``hushgate.server.speakers``.

Methods: ``cosine`` (what the server does) and ``snorm`` (adaptive S-norm: the
cosine minus the mean of the top-k cohort cosines, over their standard
deviation, averaged over the voiceprint's side and the utterance's side). Each
method gets, per band, the lowest threshold whose calibration FA is at most
``--target-fa``; the server's own ``THRESHOLDS`` are measured too. Plain cosine
needs no cohort, so a last row calibrates it on the calibration and cohort voices
together (more voices, steadier thresholds), still scored on the held-out ones.

    python bench/speaker_open_set.py                      # ../shared/audio beside the repo
    python bench/speaker_open_set.py --audio /work/shared/audio --target-fa 0.015

The machine it runs on does not change the figures (the encoder is
deterministic); it takes about 2.5 minutes of CPU, most of it embedding ~2 000 cuts.
"""

from __future__ import annotations

import argparse
import csv
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

from core.audio import load_wav
from hushgate.engines.base import EngineOptions
from hushgate.engines.resemblyzer import ResemblyzerEncoder, create
from hushgate.server.speakers import THRESHOLDS

SAMPLE_RATE_HZ = 16_000
CUT_LENGTHS_S = (1, 2, 4)
LENGTHS = ("1 s", "2 s", "4 s", "full")
PROBE_CUTS = 3  # cuts per length of a stranger's recording
ENROLL_S = 8
MIN_ENROLLABLE_S = 12
COHORT_TOP_K = 20

COHORT = (  # noqa: SIM905
    "26 32 211 226 250 254 311 1737 1743 1898 1926 1963 1970 2002 2007 "
    "2092 2136 2384 2416 2514 2843 2989 3214 3259 3374 3436 3486 3664 3807"
).split()
CALIBRATION = (  # noqa: SIM905
    "27 200 233 298 302 322 328 374 1594 1624 1867 2196 2391 "
    "2436 2764 2817 2836 2911 3112 3235 3240 3242 3526 3607 3699 3723"
).split()
HELD_OUT = (  # noqa: SIM905
    "19 163 196 198 201 229 248 289 307 332 1553 1578 1723 1841 1992 2159 2182 2289 2518 2691 2893 2910 2952 3168 3440"
).split()
# LibriSpeech readers of librispeech/: the recordings they are enrolled from.
CALIBRATION_READERS = {"2412": ("2412-153948-0000",), "251": ("251-137823-0003", "251-118436-0001")}
HELD_OUT_READERS = {"1089": ("1089-134686-0000",), "1221": ("1221-135766-0001",)}
HELD_OUT_STRANGERS_ONLY = ("misc/jfk.wav", "misc/vosk_test.wav")

Pcm = npt.NDArray[np.int16]
Matrix = npt.NDArray[np.float64]


@dataclass
class Voice:
    name: str
    group: str  # "calibration" | "held-out"
    enroll: list[Pcm] = field(default_factory=list)  # empty: never enrolled
    tests: list[Pcm] = field(default_factory=list)  # genuine test recordings
    probes: list[Pcm] = field(default_factory=list)  # recordings used when a stranger


@dataclass
class Cuts:
    """Embedded cuts of some recordings: (length label, length ms, vector)."""

    labels: list[str] = field(default_factory=list)
    lengths_ms: list[int] = field(default_factory=list)
    vectors: list[npt.NDArray[np.float32]] = field(default_factory=list)

    def matrix(self) -> Matrix:
        return np.stack(self.vectors).astype(np.float64)


# --- audio ---------------------------------------------------------------------------


def read_flac(path: Path) -> Pcm:
    import av  # installed with faster-whisper

    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        if stream.rate != SAMPLE_RATE_HZ:
            raise ValueError(f"{path}: expected 16 kHz")
        return np.concatenate([frame.to_ndarray().reshape(-1) for frame in container.decode(stream)]).astype(np.int16)


def trimmed(pcm: Pcm, frame_samples: int = 320) -> Pcm:
    """Without the leading and trailing silence, so a cut starts at the speech as the server's do."""
    n = len(pcm) // frame_samples
    rms = np.sqrt(np.mean(np.square(pcm[: n * frame_samples].astype(np.float64)).reshape(n, frame_samples), axis=1))
    voiced = np.nonzero(rms > 0.05 * rms.max())[0]
    return pcm[voiced[0] * frame_samples : (voiced[-1] + 1) * frame_samples]


def load_voices(audio: Path) -> list[Voice]:
    """Every voice with its group: cohort, calibration or held-out."""
    strangers: dict[str, Pcm] = {}
    with (audio / "strangers" / "speakers.tsv").open(encoding="utf-8") as table:
        for row in csv.DictReader(table, delimiter="\t"):
            strangers[row["speaker"]] = trimmed(read_flac(audio / row["file"]))
    voices: list[Voice] = []
    for group, names in (("cohort", COHORT), ("calibration", CALIBRATION), ("held-out", HELD_OUT)):
        for name in names:
            pcm = strangers[name]
            voice = Voice(name, group, probes=[pcm])
            if len(pcm) >= MIN_ENROLLABLE_S * SAMPLE_RATE_HZ:
                voice.enroll, voice.tests = [pcm[: ENROLL_S * SAMPLE_RATE_HZ]], [pcm[ENROLL_S * SAMPLE_RATE_HZ :]]
            voices.append(voice)
    for group, readers in (("calibration", CALIBRATION_READERS), ("held-out", HELD_OUT_READERS)):
        for name, enroll_stems in readers.items():
            voice = Voice(f"ls-{name}", group)
            for path in sorted((audio / "librispeech").glob(f"{name}-*.wav")):
                pcm = trimmed(load_wav(path))
                voice.probes.append(pcm)
                (voice.enroll if path.stem in enroll_stems else voice.tests).append(pcm)
            voices.append(voice)
    for relative in (
        *HELD_OUT_STRANGERS_ONLY,
        *sorted(str(p.relative_to(audio)) for p in (audio / "fleurs").glob("*.wav")),
    ):
        voices.append(Voice(Path(relative).stem, "held-out", probes=[trimmed(load_wav(audio / relative))]))
    return voices


# --- embeddings ------------------------------------------------------------------------


def embed_cuts(encoder: ResemblyzerEncoder, recordings: Sequence[Pcm], max_cuts: int | None) -> Cuts:
    cuts = Cuts()
    for pcm in recordings:
        for length_s in CUT_LENGTHS_S:
            samples = length_s * SAMPLE_RATE_HZ
            for k in range(min(len(pcm) // samples, max_cuts or len(pcm))):
                cuts.labels.append(f"{length_s} s")
                cuts.lengths_ms.append(length_s * 1000)
                cuts.vectors.append(encoder.embed(pcm[k * samples : (k + 1) * samples]))
        cuts.labels.append("full")
        cuts.lengths_ms.append(len(pcm) * 1000 // SAMPLE_RATE_HZ)
        cuts.vectors.append(encoder.embed(pcm))
    return cuts


def first_cuts(cuts: Cuts, per_length: int) -> Cuts:
    """The first ``per_length`` cuts of each length and the full recordings, as ``embed_cuts`` with that cap."""
    kept, seen = Cuts(), dict.fromkeys(cuts.labels, 0)
    for label, length_ms, vector in zip(cuts.labels, cuts.lengths_ms, cuts.vectors, strict=True):
        if label == "full":
            seen = dict.fromkeys(seen, 0)  # the next recording starts
        elif seen[label] >= per_length:
            continue
        seen[label] += label != "full"
        kept.labels.append(label)
        kept.lengths_ms.append(length_ms)
        kept.vectors.append(vector)
    return kept


def voiceprint(encoder: ResemblyzerEncoder, recordings: Sequence[Pcm]) -> npt.NDArray[np.float64]:
    """Weighted by length, as an enrollment in the server weights by counted speech."""
    mean = np.average([encoder.embed(p) for p in recordings], axis=0, weights=[len(p) for p in recordings])
    return np.asarray(mean / np.linalg.norm(mean), np.float64)


# --- scoring -------------------------------------------------------------------------

Scorer = Callable[[Matrix, Matrix], Matrix]  # (voiceprints, utterances) -> scores [voiceprint, utterance]


def cosine(models: Matrix, utterances: Matrix) -> Matrix:
    return models @ utterances.T


def adaptive_snorm(cohort: Matrix, top_k: int) -> Scorer:
    def top_stats(rows: Matrix) -> tuple[Matrix, Matrix]:
        top = np.sort(rows @ cohort.T, axis=1)[:, -top_k:]
        return top.mean(axis=1), top.std(axis=1)

    def score(models: Matrix, utterances: Matrix) -> Matrix:
        raw = models @ utterances.T
        mean_m, std_m = top_stats(models)
        mean_u, std_u = top_stats(utterances)
        return 0.5 * ((raw - mean_m[:, None]) / std_m[:, None] + (raw - mean_u[None, :]) / std_u[None, :])

    return score


# --- open-set trials -------------------------------------------------------------------


@dataclass
class Trials:
    """Best score per test cut over one draw of enrolled voiceprints."""

    genuine: list[tuple[str, int, float, bool]] = field(default_factory=list)  # label, ms, best, own is best
    stranger: list[tuple[str, int, float]] = field(default_factory=list)  # label, ms, best


@dataclass
class Embedded:
    voice: Voice
    model: npt.NDArray[np.float64] | None
    tests: Cuts
    probes: Cuts


def open_set_trials(voices: Sequence[Embedded], scorer: Scorer, enrolled: int, draws: int, seed: int) -> Trials:
    rng = np.random.default_rng(seed)
    enrollable = [v for v in voices if v.model is not None]
    models = np.stack([v.model for v in enrollable if v.model is not None])
    trials = Trials()
    for _ in range(draws):
        chosen = rng.choice(len(enrollable), size=min(enrolled, len(enrollable)), replace=False)
        names = [enrollable[i].voice.name for i in chosen]
        for item in voices:
            own = item.voice.name in names
            cuts = item.tests if own else item.probes
            if not cuts.vectors:
                continue
            scores = scorer(models[chosen], cuts.matrix())
            best, best_at = scores.max(axis=0), scores.argmax(axis=0)
            for k, (label, length_ms) in enumerate(zip(cuts.labels, cuts.lengths_ms, strict=True)):
                if own:
                    trials.genuine.append((label, length_ms, float(best[k]), names[best_at[k]] == item.voice.name))
                else:
                    trials.stranger.append((label, length_ms, float(best[k])))
    return trials


Bands = tuple[tuple[int, float], ...]


def band_threshold(bands: Bands, length_ms: int) -> float:
    for upper_ms, threshold in bands:
        if length_ms < upper_ms:
            return threshold
    return bands[-1][1]


def rates(trials: Trials, bands: Bands, label: str) -> tuple[int, int, int, int]:
    """(false accepts, stranger cuts, false rejects, genuine cuts) for one length label."""
    strangers = [(ms, s) for lab, ms, s in trials.stranger if lab == label]
    genuine = [(ms, s, own) for lab, ms, s, own in trials.genuine if lab == label]
    fa = sum(s >= band_threshold(bands, ms) for ms, s in strangers)
    fr = sum(not (own and s >= band_threshold(bands, ms)) for ms, s, own in genuine)
    return fa, len(strangers), fr, len(genuine)


def calibrate(trials: Trials, upper_ms: Sequence[int], target_fa: float, step: float) -> Bands:
    """Per band, the lowest threshold (on a grid of ``step``) with stranger FA at most ``target_fa``."""
    bands: list[tuple[int, float]] = []
    lower_ms = 0
    for upper in upper_ms:
        scores = np.array([s for _, ms, s in trials.stranger if lower_ms <= ms < upper])
        threshold = float(np.ceil(np.max(scores) / step) * step) if len(scores) else 0.0
        for candidate in np.sort(np.unique(np.ceil(scores / step) * step)):
            if np.mean(scores >= candidate) <= target_fa:
                threshold = float(candidate)
                break
        bands.append((upper, round(threshold, 4)))
        lower_ms = upper
    return tuple(bands)


def percent(count: int, total: int) -> str:
    return f"{count}/{total} ({100 * count / total:.1f} %)" if total else "–"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--audio", type=Path, default=Path(__file__).resolve().parents[1].parent / "shared" / "audio")
    parser.add_argument("--models-dir", type=Path, default=None, help="where resemblyzer-ge2e is installed")
    parser.add_argument("--enrolled", type=int, default=10, help="voiceprints in a session (default 10)")
    parser.add_argument("--draws", type=int, default=40, help="random draws of the enrolled voices (default 40)")
    parser.add_argument("--target-fa", type=float, default=0.015, help="calibration FA per band (default 0.015)")
    args = parser.parse_args(argv)

    encoder = create(EngineOptions(models_dir=args.models_dir))
    voices = load_voices(args.audio)
    embedded = [
        Embedded(
            v,
            voiceprint(encoder, v.enroll) if v.enroll else None,
            embed_cuts(encoder, v.tests, None),
            embed_cuts(encoder, v.probes, PROBE_CUTS),
        )
        for v in voices
    ]
    encoder.close()
    groups = {g: [e for e in embedded if e.voice.group == g] for g in ("cohort", "calibration", "held-out")}
    cohort = np.concatenate([first_cuts(e.probes, 2).matrix() for e in groups.pop("cohort")])
    # With plain cosine no cohort is needed, so its voices can calibrate too.
    groups["calibration + cohort"] = [e for e in embedded if e.voice.group in ("calibration", "cohort")]
    for group, members in groups.items():
        enrollable = sum(e.model is not None for e in members)
        print(f"{group}: {len(members)} voices, {enrollable} enrollable")
    print(f"cohort: {len(COHORT)} voices, {len(cohort)} vectors; top-k {COHORT_TOP_K}")
    print(
        f"open set: {args.enrolled} enrolled per draw, {args.draws} draws; "
        f"thresholds: lowest with calibration FA <= {args.target_fa:.1%} per band\n"
    )

    upper_ms = [upper for upper, _ in THRESHOLDS]
    methods: list[tuple[str, Scorer, Bands | None, float, str]] = [
        ("cosine, shipped THRESHOLDS", cosine, THRESHOLDS, 0.005, "calibration"),
        ("cosine, calibrated", cosine, None, 0.005, "calibration"),
        ("adaptive S-norm, calibrated", adaptive_snorm(cohort, COHORT_TOP_K), None, 0.05, "calibration"),
        ("cosine, calibrated on calibration + cohort voices", cosine, None, 0.005, "calibration + cohort"),
    ]
    print(
        "| method | band thresholds (<2 s / 2–4 s / ≥4 s) | length | calibration FA | calibration FR "
        "| held-out FA | held-out FR |"
    )
    print("|---|---|---|---|---|---|---|")
    for name, scorer, fixed, step, calibrated_on in methods:
        calibration = open_set_trials(groups[calibrated_on], scorer, args.enrolled, args.draws, seed=1)
        held_out = open_set_trials(groups["held-out"], scorer, args.enrolled, args.draws, seed=2)
        bands = fixed or calibrate(calibration, upper_ms, args.target_fa, step)
        shown = " / ".join(f"{t:g}" for _, t in bands)
        for label in LENGTHS:
            c_fa, c_n, c_fr, c_g = rates(calibration, bands, label)
            h_fa, h_n, h_fr, h_g = rates(held_out, bands, label)
            print(
                f"| {name} | {shown} | {label} | {percent(c_fa, c_n)} | {percent(c_fr, c_g)} "
                f"| {percent(h_fa, h_n)} | {percent(h_fr, h_g)} |"
            )
    print(
        "\nFA: a stranger's cut named as an enrolled person; FR: an enrolled person's cut not named "
        "as themselves. Counts are over all draws, so one voice weighs in many times."
    )


if __name__ == "__main__":
    main()
