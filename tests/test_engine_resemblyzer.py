"""The Resemblyzer speaker encoder (src/hushgate/engines/resemblyzer*.py): a numpy port, run on the real weights.

How the port is verified: against the original. Resemblyzer 0.1.4 itself (torch
2.13 CPU, librosa 0.11) was run once, outside this repository, on two
LibriSpeech utterances (10.4 s and 11.7 s) and a 1 s clip, fed the same
level-normalised audio with its VAD trim skipped; ``tests/data/ge2e_reference.json``
holds its full 256-dimension outputs and window counts, and how they were made.
The port must reach cosine > 0.999 with each (it reaches 1 - 1e-7) and cut the
same windows. Its mel filterbank is also checked against numbers from
``librosa.filters.mel``, and its torch-free checkpoint reader against tiny files
written by ``torch.save`` in both of torch's formats.

Beyond the reference: vectors are float32, 256-d and unit length; they do not
change with the input gain; on the shared LibriSpeech readers each speaker's
utterances are closer to one another than to other speakers'; the checkpoint
reader refuses pickles that name anything but the few globals a state dict
needs; torch is not installed.

The weights are pulled once per session into a temporary models directory with
``pull_model`` (a real ``pip download --no-deps resemblyzer==0.1.4``, hash-checked);
without a network the tests that need them are skipped.
"""

from __future__ import annotations

import base64
import importlib.util
import io
import itertools
import json
import os
import pickle
import threading
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from hushgate.engines.base import EngineError, EngineOptions, ModelNotFound, SpeakerEncoder
from hushgate.engines.resemblyzer import DEFAULT_MODEL, PULL_HINT, SPEC, ResemblyzerEncoder, create
from hushgate.engines.resemblyzer_checkpoint import RestrictedUnpickler, WeightsError, read_torch_state_dict
from hushgate.engines.resemblyzer_features import SAMPLE_RATE_HZ, mel_filterbank, window_starts
from hushgate.engines.resemblyzer_network import DIMENSIONS
from tests.audio_helpers import read_wav

REFERENCE = Path(__file__).parent / "data" / "ge2e_reference.json"
SPEAKERS = ("1089", "2412", "1221", "251")
MIN_REFERENCE_COSINE = 0.999
MIN_GAIN_COSINE = 0.999
# Observed: own-speaker means 0.81-0.97, other-speaker means 0.54-0.59.
MIN_SPEAKER_MARGIN = 0.1

# torch.save(OrderedDict(a=t, b=t.t(), c=t[1:, 2:])) with t = arange(12.).reshape(3, 4),
# by torch 2.13.0, zlib-compressed and base64-encoded: b and c are strided views
# of a's storage, so offsets and strides are exercised too.
TORCH_ZIP_CHECKPOINT = (
    "eNqllMtu00AUhseXOsGUpBcgbZAKiE2QSurYuRVESyNkFrMgDUKK2Fiu49YWbtxxJuUiIUVUROIlEDse"
    "gS1vgMqCFQskVqzYs2LGblN70ouAUU5GduY75/fJf9yEgghAOg3G1hSYAWZgOe6uvdQxsVnceerpjQx4"
    "klgD3rJ8z7Mt7Prdnvww6NiB3bnvWlhG4GYLcYU2R5KZiLewT7IVjT52vZ5sBPZG3/U6Bra7PT8wdlUZ"
    "CYVCO0UO98hJc8tGYoTIuueb+FF0U0YTYUIFSW2B7NZOH6XgJEbpdQigAMUhOgdFyA2R/NahAs5jNNlC"
    "F0JoA2UcUsQRnQlHckIsSzERCkM0BTlKT0fYDEazLXQxxCx0icUur0MJ8pAfolxUbS7C5jHKt9CVfrEJ"
    "U+nXH67/niMJaDRP7HMO3Bj1ubjpB9smNnbtoEf6qTeuMu0eWyVa6OOvb3tUKI2TC+VB7ajQQY8N03O3"
    "utt2F+sN7axax61qmQpYfYZ+8qQEf6qAabA6ErDxAts+NYveuPMvdQ+X52Ls2VTDm7s/5iVSRTpVQwas"
    "JFy9pOiN2/8hIMo6WCVf98iHxIDEexKfSHwnAdbILJG4RkJZo0qfv9pcUaiHT1WaBbMjpSM/ZFmpmkwz"
    "7r/benx2/xeAemSA8OF7duASB7w06fQabkdvFP+yF6VKTa2XlpcrpVK9Uq6WNUWtKrVqtaTWVaWiVcuq"
    "ptW1ikpVLg5n9wpERyFUyVGxI53xWZkaU86+h1g6PgC5BOlw4KTpYpPETZxPJNmPJxmbHDZP3IjTiTwt"
    "HowPAIvH3ZFJ4F95wHiXZeM+yCbYgQBYN7Fw/O9ZSMBfYvDxxmlCSVo8tJlwa0SmmP0zd/CQYrQTLvzp"
    "gRRdR2+wCSliUuH56OwfZNlpbA=="
)
# The same with _use_new_zipfile_serialization=False (the format of pretrained.pt).
TORCH_LEGACY_CHECKPOINT = (
    "eNp9kMtKw0AUhifJtNWx1nq/g8u4KaWo1ZUK4mbwVjezkZCmQxMJmZ5kUlAodFXUZ3Dh0sfwUdz6CIIL"
    "TxoXLsRh/oE5c873/8zQfGLh1/Pp59bt6+VqbWiefVh4DoDYokoI6cVKK0+FTl/GSaAiMLBBTONLGGgd"
    "SkdGncCNwHwQDIv6riedJLiXCVgDoLYoYDHxVayhwE1h4S2INBQ5FTRjqKgLJU7TFD09tAmlp9ElYRdx"
    "R8aycxJ4mgHZboFhCwMnXDA9rWLPrzmpDsKEObFsp0HYcbSMEhU7/QYDy7ZFKTPGTrcrgeYj7DRUrr7O"
    "iwwKooI9Bzu7zUZzv95s1vfq+1AcZ/R6KcYqn2uYuOKEW5yOYJJTboyAPfpZnCkN5RZMjzO1oeKjpU/9"
    "P5Ezfo6qZijKrRHMciMjzuWoeQ0LLVgcozxY+g+1/INaueJFbnJzBKt5qrUcta5howWb2W/eAPmLYLi1"
    "Mvm9hod4HOFGDVEvqDfUO4ocE1JFbaHqx99kr4t4"
)
LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


@pytest.fixture(scope="session")
def models_dir(ge2e_models_dir: Path) -> Path:
    return ge2e_models_dir


@pytest.fixture(scope="session")
def encoder(ge2e_encoder: ResemblyzerEncoder) -> ResemblyzerEncoder:
    return ge2e_encoder


@pytest.fixture(scope="session")
def reference() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(REFERENCE.read_text(encoding="utf-8"))
    return data


@pytest.fixture(scope="session")
def librispeech(audio_dir: Path) -> dict[str, npt.NDArray[np.int16]]:
    """Every shared LibriSpeech utterance, by file stem."""
    recordings: dict[str, npt.NDArray[np.int16]] = {}
    for path in sorted((audio_dir / "librispeech").glob("*.wav")):
        pcm, rate_hz = read_wav(path)
        assert rate_hz == SAMPLE_RATE_HZ, path
        recordings[path.stem] = pcm
    return recordings


def _cosine(a: npt.NDArray[Any], b: npt.NDArray[Any]) -> float:
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


def _speaker(stem: str) -> str:
    return stem.split("-", 1)[0]


# --- no torch ----------------------------------------------------------------------


def test_torch_is_not_installed() -> None:
    assert importlib.util.find_spec("torch") is None


# --- the engine contract -----------------------------------------------------------


def test_spec_registers_a_speaker_engine() -> None:
    assert SPEC.name == "resemblyzer"
    assert SPEC.capability == "speaker"
    assert SPEC.factory is create


def test_encoder_follows_the_protocol(encoder: ResemblyzerEncoder) -> None:
    assert isinstance(encoder, SpeakerEncoder)
    assert encoder.name == "resemblyzer"
    assert encoder.model == DEFAULT_MODEL
    assert encoder.sample_rate_hz == SAMPLE_RATE_HZ == 16_000
    assert encoder.dimensions == DIMENSIONS == 256


def test_missing_weights_say_how_to_pull_them(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFound) as default:
        create(EngineOptions(models_dir=tmp_path))
    assert "hushgate models pull resemblyzer-ge2e" in str(default.value)
    with pytest.raises(ModelNotFound) as explicit:
        create(EngineOptions(model=str(tmp_path / "missing" / "pretrained.pt"), models_dir=tmp_path))
    assert PULL_HINT in str(explicit.value)


def test_weights_load_from_an_explicit_path(models_dir: Path) -> None:
    path = models_dir / DEFAULT_MODEL / "pretrained.pt"
    loaded = create(EngineOptions(model=str(path)))
    assert loaded.model == DEFAULT_MODEL
    assert loaded.weights_path == path


# --- agreement with the original -----------------------------------------------------


@pytest.mark.parametrize("index", [0, 1, 2])
def test_matches_the_original_resemblyzer(
    encoder: ResemblyzerEncoder, reference: dict[str, Any], audio_dir: Path, index: int
) -> None:
    case = reference["cases"][index]
    pcm, _ = read_wav(audio_dir / case["file"])
    pcm = pcm[: case["samples"]]
    assert len(window_starts(pcm.shape[0])) == case["windows"]
    assert encoder.window_vectors(pcm).shape == (case["windows"], DIMENSIONS)
    expected = np.asarray(case["embedding"], dtype=np.float64)
    assert expected.shape == (DIMENSIONS,)
    cosine = _cosine(encoder.embed(pcm), expected)
    assert cosine > MIN_REFERENCE_COSINE, f"{case['file']}: cosine {cosine:.6f} with the original"


def test_mel_filterbank_matches_librosa(reference: dict[str, Any]) -> None:
    expected = reference["mel_filterbank"]
    bank = mel_filterbank()
    assert bank.shape == (40, 201)
    np.testing.assert_allclose(bank.sum(axis=1), expected["row_sums"], rtol=1e-5)
    assert bank.argmax(axis=1).tolist() == expected["peak_bins"]


@pytest.mark.parametrize(
    ("n_samples", "windows"),
    # window counts from resemblyzer's compute_partial_slices(n, rate=1.3, min_coverage=0.75)
    [(1, 1), (100, 1), (16_000, 1), (25_600, 1), (31_519, 1), (31_520, 2), (37_920, 2), (166_960, 12), (622_080, 49)],
)
def test_windows_are_cut_as_resemblyzer_cuts_them(n_samples: int, windows: int) -> None:
    starts = window_starts(n_samples)
    assert starts == [77 * i for i in range(windows)]


# --- properties of the vectors -------------------------------------------------------


def test_vectors_are_unit_length_float32(
    encoder: ResemblyzerEncoder, librispeech: dict[str, npt.NDArray[np.int16]]
) -> None:
    rng = np.random.default_rng(7)
    noise = rng.normal(0, 3000, 1_600).clip(-32768, 32767).astype(np.int16)
    speech = next(iter(librispeech.values()))
    for pcm in (speech, speech[:4_000], noise):
        vector = encoder.embed(pcm)
        assert vector.dtype == np.float32
        assert vector.shape == (DIMENSIONS,)
        assert abs(float(np.linalg.norm(vector)) - 1.0) < 1e-5
        assert np.all(np.isfinite(vector))


def test_gain_does_not_change_the_vector(
    encoder: ResemblyzerEncoder, librispeech: dict[str, npt.NDArray[np.int16]]
) -> None:
    pcm = librispeech["1089-134686-0001"]
    # +6 dB must not clip, or the test would measure distortion instead of gain
    assert int(np.abs(pcm.astype(np.int32)).max()) * 2 < 32767
    base = encoder.embed(pcm)
    for gain_db in (-6.0, 6.0):
        scaled = np.round(pcm * 10 ** (gain_db / 20)).astype(np.int16)
        cosine = _cosine(base, encoder.embed(scaled))
        assert cosine > MIN_GAIN_COSINE, f"{gain_db:+} dB: cosine {cosine:.6f}"


def test_same_speaker_is_closer_than_other_speakers(
    encoder: ResemblyzerEncoder, librispeech: dict[str, npt.NDArray[np.int16]]
) -> None:
    vectors = {stem: encoder.embed(pcm) for stem, pcm in librispeech.items()}
    assert {_speaker(stem) for stem in vectors} >= set(SPEAKERS)
    report: list[str] = []
    for speaker in SPEAKERS:
        own = [s for s in vectors if _speaker(s) == speaker]
        others = [s for s in vectors if _speaker(s) != speaker]
        assert len(own) >= 2, f"speaker {speaker} needs two utterances"
        same = np.mean([float(vectors[a] @ vectors[b]) for a, b in itertools.combinations(own, 2)])
        different = np.mean([float(vectors[a] @ vectors[b]) for a in own for b in others])
        report.append(f"{speaker}: same {same:.3f}, other {different:.3f}")
        assert same > different + MIN_SPEAKER_MARGIN, "; ".join(report)


def test_rejects_empty_silent_and_malformed_audio(encoder: ResemblyzerEncoder) -> None:
    with pytest.raises(EngineError, match="no audio"):
        encoder.embed(np.zeros(0, np.int16))
    with pytest.raises(EngineError, match="silent"):
        encoder.embed(np.zeros(16_000, np.int16))
    with pytest.raises(ValueError):
        encoder.embed(np.zeros(16_000, np.float32))  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        encoder.embed(np.ones((2, 16_000), np.int16))


def test_one_encoder_serves_several_threads(
    encoder: ResemblyzerEncoder, librispeech: dict[str, npt.NDArray[np.int16]]
) -> None:
    inputs = list(librispeech.values())[:4]
    serial = [encoder.embed(pcm) for pcm in inputs]
    start = threading.Barrier(len(inputs))

    def embed(pcm: npt.NDArray[np.int16]) -> npt.NDArray[np.float32]:
        start.wait()
        return encoder.embed(pcm)

    with ThreadPoolExecutor(len(inputs)) as pool:
        parallel = list(pool.map(embed, inputs))
    for a, b in zip(serial, parallel, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_a_closed_encoder_refuses_work(models_dir: Path) -> None:
    loaded = create(EngineOptions(models_dir=models_dir))
    loaded.close()
    with pytest.raises(EngineError, match="closed"):
        loaded.embed(np.ones(16_000, np.int16))


# --- reading checkpoints without torch -------------------------------------------------


def _expected_tiny_tensors() -> dict[str, npt.NDArray[np.float32]]:
    t = np.arange(12, dtype=np.float32).reshape(3, 4)
    return {"a": t, "b": t.T, "c": t[1:, 2:]}


@pytest.mark.parametrize("blob", [TORCH_ZIP_CHECKPOINT, TORCH_LEGACY_CHECKPOINT], ids=["zip", "legacy"])
def test_reads_both_torch_checkpoint_formats(blob: str) -> None:
    tensors = read_torch_state_dict(io.BytesIO(zlib.decompress(base64.b64decode(blob))))
    expected = _expected_tiny_tensors()
    assert tensors.keys() == expected.keys()
    for name, array in expected.items():
        np.testing.assert_array_equal(tensors[name], array)
        assert tensors[name].dtype == np.float32


def test_reads_the_published_weights(models_dir: Path) -> None:
    with (models_dir / DEFAULT_MODEL / "pretrained.pt").open("rb") as file:
        tensors = read_torch_state_dict(file)
    assert tensors["lstm.weight_ih_l0"].shape == (1024, 40)
    assert tensors["lstm.weight_hh_l2"].shape == (1024, 256)
    assert tensors["linear.weight"].shape == (256, 256)


def test_a_truncated_weights_file_is_an_engine_error(models_dir: Path) -> None:
    data = (models_dir / DEFAULT_MODEL / "pretrained.pt").read_bytes()
    for cut in (10, 3_000, len(data) // 2):
        with pytest.raises(WeightsError):
            read_torch_state_dict(io.BytesIO(data[:cut]))


class _RunsACommand:
    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (os.system, (self.command,))


def test_a_pickle_that_calls_os_system_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "executed"
    payload = pickle.dumps(_RunsACommand(f"touch {marker}"), protocol=2)
    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        RestrictedUnpickler(io.BytesIO(payload)).load()
    # The same payload as the state dict of a legacy checkpoint.
    header = b"".join(
        pickle.dumps(part, protocol=2)
        for part in (LEGACY_MAGIC, 1001, {"protocol_version": 1001, "little_endian": True})
    )
    with pytest.raises(WeightsError, match="refusing"):
        read_torch_state_dict(io.BytesIO(header + payload))
    assert not marker.exists()


@pytest.mark.parametrize(
    ("module", "name"),
    [
        ("builtins", "eval"),
        ("builtins", "getattr"),
        ("subprocess", "Popen"),
        ("torch", "load"),
        ("torch._utils", "_rebuild_parameter"),
        ("collections", "namedtuple"),
    ],
)
def test_only_the_state_dict_globals_are_allowed(module: str, name: str) -> None:
    payload = b"\x80\x02c" + f"{module}\n{name}\n".encode() + b"."
    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        RestrictedUnpickler(io.BytesIO(payload)).load()


def test_a_pickle_cannot_rewrite_the_stand_ins() -> None:
    # GLOBAL torch._utils._rebuild_tensor_v2, EMPTY_DICT, BUILD: set attributes on it
    payload = b"\x80\x02ctorch._utils\n_rebuild_tensor_v2\n}b."
    with pytest.raises(pickle.UnpicklingError, match="may not set"):
        RestrictedUnpickler(io.BytesIO(payload)).load()
