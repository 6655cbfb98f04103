"""The Wyoming protocol (Home Assistant's voice pipeline) in the gateway's process, on its engines.

``describe`` → ``info`` (the speech-to-text models with their languages, the
voices); ``transcribe`` + ``audio-start``/``audio-chunk``/``audio-stop`` →
``transcript-start``, one ``transcript-chunk`` per utterance, ``transcript``,
``transcript-stop``; ``synthesize`` (or ``synthesize-start``/``-chunk``/``-stop``,
spoken sentence by sentence as the text streams in) → ``audio-start``,
``audio-chunk``s as they are synthesized, ``audio-stop``.

Audio is cut by the session's segmenter as it arrives and each utterance is
decoded as soon as it ends, through the engine's runner like every other
request. Events are read with bounds the ``wyoming`` library's own reader does
not have (header line, data and payload sizes; see ``wyoming_events``), so a
client cannot make the server buffer more than one audio frame; ``info`` is
built in ``wyoming_info``. A connection counts as a session (``max_sessions``),
ends after ``idle_timeout_s`` of silence, and keeps its audio and text only in
memory.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Iterator
from urllib.parse import urlsplit

from wyoming.asr import (
    Transcribe,
    Transcript,
    TranscriptChunk,
    TranscriptStart,
    TranscriptStop,
)
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.error import Error
from wyoming.event import Event, async_write_event
from wyoming.info import Describe
from wyoming.ping import Ping, Pong
from wyoming.tts import (
    Synthesize,
    SynthesizeChunk,
    SynthesizeStart,
    SynthesizeStop,
    SynthesizeStopped,
)

from hushgate.engines.base import EngineError, Pcm16
from hushgate.engines.base import Transcript as EngineTranscript
from hushgate.server import admission
from hushgate.server.audio import AudioInput
from hushgate.server.auth import Principal
from hushgate.server.errors import GatewayError, to_wire
from hushgate.server.gateway import Gateway
from hushgate.server.hub import EngineHub, SttRoute
from hushgate.server.openai.transcribe import (
    Utterance,
    UtteranceCutter,
    decode_utterance,
)
from hushgate.server.settings import Settings
from hushgate.server.wyoming_events import HEADER_LIMIT_BYTES, ClientError, read_event
from hushgate.server.wyoming_info import describe
from hushgate.wire import ProtocolError

log = logging.getLogger("hushgate.wyoming")
SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


WyomingGateway = Gateway
WYOMING = Principal("wyoming")


class _Transcription:
    """One `transcribe` request: audio cut into utterances as it arrives, each decoded as soon as it ends."""

    def __init__(self, settings: Settings, hub: EngineHub, route: SttRoute, language: str, rate_hz: int) -> None:
        self.route = route
        self.language = language
        self.input = AudioInput(rate_hz, route.transcriber.sample_rate_hz)
        self.cutter = UtteranceCutter(settings, hub, route.transcriber.sample_rate_hz)
        self.decodes: list[asyncio.Future[EngineTranscript]] = []
        self.max_samples = int(settings.max_file_s * route.transcriber.sample_rate_hz)

    def push(self, payload: bytes) -> None:
        try:
            pcm = self.input.push(payload)
        except ProtocolError as exc:
            raise ClientError(exc.message, "bad-audio") from None
        self._start(self.cutter.push(pcm))
        if self.cutter.samples > self.max_samples:
            raise ClientError("the audio is longer than this server accepts", "too-long")

    def _start(self, utterances: list[Utterance]) -> None:
        for utt in utterances:
            # Urgent: each is part of the transcript a satellite waits for, like a live final.
            self.decodes.append(
                asyncio.ensure_future(
                    self.route.runner.run_urgent(decode_utterance, self.route, self.language, False, utt.pcm)
                )
            )

    async def finish(self) -> list[str]:
        tail = self.input.drain()
        if len(tail):
            self._start(self.cutter.push(tail))
        self._start(self.cutter.flush())
        results = await asyncio.gather(*self.decodes)
        return [r.text.strip() for r in results if r.text.strip()]

    def cancel(self) -> None:
        for future in self.decodes:
            future.cancel()


class WyomingConnection:
    def __init__(self, gateway: WyomingGateway, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._gateway = gateway
        self._settings = gateway.settings
        self._hub = gateway.hub
        self._reader = reader
        self._writer = writer
        self._language: str | None = None
        self._transcription: _Transcription | None = None
        self._streamed_text: list[str] | None = None  # set between synthesize-start and -stop
        self._streamed_voice: str | None = None
        self._audio_open = False

    def drain(self) -> None:
        self._reader.feed_eof()

    async def run(self) -> None:
        peer = self._writer.get_extra_info("peername")
        address = peer[0] if isinstance(peer, tuple) else None
        try:
            # Wyoming has no credentials: every connection is the `wyoming` principal, capped per address.
            async with admission.session(self._gateway, self, WYOMING, address, arriving=True):
                await self._serve()
        except GatewayError as exc:  # refused: the same refusal as /v1/stream's 1013, as a Wyoming error
            await self._send_error(exc)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            if self._transcription is not None:
                self._transcription.cancel()
            self._writer.close()

    async def _serve(self) -> None:
        while True:
            try:
                event = await asyncio.wait_for(
                    read_event(self._reader, self._settings.max_frame_bytes), self._settings.idle_timeout_s
                )
            except TimeoutError:
                return
            except ClientError as exc:
                await self._send(Error(text=str(exc), code=exc.code).event())
                return
            if event is None:
                return
            try:
                await self._handle(event)
            except ClientError as exc:
                await self._send(Error(text=str(exc), code=exc.code).event())
                if self._transcription is not None:
                    self._transcription.cancel()
                self._transcription = None
            except (ConnectionError, asyncio.IncompleteReadError):
                raise
            except Exception as exc:  # noqa: BLE001 - told to the client the way every endpoint tells it
                await self._send_error(to_wire(exc, f"{event.type} failed", session="wyoming"))

    async def _send_error(self, error: ProtocolError) -> None:
        await self._send(Error(text=error.message, code=error.code.value).event())

    async def _send(self, event: Event) -> None:
        await async_write_event(event, self._writer)

    async def _handle(self, event: Event) -> None:
        if Describe.is_type(event.type):
            await self._send(describe(self._hub).event())
        elif Ping.is_type(event.type):
            await self._send(Pong(text=Ping.from_event(event).text).event())
        elif Transcribe.is_type(event.type):
            self._language = Transcribe.from_event(event).language
        elif AudioStart.is_type(event.type):
            self._begin(AudioStart.from_event(event))
        elif AudioChunk.is_type(event.type):
            if self._transcription is not None:
                self._transcription.push(AudioChunk.from_event(event).audio)
        elif AudioStop.is_type(event.type):
            await self._transcribed()
        elif Synthesize.is_type(event.type):
            if self._streamed_text is None:  # a client that streams also sends this, for older servers
                request = Synthesize.from_event(event)
                voice = request.voice.name if request.voice else None
                language = request.voice.language if request.voice else None
                await self._speak([request.text], voice, language, stream_events=False)
        elif SynthesizeStart.is_type(event.type):
            start = SynthesizeStart.from_event(event)
            self._streamed_text = []
            self._streamed_voice = start.voice.name if start.voice else None
        elif SynthesizeChunk.is_type(event.type) and self._streamed_text is not None:
            self._streamed_text.append(SynthesizeChunk.from_event(event).text)
            await self._speak_complete_sentences()
        elif SynthesizeStop.is_type(event.type) and self._streamed_text is not None:
            rest = " ".join(self._streamed_text).strip()
            self._streamed_text = None
            if rest:
                await self._speak([rest], self._streamed_voice, None, stream_events=True)
            await self._close_audio()
            await self._send(SynthesizeStopped().event())
        # Other events (pipeline events meant for other programs) are not for this server.

    def _begin(self, start: AudioStart) -> None:
        if start.width != 2 or start.channels != 1:
            raise ClientError(
                f"only 16-bit mono audio is accepted, not {start.width * 8}-bit with {start.channels} channels",
                "unsupported-audio",
            )
        if not 8_000 <= start.rate <= 48_000:
            raise ClientError(f"sample rate must be 8000–48000 Hz, not {start.rate}", "unsupported-audio")
        language = self._language or self._settings.default_language
        route = self._hub.stt(language)
        if route is None:
            raise ClientError(f"no speech-to-text engine for language {language!r}", "unsupported-language")
        if self._transcription is not None:
            self._transcription.cancel()
        self._transcription = _Transcription(self._settings, self._hub, route, language, start.rate)

    async def _transcribed(self) -> None:
        transcription, self._transcription = self._transcription, None
        if transcription is None:
            return
        texts = await transcription.finish()
        await self._send(TranscriptStart(language=transcription.language).event())
        for i, text in enumerate(texts):
            await self._send(TranscriptChunk(text=text if i == 0 else " " + text).event())
        await self._send(Transcript(text=" ".join(texts), language=transcription.language).event())
        await self._send(TranscriptStop().event())
        self._language = None

    async def _speak_complete_sentences(self) -> None:
        text = " ".join(self._streamed_text or [])
        sentences = SENTENCE_END.split(text)
        if len(sentences) > 1:
            self._streamed_text = [sentences[-1]]
            await self._speak(sentences[:-1], self._streamed_voice, None, stream_events=True)

    async def _speak(self, texts: list[str], voice: str | None, language: str | None, *, stream_events: bool) -> None:
        route = self._hub.voice(voice, None if voice else language or self._settings.default_language)
        if route is None:
            raise ClientError(f"unknown voice {voice!r}", "unknown-voice")
        text = " ".join(t.strip() for t in texts if t.strip())
        if not text:
            return
        if len(text) > self._settings.max_text_chars:
            raise ClientError(f"text is longer than {self._settings.max_text_chars} characters", "too-long")
        try:
            chunks: Iterator[Pcm16] = await route.runner.run(route.synthesizer.synthesize, text, route.voice.id)
        except EngineError as exc:
            raise ClientError(f"synthesis refused: {exc}", "synthesis-failed") from None
        rate = route.voice.sample_rate_hz
        if not self._audio_open:
            await self._send(AudioStart(rate=rate, width=2, channels=1).event())
            self._audio_open = True
        while (chunk := await route.runner.run(next, chunks, None)) is not None:
            await self._send(AudioChunk(rate=rate, width=2, channels=1, audio=chunk.astype("<i2").tobytes()).event())
        if not stream_events:
            await self._close_audio()

    async def _close_audio(self) -> None:
        if self._audio_open:
            await self._send(AudioStop().event())
            self._audio_open = False


class WyomingServer:
    """Listens on ``tcp://HOST:PORT`` or ``unix://PATH``; started and stopped by the app's lifespan."""

    def __init__(self, gateway: WyomingGateway, uri: str) -> None:
        self._gateway = gateway
        self._uri = uri
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()

    @property
    def port(self) -> int | None:
        """The TCP port listened on (useful with port 0)."""
        if self._server is None or not self._server.sockets:
            return None
        address = self._server.sockets[0].getsockname()
        return int(address[1]) if isinstance(address, tuple) else None

    async def start(self) -> None:
        parts = urlsplit(self._uri)
        if parts.scheme == "tcp":
            self._server = await asyncio.start_server(
                self._accept, parts.hostname, parts.port, limit=HEADER_LIMIT_BYTES
            )
        elif parts.scheme == "unix":
            self._server = await asyncio.start_unix_server(self._accept, parts.path, limit=HEADER_LIMIT_BYTES)
        else:
            raise ValueError(f"wyoming_uri must be tcp://HOST:PORT or unix://PATH, not {self._uri!r}")
        log.info("wyoming: listening on %s", self._uri)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._connections.add(task)
        try:
            await WyomingConnection(self._gateway, reader, writer).run()
        finally:
            if task is not None:
                self._connections.discard(task)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
