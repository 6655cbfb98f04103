"""The front end of Resemblyzer's GE2E encoder: mel filters, frame window and partial windows.

Reimplements the librosa defaults resemblyzer relies on (Slaney mel scale and
area normalisation, periodic Hann window) and resemblyzer's own cutting of an
utterance into partial windows, in numpy.
"""

from __future__ import annotations

import math
from typing import Final

import numpy as np
import numpy.typing as npt

SAMPLE_RATE_HZ: Final = 16_000
FRAME_SAMPLES: Final = 400  # 25 ms
HOP_SAMPLES: Final = 160  # 10 ms
N_MELS: Final = 40
WINDOW_FRAMES: Final = 160  # 1.6 s per partial window
# resemblyzer: round((SAMPLE_RATE_HZ / rate) / HOP_SAMPLES) with its default rate=1.3
WINDOW_STEP_FRAMES: Final = 77
MIN_LAST_WINDOW_COVERAGE: Final = 0.75


def _hz_to_mel(hz: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    # Slaney's scale: linear to 1 kHz, logarithmic above (librosa's htk=False).
    f_sp = 200.0 / 3
    min_log_hz = 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = math.log(6.4) / 27.0
    mel = hz / f_sp
    above = hz >= min_log_hz
    mel[above] = min_log_mel + np.log(hz[above] / min_log_hz) / logstep
    return mel


def _mel_to_hz(mel: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    f_sp = 200.0 / 3
    min_log_hz = 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = math.log(6.4) / 27.0
    hz = f_sp * mel
    above = mel >= min_log_mel
    hz[above] = min_log_hz * np.exp(logstep * (mel[above] - min_log_mel))
    return hz


def mel_filterbank(
    sample_rate_hz: int = SAMPLE_RATE_HZ, n_fft: int = FRAME_SAMPLES, n_mels: int = N_MELS
) -> npt.NDArray[np.float32]:
    """Triangular Slaney-normalised mel filters from 0 Hz to Nyquist, (n_mels, n_fft//2+1).

    The same numbers as ``librosa.filters.mel(sr=..., n_fft=..., n_mels=...)``.
    """
    fft_hz = np.fft.rfftfreq(n_fft, d=1.0 / sample_rate_hz)
    edges_mel = np.linspace(_hz_to_mel(np.array([0.0]))[0], _hz_to_mel(np.array([sample_rate_hz / 2]))[0], n_mels + 2)
    edges_hz = _mel_to_hz(edges_mel)
    widths_hz = np.diff(edges_hz)
    ramps = edges_hz[:, None] - fft_hz[None, :]
    rising = -ramps[:-2] / widths_hz[:-1, None]
    falling = ramps[2:] / widths_hz[1:, None]
    weights = np.maximum(0.0, np.minimum(rising, falling))
    # equal area per filter, so wide high-frequency bands do not dominate
    weights *= (2.0 / (edges_hz[2:] - edges_hz[:-2]))[:, None]
    return weights.astype(np.float32)


def window_starts(n_samples: int) -> list[int]:
    """First frame of each partial window, as resemblyzer's ``compute_partial_slices``."""
    n_frames = -(-(n_samples + 1) // HOP_SAMPLES)
    steps = max(1, n_frames - WINDOW_FRAMES + WINDOW_STEP_FRAMES + 1)
    starts = list(range(0, steps, WINDOW_STEP_FRAMES))
    window_samples = WINDOW_FRAMES * HOP_SAMPLES
    coverage = (n_samples - starts[-1] * HOP_SAMPLES) / window_samples
    if coverage < MIN_LAST_WINDOW_COVERAGE and len(starts) > 1:
        starts.pop()
    return starts


def periodic_hann(length: int) -> npt.NDArray[np.float32]:
    # periodic, as scipy.signal.get_window("hann", n, fftbins=True) gives librosa
    return (0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(length) / length)).astype(np.float32)
