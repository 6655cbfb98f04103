"""Audio fixtures shared by the engine tests: real recordings and synthetic speech."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import wave
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
import soxr

from hushgate.engines.base import TranscriberStream, Transcript


def shared_audio_dir() -> Path:
    """The ``shared/audio`` folder that sits beside the repository checkout."""
    return Path(__file__).resolve().parents[1].parent / "shared" / "audio"


def read_wav(path: Path) -> tuple[npt.NDArray[np.int16], int]:
    """Mono int16 samples and the sample rate of a 16-bit PCM WAV file."""
    with wave.open(str(path), "rb") as wav:
        if wav.getsampwidth() != 2:
            raise ValueError(f"{path}: expected 16-bit PCM, got {8 * wav.getsampwidth()}-bit")
        channels = wav.getnchannels()
        rate_hz = wav.getframerate()
        samples = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
    if channels > 1:
        samples = samples.reshape(-1, channels).mean(axis=1).round()
    return samples.astype(np.int16), rate_hz


def resample(pcm: npt.NDArray[np.int16], rate_hz: int, target_rate_hz: int) -> npt.NDArray[np.int16]:
    """``pcm`` at ``target_rate_hz`` (soxr keeps int16 in, int16 out)."""
    if rate_hz == target_rate_hz:
        return pcm
    return np.asarray(soxr.resample(pcm, rate_hz, target_rate_hz), dtype=np.int16)


def espeak(text: str, voice: str, tmp_dir: Path) -> tuple[npt.NDArray[np.int16], int]:
    """Speech synthesised by espeak-ng (skips the calling test if espeak-ng is not installed)."""
    executable = shutil.which("espeak-ng")
    if executable is None:
        pytest.skip("espeak-ng is not installed (apt-get install espeak-ng): no synthetic speech to test with")
    out_path = tmp_dir / f"espeak-{voice}-{hashlib.sha1(text.encode()).hexdigest()[:12]}.wav"
    subprocess.run([executable, "-v", voice, "-w", str(out_path), text], check=True, capture_output=True)
    return read_wav(out_path)


def silence(duration_ms: int, rate_hz: int) -> npt.NDArray[np.int16]:
    return np.zeros(duration_ms * rate_hz // 1000, dtype=np.int16)


def chunks(pcm: npt.NDArray[np.int16], chunk_samples: int) -> list[npt.NDArray[np.int16]]:
    return [pcm[start : start + chunk_samples] for start in range(0, pcm.shape[0], chunk_samples)]


STREAM_RATE_HZ = 16_000
STREAM_CHUNK_SAMPLES = STREAM_RATE_HZ // 10  # 100 ms, what a client typically sends


def pcm_duration_ms(pcm: npt.NDArray[np.int16]) -> int:
    return pcm.shape[0] * 1000 // STREAM_RATE_HZ


def stream_utterance(stream: TranscriberStream, pcm: npt.NDArray[np.int16]) -> tuple[list[Transcript], Transcript]:
    partials = []
    for chunk in chunks(pcm, STREAM_CHUNK_SAMPLES):
        stream.accept(chunk)
        partial = stream.partial()
        if partial is not None:
            partials.append(partial)
    return partials, stream.finish()


def assert_word_times(transcript: Transcript, duration_ms: int) -> None:
    assert transcript.words, "expected word timings"
    previous_t0_ms = 0
    for word in transcript.words:
        assert 0 <= word.t0_ms <= word.t1_ms <= duration_ms + 100, word
        assert word.t0_ms >= previous_t0_ms, transcript.words
        assert 0.0 <= word.conf <= 1.0, word
        previous_t0_ms = word.t0_ms
