"""Telephony audio on the WebSocket: 8 kHz μ-law and A-law of real speech, through the real Whisper engine."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np
import pytest

from hushgate.server.audio import g711_decode
from hushgate.server.settings import Settings
from tests.conftest import Running, serve
from tests.media_helpers import JFK_WORDS as JFK
from tests.media_helpers import encode, words
from tests.wsclient import Client


@pytest.fixture(scope="module")
def server() -> Iterator[Running]:
    with serve(Settings(translators=(), synthesizers=(), speaker_encoder="")) as running:
        yield running


@pytest.mark.parametrize("encoding", ["mulaw", "alaw"])
def test_tables_match_ffmpegs_decoder(audio_dir: Path, encoding: str) -> None:
    """Every byte value, and real speech, decode exactly as FFmpeg's G.711 decoder does."""
    data = bytes(range(256)) + encode(audio_dir / "misc" / "jfk.wav", encoding, f"pcm_{encoding}", rate_hz=8000)
    with av.open(io.BytesIO(data), format=encoding, options={"sample_rate": "8000"}) as container:
        reference = np.concatenate([f.to_ndarray().reshape(-1) for f in container.decode(audio=0)])
    assert np.array_equal(g711_decode(data, encoding), reference)


@pytest.mark.parametrize("encoding", ["mulaw", "alaw"])
async def test_companded_speech_gets_a_correct_final(server: Running, audio_dir: Path, encoding: str) -> None:
    audio = encode(audio_dir / "misc" / "jfk.wav", encoding, f"pcm_{encoding}", rate_hz=8000)
    client = await Client.connect(server.ws())
    await client.send({"type": "start", "audio": {"sample_rate": 8000, "encoding": encoding}})
    ready = await client.next_event()
    assert ready["type"] == "ready" and ready["audio"]["encoding"] == encoding
    client.read_in_background()
    silence = bytes([0xFF if encoding == "mulaw" else 0xD5]) * 8000
    data = audio + silence
    for i in range(0, len(data), 800):  # 100 ms frames
        await client.send_audio(data[i : i + 800])
    received = await client.finish()
    text = " ".join(e["text"] for e in received.of("final"))
    assert len(JFK - set(words(text))) <= 1, text
    assert received.events[-1]["stats"]["audio_ms"] == len(data) // 8


async def test_companded_audio_must_be_8k(server: Running) -> None:
    client = await Client.connect(server.ws())
    await client.send({"type": "start", "audio": {"sample_rate": 16000, "encoding": "mulaw"}})
    error = await client.next_event()
    assert error["type"] == "error" and error["code"] == "unsupported_audio" and "8000" in error["message"]
    assert (await client.closed()).close_code == 1003
