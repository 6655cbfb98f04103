"""Translation and speech plumbing over a real socket, with fake engines.

The fakes make every expectation exact; the real Apertium, Argos, Piper and
espeak-ng engines are tested in their own modules and end to end in
``test_speech_translation.py``.
"""

from __future__ import annotations

import asyncio
import io
import wave

import httpx
import numpy as np
import pytest

from hushgate.server.settings import Settings
from tests.audio_helpers import read_wav
from tests.conftest import serve
from tests.fakes import (
    FakeSynthesizer,
    FakeTranslator,
    fake_spec,
    fake_translate_spec,
    fake_tts_spec,
)
from tests.wsclient import Client

SETTINGS = Settings(
    stt=("en=fake",),
    translators=("fake-translate",),
    synthesizers=("fake-tts",),
    speak_queue=2,
    speaker_encoder="",
    max_text_chars=10_000,
)


@pytest.fixture
def translator() -> FakeTranslator:
    return FakeTranslator()


@pytest.fixture
def synthesizer() -> FakeSynthesizer:
    return FakeSynthesizer()


@pytest.fixture
def server(translator: FakeTranslator, synthesizer: FakeSynthesizer):  # noqa: ANN201
    specs = [fake_spec(), fake_translate_spec(translator), fake_tts_spec(synthesizer)]
    with serve(SETTINGS, specs) as running:
        yield running


@pytest.fixture(scope="module")
def speech(audio_dir) -> np.ndarray:  # noqa: ANN001
    pcm, _ = read_wav(audio_dir / "long" / "long_2spk_concat.wav")
    return np.concatenate([pcm[: 16_000 * 28], np.zeros(16_000, np.int16)])


@pytest.mark.parametrize("fmt", ["json", "msgpack"])
async def test_every_final_is_followed_by_one_translation_per_target(server, speech, fmt: str) -> None:  # noqa: ANN001
    client = await Client.connect(server.ws(), fmt)
    ready = await client.start(translate={"targets": ["es", "fr"]})
    assert ready["type"] == "ready"
    assert ready["engines"]["translate"] == {
        "es": {"name": "fake-translate", "model": "en-es"},
        "fr": {"name": "fake-translate", "model": "en-fr"},
    }
    assert ready["engines"]["tts"] == {"name": "fake-tts", "model": "fake-en"}
    assert ready["engines"]["vad"]["name"] == "webrtc"
    client.read_in_background()
    await client.stream(speech)
    received = await client.finish()
    finals = received.of("final")
    assert len(finals) >= 3
    for final in finals:
        translations = [t for t in received.of("translation") if t.get("utterance") == final["utterance"]]
        assert sorted(t["target"] for t in translations) == ["es", "fr"]
        for t in translations:
            assert t["source"] == "en" and t["text"] == f"[{t['target']}] {final['text']}"
            assert "provisional" not in t and "id" not in t
            assert received.events.index(t) > received.events.index(final)
    assert received.types[-1] == "ended"


async def test_provisional_translations_of_partials_when_asked(server, speech) -> None:  # noqa: ANN001
    client = await Client.connect(server.ws())
    await client.start(translate={"targets": ["es"], "partials": True})
    client.read_in_background()
    await client.stream(speech, realtime=False)
    received = await client.finish()
    provisional = [t for t in received.of("translation") if t.get("provisional")]
    assert provisional and all(t["text"].startswith("[es] word") for t in provisional)


async def test_unknown_target_is_reported_and_the_session_goes_on(server) -> None:  # noqa: ANN001
    client = await Client.connect(server.ws())
    await client.start(translate={"targets": ["tlh"]})
    error = await client.next_event()
    assert error["code"] == "engine_unavailable" and not error["fatal"]
    assert "en-es" in error["message"] and "tlh" in error["message"]
    await client.send({"type": "ping"})
    assert (await client.next_event())["type"] == "pong"


@pytest.mark.parametrize("fmt", ["json", "msgpack"])
async def test_translate_requests_and_their_errors(server, fmt: str) -> None:  # noqa: ANN001
    client = await Client.connect(server.ws(), fmt)
    await client.start()
    await client.send({"type": "translate", "id": "t1", "text": "good morning", "target": "es"})
    answer = await client.next_event()
    assert answer == {"type": "translation", "id": "t1", "source": "en", "target": "es", "text": "[es] good morning"}
    for request, code in [
        ({"type": "translate", "id": "t2", "text": "  ", "target": "es"}, "bad_message"),
        # One character over max_text_chars (10 000 here): a bigger frame would also spend the
        # control budget, which charges by size, and be refused before it is read.
        ({"type": "translate", "id": "t3", "text": "x" * 10_001, "target": "es"}, "too_large"),
        ({"type": "translate", "id": "t4", "text": "hi", "target": "tlh"}, "engine_unavailable"),
        ({"type": "translate", "id": "t5", "text": "hi", "source": "de", "target": "es"}, "engine_unavailable"),
    ]:
        await client.send(request)
        error = await client.next_event()
        assert (error["type"], error["code"], error["id"], error["fatal"]) == ("error", code, request["id"], False)
    await client.send({"type": "ping"})
    assert (await client.next_event())["type"] == "pong"
    assert (await client.finish()).close_code == 1000


async def collect_speech(client: Client, ident: str) -> tuple[dict, bytes, dict]:
    start = await client.next_event()
    assert start["type"] == "tts.start" and start["id"] == ident
    pcm = b""
    while True:
        if client.fmt == "json":
            frame = await client.ws.recv()
            if isinstance(frame, bytes):
                pcm += frame
                continue
            event = client._decode(frame)
        else:
            event = await client.next_event()
            if event["type"] == "tts.audio":
                assert event["id"] == ident
                pcm += event["pcm"]
                continue
        assert event is not None and event["type"] == "tts.end" and event["id"] == ident
        return start, pcm, event


@pytest.mark.parametrize("fmt", ["json", "msgpack"])
async def test_speak_streams_start_audio_end(server, fmt: str) -> None:  # noqa: ANN001
    client = await Client.connect(server.ws(), fmt)
    await client.start()
    await client.send({"type": "speak", "id": "s1", "text": "hello brave new world"})
    start, pcm, end = await collect_speech(client, "s1")
    assert start["voice"] == "fake-en" and start["sample_rate"] == 16_000
    # 100 ms per character of each word.
    assert len(pcm) // 2 == 16_000 * 18 // 10
    assert end["duration_ms"] == 1_800
    assert (await client.finish()).close_code == 1000


async def test_speak_output_is_resampled_to_the_rate_the_client_asked_for(server) -> None:  # noqa: ANN001
    client = await Client.connect(server.ws())
    await client.start(speak={"sample_rate": 48_000})
    await client.send({"type": "speak", "id": "s2", "text": "hola amigos", "voice": "fake-es"})
    start, pcm, end = await collect_speech(client, "s2")
    assert start["sample_rate"] == 48_000 and start["voice"] == "fake-es"
    assert abs(len(pcm) // 2 - 48_000) <= 48 and abs(end["duration_ms"] - 1_000) <= 2


async def test_speak_errors_and_a_full_queue(server, synthesizer: FakeSynthesizer) -> None:  # noqa: ANN001
    client = await Client.connect(server.ws())
    await client.start()
    for request, code in [
        ({"type": "speak", "id": "e1", "text": ""}, "bad_message"),
        ({"type": "speak", "id": "e2", "text": "x" * 20_000}, "too_large"),
        ({"type": "speak", "id": "e3", "text": "hi", "voice": "nobody"}, "engine_unavailable"),
        ({"type": "speak", "id": "e4", "text": "hi", "language": "tlh"}, "engine_unavailable"),
    ]:
        await client.send(request)
        error = await client.next_event()
        assert (error["code"], error["id"], error["fatal"]) == (code, request["id"], False)
    assert "fake-en" in error["message"]  # names the voices there are
    synthesizer.delay_s = 0.2
    for i in range(6):
        await client.send({"type": "speak", "id": f"q{i}", "text": "one two three"})
    client.read_in_background()
    received = await client.finish()
    refused = [e["id"] for e in received.of("error") if e["code"] == "overloaded"]
    spoken = [e["id"] for e in received.of("tts.end")]
    assert refused, "a full speak queue must refuse, not drop silently"
    assert sorted(refused + spoken) == [f"q{i}" for i in range(6)]
    assert received.types[-1] == "ended"


async def test_spoken_translations(server, speech) -> None:  # noqa: ANN001
    client = await Client.connect(server.ws())
    await client.start(translate={"targets": ["es"]}, speak={"translations": True})
    client.read_in_background()
    await client.stream(speech)
    received = await client.finish()
    translations = received.of("translation")
    starts = received.of("tts.start")
    assert translations and [s["id"] for s in starts] == [t["utterance"] for t in translations]
    assert all(s["voice"] == "fake-es" and s["sample_rate"] == 22_050 for s in starts)
    ends = received.of("tts.end")
    assert all(e["duration_ms"] > 0 for e in ends)
    assert abs(sum(len(a) for a in received.audio) // 2 - sum(e["duration_ms"] * 22_050 // 1000 for e in ends)) < 50
    assert received.types[-1] == "ended"


async def test_translations_from_several_sessions_are_batched() -> None:
    slow = FakeTranslator(delay_s=0.2)
    with serve(SETTINGS, [fake_spec(), fake_translate_spec(slow), fake_tts_spec(FakeSynthesizer())]) as server:
        clients = [await Client.connect(server.ws()) for _ in range(4)]
        for client in clients:
            await client.start()
        for i, client in enumerate(clients):
            for j in range(3):
                await client.send({"type": "translate", "id": f"{i}-{j}", "text": f"text {i} {j}", "target": "es"})

        async def three(client: Client) -> list[dict]:
            return [await client.next_event() for _ in range(3)]

        answers = await asyncio.gather(*(three(c) for c in clients))
        for i, events in enumerate(answers):
            assert sorted(e["id"] for e in events) == [f"{i}-{j}" for j in range(3)]
            assert all(e["text"] == f"[es] text {e['id'].replace('-', ' ')}" for e in events)
        assert max(len(b) for b in slow.batches) > 1
        assert sum(len(b) for b in slow.batches) == 12


async def test_post_tts_returns_a_wav(server) -> None:  # noqa: ANN001
    async with httpx.AsyncClient() as http:
        response = await http.post(server.http + "/v1/tts", json={"text": "hello world", "voice": "fake-en"})
        assert response.status_code == 200 and response.headers["content-type"] == "audio/wav"
        with wave.open(io.BytesIO(response.content)) as wav:
            assert wav.getframerate() == 16_000 and wav.getnframes() == 16_000
        assert (await http.post(server.http + "/v1/tts", json={"text": "hi", "voice": "x"})).status_code == 404
        assert (await http.post(server.http + "/v1/tts", json={"text": ""})).status_code == 400
        assert (await http.post(server.http + "/v1/tts", content=b"{")).status_code == 400
        engines = (await http.get(server.http + "/v1/engines")).json()
        assert {v["id"] for v in engines["voices"]} == {"fake-en", "fake-es"}
        assert engines["translation_pairs"] == ["en-es", "en-fr"]


async def test_lone_surrogates_cost_only_their_own_request(server) -> None:  # noqa: ANN001
    """JSON can spell a lone surrogate (`\\ud800`) that no UTF-8 frame can carry back: the request
    naming it is refused as `bad_message`, its id is not echoed, and the session goes on."""
    client = await Client.connect(server.ws())
    await client.start()
    await client.send({"type": "translate", "id": "bad\ud800", "text": "hello", "target": "es"})
    error = await client.next_event()
    assert error["type"] == "error" and error["code"] == "bad_message" and not error["fatal"]
    assert "id" not in error
    await client.send({"type": "translate", "id": "t2", "text": "bad \ud800 text", "target": "es"})
    error = await client.next_event()
    assert error == {**error, "type": "error", "code": "bad_message", "id": "t2", "fatal": False}
    await client.send({"type": "speak", "id": "s2", "text": "bad \udfff text"})
    error = await client.next_event()
    assert error == {**error, "type": "error", "code": "bad_message", "id": "s2", "fatal": False}
    await client.send({"type": "translate", "id": "t3", "text": "still here", "target": "es"})
    translation = await client.next_event()
    assert translation["type"] == "translation" and translation["id"] == "t3"
    assert translation["text"] == "[es] still here"
    received = await client.finish()
    assert received.close_code == 1000


@pytest.mark.parametrize("fmt", ["json", "msgpack"])
@pytest.mark.parametrize("number", [float("nan"), float("inf")])
async def test_non_finite_numbers_in_start_are_malformed(server, fmt: str, number: float) -> None:  # noqa: ANN001
    client = await Client.connect(server.ws(), fmt)
    await client.send({"type": "start", "audio": {"sample_rate": 16_000}, "vad": {"silence_ms": number}})
    received = await client.closed()
    assert received.close_code == 1007 and received.of("error")[0]["code"] == "bad_message"


async def test_one_bad_text_fails_only_its_own_request_in_a_batch() -> None:
    """Batching must not make neighbours share a failure: the real Apertium engine
    refuses a text it cannot encode, and the other texts of the same batch still translate."""
    apertium = pytest.importorskip("hushgate.engines.apertium")
    from hushgate.engines.base import EngineOptions
    from hushgate.server.batcher import TranslationBatcher
    from hushgate.server.runtime import EngineRunner

    try:
        engine = apertium.create(EngineOptions())
    except Exception as exc:  # noqa: BLE001 - not installed on this machine
        pytest.skip(f"apertium unavailable: {exc}")
    runner = EngineRunner("apertium", concurrency=1, max_waiting=8)
    batcher = TranslationBatcher(engine, runner)
    try:
        good, bad, other = await asyncio.gather(
            batcher.translate("Good morning, my friend.", "en", "es"),
            batcher.translate("bad \ud800 text", "en", "es"),
            batcher.translate("The house is big.", "en", "es"),
            return_exceptions=True,
        )
        assert batcher.batches >= 1
        assert isinstance(bad, Exception)
        assert good == "Buenos días, mi amigo." or (isinstance(good, str) and "amigo" in good), good
        assert isinstance(other, str) and "casa" in other.lower(), other
    finally:
        await batcher.aclose()
        runner.shutdown()
        engine.close()
