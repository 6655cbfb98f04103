"""Resemblyzer's GE2E speaker encoder (256-dimension d-vectors), ported to numpy.

Resemblyzer 0.1.4 runs its network in torch, a dependency of several hundred
megabytes for a 1.4-million-parameter model. This module reads the published
``pretrained.pt`` without torch and runs the same computation in float32 numpy:

* the waveform (16 kHz) is scaled to a fixed RMS of ``TARGET_RMS_DBFS``. The
  original only raises quiet input to -30 dBFS and leaves louder input as it
  is, so its vectors change with the input level; a fixed target removes that,
  and on the nine shared LibriSpeech files it separated speakers as well
  (mean cosine same speaker 0.873, different 0.565; the original rule: 0.879,
  0.566);
* a 40-band mel *power* spectrogram (no log): 25 ms periodic-Hann frames every
  10 ms, zero-padded by half a frame at each end, Slaney mel scale 0-8 kHz with
  Slaney area normalisation (librosa's defaults, reimplemented here);
* partial windows of 160 frames (1.6 s) every 77 frames, as resemblyzer's
  ``embed_utterance`` cuts them with its default ``rate=1.3``: the last window
  is kept only when the audio covers at least 75 % of it, and audio shorter
  than one window is zero-padded to one;
* each window through a 3-layer LSTM (hidden 256) from a zero state, the last
  hidden state of the top layer through Linear(256, 256) and ReLU, L2-normalised;
  the utterance vector is the L2-normalised mean of its window vectors.

Resemblyzer's own VAD trim (webrtcvad) is skipped: the gateway hands over
speech it has already segmented.

Agreement with the original (Resemblyzer 0.1.4 on torch 2.13 and librosa 0.11,
fed the same level-normalised audio, VAD trim skipped): 1 - cosine below 1e-7
on whole LibriSpeech utterances of 10-39 s (up to 49 windows) and on cuts of
100 samples to 3.8 s around the window boundaries. ``tests/test_engine_resemblyzer.py``
checks three of these against vectors stored in ``tests/data/ge2e_reference.json``.

Cost: about 8 ms of one CPU core per second of audio for utterances of 3 s and
longer (10.4 s in ~80 ms, 39 s in ~300 ms), and ~15 ms in all for utterances
short enough for one window (under 2 s), where the Python overhead of 480 LSTM
steps dominates; measured on a 2-core AMD EPYC VM, numpy 2.4 with OpenBLAS
0.3.31, while other jobs shared the machine. All windows of an utterance go through the LSTM together,
time step by time step, so each step's overhead is paid once per utterance;
more than ``BATCH_WINDOWS`` windows (about 26 s of audio) run in several
batches to bound memory. Every call runs on the calling thread only (see
``_SINGLE_THREAD_MNK`` in ``resemblyzer_network.py``).

The weights are read once and shared, read-only, by every session: ``embed``
keeps all its state in local arrays, so any number of threads may call it at
once. Nothing is written to disk.

The parts live in their own modules: ``resemblyzer_checkpoint`` reads the weights
file, ``resemblyzer_features`` is the mel front end and ``resemblyzer_network`` the LSTM;
this module ties them into the engine the registry loads.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt

from hushgate.engines.base import Embedding, EngineError, EngineOptions, EngineSpec, ModelNotFound, Pcm16
from hushgate.engines.resemblyzer_checkpoint import read_torch_state_dict
from hushgate.engines.resemblyzer_features import (
    FRAME_SAMPLES,
    HOP_SAMPLES,
    SAMPLE_RATE_HZ,
    WINDOW_FRAMES,
    mel_filterbank,
    periodic_hann,
    window_starts,
)
from hushgate.engines.resemblyzer_network import (
    DIMENSIONS,
    GE2ENetwork,
    l2_normalise_rows,
    read_only,
    single_thread_matmul,
)

DEFAULT_MODEL: Final = "resemblyzer-ge2e"
PULL_HINT: Final = f"hushgate models pull {DEFAULT_MODEL}"
WEIGHTS_FILENAME: Final = "pretrained.pt"

TARGET_RMS_DBFS: Final = -26.0
# Memory per batch is about BATCH_WINDOWS * 160 frames * 1024 gates * 4 bytes (21 MB).
BATCH_WINDOWS: Final = 32

_TARGET_RMS: Final = 10.0 ** (TARGET_RMS_DBFS / 20.0)


class ResemblyzerEncoder:
    """Resemblyzer GE2E speaker vectors; one instance serves every session (thread-safe)."""

    name = "resemblyzer"
    sample_rate_hz = SAMPLE_RATE_HZ
    dimensions = DIMENSIONS

    def __init__(self, weights_path: Path, *, model_name: str = DEFAULT_MODEL) -> None:
        try:
            with weights_path.open("rb") as file:
                weights = read_torch_state_dict(file)
        except OSError as exc:
            raise ModelNotFound(f"cannot read Resemblyzer weights {weights_path}: {exc}") from exc
        self._network: GE2ENetwork | None = GE2ENetwork(weights)
        self._window = read_only(periodic_hann(FRAME_SAMPLES))
        self._mel_basis_t = read_only(mel_filterbank().T)
        self.model = model_name
        self.weights_path = weights_path

    def embed(self, pcm: Pcm16) -> Embedding:
        mean = self.window_vectors(pcm).mean(axis=0)
        if not np.any(mean):
            # every window's ReLU output was zero: there is no direction to return
            raise EngineError("no speaker vector could be computed from this audio")
        return l2_normalise_rows(mean)

    def window_vectors(self, pcm: Pcm16) -> npt.NDArray[np.float32]:
        """The L2-normalised vector of each partial window, (windows, 256)."""
        network = self._network
        if network is None:
            raise EngineError("the speaker encoder has been closed")
        if not isinstance(pcm, np.ndarray) or pcm.dtype != np.int16 or pcm.ndim != 1:
            raise ValueError("embed() takes a one-dimensional int16 array")
        if pcm.shape[0] == 0:
            raise EngineError("no audio to compute a speaker vector from")
        samples = pcm.astype(np.float64)
        # not np.dot: OpenBLAS spreads long dot products over its threads
        rms = math.sqrt(float(np.mean(np.square(samples))))
        if rms == 0.0:
            raise EngineError("the audio is silent: no speaker vector can be computed")
        wav = (samples * (_TARGET_RMS / rms)).astype(np.float32)
        starts = window_starts(wav.shape[0])
        mel = self._mel_power(wav, starts[-1] + WINDOW_FRAMES)
        frame_index = np.arange(WINDOW_FRAMES)[:, None]
        out: list[npt.NDArray[np.float32]] = []
        for first in range(0, len(starts), BATCH_WINDOWS):
            batch = np.asarray(starts[first : first + BATCH_WINDOWS])
            out.append(network.window_vectors(mel[frame_index + batch[None, :]]))
        return np.concatenate(out)

    def _mel_power(self, wav: npt.NDArray[np.float32], n_frames: int) -> npt.NDArray[np.float32]:
        """(n_frames, N_MELS) mel power, zero beyond the audio's end as in resemblyzer."""
        half = FRAME_SAMPLES // 2
        # Frame k is centred on sample k * HOP_SAMPLES, with zeros before the
        # start and after the end (librosa's center=True, pad_mode="constant").
        padded = np.zeros(max(wav.shape[0], n_frames * HOP_SAMPLES) + 2 * half, np.float32)
        padded[half : half + wav.shape[0]] = wav
        frames = np.lib.stride_tricks.as_strided(
            padded,
            shape=(n_frames, FRAME_SAMPLES),
            strides=(HOP_SAMPLES * padded.itemsize, padded.itemsize),
            writeable=False,
        )
        spectrum = np.fft.rfft(frames * self._window, axis=1)
        power = (spectrum.real**2 + spectrum.imag**2).astype(np.float32)
        return single_thread_matmul(power, self._mel_basis_t)

    def close(self) -> None:
        # In-flight calls hold their own reference to the network and finish.
        self._network = None


def create(options: EngineOptions) -> ResemblyzerEncoder:
    from hushgate.models.locate import locate_model

    try:
        path = locate_model(options.model, engine="resemblyzer", models_dir=options.models_dir)
    except ModelNotFound as exc:
        message = str(exc)
        if PULL_HINT not in message:
            message = f"{message}. The published weights install with: {PULL_HINT}"
        raise ModelNotFound(message) from exc
    if path.is_dir():
        path = path / WEIGHTS_FILENAME
        if not path.is_file():
            raise ModelNotFound(f"{path} does not exist. Install the weights with: {PULL_HINT}")
    return ResemblyzerEncoder(path, model_name=_model_name(options.model, path))


def _model_name(configured: str | None, path: Path) -> str:
    if configured is None:
        return DEFAULT_MODEL
    if not Path(configured).expanduser().exists():
        return configured  # a catalogue name
    # a path: name it after its directory, as the models directory does
    return path.parent.name if path.name == WEIGHTS_FILENAME else path.stem


SPEC = EngineSpec(
    name="resemblyzer",
    capability="speaker",
    factory=create,
    description=("Resemblyzer GE2E speaker vectors (256-d) in a numpy port of its torch model: no torch"),
)
