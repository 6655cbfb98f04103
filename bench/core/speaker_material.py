"""The material of the speaker bench (bench/speakers.py): recordings, speakers, synthetic voices, cuts."""

from __future__ import annotations

import math
import re
import shutil
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .audio import SAMPLE_RATE_HZ, Pcm, load_wav, resolve, to_16k, tsv_rows, write_wav

PIPER_MODEL = "piper-en_US-joe-medium"

# espeak-ng voices used as synthetic speakers, in order: accents crossed with
# variants (f = female, m = male, klatt = another synthesis model). Checked
# against `espeak-ng --voices` at run time; missing ones are skipped.
ESPEAK_VOICES: tuple[str, ...] = (
    "en-us",
    "en-gb-scotland+m3",
    "en+f3",
    "en-us+m7",
    "en-gb-x-rp+f4",
    "en-029+m5",
    "en-us-nyc+f2",
    "en-gb+klatt",
    "en-gb-x-gbclan+f5",
    "en-us+m2",
    "en-gb-x-gbcwmd+f1",
    "en+m6",
)

# Passages for synthetic speakers: each utterance reads two of them, and no two
# utterances of a speaker, nor the same utterance of two speakers, share a passage.
SENTENCES: tuple[str, ...] = (
    "The morning train was late again, so the whole office started the meeting without us.",
    "She kept a small notebook in her coat pocket and wrote down every bird she saw.",
    "If you turn left at the bakery, the library is the third building on the right.",
    "Our neighbours painted their fence bright yellow, and nobody on the street has stopped talking about it.",
    "The recipe asks for two cups of flour, a pinch of salt and a little patience.",
    "After the storm passed, the children ran outside to count the fallen branches.",
    "Please remember to switch off the lights and lock the back door before you leave.",
    "The museum opens at ten on weekdays, but the garden stays open until sunset.",
    "He tuned the old guitar for an hour before he was happy with the sound.",
    "A cold wind came down from the hills and rattled every window in the village.",
    "We compared three maps of the coast and none of them agreed about the lighthouse.",
    "The bus driver waited patiently while an elderly man searched for his ticket.",
    "Fresh tomatoes from the market taste nothing like the ones sold in winter.",
    "They built a raft from empty barrels and floated it slowly down the river.",
    "The quarterly report is due on Friday, and the figures still need checking.",
    "My grandmother could tell the time of day from the colour of the sky.",
    "A thin layer of snow covered the parked cars when we woke up this morning.",
    "The new bridge will shorten the drive to the airport by almost twenty minutes.",
    "Nobody expected the quiet student in the back row to win the debate.",
    "The cat watched the goldfish for hours, pretending not to be interested.",
    "Every summer the town holds a festival with music, food and a boat race.",
    "Before planting the seeds, loosen the soil and water it well.",
    "The lecture on ancient trade routes was longer than anyone had planned.",
    "Two hikers lost the trail in the fog and waited by a large rock until it cleared.",
)


class BenchError(Exception):
    """The speaker bench cannot go on (a refused enrollment, a server error, a missing tool)."""


def note(message: str) -> None:
    print(f"# {message}", file=sys.stderr, flush=True)


# Material -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Recording:
    name: str
    speaker: str
    pcm: Pcm
    synthetic: str | None = None  # the TTS engine that made it

    @property
    def duration_ms(self) -> int:
        return len(self.pcm) * 1000 // SAMPLE_RATE_HZ


@dataclass(slots=True)
class Speaker:
    name: str
    recordings: list[Recording]
    synthetic: str | None = None
    enrolled_from: list[Recording] = field(default_factory=list)
    enroll_speech_ms: int = 0
    voiceprint_id: str | None = None
    sealed: str | None = None
    note: str = ""

    @property
    def kind(self) -> str:
        return f"synthetic ({self.synthetic})" if self.synthetic else "real"

    @property
    def enrolled(self) -> bool:
        return self.sealed is not None


def from_dir(root: Path) -> list[Recording]:
    """Every ``<speaker>-*.wav`` below ``root``; names without a dash are skipped."""
    recordings, skipped = [], []
    for path in sorted(root.rglob("*.wav")):
        if "-" not in path.stem:
            skipped.append(str(path.relative_to(root)))
            continue
        recordings.append(Recording(str(path.relative_to(root)), path.stem.split("-", 1)[0], load_wav(path)))
    if skipped:
        note(f"skipped (not named <speaker>-*.wav): {', '.join(skipped)}")
    return recordings


def from_tsv(tsv: Path) -> list[Recording]:
    """Rows of ``file<TAB>speaker`` (more columns ignored, a ``file`` header skipped); paths relative to the TSV."""
    return [Recording(row[0], row[1].strip(), load_wav(resolve(tsv, row[0]))) for row in tsv_rows(tsv)]


def group_speakers(recordings: Iterable[Recording]) -> list[Speaker]:
    speakers: dict[str, Speaker] = {}
    for recording in recordings:
        speaker = speakers.setdefault(recording.speaker, Speaker(recording.speaker, [], recording.synthetic))
        speaker.recordings.append(recording)
    return list(speakers.values())


# Synthetic speakers -----------------------------------------------------------------


def passages(speaker_index: int, count: int) -> list[str]:
    """``count`` texts of two sentences each, different for every utterance of a speaker."""
    n = len(SENTENCES)
    return [" ".join(SENTENCES[(speaker_index * 3 + 2 * u + k) % n] for k in range(2)) for u in range(count)]


def synth_piper(voices: int, utterances: int, out_dir: Path, models_dir: Path | None) -> list[Recording]:
    from piper import PiperVoice, SynthesisConfig

    from hushgate.models.locate import locate_model

    model_path = locate_model(PIPER_MODEL, engine="piper", models_dir=models_dir)
    if voices > 1:
        note(f"--synth-piper {voices}: only one Piper voice is installed ({model_path.stem}); using 1")
    voice = PiperVoice.load(model_path)
    label = f"piper_{model_path.stem}"
    config = SynthesisConfig(normalize_audio=False)  # the gateway's Piper engine keeps the model's level too
    recordings = []
    for u, text in enumerate(passages(0, utterances)):
        chunks = [c.audio_int16_array.reshape(-1) for c in voice.synthesize(text, config)]
        pcm = to_16k(np.concatenate(chunks), voice.config.sample_rate)
        path = out_dir / f"{label}-{u}.wav"
        write_wav(path, pcm)
        recordings.append(Recording(path.name, label, pcm, synthetic="piper"))
    return recordings


def espeak_voices(executable: str) -> list[str]:
    """``ESPEAK_VOICES`` whose language and variant this espeak-ng has."""

    def listing(what: str) -> str:
        return subprocess.run([executable, f"--voices={what}"], capture_output=True, text=True, check=True).stdout

    languages = {line.split()[1] for line in listing("en").splitlines()[1:] if len(line.split()) > 1}
    variants = {
        line.split()[4].rsplit("/", 1)[-1] for line in listing("variant").splitlines()[1:] if len(line.split()) > 4
    }
    usable = []
    for name in ESPEAK_VOICES:
        language, _, variant = name.partition("+")
        if (language in languages or language == "en") and (not variant or variant in variants):
            usable.append(name)
    return usable


def synth_espeak(voices: int, utterances: int, out_dir: Path) -> list[Recording]:
    executable = shutil.which("espeak-ng")
    if executable is None:
        raise BenchError("--synth-espeak needs espeak-ng on PATH")
    names = espeak_voices(executable)
    if voices > len(names):
        note(f"--synth-espeak {voices}: {len(names)} voices available; using {len(names)}")
    recordings = []
    for index, name in enumerate(names[:voices]):
        label = "espeak_" + re.sub(r"[^A-Za-z0-9+]", "_", name)
        for u, text in enumerate(passages(index + 1, utterances)):
            path = out_dir / f"{label}-{u}.wav"
            subprocess.run([executable, "-v", name, "-w", str(path), text], check=True, capture_output=True)
            pcm = load_wav(path)
            write_wav(path, pcm)
            recordings.append(Recording(path.name, label, pcm, synthetic="espeak-ng"))
    return recordings


# Cutting ------------------------------------------------------------------------------


def speech_onset(pcm: Pcm) -> int:
    """First sample of the first 100 ms of continuous energy within 35 dB of the loudest 20 ms frame."""
    frame = SAMPLE_RATE_HZ // 50
    n = len(pcm) // frame
    if n == 0:
        return 0
    frames = pcm[: n * frame].astype(np.float64).reshape(n, frame)
    level = 10 * np.log10(np.mean(frames**2, axis=1) + 1.0)
    voiced = level >= max(float(level.max()) - 35.0, 20 * math.log10(32768) - 50.0)
    run = 0
    for i, v in enumerate(voiced):
        run = run + 1 if v else 0
        if run == 5:
            return (i - 4) * frame
    return 0


def cut(pcm: Pcm, length_s: float | None) -> Pcm | None:
    """The first ``length_s`` seconds from the speech onset; None when there is less than that."""
    if length_s is None:
        return pcm
    start = speech_onset(pcm)
    end = start + round(length_s * SAMPLE_RATE_HZ)
    return pcm[start:end] if end <= len(pcm) else None
