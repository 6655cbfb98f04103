"""The voices of the open-set speaker bench (bench/speaker_open_set.py) and every cut of them, embedded once.

Each voice of ``../shared/audio`` becomes a `Voice`: what it is enrolled from,
what it is tested on when enrolled, and what it says when it is a stranger.
`embed_bank` embeds all of it once into a flat `Bank` (one row per cut), so
that every fold and every draw only index arrays. A bank can be
saved to and loaded from an ``.npz`` file (vectors of public recordings, never
of anything a server heard), so that repeated runs skip the embedding.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from hushgate.engines.resemblyzer import ResemblyzerEncoder

from .audio import SAMPLE_RATE_HZ, Pcm, load_wav

PROBE_CUTS = 3  # cuts per length of a recording heard from a stranger
ENROLL_S = 8
MIN_ENROLLABLE_S = 12

# LibriSpeech readers of librispeech/ (several recordings each): the recordings they are enrolled from.
READERS = {
    "2412": ("2412-153948-0000",),
    "251": ("251-137823-0003", "251-118436-0001"),
    "1089": ("1089-134686-0000",),
    "1221": ("1221-135766-0001",),
}
STRANGERS_ONLY = ("misc/jfk.wav", "misc/vosk_test.wav")  # one recording each: never enrolled

Matrix = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]
Flags = npt.NDArray[np.bool_]


@dataclass
class Voice:
    name: str
    stratum: str  # folds are balanced over strata: sex and enrollability, readers, other material
    unit: str  # voices of one unit always share a fold (FLEURS files of one language may share a speaker)
    enroll: list[Pcm] = field(default_factory=list)  # empty: never enrolled
    tests: list[tuple[Pcm, bool]] = field(default_factory=list)  # genuine tests, (pcm, from another recording)
    probes: list[Pcm] = field(default_factory=list)  # recordings heard when a stranger


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
    """Every voice: the ``strangers/`` readers (in ``speakers.tsv`` order), the LibriSpeech readers, the rest."""
    voices: list[Voice] = []
    with (audio / "strangers" / "speakers.tsv").open(encoding="utf-8") as table:
        for row in csv.DictReader(table, delimiter="\t"):
            pcm = trimmed(read_flac(audio / row["file"]))
            enrollable = len(pcm) >= MIN_ENROLLABLE_S * SAMPLE_RATE_HZ
            voice = Voice(
                row["speaker"], f"{row['sex']} {'long' if enrollable else 'short'}", row["speaker"], probes=[pcm]
            )
            if enrollable:
                voice.enroll = [pcm[: ENROLL_S * SAMPLE_RATE_HZ]]
                voice.tests = [(pcm[ENROLL_S * SAMPLE_RATE_HZ :], False)]
            voices.append(voice)
    for name, enroll_stems in READERS.items():
        voice = Voice(f"ls-{name}", "reader", name)
        for path in sorted((audio / "librispeech").glob(f"{name}-*.wav")):
            pcm = trimmed(load_wav(path))
            voice.probes.append(pcm)
            if path.stem in enroll_stems:
                voice.enroll.append(pcm)
            else:
                voice.tests.append((pcm, True))
        voices.append(voice)
    for relative in STRANGERS_ONLY:
        voices.append(Voice(Path(relative).stem, "other", relative, probes=[trimmed(load_wav(audio / relative))]))
    for path in sorted((audio / "fleurs").glob("*.wav")):
        language = path.stem.split("-")[1]
        voices.append(Voice(path.stem, "fleurs", f"fleurs-{language}", probes=[trimmed(load_wav(path))]))
    return voices


@dataclass(frozen=True)
class Bank:
    """Every embedded cut, one row each, with the voice it belongs to and how it is used."""

    names: list[str]
    strata: list[str]
    units: list[str]
    models: Matrix  # one voiceprint per voice; a zero row when it is never enrolled
    enrollable: Flags
    vectors: Matrix  # one row per cut
    owner: Ints  # the voice a cut belongs to
    cut_ms: Ints  # the cut's nominal length; 0 for a whole recording
    length_ms: Ints  # the speech it holds (what the server's bands look at)
    rank: Ints  # its place among the cuts of that length of its recording (0 for a whole one)
    genuine: Flags  # True: a test cut, heard when its voice is enrolled; False: heard when a stranger
    cross: Flags  # a test cut from another recording than the enrollment

    def save(self, path: Path) -> None:
        arrays: dict[str, Any] = {k: np.asarray(v) for k, v in vars(self).items()}
        np.savez_compressed(path, **arrays)

    @staticmethod
    def load(path: Path) -> Bank:
        with np.load(path) as data:
            text = {k: [str(x) for x in data[k]] for k in ("names", "strata", "units")}
            return Bank(
                text["names"], text["strata"], text["units"],
                data["models"], data["enrollable"], data["vectors"], data["owner"], data["cut_ms"],
                data["length_ms"], data["rank"], data["genuine"], data["cross"],
            )  # fmt: skip


def embed_bank(encoder: ResemblyzerEncoder, voices: Sequence[Voice], cut_lengths_ms: Sequence[int]) -> Bank:
    rows: list[tuple[int, int, int, int, bool, bool]] = []  # owner, cut ms (0: whole), speech ms, rank, genuine, cross
    vectors: list[npt.NDArray[np.float32]] = []
    models = np.zeros((len(voices), 256))

    def add(owner: int, pcm: Pcm, genuine: bool, cross: bool, max_cuts: int | None) -> None:
        for length_ms in cut_lengths_ms:
            samples = length_ms * SAMPLE_RATE_HZ // 1000
            for k in range(min(len(pcm) // samples, max_cuts or len(pcm))):
                rows.append((owner, length_ms, length_ms, k, genuine, cross))
                vectors.append(encoder.embed(pcm[k * samples : (k + 1) * samples]))
        rows.append((owner, 0, len(pcm) * 1000 // SAMPLE_RATE_HZ, 0, genuine, cross))
        vectors.append(encoder.embed(pcm))

    for i, voice in enumerate(voices):
        if voice.enroll:  # weighted by length, as an enrollment in the server weights by counted speech
            mean = np.average([encoder.embed(p) for p in voice.enroll], axis=0, weights=[len(p) for p in voice.enroll])
            models[i] = mean / np.linalg.norm(mean)
        for pcm, cross in voice.tests:
            add(i, pcm, True, cross, None)
        for pcm in voice.probes:
            add(i, pcm, False, False, PROBE_CUTS)
    columns = list(zip(*rows, strict=True))
    return Bank(
        names=[v.name for v in voices],
        strata=[v.stratum for v in voices],
        units=[v.unit for v in voices],
        models=models,
        enrollable=np.array([bool(v.enroll) for v in voices]),
        vectors=np.stack(vectors).astype(np.float64),
        owner=np.array(columns[0], np.int64),
        cut_ms=np.array(columns[1], np.int64),
        length_ms=np.array(columns[2], np.int64),
        rank=np.array(columns[3], np.int64),
        genuine=np.array(columns[4], bool),
        cross=np.array(columns[5], bool),
    )
