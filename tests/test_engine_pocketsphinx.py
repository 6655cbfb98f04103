"""The pocketsphinx engine, run for real on the CMU en-us model shipped with pocketsphinx.

The audio is a real recording (JFK's "ask not what your country can do for
you", 11 s).  PocketSphinx gets only part of it right, so the word check is
lenient; what must hold exactly is the plumbing: partials before the final,
word times monotonic and inside the utterance, times restarting at zero for
the next utterance on the same stream.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pocketsphinx
import pytest

from hushgate.engines.base import EngineError, EngineOptions, ModelNotFound, Transcriber, Transcript
from hushgate.engines.pocketsphinx import (
    SPEC,
    PocketSphinxTranscriber,
    clean_word,
    create,
    find_model_files,
    guess_languages,
)
from tests.audio_helpers import assert_word_times, pcm_duration_ms, read_wav, shared_audio_dir, stream_utterance

RATE_HZ = 16000
CHUNK_SAMPLES = RATE_HZ // 10  # 100 ms, what a client typically sends
EXPECTED_WORDS = {"country", "ask", "americans", "fellow", "you"}


@pytest.fixture(scope="module")
def transcriber() -> Iterator[PocketSphinxTranscriber]:
    loaded = create(EngineOptions(model=pocketsphinx.get_model_path("en-us")))
    yield loaded
    loaded.close()


@pytest.fixture(scope="module")
def jfk() -> npt.NDArray[np.int16]:
    path = shared_audio_dir() / "misc" / "jfk.wav"
    if not path.is_file():
        pytest.skip(f"the shared recording {path} is missing")
    pcm, rate_hz = read_wav(path)
    assert rate_hz == RATE_HZ, "jfk.wav is expected at 16 kHz"
    return pcm


def test_transcriber_describes_itself(transcriber: PocketSphinxTranscriber) -> None:
    assert isinstance(transcriber, Transcriber)
    assert transcriber.name == "pocketsphinx"
    assert transcriber.model == "en-us"
    assert transcriber.languages == ("en",)
    assert transcriber.sample_rate_hz == 16000
    assert transcriber.partial_interval_ms == 200
    assert SPEC.name == "pocketsphinx" and SPEC.capability == "stt" and SPEC.factory is create


def test_jfk_streamed_in_100_ms_chunks_then_a_second_utterance(
    transcriber: PocketSphinxTranscriber, jfk: npt.NDArray[np.int16]
) -> None:
    stream = transcriber.open_stream(language="en-US", words=True)
    try:
        partials, final = stream_utterance(stream, jfk)
        assert partials, "no partial arrived before finish()"
        assert final.text
        recognised = set(final.text.split())
        assert len(recognised & EXPECTED_WORDS) >= 2, final.text
        assert_word_times(final, pcm_duration_ms(jfk))
        assert [word.w for word in final.words] == final.text.split()

        # "And so my fellow Americans": the first 3.5 s, on the same stream.
        opening = jfk[: RATE_HZ * 7 // 2]
        _, second = stream_utterance(stream, opening)
    finally:
        stream.close()
    assert second.text
    assert_word_times(second, pcm_duration_ms(opening))
    assert second.words[0].t0_ms < 1500, "times of the second utterance must restart from its own start"


def test_utterance_shorter_than_the_cmn_warm_up(
    transcriber: PocketSphinxTranscriber, jfk: npt.NDArray[np.int16]
) -> None:
    stream = transcriber.open_stream(language="en", words=True)
    try:
        short = jfk[: RATE_HZ * 6 // 10]
        partials, final = stream_utterance(stream, short)
        assert partials == []  # the audio is held back until finish()
        for word in final.words:
            assert 0 <= word.t0_ms <= word.t1_ms <= pcm_duration_ms(short) + 100
        assert stream.finish() == Transcript(text="")  # nothing new since
    finally:
        stream.close()


def test_stream_refuses_non_int16_audio(transcriber: PocketSphinxTranscriber) -> None:
    stream = transcriber.open_stream(language="en", words=False)
    try:
        with pytest.raises(EngineError):
            stream.accept(np.zeros(160, dtype=np.float32))  # type: ignore[arg-type]
    finally:
        stream.close()


def test_open_stream_refuses_a_language_the_model_does_not_speak(transcriber: PocketSphinxTranscriber) -> None:
    with pytest.raises(EngineError):
        transcriber.open_stream(language="ko", words=False)


def test_model_files_are_found_in_the_pocketsphinx_5_layout() -> None:
    model_dir = Path(pocketsphinx.get_model_path("en-us"))
    acoustic_dir, language_model, dictionary = find_model_files(model_dir)
    assert (acoustic_dir / "mdef").is_file()
    assert language_model.name == "en-us.lm.bin"
    assert dictionary.name == "cmudict-en-us.dict"


def test_missing_model_directory_is_model_not_found(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFound):
        PocketSphinxTranscriber(tmp_path / "en-us")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelNotFound):
        PocketSphinxTranscriber(tmp_path / "empty")


@pytest.mark.parametrize(
    ("label", "word"),
    [
        ("country", "country"),
        ("and(2)", "and"),
        ("<s>", None),
        ("</s>", None),
        ("<sil>", None),
        ("[NOISE]", None),
        ("[SPEECH]", None),
        ("++BREATH++", None),
    ],
)
def test_segment_labels_are_cleaned(label: str, word: str | None) -> None:
    assert clean_word(label) == word


def test_languages_are_guessed_from_the_directory_name() -> None:
    assert guess_languages(Path("/m/en-us")) == ("en",)
    assert guess_languages(Path("/m/cmusphinx-fr-5.2")) == ("fr",)
    assert guess_languages(Path("/m/custom")) == ()


def test_catalogue_default_and_name_resolve_through_the_model_store() -> None:
    by_default = create(EngineOptions())
    by_name = create(EngineOptions(model="pocketsphinx-en-us"))
    try:
        assert by_default.languages == ("en",)
        assert by_name.model == "pocketsphinx-en-us"
        assert by_name.languages == ("en",)
    finally:
        by_default.close()
        by_name.close()
