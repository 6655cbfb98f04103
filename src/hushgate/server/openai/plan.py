"""Which engine decodes a file, in which language, and where its English comes from.

A request that names no language, on a server with a multilingual model, has
its language identified first: the file's opening speech (at least
``IDENTIFY_MS`` of it, when the file has that much) goes through the same
language-identifying stream a WebSocket session with ``language: "auto"``
opens, once. The identified language then picks the route as a named one
would, so English stays on the server's English model (tiny.en by default)
while German goes to Whisper base.

English out of ``/v1/audio/translations`` comes, in order of preference,
from the speech itself (English speech), from Whisper's own translate task
(a multilingual Whisper route), or from a text translator (Apertium, Argos).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hushgate.engines.base import Pcm16, SpeechOptions, SpeechTranscriber, TranscriberStream, Transcript
from hushgate.server.batcher import TranslationBatcher
from hushgate.server.hub import EngineHub, SttRoute
from hushgate.server.openai.errors import ApiError, bad_param
from hushgate.server.openai.params import AudioRequest
from hushgate.server.runtime import Overloaded

# 4 s of speech identified all 16 shared FLEURS files (engines/whisper_language.py); 20 s bounds the cost.
IDENTIFY_MS = 4_000
IDENTIFY_MAX_MS = 20_000


@dataclass(frozen=True, slots=True)
class FilePlan:
    route: SttRoute
    language: str
    speech_english: bool
    """English from Whisper's translate task on this route."""
    translator: TranslationBatcher | None
    """English from this text translator."""

    def open_stream(self, words: bool) -> TranscriberStream:
        transcriber = self.route.transcriber
        if self.speech_english and isinstance(transcriber, SpeechTranscriber):
            options = SpeechOptions(language=self.language, translate_to_english=True)
            return transcriber.open_speech_stream(options=options, words=False)
        return transcriber.open_stream(language=self.language, words=words)

    def text_of(self, result: Transcript) -> str:
        """What the request asked for: the transcript, or Whisper's English for it."""
        return result.translation if self.speech_english and result.translation is not None else result.text


def identify(route: SttRoute, opening: list[Pcm16]) -> str | None:
    """The language of the opening speech, by the identifying stream; blocking."""
    transcriber = route.transcriber
    if not isinstance(transcriber, SpeechTranscriber) or not opening:
        return None
    rate_hz = transcriber.sample_rate_hz
    pcm = np.concatenate(opening)[: IDENTIFY_MAX_MS * rate_hz // 1000]
    stream = transcriber.open_speech_stream(options=SpeechOptions(language=None), words=False)
    try:
        stream.accept(pcm)
        return stream.finish().language
    finally:
        stream.close()


def opening_speech(utterances: list[Pcm16], rate_hz: int) -> list[Pcm16]:
    """The first utterances, up to ``IDENTIFY_MS`` of speech in all."""
    taken: list[Pcm16] = []
    samples = 0
    for pcm in utterances:
        if samples >= IDENTIFY_MS * rate_hz // 1000:
            break
        taken.append(pcm)
        samples += len(pcm)
    return taken


async def plan_file(req: AudioRequest, hub: EngineHub, utterances: list[Pcm16], default_language: str) -> FilePlan:
    language = req.language
    if language is None:
        identifier = hub.identifier()
        found = None
        if identifier is not None:
            try:
                found = await identifier.runner.run(
                    identify, identifier, opening_speech(utterances, identifier.transcriber.sample_rate_hz)
                )
            except Overloaded:
                raise ApiError(503, "speech-to-text is overloaded; try again shortly", code="overloaded") from None
        language = found or default_language
    route = hub.stt(language)
    if route is None:
        raise bad_param("language", f"no speech-to-text engine for language {language!r}", code="unsupported_language")
    source = language.split("-")[0]
    if req.task == "transcribe" or source == "en":
        return FilePlan(route, language, False, None)
    if hub.speech_translation(route, source, "en"):
        return FilePlan(route, language, True, None)
    batcher = hub.translator(language, "en")
    if batcher is None:
        raise bad_param(
            "language", f"no translation from {language!r} into English is installed", code="unsupported_language"
        )
    return FilePlan(route, language, False, batcher)
