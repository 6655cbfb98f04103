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
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from unittest.mock import patch

import numpy as np
import pytest
import websockets
from starlette.routing import WebSocketRoute
from websockets.exceptions import ConnectionClosed, InvalidStatus

import tests.conftest as conftest
from hushgate.engines.base import EngineSpec
from hushgate.server.app import create_app
from hushgate.server.auth import hash_key
from hushgate.server.settings import Settings
from hushgate.server.vosk_compat import make_vosk_endpoint
from tests.audio_helpers import read_wav, resample
from tests.conftest import Running, serve, wait_until
from tests.fakes import FakeTranscriber, fake_spec

CHUNK_BYTES = 8000
EOF = '{"eof" : 1}'  # byte for byte what vosk-server's examples send
FAKE = Settings(stt=("en=fake",), translators=(), synthesizers=(), speaker_encoder="", max_sessions=8)


@contextmanager
def vosk_server(settings: Settings, specs: list[EngineSpec] | None = None) -> Iterator[Running]:
    """conftest.serve, with /vosk mounted unless app.py already mounts it."""

    def create_with_vosk(*args: Any, **kwargs: Any):  # noqa: ANN202
        app = create_app(*args, **kwargs)
        if not any(getattr(route, "path", None) == "/vosk" for route in app.router.routes):
            app.router.routes.append(WebSocketRoute("/vosk", make_vosk_endpoint(app.state.gateway)))
        return app

    with patch.object(conftest, "create_app", create_with_vosk), serve(settings, specs) as running:
        yield running


def vosk_url(server: Running, query: str = "") -> str:
    return f"ws://127.0.0.1:{server.port}/vosk" + (f"?{query}" if query else "")


@pytest.fixture(scope="module")
def jfk(audio_dir: Path) -> np.ndarray:
    pcm, rate = read_wav(audio_dir / "misc" / "jfk.wav")
    assert rate == 16_000
    return pcm


@pytest.fixture(scope="module")
def fake() -> FakeTranscriber:
    return FakeTranscriber()


@pytest.fixture(scope="module")
def server(fake: FakeTranscriber) -> Iterator[Running]:
    with vosk_server(FAKE, [fake_spec(fake)]) as running:
        yield running


async def settled(server: Running, fake: FakeTranscriber | None = None) -> None:
    """Every session counted out and every engine stream closed."""
    await wait_until(lambda: server.counters.active == 0 and (fake is None or fake.open_streams == 0))


async def recognize(
    url: str, data: bytes, *, config: str | None, chunk_bytes: int = CHUNK_BYTES, **connect: Any
) -> tuple[list[dict[str, Any]], list[float], dict[str, Any], int | None]:
    """vosk-server's example client: one reply read per chunk, then eof and the final.

    Returns the per-chunk replies, how long each took, the final, and the close code.
    """
    replies: list[dict[str, Any]] = []
    waits: list[float] = []
    async with websockets.connect(url, **connect) as ws:
        if config is not None:
            await ws.send(config)
        for pos in range(0, len(data), chunk_bytes):
            sent = time.monotonic()
            await ws.send(data[pos : pos + chunk_bytes])
            replies.append(json.loads(await asyncio.wait_for(ws.recv(), 60)))
            waits.append(time.monotonic() - sent)
        await ws.send(EOF)
        final = json.loads(await asyncio.wait_for(ws.recv(), 60))
        # The final is the last message: anything more would be a second reply to some frame.
        with pytest.raises(ConnectionClosed):
            extra = await asyncio.wait_for(ws.recv(), 30)
            pytest.fail(f"unexpected message after the final: {extra}")
        return replies, waits, final, ws.close_code


async def close_code_after(url: str, *frames: str | bytes) -> int | None:
    """Send frames, read until the server closes, and return its close code."""
    async with websockets.connect(url) as ws:
        try:
            for frame in frames:
                await ws.send(frame)
            while True:
                await asyncio.wait_for(ws.recv(), 30)
        except ConnectionClosed:
            pass
        return ws.close_code


def check_shape(message: dict[str, Any], *, words: bool) -> None:
    if "partial" in message:
        assert set(message) <= {"partial", "partial_result"}, message
        assert isinstance(message["partial"], str)
        return
    assert isinstance(message.get("text"), str), message
    assert set(message) == ({"text", "result"} if words and message["text"] else {"text"}), message
    for word in message.get("result", []):
        assert set(word) == {"conf", "end", "start", "word"}, word
        assert all(isinstance(word[k], float) for k in ("conf", "end", "start")), word
        assert 0.0 <= word["start"] <= word["end"], word


def texts(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [m for m in messages if "text" in m]


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


# Bad input closes the connection, never the server ------------------------------


async def test_odd_length_pcm_closes_1007(server, fake) -> None:  # noqa: ANN001
    assert await close_code_after(vosk_url(server), '{"config": {"sample_rate": 16000}}', b"\x00" * 7999) == 1007
    assert await close_code_after(vosk_url(server), b"\x00" * 8000, b"\x00" * 3) == 1007
    await settled(server, fake)


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("not json", 1007),
        ('{"config": {"sample_rate": NaN}}', 1007),
        ("[1, 2]", 1003),
        ('{"config": 16000}', 1003),
        ('{"config": {"sample_rate": "16k"}}', 1003),
        ('{"config": {"sample_rate": 1000}}', 1003),
        ('{"config": {"sample_rate": 96000}}', 1003),
        ('{"config": {"sample_rate": true}}', 1003),
        ('{"config": {"words": "yes"}}', 1003),
        ('{"config": {"max_alternatives": 3}}', 1003),
        ('{"config": {"phrase_list": "one two"}}', 1003),
        ('{"hello": 1}', 1003),
    ],
)
async def test_malformed_config_closes_1003_or_1007(server, fake, frame: str, code: int) -> None:  # noqa: ANN001
    assert await close_code_after(vosk_url(server), frame) == code
    await settled(server, fake)


async def test_config_is_for_before_the_audio(server, fake) -> None:  # noqa: ANN001
    same = '{"config": {"sample_rate": 16000, "phrase_list": ["yes", "no"]}}'
    async with websockets.connect(vosk_url(server)) as ws:
        await ws.send(same)
        await ws.send(b"\x00" * 3200)
        assert json.loads(await ws.recv()) == {"partial": ""}
        await ws.send(same)  # repeating it changes nothing, so it is fine
        await ws.send(EOF)
        assert json.loads(await ws.recv()) == {"text": ""}
    assert await close_code_after(vosk_url(server), b"\x00" * 3200, '{"config": {"sample_rate": 8000}}') == 1003
    await settled(server, fake)


async def test_unknown_language_closes_1003(server, fake) -> None:  # noqa: ANN001
    assert await close_code_after(vosk_url(server, "language=tlh")) == 1003
    await settled(server, fake)


# Auth and admission are /v1/stream's --------------------------------------------

KEY = "sgw_vosk_test_key_0123456789"


async def test_keys_are_required_once_configured(fake, jfk) -> None:  # noqa: ANN001
    settings = Settings(
        stt=("en=fake",), translators=(), synthesizers=(), speaker_encoder="", api_keys=(hash_key(KEY),)
    )
    with vosk_server(settings, [fake_spec(fake)]) as server:
        for headers in ({}, {"Authorization": "Bearer wrong"}):
            with pytest.raises(InvalidStatus) as info:
                await websockets.connect(vosk_url(server), additional_headers=headers)
            assert info.value.response.status_code == 401
        with pytest.raises(InvalidStatus) as info:
            await websockets.connect(vosk_url(server, "token=v1.bogus.token"))
        assert info.value.response.status_code == 401
        data = jfk[: 16_000 * 3].astype("<i2").tobytes()
        _, _, final, code = await recognize(
            vosk_url(server), data, config=None, additional_headers={"Authorization": f"Bearer {KEY}"}
        )
        assert code == 1000 and "text" in final
        await settled(server, fake)


async def test_sessions_share_the_gateways_limit(fake) -> None:  # noqa: ANN001
    settings = Settings(stt=("en=fake",), translators=(), synthesizers=(), speaker_encoder="", max_sessions=1)
    with vosk_server(settings, [fake_spec(fake)]) as server:
        async with websockets.connect(vosk_url(server)) as first:
            await first.send(b"\x00" * 3200)
            assert json.loads(await first.recv()) == {"partial": ""}
            assert server.counters.active == 1
            assert await close_code_after(vosk_url(server)) == 1013
            # /v1/stream counts the vosk session too.
            start = json.dumps({"type": "start", "audio": {"sample_rate": 16000}})
            assert await close_code_after(server.ws(), start) == 1013
            await first.send(EOF)
            assert json.loads(await first.recv()) == {"text": ""}
        await settled(server, fake)
        assert server.counters.total == 1


async def test_idle_clients_and_oversized_frames(fake, jfk) -> None:  # noqa: ANN001
    settings = Settings(
        stt=("en=fake",),
        translators=(),
        synthesizers=(),
        speaker_encoder="",
        idle_timeout_s=0.5,
        max_frame_bytes=16_000,
    )
    with vosk_server(settings, [fake_spec(fake)]) as server:
        assert await close_code_after(vosk_url(server), b"\x00" * 16_002) == 1009
        speech = jfk[: 16_000 * 2].astype("<i2").tobytes()
        async with websockets.connect(vosk_url(server)) as ws:
            for pos in range(0, len(speech), CHUNK_BYTES):
                await ws.send(speech[pos : pos + CHUNK_BYTES])
                await ws.recv()
            final = json.loads(await asyncio.wait_for(ws.recv(), 10))
            assert final["text"].startswith("word0")
            with pytest.raises(ConnectionClosed):
                await ws.recv()
            assert ws.close_code == 1000
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
