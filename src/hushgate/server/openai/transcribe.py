"""A whole file through the streaming pieces: the session's segmenter, then the engine per utterance.

Decoding and segmenting run in one worker thread (webrtcvad costs microseconds
per frame, but an hour is 180 000 frames: too long for the event loop). The
utterances then go to the speech-to-text engine through its runner, as many at
once as the engine has slots (``stt_concurrency``, two by default: both cores),
and come back in order. Each utterance gets a fresh engine stream, so no
utterance's text leaks into the next one's decode.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from hushgate.client.media import MediaError
from hushgate.engines.base import Pcm16, Transcript, Word
from hushgate.server.decode import AudioTooLong, decode_file
from hushgate.server.hub import EngineHub, SttRoute
from hushgate.server.openai.errors import ApiError
from hushgate.server.openai.formats import Segment
from hushgate.server.runtime import EngineRunner, Overloaded
from hushgate.server.segmenter import (
    Segmenter,
    UtteranceAudio,
    UtteranceEnd,
    UtteranceStart,
)
from hushgate.server.settings import Settings


@dataclass(frozen=True, slots=True)
class Utterance:
    index: int
    t0_ms: int
    t1_ms: int
    pcm: Pcm16


@dataclass(frozen=True, slots=True)
class CutFile:
    duration_ms: int
    utterances: tuple[Utterance, ...]


class UtteranceCutter:
    """The session's segmenter, collecting each utterance's audio until it ends."""

    def __init__(self, settings: Settings, hub: EngineHub, rate_hz: int) -> None:
        self.rate_hz = rate_hz
        self.samples = 0
        self._segmenter = Segmenter(
            hub.vad.open(aggressiveness=settings.vad_aggressiveness), silence_ms=settings.silence_ms,
            max_utterance_ms=settings.max_utterance_ms, preroll_ms=settings.preroll_ms,
            hangover_ms=settings.hangover_ms,
        )
        self._pieces: list[Pcm16] = []

    def push(self, pcm: Pcm16) -> list[Utterance]:
        self.samples += len(pcm)
        return self._collect(self._segmenter.push(pcm))

    def flush(self) -> list[Utterance]:
        return self._collect(self._segmenter.flush())

    def _collect(self, found: list[Any]) -> list[Utterance]:
        done: list[Utterance] = []
        for segment in found:
            match segment:
                case UtteranceStart():
                    self._pieces = []
                case UtteranceAudio(pcm=piece):
                    self._pieces.append(piece)
                case UtteranceEnd(utterance=index, t0_ms=t0_ms, t1_ms=t1_ms):
                    if self._pieces:
                        done.append(Utterance(index, t0_ms, t1_ms, np.concatenate(self._pieces)))
                    self._pieces = []
        return done


def cut(settings: Settings, hub: EngineHub, data: bytes, rate_hz: int) -> CutFile:
    """Decode and cut a file into utterances; blocking."""
    pcm = decode_file(data, rate_hz=rate_hz, max_duration_s=settings.max_file_s)
    cutter = UtteranceCutter(settings, hub, rate_hz)
    block = rate_hz  # one second at a time, as a live client would send it
    utterances = [u for i in range(0, len(pcm), block) for u in cutter.push(pcm[i:i + block])]
    return CutFile(len(pcm) * 1000 // rate_hz, tuple(utterances + cutter.flush()))


async def cut_file(settings: Settings, hub: EngineHub, runner: EngineRunner, data: bytes, rate_hz: int) -> CutFile:
    try:
        return await runner.run(cut, settings, hub, data, rate_hz)
    except AudioTooLong as exc:
        raise ApiError(413, str(exc), param="file", code="audio_too_long") from None
    except MediaError as exc:
        raise ApiError(400, f"could not decode the audio file: {exc}", param="file",
                       code="invalid_audio") from None
    except Overloaded:
        raise ApiError(503, "the server is busy decoding other files; try again shortly",
                       code="overloaded") from None


def decode_utterance(route: SttRoute, language: str, words: bool, pcm: Pcm16) -> Transcript:
    stream = route.transcriber.open_stream(language=language, words=words)
    try:
        stream.accept(pcm)
        return stream.finish()
    finally:
        stream.close()


def on_file_clock(utt: Utterance, result: Transcript) -> Segment:
    """The utterance's text with its word times moved from the utterance's clock to the file's."""
    return Segment(utt.index, utt.t0_ms, utt.t1_ms, result.text.strip(), tuple(
        Word(w.w, min(utt.t1_ms, utt.t0_ms + w.t0_ms), min(utt.t1_ms, utt.t0_ms + w.t1_ms), w.conf)
        for w in result.words
    ))


async def segments(route: SttRoute, cut_file: CutFile, language: str, *, words: bool) -> AsyncIterator[Segment]:
    """The utterances' text in order, with up to the engine's concurrency decoding at once."""
    window = max(1, route.runner.concurrency)
    pending: deque[tuple[Utterance, asyncio.Future[Transcript]]] = deque()
    queue = iter(cut_file.utterances)
    try:
        while True:
            while len(pending) < window and (utt := next(queue, None)) is not None:
                pending.append((utt, asyncio.ensure_future(route.runner.run(decode_utterance, route, language, words, utt.pcm))))
            if not pending:
                return
            utt, future = pending.popleft()
            try:
                result = await future
            except Overloaded:
                raise ApiError(503, "speech-to-text is overloaded; try again shortly", code="overloaded") from None
            yield on_file_clock(utt, result)
    finally:
        for _, future in pending:
            future.cancel()
