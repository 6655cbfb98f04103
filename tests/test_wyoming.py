"""Wyoming (Home Assistant): the ``wyoming`` library's own async TCP client against the real server."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from wyoming.asr import (
    Transcribe,
    Transcript,
    TranscriptChunk,
    TranscriptStart,
    TranscriptStop,
)
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.client import AsyncTcpClient
from wyoming.error import Error
from wyoming.event import Event
from wyoming.info import Describe, Info
from wyoming.ping import Ping, Pong
from wyoming.tts import (
    Synthesize,
    SynthesizeChunk,
    SynthesizeStart,
    SynthesizeStop,
    SynthesizeStopped,
    SynthesizeVoice,
)

from hushgate.server.settings import Settings
from tests.audio_helpers import read_wav
from tests.conftest import Running, free_port, serve
from tests.media_helpers import JFK_WORDS as JFK
from tests.media_helpers import words


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[Running, int]]:
    port = free_port()
    settings = Settings(
        translators=(), synthesizers=("piper",), speaker_encoder="", wyoming_uri=f"tcp://127.0.0.1:{port}"
    )
    with serve(settings) as running:
        yield running, port


async def _until(client: AsyncTcpClient, wanted: type, seen: list[Event]) -> Event:
    while True:
        event = await asyncio.wait_for(client.read_event(), 60)
        assert event is not None, "the server closed the connection"
        seen.append(event)
        if wanted.is_type(event.type):  # type: ignore[attr-defined]
            return event


async def _transcribe(port: int, pcm: np.ndarray, rate_hz: int) -> tuple[str, list[Event]]:
    seen: list[Event] = []
    async with AsyncTcpClient("127.0.0.1", port) as client:
        await client.write_event(Transcribe(language="en").event())
        await client.write_event(AudioStart(rate=rate_hz, width=2, channels=1).event())
        step = rate_hz // 10
        for i in range(0, len(pcm), step):
            await client.write_event(
                AudioChunk(rate=rate_hz, width=2, channels=1, audio=pcm[i : i + step].astype("<i2").tobytes()).event()
            )
        await client.write_event(AudioStop().event())
        transcript = Transcript.from_event(await _until(client, Transcript, seen))
        await _until(client, TranscriptStop, seen)
    return transcript.text, seen


async def test_info_lists_models_and_voices(server: tuple[Running, int]) -> None:
    _, port = server
    async with AsyncTcpClient("127.0.0.1", port) as client:
        await client.write_event(Describe().event())
        info = Info.from_event(await _until(client, Info, []))
    # the default stt table has two models (tiny.en for en, base for the rest): any may come first
    assert info.asr and any("en" in m.languages for m in info.asr[0].models)
    assert info.asr[0].supports_transcript_streaming
    assert "en_US-joe-medium" in {v.name for v in info.tts[0].voices}
    assert all(v.languages for v in info.tts[0].voices)


async def test_transcript_of_real_speech(server: tuple[Running, int], audio_dir: Path) -> None:
    _, port = server
    pcm, rate = read_wav(audio_dir / "misc" / "jfk.wav")
    text, seen = await _transcribe(port, pcm, rate)
    assert len(JFK - set(words(text))) <= 1, text
    kinds = [e.type for e in seen]
    assert kinds[0] == TranscriptStart.from_event(seen[0]).event().type and "transcript-chunk" in kinds
    chunks = "".join(TranscriptChunk.from_event(e).text for e in seen if TranscriptChunk.is_type(e.type))
    assert chunks == text


async def test_resampled_input(server: tuple[Running, int], audio_dir: Path) -> None:
    _, port = server
    pcm, _ = read_wav(audio_dir / "librispeech" / "1089-134686-0001.wav")
    import soxr

    text, _ = await _transcribe(port, soxr.resample(pcm, 16_000, 22_050).astype(np.int16), 22_050)
    assert {"belly", "him"} <= set(words(text)), text


async def test_synthesized_audio_is_speech(server: tuple[Running, int]) -> None:
    _, port = server
    seen: list[Event] = []
    async with AsyncTcpClient("127.0.0.1", port) as client:
        await client.write_event(
            Synthesize(
                text="The quick brown fox jumps over the lazy dog.", voice=SynthesizeVoice(name="en_US-joe-medium")
            ).event()
        )
        start = AudioStart.from_event(await _until(client, AudioStart, seen))
        await _until(client, AudioStop, seen)
    audio = b"".join(AudioChunk.from_event(e).audio for e in seen if AudioChunk.is_type(e.type))
    pcm = np.frombuffer(audio, "<i2")
    assert start.width == 2 and start.channels == 1 and 1.0 < len(pcm) / start.rate < 6.0
    text, _ = await _transcribe(port, pcm, start.rate)
    assert sum(w in words(text) for w in ("quick", "brown", "fox", "lazy", "dog")) >= 4, text


async def test_streamed_synthesis(server: tuple[Running, int]) -> None:
    _, port = server
    seen: list[Event] = []
    async with AsyncTcpClient("127.0.0.1", port) as client:
        await client.write_event(SynthesizeStart().event())
        for piece in ("Good morning. ", "The weather ", "is fine today."):
            await client.write_event(SynthesizeChunk(text=piece).event())
        # Streaming clients also send the whole text the old way, for servers that do not stream: ignored.
        await client.write_event(Synthesize(text="Good morning. The weather is fine today.").event())
        await client.write_event(SynthesizeStop().event())
        await _until(client, SynthesizeStopped, seen)
    kinds = [e.type for e in seen]
    assert kinds.count("audio-start") == 1 and kinds.count("audio-stop") == 1
    assert kinds.index("audio-start") < kinds.index("audio-chunk") < kinds.index("audio-stop")
    start = AudioStart.from_event(next(e for e in seen if AudioStart.is_type(e.type)))
    audio = b"".join(AudioChunk.from_event(e).audio for e in seen if AudioChunk.is_type(e.type))
    text, _ = await _transcribe(port, np.frombuffer(audio, "<i2"), start.rate)
    assert words(text).count("morning") == 1 and "weather" in words(text), text


async def test_bad_audio_and_oversized_events_get_errors(server: tuple[Running, int]) -> None:
    _, port = server
    async with AsyncTcpClient("127.0.0.1", port) as client:
        await client.write_event(AudioStart(rate=16_000, width=4, channels=2).event())
        error = Error.from_event(await _until(client, Error, []))
        assert error.code == "unsupported-audio"
        await client.write_event(Describe().event())  # the connection goes on
        await _until(client, Info, [])
        await client.write_event(Ping(text="p1").event())
        assert Pong.from_event(await _until(client, Pong, [])).text == "p1"
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b'{"type": "audio-chunk", "payload_length": 999999999}\n')
    await writer.drain()
    header = json.loads(await asyncio.wait_for(reader.readline(), 30))
    assert header["type"] == "error"
    assert b"too-large" in await reader.readexactly(header["data_length"])
    assert await reader.read() == b""  # and the server hung up
    writer.close()
    await writer.wait_closed()
