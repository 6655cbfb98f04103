"""The OpenAI-compatible audio API, driven by the real ``openai`` package against the real server and engines."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import openai
import pytest

from hushgate.client.media import decode_pcm16
from hushgate.server.auth import hash_key
from hushgate.server.settings import Settings
from tests.conftest import Running, serve
from tests.fakes import FakeTranscriber, FakeTranslator, fake_spec, fake_translate_spec
from tests.media_helpers import encode, words

JFK = "and so my fellow americans ask not what your country can do for you ask what you can do for your country"
SETTINGS = Settings(translators=(), synthesizers=("piper",), speaker_encoder="", max_upload_bytes=1 << 20)


@pytest.fixture(scope="module")
def server() -> Iterator[Running]:
    with serve(SETTINGS) as running:
        yield running


@pytest.fixture(scope="module")
def jfk_mp3(audio_dir: Path) -> bytes:
    return encode(audio_dir / "misc" / "jfk.wav", "mp3", "libmp3lame")


@pytest.fixture()
def client(server: Running) -> Iterator[openai.OpenAI]:
    # OpenAI clients always send a key; with none configured (loopback) it is ignored.
    with openai.OpenAI(base_url=server.http + "/v1", api_key="sk-anything", max_retries=0, timeout=120) as c:
        yield c


def _close_to_jfk(text: str) -> None:
    got = words(text)
    missing = [w for w in set(JFK.split()) if w not in got]
    assert len(missing) <= 2, (text, missing)


def test_every_response_format(client: openai.OpenAI, jfk_mp3: bytes) -> None:
    as_json = client.audio.transcriptions.create(model="whisper-1", file=("jfk.mp3", jfk_mp3))
    _close_to_jfk(as_json.text)
    text = client.audio.transcriptions.create(model="whisper-1", file=("jfk.mp3", jfk_mp3), response_format="text")
    _close_to_jfk(str(text))
    srt = str(client.audio.transcriptions.create(model="whisper-1", file=("jfk.mp3", jfk_mp3), response_format="srt"))
    assert srt.startswith("1\n00:00:0") and " --> " in srt
    _close_to_jfk(srt)
    vtt = str(client.audio.transcriptions.create(model="whisper-1", file=("jfk.mp3", jfk_mp3), response_format="vtt"))
    assert vtt.startswith("WEBVTT\n\n1\n00:00:0") and "." in vtt.split("\n")[3]
    verbose = client.audio.transcriptions.create(
        model="whisper-1",
        file=("jfk.mp3", jfk_mp3),
        response_format="verbose_json",
        timestamp_granularities=["word", "segment"],
        language="en",
    )
    _close_to_jfk(verbose.text)
    assert verbose.language == "english" and 10.5 < verbose.duration < 11.5
    assert verbose.segments and all(0 <= s.start < s.end <= 11.5 for s in verbose.segments)
    assert verbose.words and [w.word.lower().strip(",.") for w in verbose.words][-1] == "country"
    starts = [w.start for w in verbose.words]
    assert starts == sorted(starts) and all(w.start <= w.end for w in verbose.words)


def test_streamed_transcript(client: openai.OpenAI, jfk_mp3: bytes) -> None:
    deltas, done = [], None
    stream = client.audio.transcriptions.create(model="whisper-1", file=("jfk.mp3", jfk_mp3), stream=True)
    for event in stream:
        if event.type == "transcript.text.delta":
            deltas.append(event.delta)
        elif event.type == "transcript.text.done":
            done = event.text
    assert deltas and done is not None
    assert "".join(deltas) == done
    _close_to_jfk(done)


def test_translation_of_english_speech(client: openai.OpenAI, jfk_mp3: bytes) -> None:
    result = client.audio.translations.create(model="whisper-1", file=("jfk.mp3", jfk_mp3))
    _close_to_jfk(result.text)
    verbose = client.audio.translations.create(
        model="whisper-1", file=("jfk.mp3", jfk_mp3), response_format="verbose_json"
    )
    assert verbose.task == "translate" and verbose.segments  # type: ignore[attr-defined]
    _close_to_jfk(verbose.text)


def test_other_containers(client: openai.OpenAI, audio_dir: Path) -> None:
    wav = audio_dir / "librispeech" / "1089-134686-0001.wav"
    for fmt, codec, name in (("ogg", "libopus", "a.ogg"), ("flac", "flac", "a.flac"), ("wav", "pcm_s24le", "a.wav")):
        result = client.audio.transcriptions.create(
            model="whisper-1", file=(name, encode(wav, fmt, codec, rate_hz=48_000))
        )
        assert {"belly", "him"} <= set(words(result.text)), (fmt, result.text)


@pytest.mark.parametrize("fmt", ["wav", "mp3", "opus", "flac", "pcm"])
def test_speech_comes_back_as_the_same_words(client: openai.OpenAI, fmt: str) -> None:
    sentence = "The quick brown fox jumps over the lazy dog."
    with client.audio.speech.with_streaming_response.create(
        model="tts-1",
        voice="alloy",
        input=sentence,
        response_format=fmt,  # type: ignore[arg-type]
    ) as response:
        assert response.headers["content-type"].startswith("audio/")
        audio = b"".join(response.iter_bytes())
    if fmt == "pcm":
        pcm = np.frombuffer(audio, "<i2")
        assert 1.0 < len(pcm) / 22_050 < 6.0
        return
    pcm = np.concatenate(list(decode_pcm16(io.BytesIO(audio), 16_000)))
    assert 1.0 < len(pcm) / 16_000 < 6.0
    back = client.audio.transcriptions.create(model="whisper-1", file=(f"speech.{fmt}", audio))
    got = words(back.text)
    assert sum(w in got for w in ("quick", "brown", "fox", "lazy", "dog")) >= 4, back.text


def test_speed_changes_the_length(client: openai.OpenAI) -> None:
    lengths = []
    for speed in (1.0, 2.0):
        audio = client.audio.speech.create(
            model="tts-1", voice="alloy", input="Good morning, everyone.", response_format="pcm", speed=speed
        ).content
        lengths.append(len(audio))
    assert 0.4 < lengths[1] / lengths[0] < 0.65


def test_models_list_engines_and_voices(client: openai.OpenAI) -> None:
    ids = {m.id for m in client.models.list()}
    assert {"whisper-1", "tts-1", "piper", "en_US-joe-medium"} <= ids
    assert client.models.retrieve("whisper-1").id == "whisper-1"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("no-such-model")


def _error(exc: openai.APIStatusError) -> dict[str, object]:
    body = exc.response.json()
    assert set(body) == {"error"} and {"message", "type", "param", "code"} <= set(body["error"])
    return body["error"]


def test_errors_are_openai_shaped(client: openai.OpenAI, server: Running, jfk_mp3: bytes) -> None:
    with pytest.raises(openai.BadRequestError) as bad:
        client.audio.transcriptions.create(model="whisper-1", file=("x.mp3", b"this is not audio at all" * 40))
    assert _error(bad.value)["param"] == "file" and "decode" in str(_error(bad.value)["message"])
    with pytest.raises(openai.BadRequestError) as empty:
        client.audio.transcriptions.create(model="whisper-1", file=("x.wav", b""))
    assert _error(empty.value)["param"] == "file"
    with pytest.raises(openai.BadRequestError) as truncated:
        client.audio.transcriptions.create(model="whisper-1", file=("x.ogg", b"OggS\x00\x02" + b"\x00" * 30))
    assert _error(truncated.value)["param"] == "file"
    with pytest.raises(openai.BadRequestError) as fmt:
        client.audio.transcriptions.create(model="whisper-1", file=("a.mp3", jfk_mp3), response_format="xml")  # type: ignore[arg-type]
    assert _error(fmt.value)["param"] == "response_format"
    with pytest.raises(openai.BadRequestError) as model:
        client.audio.transcriptions.create(model="nope", file=("a.mp3", jfk_mp3))
    assert _error(model.value)["code"] == "model_not_found"
    with pytest.raises(openai.APIStatusError) as large:
        client.audio.transcriptions.create(model="whisper-1", file=("big.mp3", b"\x00" * (1 << 20)))
    assert large.value.status_code == 413 and _error(large.value)["code"] == "request_too_large"
    with pytest.raises(openai.BadRequestError) as voice:
        client.audio.speech.create(model="tts-1", voice="nobody", input="hi")  # type: ignore[arg-type]
    assert _error(voice.value)["param"] == "voice"
    with pytest.raises(openai.BadRequestError) as speed:
        client.audio.speech.create(model="tts-1", voice="alloy", input="hi", speed=9)
    assert _error(speed.value)["param"] == "speed"
    with pytest.raises(openai.BadRequestError) as sformat:
        client.audio.speech.create(model="tts-1", voice="alloy", input="hi", response_format="midi")  # type: ignore[arg-type]
    assert _error(sformat.value)["param"] == "response_format"
    # Without the SDK: no file part, a parameter OpenAI does not define, OpenAI's ignored ones.
    missing = httpx.post(
        server.http + "/v1/audio/transcriptions", data={"model": "whisper-1"}, files={"other": ("a", b"1")}
    )
    assert missing.status_code == 400 and missing.json()["error"]["param"] in ("file", "other")
    missing = httpx.post(server.http + "/v1/audio/transcriptions", data={"model": "whisper-1"})
    assert missing.status_code == 400 and missing.json()["error"]["code"] in ("invalid_content_type", "missing_file")
    unknown = httpx.post(
        server.http + "/v1/audio/transcriptions",
        data={"model": "whisper-1", "colour": "red"},
        files={"file": ("a.mp3", jfk_mp3)},
    )
    assert unknown.status_code == 400 and unknown.json()["error"]["param"] == "colour"
    ignored = httpx.post(
        server.http + "/v1/audio/transcriptions",
        timeout=120,
        files={"file": ("a.mp3", jfk_mp3)},
        data={
            "model": "whisper-1",
            "prompt": "JFK",
            "temperature": "0.2",
            "include[]": "logprobs",
            "chunking_strategy": "auto",
        },
    )
    assert ignored.status_code == 200, ignored.text
    _close_to_jfk(ignored.json()["text"])
    not_json = httpx.post(server.http + "/v1/audio/speech", content=b"{", headers={"content-type": "application/json"})
    assert not_json.status_code == 400 and json.loads(not_json.text)["error"]["code"] == "invalid_json"


def test_api_keys_are_bearer_tokens(jfk_mp3: bytes) -> None:
    key = "sgw_test_key_for_openai"
    settings = Settings(translators=(), synthesizers=("piper",), speaker_encoder="", api_keys=(hash_key(key),))
    with serve(settings) as running:
        with openai.OpenAI(base_url=running.http + "/v1", api_key="wrong", max_retries=0) as wrong:
            with pytest.raises(openai.AuthenticationError) as denied:
                wrong.audio.transcriptions.create(model="whisper-1", file=("a.mp3", jfk_mp3))
            assert _error(denied.value)["code"] == "invalid_api_key"
            with pytest.raises(openai.AuthenticationError):
                wrong.models.list()
        with openai.OpenAI(base_url=running.http + "/v1", api_key=key, max_retries=0, timeout=120) as right:
            _close_to_jfk(right.audio.transcriptions.create(model="whisper-1", file=("a.mp3", jfk_mp3)).text)
            assert any(m.id == "whisper-1" for m in right.models.list())


class _FakeToEnglish(FakeTranslator):
    """A fake translator from the fake engine's language "xx" into English."""

    def pairs(self) -> list[tuple[str, str]]:
        return [("xx", "en")]


def test_translation_of_other_languages_goes_through_the_translator(jfk_mp3: bytes) -> None:
    """Plumbing, with fake engines: speech in "xx" is transcribed by xx's engine, its text translated into English."""
    translator = _FakeToEnglish()
    settings = Settings(
        stt=("en=fake", "xx=fake"), translators=("fake-translate",), synthesizers=(), speaker_encoder=""
    )
    with (
        serve(settings, [fake_spec(), fake_translate_spec(translator)]) as running,
        openai.OpenAI(base_url=running.http + "/v1", api_key="x", max_retries=0) as client,
    ):
        result = client.audio.translations.create(
            model="whisper-1", file=("a.mp3", jfk_mp3), extra_body={"language": "xx"}
        )
        assert result.text.startswith("[en] word0") and translator.batches
        with pytest.raises(openai.BadRequestError) as no_pair:
            client.audio.translations.create(model="whisper-1", file=("a.mp3", jfk_mp3), extra_body={"language": "ko"})
        assert _error(no_pair.value)["param"] == "language"


class _CountingTranscriber(FakeTranscriber):
    """A fake engine that records how many final decodes ran at once."""

    def __init__(self) -> None:
        super().__init__(final_delay_s=0.3)
        self.running = 0
        self.most_at_once = 0
        self.streams_opened = 0

    def open_stream(self, *, language: str, words: bool):  # noqa: ANN201
        stream = super().open_stream(language=language, words=words)
        self.streams_opened += 1
        finish = stream.finish

        def counted():  # noqa: ANN202
            with self.lock:
                self.running += 1
                self.most_at_once = max(self.most_at_once, self.running)
            try:
                return finish()
            finally:
                with self.lock:
                    self.running -= 1

        stream.finish = counted  # type: ignore[method-assign]
        return stream


def test_a_long_file_is_cut_into_utterances_decoded_in_order_on_one_stream(audio_dir: Path) -> None:
    """Plumbing, with a fake engine: the segmenter cuts the file; one request decodes its utterances one after
    another on one stream (each final's left context is the one before), two requests side by side."""
    engine = _CountingTranscriber()
    settings = Settings(stt=("en=fake",), translators=(), synthesizers=(), speaker_encoder="", stt_concurrency=2)
    mp3 = encode(audio_dir / "long" / "long_2spk_concat.wav", "mp3", "libmp3lame")
    with (
        serve(settings, [fake_spec(engine)]) as running,
        openai.OpenAI(base_url=running.http + "/v1", api_key="x", max_retries=0, timeout=120) as client,
    ):
        result = client.audio.transcriptions.create(
            model="whisper-1", file=("long.mp3", mp3), response_format="verbose_json"
        )
        assert engine.most_at_once == 1 and engine.streams_opened == 1
        with ThreadPoolExecutor(2) as pool:
            both = list(
                pool.map(
                    lambda _: client.audio.transcriptions.create(model="whisper-1", file=("long.mp3", mp3)).text,
                    range(2),
                )
            )
    assert len(result.segments) >= 4
    assert [s.start for s in result.segments] == sorted(s.start for s in result.segments)
    assert both == [result.text] * 2
    assert engine.most_at_once == 2  # the two requests ran side by side
    assert engine.open_streams == 0  # every utterance's stream was closed


def test_the_body_cap_holds_without_a_content_length(server: Running) -> None:
    """A chunked upload is counted as it streams in and refused once it passes the cap."""
    sent = 0

    def body():  # noqa: ANN202
        nonlocal sent
        yield b'--b\r\nContent-Disposition: form-data; name="file"; filename="a.mp3"\r\n\r\n'
        for _ in range(64):
            sent += 64 * 1024
            yield b"\x00" * (64 * 1024)

    try:
        response = httpx.post(
            server.http + "/v1/audio/transcriptions",
            content=body(),
            headers={"content-type": "multipart/form-data; boundary=b"},
        )
    except httpx.HTTPError:
        pytest.fail("the server should answer 413, not drop the connection")
    assert response.status_code == 413 and response.json()["error"]["code"] == "request_too_large"


def test_truncated_files_are_400_or_what_was_readable_never_500(server: Running, audio_dir: Path) -> None:
    wav = audio_dir / "librispeech" / "1089-134686-0001.wav"
    files = {
        "a.mp3": encode(wav, "mp3", "libmp3lame"),
        "a.ogg": encode(wav, "ogg", "libopus", rate_hz=48_000),
        "a.flac": encode(wav, "flac", "flac"),
        "a.m4a": encode(wav, "mp4", "aac"),
        "a.webm": encode(wav, "webm", "libopus", rate_hz=48_000),
        "a.wav": encode(wav, "wav", "pcm_s16le"),
    }
    with httpx.Client(base_url=server.http, timeout=120) as http:
        for name, data in files.items():
            for cut in (0.02, 0.5, 1.0):
                response = http.post(
                    "/v1/audio/transcriptions",
                    data={"model": "whisper-1"},
                    files={"file": (name, data[: int(len(data) * cut)])},
                )
                assert response.status_code in (200, 400), (name, cut, response.status_code, response.text)
                if response.status_code == 400:
                    assert response.json()["error"]["param"] == "file", (name, cut)
                if cut == 1.0:
                    assert response.status_code == 200 and "belly" in words(response.json()["text"]), name
