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
``_SINGLE_THREAD_MNK``).

The weights are read once and shared, read-only, by every session: ``embed``
keeps all its state in local arrays, so any number of threads may call it at
once. Nothing is written to disk.
"""

from __future__ import annotations

import collections
import io
import math
import pickle
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Any, Final

import numpy as np
import numpy.typing as npt

from hushgate.engines.base import Embedding, EngineError, EngineOptions, EngineSpec, ModelNotFound, Pcm16

DEFAULT_MODEL: Final = "resemblyzer-ge2e"
PULL_HINT: Final = f"hushgate models pull {DEFAULT_MODEL}"
WEIGHTS_FILENAME: Final = "pretrained.pt"

SAMPLE_RATE_HZ: Final = 16_000
TARGET_RMS_DBFS: Final = -26.0
FRAME_SAMPLES: Final = 400  # 25 ms
HOP_SAMPLES: Final = 160  # 10 ms
N_MELS: Final = 40
WINDOW_FRAMES: Final = 160  # 1.6 s per partial window
# resemblyzer: round((SAMPLE_RATE_HZ / rate) / HOP_SAMPLES) with its default rate=1.3
WINDOW_STEP_FRAMES: Final = 77
MIN_LAST_WINDOW_COVERAGE: Final = 0.75
HIDDEN_SIZE: Final = 256
LSTM_LAYERS: Final = 3
DIMENSIONS: Final = 256
# Memory per batch is about BATCH_WINDOWS * 160 frames * 1024 gates * 4 bytes (21 MB).
BATCH_WINDOWS: Final = 32

_TARGET_RMS: Final = 10.0 ** (TARGET_RMS_DBFS / 20.0)
_GATES: Final = 4 * HIDDEN_SIZE


# --- reading torch checkpoints without torch ----------------------------------------

# torch.save's format before 1.6: pickles of this magic number, the protocol
# version and system information, then the object pickle, then the list of
# storage keys, then each storage's raw data in that order.
_LEGACY_MAGIC: Final = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL: Final = 1001
_STORAGE_DTYPES: Final[Mapping[str, str]] = {
    "FloatStorage": "<f4",
    "HalfStorage": "<f2",
    "DoubleStorage": "<f8",
    "LongStorage": "<i8",
}


class WeightsError(EngineError):
    """A weights file is damaged, of an unknown format, or not this model."""


class _Sealed:
    """Refuses pickle's BUILD, so a checkpoint cannot rewrite a stand-in after it was checked."""

    __slots__ = ()

    def __setstate__(self, state: object) -> None:
        raise pickle.UnpicklingError("a weights file may not set attributes of a tensor or storage")


class _StorageType(_Sealed):
    """Stands in for ``torch.FloatStorage`` and friends inside a checkpoint pickle."""

    __slots__ = ("dtype", "name")

    def __init__(self, name: str, dtype: np.dtype[Any]) -> None:
        self.name = name
        self.dtype = dtype


class _Storage(_Sealed):
    __slots__ = ("dtype", "key", "numel", "view_offset")

    def __init__(self, key: str, dtype: np.dtype[Any], numel: int, view_offset: int = 0) -> None:
        self.key = key
        self.dtype = dtype
        self.numel = numel
        # elements into the root storage, for the legacy format's storage views
        self.view_offset = view_offset


class _TensorRef(_Sealed):
    """A tensor whose storage bytes may come later in the stream."""

    __slots__ = ("offset", "size", "storage", "stride")

    def __init__(self, storage: _Storage, offset: int, size: tuple[int, ...], stride: tuple[int, ...]) -> None:
        self.storage = storage
        self.offset = offset
        self.size = size
        self.stride = stride


def _int_tuple(value: object, what: str) -> tuple[int, ...]:
    if not isinstance(value, tuple) or not all(
        isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value
    ):
        raise pickle.UnpicklingError(f"tensor {what} must be a tuple of non-negative ints")
    return value


class _TensorRebuilder(_Sealed):
    """Stands in for ``torch._utils._rebuild_tensor_v2``: records a tensor's layout."""

    __slots__ = ()

    def __call__(
        self,
        storage: object,
        storage_offset: object,
        size: object,
        stride: object,
        requires_grad: object = False,
        backward_hooks: object = None,
        metadata: object = None,
    ) -> _TensorRef:
        # Only the layout is recorded here; it is checked against the bytes once read.
        if not isinstance(storage, _Storage):
            raise pickle.UnpicklingError("a tensor must be built on a storage")
        if not isinstance(storage_offset, int) or isinstance(storage_offset, bool) or storage_offset < 0:
            raise pickle.UnpicklingError("tensor storage offset must be a non-negative int")
        shape = _int_tuple(size, "size")
        strides = _int_tuple(stride, "stride")
        if len(shape) != len(strides):
            raise pickle.UnpicklingError("tensor size and stride differ in length")
        return _TensorRef(storage, storage_offset, shape, strides)


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickles torch checkpoints, refusing every global but a few harmless ones.

    A checkpoint is a pickle, and an ordinary unpickler will call any function a
    pickle names; this one maps the four names a state dict needs to local
    stand-ins and raises `pickle.UnpicklingError` for anything else. The
    stand-ins are fresh objects that refuse pickle's BUILD, so a file can
    neither alter shared state nor bypass the checks made when they are built.
    """

    def __init__(self, file: IO[bytes], storages: dict[str, _Storage] | None = None) -> None:
        super().__init__(file)
        # None: this pickle may not refer to storages at all.
        self._storages = storages

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _TensorRebuilder()
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name, np.dtype(_STORAGE_DTYPES[name]))
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a weights file")

    def persistent_load(self, pid: Any) -> _Storage:
        if self._storages is None:
            raise pickle.UnpicklingError("unexpected storage reference")
        # legacy: ("storage", type, key, location, numel, view_metadata)
        # zip:    ("storage", type, key, location, numel)
        if (
            not isinstance(pid, tuple)
            or len(pid) not in (5, 6)
            or pid[0] != "storage"
            or not isinstance(pid[1], _StorageType)
            or not isinstance(pid[2], str)
            or not isinstance(pid[4], int)
            or pid[4] < 0
        ):
            raise pickle.UnpicklingError(f"unsupported storage reference {pid!r:.80}")
        storage_type, key, numel = pid[1], pid[2], pid[4]
        root = self._storages.get(key)
        if root is None:
            root = _Storage(key, storage_type.dtype, numel)
            self._storages[key] = root
        elif root.dtype != storage_type.dtype or root.numel != numel:
            raise pickle.UnpicklingError(f"storage {key} is described two ways")
        view = pid[5] if len(pid) == 6 else None
        if view is None:
            return root
        if (
            not isinstance(view, tuple)
            or len(view) != 3
            or not all(isinstance(v, int) and v >= 0 for v in view[1:])
            or view[1] + view[2] > numel
        ):
            raise pickle.UnpicklingError("unsupported storage view")
        return _Storage(key, root.dtype, view[2], view_offset=view[1])


def _materialise(ref: _TensorRef, root_data: npt.NDArray[Any]) -> npt.NDArray[np.float32]:
    start = ref.storage.view_offset + ref.offset
    if 0 in ref.size:
        return np.zeros(ref.size, np.float32)
    last = start + sum((n - 1) * s for n, s in zip(ref.size, ref.stride, strict=True))
    # as_strided reads whatever memory it is told to: bounds come first
    if last >= min(root_data.shape[0], ref.storage.view_offset + ref.storage.numel):
        raise WeightsError("a tensor reaches past the end of its storage")
    item = root_data.itemsize
    view = np.lib.stride_tricks.as_strided(
        root_data[start:],
        shape=ref.size,
        strides=tuple(s * item for s in ref.stride),
        writeable=False,
    )
    return np.array(view, dtype=np.float32)


def read_torch_state_dict(file: IO[bytes]) -> dict[str, npt.NDArray[np.float32]]:
    """The float32 tensors of a torch checkpoint, by name, read without torch.

    Accepts both of torch.save's formats (the zip archive of torch >= 1.6 and
    the legacy pickle stream Resemblyzer's weights use), and either a bare state
    dict or a training checkpoint holding one under ``model_state``. ``file``
    must be seekable.
    """
    start = file.tell()
    is_zip = zipfile.is_zipfile(file)
    file.seek(start)
    try:
        return _read_zip(file) if is_zip else _read_legacy(file)
    except WeightsError:
        raise
    except pickle.UnpicklingError as exc:
        raise WeightsError(f"unsafe or unreadable checkpoint: {exc}") from exc
    except Exception as exc:
        # Whatever a damaged or hostile file makes the parser trip over.
        raise WeightsError(f"damaged checkpoint: {type(exc).__name__}: {exc}") from exc


def _tensor_refs(obj: object) -> dict[str, _TensorRef]:
    state = obj.get("model_state", obj) if isinstance(obj, dict) else obj
    if not isinstance(state, dict) or not state:
        raise WeightsError("the checkpoint holds no state dict")
    refs = {k: v for k, v in state.items() if isinstance(k, str) and isinstance(v, _TensorRef)}
    if not refs:
        raise WeightsError("the checkpoint's state dict holds no tensors")
    return refs


def _read_legacy(file: IO[bytes]) -> dict[str, npt.NDArray[np.float32]]:
    if RestrictedUnpickler(file).load() != _LEGACY_MAGIC:
        raise WeightsError("not a torch checkpoint (wrong magic number)")
    if RestrictedUnpickler(file).load() != _LEGACY_PROTOCOL:
        raise WeightsError("unsupported legacy torch checkpoint version")
    sys_info = RestrictedUnpickler(file).load()
    if not isinstance(sys_info, dict) or sys_info.get("little_endian") is not True:
        raise WeightsError("only little-endian checkpoints are supported")
    storages: dict[str, _Storage] = {}
    refs = _tensor_refs(RestrictedUnpickler(file, storages).load())
    keys = RestrictedUnpickler(file).load()
    if not isinstance(keys, list) or set(keys) != set(storages):
        raise WeightsError("the checkpoint's storage list does not match its tensors")
    wanted = {ref.storage.key for ref in refs.values()}
    data: dict[str, npt.NDArray[Any]] = {}
    for key in keys:
        storage = storages[key]
        header = file.read(8)
        if len(header) != 8 or int.from_bytes(header, "little", signed=True) != storage.numel:
            raise WeightsError(f"storage {key} has the wrong size")
        nbytes = storage.numel * storage.dtype.itemsize
        if key not in wanted:
            # optimizer state and the like: not needed for inference
            file.seek(nbytes, io.SEEK_CUR)
            continue
        raw = file.read(nbytes)
        if len(raw) != nbytes:
            raise WeightsError(f"storage {key} is truncated")
        data[key] = np.frombuffer(raw, dtype=storage.dtype)
    return {name: _materialise(ref, data[ref.storage.key]) for name, ref in refs.items()}


def _read_zip(file: IO[bytes]) -> dict[str, npt.NDArray[np.float32]]:
    with zipfile.ZipFile(file) as archive:
        pickles = [n for n in archive.namelist() if PurePosixPath(n).name == "data.pkl"]
        if len(pickles) != 1 or len(PurePosixPath(pickles[0]).parts) != 2:
            raise WeightsError("not a torch checkpoint archive")
        prefix = PurePosixPath(pickles[0]).parent
        byteorder = prefix / "byteorder"
        if str(byteorder) in archive.namelist() and archive.read(str(byteorder)) != b"little":
            raise WeightsError("only little-endian checkpoints are supported")
        storages: dict[str, _Storage] = {}
        with archive.open(pickles[0]) as stream:
            refs = _tensor_refs(RestrictedUnpickler(stream, storages).load())
        data: dict[str, npt.NDArray[Any]] = {}
        for key in {ref.storage.key for ref in refs.values()}:
            if PurePosixPath(key).name != key or key in (".", ".."):
                raise WeightsError(f"bad storage key {key!r}")
            storage = storages[key]
            raw = archive.read(str(prefix / "data" / key))
            if len(raw) != storage.numel * storage.dtype.itemsize:
                raise WeightsError(f"storage {key} has the wrong size")
            data[key] = np.frombuffer(raw, dtype=storage.dtype)
    return {name: _materialise(ref, data[ref.storage.key]) for name, ref in refs.items()}


# --- features ----------------------------------------------------------------------


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


# --- the network -------------------------------------------------------------------

# numpy's OpenBLAS runs a matrix product on the calling thread only when
# m * n * k <= 262144 (65536 * GEMM_MULTITHREAD_THRESHOLD); above that it wakes
# its worker threads, which on a loaded machine made whole utterances several
# times slower. Every product here is cut to that size: the LSTM multiplies
# blocks of ROW_BLOCK windows by one gate's 256 x 256 weights at a time, all
# issued by a single stacked np.matmul, and OpenBLAS's small-matrix kernels make
# these blocks faster than one large product on a single thread as well. No
# process-wide thread setting is touched.
_SINGLE_THREAD_MNK: Final = 262_144
ROW_BLOCK: Final = _SINGLE_THREAD_MNK // (HIDDEN_SIZE * HIDDEN_SIZE)


@dataclass(frozen=True, slots=True)
class _LstmLayer:
    w_ih: npt.NDArray[np.float32]
    """(4 gates, inputs, hidden), gates ordered i, f, o, g; i, f and o halved."""
    w_hh: npt.NDArray[np.float32]
    """(4 gates, hidden, hidden), ordered and scaled as ``w_ih``."""
    bias: npt.NDArray[np.float32]
    """(4 gates, 1, hidden): b_ih + b_hh, ordered and scaled as ``w_ih``."""


def _read_only(array: npt.NDArray[Any]) -> npt.NDArray[np.float32]:
    out = np.ascontiguousarray(array, dtype=np.float32)
    out.flags.writeable = False
    return out


def _gate_blocks(weight: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """torch's (4 * hidden, inputs), gates i, f, g, o -> (4, inputs, hidden), gates i, f, o, g.

    The three sigmoid gates come first and are halved, so that one tanh over
    all four gates serves both activations: sigmoid(x) = (tanh(x / 2) + 1) / 2.
    Halving is exact in floating point.
    """
    h = HIDDEN_SIZE
    blocks = weight.reshape(4, h, -1)[[0, 1, 3, 2]]
    blocks = blocks * np.array([0.5, 0.5, 0.5, 1.0], np.float32).reshape(4, 1, 1)
    return _read_only(blocks.transpose(0, 2, 1))


def _expect(
    weights: Mapping[str, npt.NDArray[np.float32]], name: str, shape: tuple[int, ...]
) -> npt.NDArray[np.float32]:
    array = weights.get(name)
    if array is None:
        raise WeightsError(f"not Resemblyzer weights: no tensor {name}")
    if array.shape != shape:
        raise WeightsError(f"not Resemblyzer weights: {name} is {array.shape}, expected {shape}")
    if not np.all(np.isfinite(array)):
        raise WeightsError(f"damaged weights: {name} holds NaN or infinity")
    return array


def _single_thread_matmul(a: npt.NDArray[np.float32], b: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """``a @ b`` for 2-D arrays, cut into row blocks OpenBLAS runs on the calling thread."""
    rows, inner = a.shape
    rows_per_block = max(1, _SINGLE_THREAD_MNK // (inner * b.shape[1]))
    blocks = -(-rows // rows_per_block)
    padded = np.zeros((blocks * rows_per_block, inner), np.float32)
    padded[:rows] = a
    out = np.matmul(padded.reshape(blocks, rows_per_block, inner), b)
    result: npt.NDArray[np.float32] = out.reshape(-1, b.shape[1])[:rows]
    return result


class GE2ENetwork:
    """The LSTM and projection of Resemblyzer's voice encoder, in numpy (read-only, shareable)."""

    def __init__(self, weights: Mapping[str, npt.NDArray[np.float32]]) -> None:
        layers: list[_LstmLayer] = []
        inputs = N_MELS
        for index in range(LSTM_LAYERS):
            b_ih = _expect(weights, f"lstm.bias_ih_l{index}", (_GATES,))
            b_hh = _expect(weights, f"lstm.bias_hh_l{index}", (_GATES,))
            layers.append(
                _LstmLayer(
                    w_ih=_gate_blocks(_expect(weights, f"lstm.weight_ih_l{index}", (_GATES, inputs))),
                    w_hh=_gate_blocks(_expect(weights, f"lstm.weight_hh_l{index}", (_GATES, HIDDEN_SIZE))),
                    bias=_gate_blocks((b_ih + b_hh)[:, None]).reshape(4, 1, HIDDEN_SIZE),
                )
            )
            inputs = HIDDEN_SIZE
        self._layers: tuple[_LstmLayer, ...] = tuple(layers)
        self._linear_t = _read_only(_expect(weights, "linear.weight", (DIMENSIONS, HIDDEN_SIZE)).T)
        self._linear_bias = _read_only(_expect(weights, "linear.bias", (DIMENSIONS,)))

    def window_vectors(self, mels: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """L2-normalised vectors of windows given time-major, (frames, windows, mels)."""
        steps, windows, n_mels = mels.shape
        h = HIDDEN_SIZE
        rows = min(ROW_BLOCK, windows)
        blocks = -(-windows // rows)
        # Arrays below are (..., row block, gate, window in block, unit); padding
        # windows are zeros, computed and dropped.
        sequence = np.zeros((steps, blocks * rows, n_mels), np.float32)
        sequence[:, :windows] = mels
        sequence = sequence.reshape(steps, blocks, 1, rows, n_mels)
        gates = np.empty((blocks, 4, rows, h), np.float32)
        sigmoids = gates[:, :3]
        in_gate, forget_gate, out_gate, candidate = (gates[:, g] for g in range(4))
        cell = np.empty((blocks, rows, h), np.float32)
        scratch = np.empty((blocks, rows, h), np.float32)
        top_hidden = np.empty((blocks, 1, rows, h), np.float32)
        hidden = top_hidden
        for layer_index, layer in enumerate(self._layers):
            # The input side of every step at once, before the recurrence.
            projected = np.matmul(sequence, layer.w_ih)
            projected += layer.bias
            top = layer_index == len(self._layers) - 1
            outputs = None if top else np.empty((steps, blocks, 1, rows, h), np.float32)
            hidden = np.zeros((blocks, 1, rows, h), np.float32)
            cell.fill(0.0)
            for t in range(steps):
                np.matmul(hidden, layer.w_hh, out=gates)
                gates += projected[t]
                np.tanh(gates, out=gates)
                sigmoids *= 0.5
                sigmoids += 0.5
                cell *= forget_gate
                np.multiply(in_gate, candidate, out=scratch)
                cell += scratch
                np.tanh(cell, out=scratch)
                # This step's matmul has consumed the old state; lower layers
                # write straight into the sequence the next layer reads.
                hidden = top_hidden if outputs is None else outputs[t]
                np.multiply(out_gate, scratch, out=hidden[:, 0])
            if outputs is not None:
                sequence = outputs
        last = hidden.reshape(blocks * rows, h)[:windows]
        vectors = _single_thread_matmul(last, self._linear_t)
        vectors += self._linear_bias
        np.maximum(vectors, 0.0, out=vectors)
        return _l2_normalise_rows(vectors)


def _l2_normalise_rows(rows: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    norms = np.linalg.norm(rows, axis=-1, keepdims=True)
    # a window whose ReLU output is all zero stays zero rather than becoming NaN
    normalised: npt.NDArray[np.float32] = (rows / np.maximum(norms, np.float32(1e-12))).astype(np.float32)
    return normalised


# --- the engine --------------------------------------------------------------------


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
        self._window = _read_only(_periodic_hann(FRAME_SAMPLES))
        self._mel_basis_t = _read_only(mel_filterbank().T)
        self.model = model_name
        self.weights_path = weights_path

    def embed(self, pcm: Pcm16) -> Embedding:
        mean = self.window_vectors(pcm).mean(axis=0)
        if not np.any(mean):
            # every window's ReLU output was zero: there is no direction to return
            raise EngineError("no speaker vector could be computed from this audio")
        return _l2_normalise_rows(mean)

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
        return _single_thread_matmul(power, self._mel_basis_t)

    def close(self) -> None:
        # In-flight calls hold their own reference to the network and finish.
        self._network = None


def _periodic_hann(length: int) -> npt.NDArray[np.float32]:
    # periodic, as scipy.signal.get_window("hann", n, fftbins=True) gives librosa
    return (0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(length) / length)).astype(np.float32)


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
