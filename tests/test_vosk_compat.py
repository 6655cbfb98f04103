"""The vosk-server compatible endpoint, driven by a client written to vosk-server's
published shape (alphacep's ``test.py`` / ``asr_test.py``): config, 8000-byte
chunks of a WAV with one reply read per chunk, ``{"eof" : 1}``, the final.

Real uvicorn server; speech is real so the real WebRTC VAD cuts utterances.
With the fake transcriber the plumbing is exact (one word per 500 ms of
utterance audio); with Whisper the words are real.
"""

from __future__ import annotations

import asyncio
import json
import statistics

import pytest
import websockets
from websockets.exceptions import ConnectionClosed

from hushgate.server.settings import Settings
from tests.audio_helpers import resample
from tests.server_helpers import jfk_fixture  # noqa: F401 - a fixture
from tests.vosk_helpers import (  # noqa: F401 - the *_fixture names are fixtures
    CHUNK_BYTES,
    EOF,
    check_shape,
    fake_fixture,
    recognize,
    server_fixture,
    settled,
    texts,
    vosk_server,
    vosk_url,
)

# The fake transcriber: exact plumbing ------------------------------------------


async def test_one_reply_per_chunk_partials_then_text_with_words_in_seconds(server, fake, jfk) -> None:  # noqa: ANN001
    before = server.counters.total
    data = jfk.astype("<i2").tobytes()
    replies, _, final, code = await recognize(vosk_url(server), data, config='{ "config" : { "sample_rate" : 16000 } }')
    assert code == 1000
    assert len(replies) == -(-len(data) // CHUNK_BYTES)
    for message in replies + [final]:
        check_shape(message, words=True)
    assert "text" in final
    finals = [m for m in texts(replies + [final]) if m["text"]]
    assert len(finals) >= 2, "jfk.wav has pauses: the VAD cuts more than one utterance"
    partials = [m["partial"] for m in replies if m.get("partial")]
    assert partials and all(p.startswith("word0") for p in partials)
    # Each partial is a prefix of its utterance's final: the same audio, heard so far.
    upcoming = None
    for message in reversed(replies + [final]):
        if message.get("text"):
            upcoming = message["text"]
        elif message.get("partial"):
            assert upcoming is not None and upcoming.startswith(message["partial"]), (message, upcoming)
    # Words: the fake hears one per 500 ms, placed on the connection's clock in seconds.
    duration_s = len(jfk) / 16_000
    previous_end = 0.0
    for message in finals:
        words = message["result"]
        assert [w["word"] for w in words] == message["text"].split()
        for i, word in enumerate(words):
            assert word["conf"] == pytest.approx(0.9)
            assert previous_end - 1e-3 <= word["start"] <= word["end"] <= duration_s + 0.05, word
            if i + 1 < len(words):
                assert word["end"] - word["start"] == pytest.approx(0.5, abs=2e-3)
                assert words[i + 1]["start"] == pytest.approx(word["end"], abs=2e-3)
            previous_end = word["end"]
    assert previous_end > 5.0, "times are seconds, not milliseconds or samples"
    await settled(server, fake)
    assert server.counters.total == before + 1


async def test_without_a_config_the_defaults_apply_and_words_can_be_turned_off(server, fake, jfk) -> None:  # noqa: ANN001
    data = jfk.astype("<i2").tobytes()
    _, _, final_default, _ = await recognize(vosk_url(server), data[: 16_000 * 4], config=None)
    assert "result" in final_default, "vosk-server shows words unless told not to"
    replies, _, final, code = await recognize(vosk_url(server), data, config='{"config": {"words": false}}')
    assert code == 1000
    finals = [m for m in texts(replies + [final]) if m["text"]]
    assert finals and all(set(m) == {"text"} for m in finals)
    await settled(server, fake)


async def test_a_client_at_8000_hz_is_resampled_and_keeps_its_own_clock(server, fake, jfk) -> None:  # noqa: ANN001
    data = resample(jfk, 16_000, 8_000).astype("<i2").tobytes()
    replies, _, final, code = await recognize(vosk_url(server), data, config='{"config": {"sample_rate": 8000.0}}')
    assert code == 1000 and len(replies) == -(-len(data) // CHUNK_BYTES)
    finals = [m for m in texts(replies + [final]) if m["text"]]
    assert len(finals) >= 2
    last_end = finals[-1]["result"][-1]["end"]
    assert 5.0 < last_end <= len(jfk) / 16_000 + 0.05


async def test_replies_stay_one_per_frame_when_the_client_does_not_wait(server, fake, jfk) -> None:  # noqa: ANN001
    data = jfk.astype("<i2").tobytes()
    chunks = [data[pos : pos + 3200] for pos in range(0, len(data), 3200)]
    async with websockets.connect(vosk_url(server)) as ws:
        for chunk in chunks:
            await ws.send(chunk)
        await ws.send(b"")  # an empty frame is still a frame: vosk answers it too
        await ws.send('{"eof": 1}')
        messages = []
        async for frame in ws:
            messages.append(json.loads(frame))
        assert ws.close_code == 1000
    assert len(messages) == len(chunks) + 2
    assert "text" in messages[-1] and all("partial" in m or "text" in m for m in messages)
    await settled(server, fake)


async def test_eof_before_any_audio_and_reset_midway(server, fake, jfk) -> None:  # noqa: ANN001
    replies, _, final, code = await recognize(vosk_url(server), b"", config='{"config": {"sample_rate": 16000}}')
    assert (replies, final, code) == ([], {"text": ""}, 1000)
    speech = jfk[: 16_000 * 2].astype("<i2").tobytes()  # JFK is still speaking at 2 s
    async with websockets.connect(vosk_url(server)) as ws:
        for pos in range(0, len(speech), CHUNK_BYTES):
            await ws.send(speech[pos : pos + CHUNK_BYTES])
            await ws.recv()
        await ws.send('{"reset": 1}')
        reset = json.loads(await ws.recv())
        assert reset["text"].startswith("word0") and reset["result"]
        await ws.send(EOF)
        assert json.loads(await ws.recv()) == {"text": ""}
    await settled(server, fake)


async def test_a_client_that_vanishes_mid_stream_leaves_nothing_behind(server, fake, jfk) -> None:  # noqa: ANN001
    speech = jfk[: 16_000 * 2].astype("<i2").tobytes()
    ws = await websockets.connect(vosk_url(server))
    for pos in range(0, len(speech), CHUNK_BYTES):
        await ws.send(speech[pos : pos + CHUNK_BYTES])
    ws.transport.abort()  # no close frame, no eof: the TCP connection just drops
    await settled(server, fake)


async def test_the_server_drains_with_a_final_and_1001(server, fake, jfk) -> None:  # noqa: ANN001
    speech = jfk[: 16_000 * 2].astype("<i2").tobytes()
    async with websockets.connect(vosk_url(server)) as ws:
        for pos in range(0, len(speech), CHUNK_BYTES):
            await ws.send(speech[pos : pos + CHUNK_BYTES])
            await ws.recv()
        server.app.state.gateway.finish_sessions()
        final = json.loads(await asyncio.wait_for(ws.recv(), 30))
        assert final["text"].startswith("word0")
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 30)
        assert ws.close_code == 1001
    await settled(server, fake)


# Real Whisper --------------------------------------------------------------------


@pytest.mark.slow
async def test_whisper_on_jfk(jfk) -> None:  # noqa: ANN001
    settings = Settings(stt=("en=whisper",), translators=(), synthesizers=(), speaker_encoder="")
    with vosk_server(settings) as server:
        data = jfk.astype("<i2").tobytes()
        replies, waits, final, code = await recognize(
            vosk_url(server), data, config='{ "config" : { "sample_rate" : 16000 } }'
        )
        assert code == 1000
        for message in replies + [final]:
            check_shape(message, words=True)
        partials = [m["partial"] for m in replies if m.get("partial")]
        assert partials, "Whisper partials reach the client"
        heard = " ".join(m["text"] for m in texts(replies + [final])).lower()
        assert "country" in heard, heard
        words = [w for m in texts(replies + [final]) for w in m.get("result", [])]
        assert any(w["word"].lower().strip(".,") == "country" for w in words)
        assert all(0.0 <= w["start"] <= w["end"] <= len(jfk) / 16_000 + 0.05 for w in words)
        # Partials only every partial_interval_ms of audio: most frames are answered
        # with the last partial, at once, and the engine is called far less than per frame.
        runners = server.app.state.gateway.runtime.runners
        calls = sum(r.stats.calls for key, r in runners.items() if key.startswith("stt:"))
        assert calls < len(replies) // 2, (calls, len(replies))
        assert statistics.median(waits) < 0.1, waits
        await settled(server)
