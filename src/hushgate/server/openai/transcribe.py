"""A whole file through the streaming pieces: the session's segmenter, then the engine per utterance.

Decoding and segmenting run in one worker thread (webrtcvad costs microseconds
per frame, but an hour is 180 000 frames: too long for the event loop). The
utterances then go, in order, through ONE engine stream per request, as a live
session's finals do: each final is decoded with the end of the previous
utterance as left context (engines/whisper_context.py), which needs the
previous final's text, so a request decodes one utterance at a time. Several
requests (and live sessions) still share the engine's slots in parallel.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from hushgate.client.media import MediaError
from hushgate.engines.base import Pcm16, TranscriberStream, Transcript, Word
from hushgate.server.decode import AudioTooLong, decode_file
from hushgate.server.hub import EngineHub, SttRoute
from hushgate.server.openai.errors import ApiError
from hushgate.server.openai.formats import Segment
from hushgate.server.openai.plan import FilePlan
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
            hub.vad.open(aggressiveness=settings.vad_aggressiveness),
            silence_ms=settings.silence_ms,
            max_utterance_ms=settings.max_utterance_ms,
            preroll_ms=settings.preroll_ms,
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
    utterances = [u for i in range(0, len(pcm), block) for u in cutter.push(pcm[i : i + block])]
    return CutFile(len(pcm) * 1000 // rate_hz, tuple(utterances + cutter.flush()))


async def cut_file(settings: Settings, hub: EngineHub, runner: EngineRunner, data: bytes, rate_hz: int) -> CutFile:
    try:
        return await runner.run(cut, settings, hub, data, rate_hz)
    except AudioTooLong as exc:
        raise ApiError(413, str(exc), param="file", code="audio_too_long") from None
    except MediaError as exc:
        raise ApiError(400, f"could not decode the audio file: {exc}", param="file", code="invalid_audio") from None
    except Overloaded:
        raise ApiError(503, "the server is busy decoding other files; try again shortly", code="overloaded") from None


def decode_utterance(route: SttRoute, language: str, words: bool, pcm: Pcm16) -> Transcript:
    """One utterance alone on a fresh stream (no left context); the Wyoming server's decode."""
    stream = route.transcriber.open_stream(language=language, words=words)
    try:
        stream.accept(pcm)
        return stream.finish()
    finally:
        stream.close()


def decode_next(stream: TranscriberStream, pcm: Pcm16) -> Transcript:
    """One utterance's final on the request's stream; blocking."""
    stream.accept(pcm)
    return stream.finish()


def on_file_clock(utt: Utterance, result: Transcript) -> Segment:
    """The utterance's text with its word times moved from the utterance's clock to the file's."""
    return Segment(
        utt.index,
        utt.t0_ms,
        utt.t1_ms,
        result.text.strip(),
        tuple(
            Word(w.w, min(utt.t1_ms, utt.t0_ms + w.t0_ms), min(utt.t1_ms, utt.t0_ms + w.t1_ms), w.conf)
            for w in result.words
        ),
    )


async def segments(plan: FilePlan, cut_file: CutFile, *, words: bool) -> AsyncIterator[Segment]:
    """The utterances' text in order, decoded one after another on one stream."""
    runner = plan.route.runner
    stream = await runner.run(plan.open_stream, words)
    try:
        for utt in cut_file.utterances:
            try:
                result = await runner.run(decode_next, stream, utt.pcm)
            except Overloaded:
                raise ApiError(503, "speech-to-text is overloaded; try again shortly", code="overloaded") from None
            segment = on_file_clock(utt, result)
            yield Segment(segment.index, segment.t0_ms, segment.t1_ms, plan.text_of(result), segment.words)
    finally:
        stream.close()
