"""The one WAV loader and the shared corpus (``../shared/audio``: its WAVs and ``transcripts.tsv``)."""

from __future__ import annotations

import csv
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

SAMPLE_RATE_HZ = 16_000
GAP_S = 1.0  # silence between the files of a playlist
REPO_ROOT = Path(__file__).resolve().parents[2]
AUDIO_DIR = (REPO_ROOT / ".." / "shared" / "audio").resolve()

Pcm = npt.NDArray[np.int16]
Playlist = list[tuple[str, Pcm]]


def load_wav(path: Path) -> Pcm:
    """Mono int16 at 16 kHz: other rates are resampled (soxr) and several channels averaged."""
    with wave.open(str(path), "rb") as wav:
        rate, channels, width = wav.getframerate(), wav.getnchannels(), wav.getsampwidth()
        if width != 2:
            raise SystemExit(f"{path}: need 16-bit PCM, got {8 * width} bit")
        pcm = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
    if channels > 1:
        pcm = pcm.reshape(-1, channels).mean(axis=1).astype(np.int16)
    if rate != SAMPLE_RATE_HZ:
        pcm = to_16k(pcm, rate)
    return np.ascontiguousarray(pcm, dtype=np.int16)


def to_16k(pcm: npt.NDArray[np.int16], rate_hz: int) -> Pcm:
    if rate_hz == SAMPLE_RATE_HZ:
        return pcm.astype(np.int16)
    import soxr  # only for material that is not 16 kHz already (the corpus is)

    return np.ascontiguousarray(soxr.resample(pcm.astype(np.int16), rate_hz, SAMPLE_RATE_HZ), dtype=np.int16)


def write_wav(path: Path, pcm: Pcm) -> None:
    """16 kHz mono 16-bit; only for synthetic material a bench makes itself (never for what a server sent)."""
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(SAMPLE_RATE_HZ)
        wav.writeframes(pcm.astype("<i2").tobytes())


def load_playlist(audio_dir: Path = AUDIO_DIR) -> Playlist:
    """``librispeech/*.wav`` (sorted) then ``misc/jfk.wav``, named relative to ``audio_dir``."""
    paths = sorted((audio_dir / "librispeech").glob("*.wav"))
    jfk = audio_dir / "misc" / "jfk.wav"
    if jfk.exists():
        paths.append(jfk)
    if not paths:
        raise SystemExit(f"no WAVs under {audio_dir}/librispeech or {audio_dir}/misc/jfk.wav")
    return [(str(p.relative_to(audio_dir)), load_wav(p)) for p in paths]


def once_through_s(playlist: Playlist) -> float:
    """Seconds of every file once, each followed by the gap."""
    return sum(len(pcm) for _, pcm in playlist) / SAMPLE_RATE_HZ + GAP_S * len(playlist)


def client_audio(playlist: Playlist, offset: int, seconds: float) -> Pcm:
    """The playlist from file ``offset`` on, cycling, ``GAP_S`` of silence between files, cut to ``seconds``."""
    total = int(seconds * SAMPLE_RATE_HZ)
    gap = np.zeros(int(GAP_S * SAMPLE_RATE_HZ), np.int16)
    parts: list[Pcm] = []
    have, i = 0, offset
    while have < total:
        if parts:
            parts.append(gap)
            have += len(gap)
        pcm = playlist[i % len(playlist)][1]
        parts.append(pcm)
        have += len(pcm)
        i += 1
    return np.concatenate(parts)[:total]


def tsv_rows(tsv: Path) -> list[list[str]]:
    """Rows of a ``file<TAB>...`` list: blank lines, ``#`` comments and a ``file`` header left out."""
    with tsv.open(newline="", encoding="utf-8") as handle:
        return [
            row
            for row in csv.reader(handle, delimiter="\t")
            if len(row) >= 2 and row[0].strip() and not row[0].startswith("#") and row[0] != "file"
        ]


def resolve(tsv: Path, name: str) -> Path:
    """A TSV's file column: absolute, or relative to the TSV."""
    path = Path(name)
    return path if path.is_absolute() else tsv.parent / path


@dataclass(frozen=True, slots=True)
class Transcribed:
    file: str  # relative to the audio folder
    speaker: str
    transcript: str


def transcripts(audio_dir: Path = AUDIO_DIR) -> list[Transcribed]:
    """``transcripts.tsv`` of the corpus (``file, speaker, transcript``; an empty transcript is unknown)."""
    rows = tsv_rows(audio_dir / "transcripts.tsv")
    return [Transcribed(row[0], row[1].strip(), row[2] if len(row) > 2 else "") for row in rows]
