"""The LSTM and projection of Resemblyzer's GE2E voice encoder, in float32 numpy.

Three LSTM layers (hidden 256) run every window of an utterance together, time
step by time step, from a zero state; the top layer's last hidden state goes
through Linear(256, 256) and ReLU and is L2-normalised. Weights are checked and
rearranged once, then shared read-only by every caller.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from hushgate.engines.resemblyzer_checkpoint import WeightsError
from hushgate.engines.resemblyzer_features import N_MELS

HIDDEN_SIZE: Final = 256
LSTM_LAYERS: Final = 3
DIMENSIONS: Final = 256
_GATES: Final = 4 * HIDDEN_SIZE

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


def read_only(array: npt.NDArray[Any]) -> npt.NDArray[np.float32]:
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
    return read_only(blocks.transpose(0, 2, 1))


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


def single_thread_matmul(a: npt.NDArray[np.float32], b: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
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
        self._linear_t = read_only(_expect(weights, "linear.weight", (DIMENSIONS, HIDDEN_SIZE)).T)
        self._linear_bias = read_only(_expect(weights, "linear.bias", (DIMENSIONS,)))

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
        vectors = single_thread_matmul(last, self._linear_t)
        vectors += self._linear_bias
        np.maximum(vectors, 0.0, out=vectors)
        return l2_normalise_rows(vectors)


def l2_normalise_rows(rows: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    norms = np.linalg.norm(rows, axis=-1, keepdims=True)
    # a window whose ReLU output is all zero stays zero rather than becoming NaN
    normalised: npt.NDArray[np.float32] = (rows / np.maximum(norms, np.float32(1e-12))).astype(np.float32)
    return normalised
