"""One client connection: a state machine over three cooperating tasks.

* the **reader** decodes frames, resamples and segments audio inline (DSP that
  costs microseconds), answers control messages, and feeds the backlog;
* the **worker** takes the backlog in order and moves engine calls to threads
  through the runtime, one call in flight per session;
* the **sender** writes the outbox to the socket.

Everything the session hears or says lives in these objects and dies with them.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import soxr

from hushgate.engines.base import EngineError, Pcm16, Transcript, TranscriberStream
from hushgate.server.audio import AudioInput
from hushgate.server.backlog import Backlog, EndOfStream
from hushgate.server.codec import Codec, Frame
from hushgate.server.drain import next_or_drain
from hushgate.server.hub import EngineHub, SttRoute
from hushgate.server.lane import Lane, LaneFull
from hushgate.server.outbox import Outbox
from hushgate.server.protocol import (
    Audio,
    ClientMessage,
    CloseCode,
    Ended,
    Enroll,
    Enrolled,
    EnrollProgress,
    ErrorCode,
    Final,
    Flush,
    Partial,
    Ping,
    Pong,
    ProtocolError,
    Ready,
    ServerEvent,
    Speak,
    Speaker,
    SpeakerEvent,
    SpeechStarted,
    Start,
    Stop,
    Translate,
    Translation,
    TtsAudio,
    TtsEnd,
    TtsStart,
    Verified,
    Verify,
    VoiceprintDelete,
    VoiceprintDeleted,
    VoiceprintExport,
    VoiceprintExported,
    VoiceprintImport,
    VoiceprintImported,
    WordTiming,
)
from hushgate.server.runtime import EngineRunner, Overloaded
from hushgate.server.sealing import SealedContent, SealError
from hushgate.server.segmenter import Segmenter, UtteranceAudio, UtteranceEnd, UtteranceStart
from hushgate.server.speakers import MIN_DECISION_MS, Identity, SpeakerBook, Voiceprint, phrase_matches
from hushgate.server.settings import Settings

log = logging.getLogger("hushgate.session")
SEND_TIMEOUT_S = 10.0
# Behind by more than this much audio, a session stops asking for partials.
PARTIALS_PAUSED_BACKLOG_MS = 2_000


class State(enum.Enum):
    AWAITING_START = "awaiting_start"
    STREAMING = "streaming"
    STOPPING = "stopping"
    CLOSED = "closed"


class Transport(Protocol):
    """What a session needs of a WebSocket."""

    async def receive(self) -> Frame | None:
        """The next frame, or None when the client has gone."""
        ...

    async def send(self, frame: Frame) -> None: ...

    async def close(self, code: int, reason: str) -> None: ...


class ClientGone(Exception):
    pass


@dataclass(frozen=True, slots=True)
class _TranslateJob:
    text: str
    source: str
    target: str
    utterance: int | None = None
    request_id: str | None = None
    provisional: bool = False


@dataclass(frozen=True, slots=True)
class _SpeakJob:
    id: str | int
    text: str
    voice: str | None
    language: str | None


TRANSLATION_LANE = 64
TTS_FRAME_MS = 500


@dataclass(slots=True)
class _Utterance:
    index: int
    t0_ms: int
    samples: int = 0
    samples_at_partial: int = 0
    failed: bool = False
    translated_partial_ms: int = -1_000_000
    audio: list[np.ndarray] | None = None  # kept only while a speaker decision needs it


class Session:
    def __init__(
        self,
        *,
        settings: Settings,
        hub: EngineHub,
        codec: Codec,
        transport: Transport,
        on_event: Callable[[str, Any], None] | None = None,
        max_session_s: float | None = None,
    ) -> None:
        self.id = str(uuid.uuid4())
        self.state = State.AWAITING_START
        self._settings = settings
        self._hub = hub
        self._codec = codec
        self._transport = transport
        self._on_event = on_event or (lambda _name, _value: None)
        self._outbox = Outbox(settings.outbox_events)
        self._backlog = Backlog(limit_samples=settings.backlog_ms * 16)  # resized for the engine in _begin
        self._start: Start | None = None
        self._route: SttRoute | None = None
        self._input: AudioInput | None = None
        self._segmenter: Segmenter | None = None
        self._stream: TranscriberStream | None = None
        self._in_flight: set[asyncio.Future[Any]] = set()
        self._translations: Lane[_TranslateJob] = Lane(TRANSLATION_LANE)
        self._speech: Lane[_SpeakJob] = Lane(settings.speak_queue)
        self._targets: tuple[str, ...] = ()
        self._language = settings.default_language
        self._utterances = 0
        self._started_at = time.monotonic()
        self._end_reason = "stop"
        self._close_code = CloseCode.NORMAL
        self._max_session_s = min(settings.max_session_s, max_session_s or settings.max_session_s)
        self._draining = asyncio.Event()
        self._ended_at: dict[int, float] = {}
        self._book = SpeakerBook()
        # Token bucket for control messages: refill rate and a burst of twice that.
        self._control_tokens = 2 * settings.control_rate_per_s
        self._control_refilled = time.monotonic()
        self._lagging = False

    # Lifecycle ---------------------------------------------------------------

    def _transition(self, to: State) -> None:
        allowed = {
            State.AWAITING_START: {State.STREAMING, State.CLOSED},
            State.STREAMING: {State.STOPPING, State.CLOSED},
            State.STOPPING: {State.CLOSED},
            State.CLOSED: set(),
        }
        if to not in allowed[self.state]:
            raise RuntimeError(f"session {self.id}: cannot go from {self.state.value} to {to.value}")
        self.state = to

    def drain(self) -> None:
        """The server is going away: finish what was heard, send `ended`, close 1001."""
        self._draining.set()

    async def run(self) -> None:
        close_code, close_reason = CloseCode.NORMAL, "stopped"
        tasks: list[asyncio.Task[None]] = []
        try:
            await self._await_start()
            tasks = [
                asyncio.create_task(self._read(), name=f"{self.id}-read"),
                asyncio.create_task(self._work(), name=f"{self.id}-work"),
                asyncio.create_task(self._translate(), name=f"{self.id}-translate"),
                asyncio.create_task(self._speak(), name=f"{self.id}-speak"),
                asyncio.create_task(self._send(), name=f"{self.id}-send"),
            ]
            await self._supervise(tasks)
            close_code = self._close_code
            close_reason = self._end_reason
        except ProtocolError as exc:
            close_code, close_reason = exc.close or CloseCode.INTERNAL, exc.message
            await self._send_fatal(exc, tasks)
        except ClientGone:
            close_code, close_reason = CloseCode.NORMAL, "client gone"
        except Exception:
            log.exception("session %s failed", self.id)
            close_code, close_reason = CloseCode.INTERNAL, "internal error"
            await self._send_fatal(
                ProtocolError(ErrorCode.INTERNAL, "internal error", close=CloseCode.INTERNAL), tasks
            )
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self._release()
            if self.state is not State.CLOSED:
                self._transition(State.CLOSED)
            # A client that stopped reading will not take a close frame either.
            close_timeout_s = 1.0 if close_code == CloseCode.TRY_AGAIN_LATER else SEND_TIMEOUT_S
            try:
                await asyncio.wait_for(self._transport.close(int(close_code), close_reason[:120]), close_timeout_s)
            except Exception:  # noqa: BLE001 - the socket may already be gone
                pass
            log.info(
                "session %s closed code=%d audio_ms=%d utterances=%d",
                self.id, int(close_code), self._input.audio_ms if self._input else 0, self._utterances,
            )

    async def _supervise(self, tasks: list[asyncio.Task[None]]) -> None:
        pending = set(tasks)
        while pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                exc = task.exception()
                if exc is not None:
                    raise exc

    async def _send_fatal(self, exc: ProtocolError, tasks: list[asyncio.Task[None]]) -> None:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._on_event("rejected", exc.code.value)
        if exc.code is ErrorCode.OVERLOADED and exc.close is CloseCode.TRY_AGAIN_LATER and tasks:
            return  # the client is not reading: another frame would only wait
        try:
            for frame in self._codec.encode(exc.event()):
                await asyncio.wait_for(self._transport.send(frame), SEND_TIMEOUT_S)
        except Exception:  # noqa: BLE001
            pass

    async def _release(self) -> None:
        # An engine call may still be running in its thread with our stream:
        # let it finish before the stream is closed under it.
        if self._in_flight:
            await asyncio.gather(*self._in_flight, return_exceptions=True)
        if self._stream is not None:
            self._stream.close()
            self._stream = None
        self._segmenter = None
        self._book.forget_all()

    # Start -------------------------------------------------------------------

    async def _await_start(self) -> None:
        try:
            frame = await asyncio.wait_for(self._receive(), self._settings.start_timeout_s)
        except TimeoutError:
            raise ProtocolError(ErrorCode.NOT_STARTED, "no `start` received in time", close=CloseCode.POLICY) from None
        message = self._codec.decode(frame, started=False)
        if not isinstance(message, Start):  # the codec guarantees this; keep the type checker honest
            raise ProtocolError(ErrorCode.NOT_STARTED, "the first message must be `start`", close=CloseCode.POLICY)
        self._begin(message)

    def _begin(self, start: Start) -> None:
        s = self._settings
        language = start.language or s.default_language
        route = self._hub.stt(language)
        if route is None:
            raise ProtocolError(
                ErrorCode.ENGINE_UNAVAILABLE,
                f"no speech-to-text engine for language {language!r}; available: {', '.join(self._hub.languages)}",
                close=CloseCode.UNSUPPORTED_DATA,
            )
        vad = self._hub.vad.open(aggressiveness=_pick(start.vad.aggressiveness, s.vad_aggressiveness))
        self._start = start
        self._route = route
        self._language = language
        engine_rate_hz = route.transcriber.sample_rate_hz
        self._input = AudioInput(start.audio.sample_rate_hz, engine_rate_hz, start.audio.encoding)
        self._backlog.limit_samples = s.backlog_ms * engine_rate_hz // 1000
        self._segmenter = Segmenter(
            vad,
            silence_ms=_pick(start.vad.silence_ms, s.silence_ms),
            max_utterance_ms=min(_pick(start.vad.max_utterance_ms, s.max_utterance_ms), s.max_utterance_ms),
            preroll_ms=s.preroll_ms,
            hangover_ms=s.hangover_ms,
        )
        self._stream = route.transcriber.open_stream(language=language, words=start.words)
        self._transition(State.STREAMING)
        self._on_event("session_started", None)
        self._outbox.put(
            Ready(
                session=self.id,
                audio={"encoding": start.audio.encoding, "sample_rate": start.audio.sample_rate_hz, "channels": 1},
                engines=self._engines_used(start, language),
                limits=self._limits(),
            )
        )
        targets = []
        for target in start.translate.targets:
            if self._hub.translator(language, target) is None:
                self._outbox.put(self._no_pair(language, target, None).event())
            else:
                targets.append(target)
        self._targets = tuple(targets)
        if start.speak.voice is not None and self._hub.voice(start.speak.voice, None) is None:
            self._outbox.put(self._no_voice(start.speak.voice, None).event())
        speakers = start.speakers
        if (speakers.identify or speakers.diarize or speakers.voiceprints) and self._hub.encoder is None:
            self._outbox.put(self._no_encoder(None).event())
        elif speakers.voiceprints:
            for sealed in speakers.voiceprints:
                try:
                    self._import(sealed, None)
                except ProtocolError as exc:
                    self._outbox.put(exc.event())

    def _engines_used(self, start: Start, language: str) -> dict[str, Any]:
        """Name and model of each engine this session will use, per capability."""
        route = self._route
        used: dict[str, Any] = {
            "stt": {"name": route.transcriber.name, "model": route.transcriber.model, "language": language}
            if route else None,
            "vad": {"name": self._hub.vad.name, "model": self._hub.vad.name},
        }
        translate = {}
        for target in start.translate.targets:
            batcher = self._hub.translator(language, target)
            if batcher is not None:
                translate[target] = {"name": batcher.translator.name, "model": f"{language}-{target}"}
        if translate:
            used["translate"] = translate
        voice = self._hub.voice(start.speak.voice, None if start.speak.voice else language)
        if voice is not None:
            used["tts"] = {"name": voice.synthesizer.name, "model": voice.voice.id}
        return used

    def _no_encoder(self, request_id: str | None) -> ProtocolError:
        reason = self._hub.unavailable.get(self._settings.speaker_encoder, "no speaker encoder is configured")
        return ProtocolError(
            ErrorCode.ENGINE_UNAVAILABLE, f"speaker recognition is not available: {reason}", request_id=request_id
        )

    def _voiceprint(self, voiceprint_id: str, request_id: str | None) -> Voiceprint:
        voiceprint = self._book.voiceprints.get(voiceprint_id)
        if voiceprint is None:
            raise ProtocolError(
                ErrorCode.UNKNOWN_VOICEPRINT, f"no voiceprint {voiceprint_id[:64]!r} in this session",
                request_id=request_id,
            )
        return voiceprint

    def _import(self, sealed: str, request_id: str | None) -> Voiceprint:
        encoder = self._hub.encoder
        if encoder is None:
            raise self._no_encoder(request_id)
        try:
            content = self._hub.sealer.open(sealed)
        except SealError as exc:
            raise ProtocolError(ErrorCode.UNKNOWN_VOICEPRINT, str(exc), request_id=request_id) from None
        if content.model != encoder.model or len(content.vector) != encoder.dimensions:
            raise ProtocolError(
                ErrorCode.UNKNOWN_VOICEPRINT,
                f"voiceprint was made by speaker model {content.model!r}, this server uses {encoder.model!r}",
                request_id=request_id,
            )
        voiceprint = Voiceprint(content.voiceprint_id, content.vector.copy(), content.count, content.speech_ms,
                                content.label, content.passphrase)
        try:
            self._book.add(voiceprint)
        except OverflowError as exc:
            raise ProtocolError(ErrorCode.OVERLOADED, str(exc), request_id=request_id) from None
        self._outbox.put(VoiceprintImported(voiceprint_id=voiceprint.id, label=voiceprint.label, id=request_id))
        return voiceprint

    def _no_pair(self, source: str, target: str, request_id: str | None) -> ProtocolError:
        pairs = ", ".join(f"{a}-{b}" for a, b in self._hub.pairs()) or "none"
        return ProtocolError(
            ErrorCode.ENGINE_UNAVAILABLE,
            f"no translation from {source!r} to {target!r}; installed pairs: {pairs}",
            request_id=request_id,
        )

    def _no_voice(self, voice: str | None, request_id: str | None, language: str | None = None) -> ProtocolError:
        voices = ", ".join(v.id for v in self._hub.voices()) or "none"
        what = f"voice {voice!r}" if voice else f"voice for language {language!r}"
        return ProtocolError(
            ErrorCode.ENGINE_UNAVAILABLE, f"no {what}; installed voices: {voices}", request_id=request_id
        )

    def _limits(self) -> dict[str, Any]:
        s = self._settings
        return {
            "max_frame_bytes": s.max_frame_bytes,
            "max_session_s": self._max_session_s,  # a token may cap it below the server's
            "idle_timeout_s": s.idle_timeout_s,
            "max_utterance_ms": s.max_utterance_ms,
            "backlog_ms": s.backlog_ms,
            "outbox_events": s.outbox_events,
            "enroll_needed_ms": s.enroll_needed_ms,
            "control_rate_per_s": s.control_rate_per_s,
            "max_text_chars": s.max_text_chars,
            "speak_queue": s.speak_queue,
            "voiceprint_exports_survive_restart": self._hub.sealer.persistent,
        }

    # Reader ------------------------------------------------------------------

    async def _receive(self) -> Frame:
        frame = await self._transport.receive()
        if frame is None:
            raise ClientGone()
        size = len(frame) if isinstance(frame, bytes) else len(frame.encode("utf-8", "surrogatepass"))
        self._on_event("bytes_in", size)
        if size > self._settings.max_frame_bytes:
            raise ProtocolError(
                ErrorCode.TOO_LARGE,
                f"frame of {size} bytes exceeds the limit of {self._settings.max_frame_bytes}",
                close=CloseCode.TOO_BIG,
            )
        return frame

    async def _next_frame(self, timeout_s: float) -> Frame | None:
        """The next frame; None when the server is draining. Raises TimeoutError."""
        return await next_or_drain(self._receive, self._draining, timeout_s)

    async def _read(self) -> None:
        s = self._settings
        while True:
            remaining_s = self._max_session_s - (time.monotonic() - self._started_at)
            if remaining_s <= 0:
                self._end_reason = "max_duration"
                await self._stop()
                return
            try:
                frame = await self._next_frame(min(s.idle_timeout_s, remaining_s))
            except TimeoutError:
                self._end_reason = "idle" if remaining_s > s.idle_timeout_s else "max_duration"
                await self._stop()
                return
            if frame is None:
                self._end_reason, self._close_code = "shutdown", CloseCode.GOING_AWAY
                await self._stop()
                return
            try:
                message = self._codec.decode(frame, started=True)
                if not isinstance(message, Audio):
                    self._spend_control_token(message)
                if await self._handle(message):
                    return
            except ProtocolError as exc:
                if exc.fatal:
                    raise
                self._outbox.put(exc.event())

    def _spend_control_token(self, message: ClientMessage) -> None:
        if isinstance(message, Stop):
            return  # always honoured: refusing it would keep the session open
        rate = self._settings.control_rate_per_s
        now = time.monotonic()
        self._control_tokens = min(2 * rate, self._control_tokens + (now - self._control_refilled) * rate)
        self._control_refilled = now
        if self._control_tokens < 1:
            self._on_event("rejected", "control_rate")
            raise ProtocolError(
                ErrorCode.OVERLOADED, f"more than {rate:g} control messages per second",
                request_id=getattr(message, "id", None),
            )
        self._control_tokens -= 1

    async def _handle(self, message: ClientMessage) -> bool:
        """Act on one message; True when the client asked to stop."""
        match message:
            case Audio(pcm=pcm):
                await self._audio(pcm)
            case Flush():
                await self._segments(self._audio_path()[1].flush())
            case Stop():
                await self._stop()
                return True
            case Ping():
                self._outbox.put(Pong())
            case Start():
                raise ProtocolError(ErrorCode.BAD_MESSAGE, "`start` was already accepted for this session")
            case Speak():
                self._request_speech(message)
            case Translate():
                self._request_translation(message)
            case Enroll():
                self._enroll(message)
            case Verify(voiceprint_id=vid, id=rid):
                if self._hub.encoder is None:
                    raise self._no_encoder(rid)
                self._voiceprint(vid, rid)
                self._book.verifications.append((rid, vid, self._audio_path()[1].next_utterance))
            case VoiceprintExport(voiceprint_id=vid, id=rid):
                voiceprint = self._voiceprint(vid, rid)
                encoder = self._hub.encoder
                sealed = self._hub.sealer.seal(SealedContent(
                    voiceprint.id, voiceprint.vector, voiceprint.count, voiceprint.speech_ms, voiceprint.label,
                    voiceprint.passphrase, encoder.model if encoder else "",
                ))
                self._outbox.put(VoiceprintExported(voiceprint_id=vid, voiceprint=sealed, id=rid))
            case VoiceprintImport(voiceprint=sealed, id=rid):
                self._import(sealed, rid)
            case VoiceprintDelete(voiceprint_id=vid, id=rid):
                if not self._book.delete(vid):
                    raise self._unknown(vid, rid)
                self._outbox.put(VoiceprintDeleted(voiceprint_id=vid, id=rid))
        return False

    def _unknown(self, voiceprint_id: str, request_id: str | None) -> ProtocolError:
        return ProtocolError(ErrorCode.UNKNOWN_VOICEPRINT, f"no voiceprint {voiceprint_id[:64]!r} in this session",
                             request_id=request_id)

    def _enroll(self, message: Enroll) -> None:
        # Consent comes first: without it nothing else about the request matters.
        if not message.consent:
            raise ProtocolError(ErrorCode.CONSENT_REQUIRED, "enrollment needs `consent: true` from the speaker",
                                request_id=message.id)
        if self._hub.encoder is None:
            raise self._no_encoder(message.id)
        if self._book.enrollment is not None:
            raise ProtocolError(ErrorCode.BAD_MESSAGE, "an enrollment is already running in this session",
                                request_id=message.id)
        if message.passphrase is not None and not message.passphrase.strip():
            raise ProtocolError(ErrorCode.BAD_MESSAGE, "`passphrase` is empty", request_id=message.id)
        needed_ms = message.needed_ms or self._settings.enroll_needed_ms
        # Only utterances that begin after the request count: the speaker of
        # one already under way may be someone else.
        self._book.begin_enrollment(message.id, message.label, message.passphrase, needed_ms,
                                    self._audio_path()[1].next_utterance)
        enrollment = self._book.enrollment
        self._outbox.put(EnrollProgress(id=message.id, speech_ms=0,
                                        needed_ms=enrollment.needed_ms if enrollment else needed_ms))

    def _checked_text(self, text: str, request_id: str | None) -> str:
        if not text.strip():
            raise ProtocolError(ErrorCode.BAD_MESSAGE, "`text` is empty", request_id=request_id)
        if len(text) > self._settings.max_text_chars:
            raise ProtocolError(
                ErrorCode.TOO_LARGE,
                f"`text` has {len(text)} characters; the limit is {self._settings.max_text_chars}",
                request_id=request_id,
            )
        return text

    def _request_translation(self, message: Translate) -> None:
        text = self._checked_text(message.text, message.id)
        source = message.source or self._language
        if self._hub.translator(source, message.target) is None:
            raise self._no_pair(source, message.target, message.id)
        try:
            self._translations.put(_TranslateJob(text, source, message.target, request_id=message.id))
        except LaneFull:
            raise ProtocolError(ErrorCode.OVERLOADED, "too many translations waiting", request_id=message.id) from None

    def _request_speech(self, message: Speak) -> None:
        text = self._checked_text(message.text, message.id)
        voice = message.voice or (self._start.speak.voice if self._start else None)
        language = message.language or (None if voice else self._language)
        if self._hub.voice(voice, language) is None:
            raise self._no_voice(voice, message.id, language)
        try:
            self._speech.put(_SpeakJob(message.id or str(uuid.uuid4()), text, voice, language))
        except LaneFull:
            raise ProtocolError(
                ErrorCode.OVERLOADED, f"{self._settings.speak_queue} syntheses already waiting", request_id=message.id
            ) from None

    def _audio_path(self) -> tuple[AudioInput, Segmenter]:
        if self._segmenter is None or self._input is None:
            raise RuntimeError(f"session {self.id} is {self.state.value}, not streaming")
        return self._input, self._segmenter

    async def _audio(self, pcm: bytes) -> None:
        audio_in, segmenter = self._audio_path()
        samples = audio_in.push(pcm)
        self._on_event("audio_ms", len(samples) * 1000 // audio_in.target_rate_hz)
        if len(samples):
            await self._segments(segmenter.push(samples))

    async def _segments(self, segments: list[Any]) -> None:
        for segment in segments:
            if isinstance(segment, UtteranceStart):
                self._outbox.put(SpeechStarted(utterance=segment.utterance, t_ms=segment.onset_ms))
            elif isinstance(segment, UtteranceEnd):
                self._ended_at[segment.utterance] = time.monotonic()
            await self._backlog.put(segment)

    async def _stop(self) -> None:
        self._transition(State.STOPPING)
        audio_in, segmenter = self._audio_path()
        tail = audio_in.drain()
        if len(tail):
            await self._segments(segmenter.push(tail))
        await self._segments(segmenter.flush())
        await self._backlog.put(EndOfStream())

    # Worker ------------------------------------------------------------------

    async def _work(self) -> None:
        current: _Utterance | None = None
        while True:
            item = await self._backlog.get()
            match item:
                case UtteranceStart(utterance=index, t0_ms=t0_ms):
                    current = _Utterance(index, t0_ms, audio=[] if self._needs_voice() else None)
                case UtteranceAudio(pcm=pcm):
                    self._check_lag()  # against the oldest chunk, before more are taken
                    chunks = [pcm]
                    # Take all audio already waiting in one thread hop.
                    while isinstance(self._backlog.peek(), UtteranceAudio):
                        nxt = self._backlog.get_nowait()
                        if isinstance(nxt, UtteranceAudio):
                            chunks.append(nxt.pcm)
                    if current is not None:
                        # With the end already queued, a partial would only delay the final.
                        ending = isinstance(self._backlog.peek(), UtteranceEnd)
                        await self._transcribe(current, np.concatenate(chunks), partial_allowed=not ending)
                case UtteranceEnd():
                    if current is not None:
                        await self._finish(current, item)
                    current = None
                case EndOfStream():
                    # Translations, then speech, then `ended`: each helper
                    # task closes the next one once it has drained.
                    self._translations.close()
                    return

    def _check_lag(self) -> None:
        """Tell the client once per episode when its audio waits too long for the engine."""
        lag_ms = int((time.monotonic() - self._backlog.last_arrival) * 1000)
        limit_ms = self._settings.lag_warning_ms
        if lag_ms > limit_ms and not self._lagging:
            self._lagging = True
            self._on_event("rejected", "lagging")
            self._outbox.put(ProtocolError(
                ErrorCode.OVERLOADED, f"speech-to-text is {lag_ms / 1000:.1f} s behind the audio; results will be late"
            ).event())
        elif lag_ms < limit_ms // 2:
            self._lagging = False

    async def _engine(self, fn: Callable[..., Any], *args: Any) -> Any:
        if self._route is None:
            raise RuntimeError("session has no engine")
        return await self._call(self._route.runner, fn, *args)

    async def _call(self, runner: EngineRunner, fn: Callable[..., Any], *args: Any, urgent: bool = False) -> Any:
        future = asyncio.ensure_future((runner.run_urgent if urgent else runner.run)(fn, *args))
        self._in_flight.add(future)
        future.add_done_callback(self._in_flight.discard)
        # Shielded: if this session is cancelled, the call still owns session
        # state (a stream, a generator) until its thread returns, and
        # ``_release`` waits for exactly that.
        return await asyncio.shield(future)

    def _want_partial(self, utt: _Utterance) -> bool:
        if self._start is None or not self._start.partials or self._route is None:
            return False
        rate_hz = self._route.transcriber.sample_rate_hz
        if self._backlog.samples > PARTIALS_PAUSED_BACKLOG_MS * rate_hz // 1000:
            return False  # behind real time: catch up first; the final matters more
        interval_ms = self._settings.partial_interval_ms or self._route.transcriber.partial_interval_ms
        # Under contention, partials come less often; finals never wait for them.
        interval_ms *= 1 + self._route.runner.waiting
        new_ms = (utt.samples - utt.samples_at_partial) * 1000 // self._route.transcriber.sample_rate_hz
        return new_ms >= interval_ms

    async def _transcribe(self, utt: _Utterance, pcm: np.ndarray, *, partial_allowed: bool = True) -> None:
        stream = self._stream
        if utt.failed or stream is None:
            return
        utt.samples += len(pcm)
        if utt.audio is not None:
            utt.audio.append(pcm)
        if self._route is not None:
            self._on_event("stt_audio_ms", (self._route.runner.name, len(pcm) * 1000 // self._route.transcriber.sample_rate_hz))
        want_partial = partial_allowed and self._want_partial(utt)
        if want_partial:
            utt.samples_at_partial = utt.samples

        def step() -> Transcript | None:
            stream.accept(pcm)
            return stream.partial() if want_partial else None

        try:
            partial = await self._engine(step)
        except Overloaded as exc:
            utt.failed = True
            self._outbox.put(ProtocolError(
                ErrorCode.OVERLOADED, f"utterance {utt.index} dropped: {exc}", utterance=utt.index).event())
            return
        except Exception:
            log.exception("session %s: speech-to-text failed", self.id)
            utt.failed = True
            self._outbox.put(ProtocolError(
                ErrorCode.INTERNAL, f"utterance {utt.index} could not be transcribed", utterance=utt.index).event())
            return
        if partial is not None and partial.text:
            rate = self._route.transcriber.sample_rate_hz if self._route else 16_000
            t1_ms = utt.t0_ms + utt.samples * 1000 // rate
            self._outbox.put(Partial(utterance=utt.index, text=partial.text, t0_ms=utt.t0_ms, t1_ms=t1_ms))
            start = self._start
            if (start is not None and start.translate.partials and self._targets
                    and t1_ms - utt.translated_partial_ms >= self._settings.translate_partials_ms):
                utt.translated_partial_ms = t1_ms
                for target in self._targets:
                    self._queue_translation(_TranslateJob(
                        partial.text, self._language, target, utterance=utt.index, provisional=True))

    def _needs_voice(self) -> bool:
        start = self._start
        return self._hub.encoder is not None and (
            (start is not None and (start.speakers.identify or start.speakers.diarize))
            or self._book.enrollment is not None
            or bool(self._book.verifications)
        )

    def _embed(self, utt: _Utterance) -> asyncio.Future[Any] | None:
        encoder, runner = self._hub.encoder, self._hub.encoder_runner
        audio, utt.audio = utt.audio, None
        if encoder is None or runner is None or not audio or utt.failed:
            return None
        pcm = np.concatenate(audio)
        if len(pcm) * 1000 // encoder.sample_rate_hz < MIN_DECISION_MS:
            return None
        return asyncio.ensure_future(self._call(runner, encoder.embed, pcm))

    async def _finish(self, utt: _Utterance, end: UtteranceEnd) -> None:
        ended_at = self._ended_at.pop(utt.index, None)
        # Scoring runs beside the final decode so it never delays the text.
        embedding = self._embed(utt)
        stream = self._stream
        if stream is None:
            return
        try:
            # Urgent: a person is waiting for this text; other sessions' partials can wait.
            result: Transcript = await self._call(self._route.runner, stream.finish, urgent=True) \
                if self._route else Transcript("")
        except Exception as exc:  # noqa: BLE001 - reported to the client, logged here
            if not isinstance(exc, Overloaded):
                log.exception("session %s: final decode failed", self.id)
            if not utt.failed:  # one error per utterance
                self._outbox.put(ProtocolError(
                    ErrorCode.OVERLOADED if isinstance(exc, Overloaded) else ErrorCode.INTERNAL,
                    f"utterance {utt.index} could not be transcribed", utterance=utt.index,
                ).event())
            await self._reopen_stream()
            return
        if utt.failed:
            return  # already reported; the finish above only reset the stream
        self._utterances += 1
        start = self._start
        words = None
        if start is not None and start.words:
            words = tuple(
                WordTiming(
                    w=w.w,
                    t0_ms=min(end.t1_ms, end.t0_ms + w.t0_ms),
                    t1_ms=min(end.t1_ms, end.t0_ms + w.t1_ms),
                    conf=w.conf,
                )
                for w in result.words
            )
        if self._settings.log_content:
            log.info("session %s utterance %d: %s", self.id, utt.index, result.text)
        self._on_event("final", time.monotonic() - ended_at if ended_at is not None else 0.0)
        identifying = start is not None and (start.speakers.identify or start.speakers.diarize) \
            and self._hub.encoder is not None
        speech_ms = end.t1_ms - end.t0_ms
        speaker, undecided = None, None
        if identifying and embedding is None:
            undecided = "too_short"
        elif identifying and embedding is not None and embedding.done():
            if embedding.exception() is None:
                speaker, undecided = self._identity(embedding.result(), speech_ms)
            else:
                undecided = "failed"
        self._outbox.put(Final(
            utterance=utt.index, text=result.text, t0_ms=end.t0_ms, t1_ms=end.t1_ms, words=words,
            speaker=speaker, undecided=undecided,
        ))
        if embedding is not None:
            await self._after_final(utt, end, result.text, embedding, follow_up=identifying and speaker is None
                                    and undecided is None)
        if result.text:
            for target in self._targets:
                self._queue_translation(_TranslateJob(result.text, self._language, target, utterance=utt.index))

    def _identity(self, vector: Any, speech_ms: int) -> tuple[Speaker | None, str | None]:
        start = self._start
        identity: Identity | None = self._book.identify(
            vector, speech_ms, diarize=bool(start and start.speakers.diarize))
        if identity is None:
            return None, "no_match"
        return Speaker(voiceprint_id=identity.voiceprint_id, label=identity.label, score=identity.score), None

    async def _after_final(self, utt: _Utterance, end: UtteranceEnd, text: str, embedding: asyncio.Future[Any],
                           *, follow_up: bool) -> None:
        try:
            vector = await embedding
        except Exception:
            log.exception("session %s: speaker embedding failed", self.id)
            if follow_up:
                self._outbox.put(SpeakerEvent(utterance=utt.index, speaker=None, undecided="failed"))
            return
        speech_ms = end.t1_ms - end.t0_ms
        if follow_up:
            speaker, undecided = self._identity(vector, speech_ms)
            self._outbox.put(SpeakerEvent(utterance=utt.index, speaker=speaker, undecided=undecided))
        enrollment = self._book.enrollment
        if enrollment is not None and utt.index >= enrollment.first_utterance:
            try:
                matched, voiceprint = self._book.add_enrollment_speech(vector, speech_ms, text)
            except OverflowError as exc:
                self._book.enrollment = None
                self._outbox.put(ProtocolError(ErrorCode.OVERLOADED, f"enrollment stopped: {exc}",
                                               request_id=enrollment.request_id).event())
                return
            self._outbox.put(EnrollProgress(
                id=enrollment.request_id, speech_ms=enrollment.speech_ms, needed_ms=enrollment.needed_ms,
                passphrase_match=matched,
            ))
            if voiceprint is not None:
                self._outbox.put(Enrolled(id=enrollment.request_id, voiceprint_id=voiceprint.id,
                                          label=voiceprint.label, speech_ms=voiceprint.speech_ms))
        answering = [v for v in self._book.verifications if utt.index >= v[2]]
        self._book.verifications = [v for v in self._book.verifications if utt.index < v[2]]
        for request_id, voiceprint_id, _ in answering:
            voiceprint = self._book.voiceprints.get(voiceprint_id)
            if voiceprint is None:
                continue  # deleted while waiting
            score = self._book.score(voiceprint, vector, speech_ms)
            phrase = None
            if voiceprint.passphrase is not None:
                phrase = phrase_matches(text, voiceprint.passphrase)
            accept = score >= 0.5 and phrase is not False
            self._outbox.put(Verified(
                id=request_id, voiceprint_id=voiceprint_id, decision="accept" if accept else "reject",
                score=score, passphrase_match=phrase, speech_ms=speech_ms,
            ))

    def _queue_translation(self, job: _TranslateJob) -> None:
        def stale(queued: _TranslateJob) -> bool:
            # A newer guess (or the final) makes a queued provisional translation pointless.
            return (queued.provisional and queued.utterance == job.utterance and queued.target == job.target)

        try:
            self._translations.put(job, supersedes=stale)
        except LaneFull:
            if not job.provisional:
                self._outbox.put(ProtocolError(
                    ErrorCode.OVERLOADED, f"translation of utterance {job.utterance} dropped: too many waiting",
                    utterance=job.utterance,
                ).event())

    # Translation and speech ------------------------------------------------------

    async def _translate(self) -> None:
        while (job := await self._translations.get()) is not None:
            batcher = self._hub.translator(job.source, job.target)
            if batcher is None:
                self._outbox.put(self._no_pair(job.source, job.target, job.request_id).event())
                continue
            try:
                text = await batcher.translate(job.text, job.source, job.target)
            except (EngineError, Overloaded) as exc:
                code = ErrorCode.OVERLOADED if isinstance(exc, Overloaded) else ErrorCode.INTERNAL
                self._outbox.put(ProtocolError(code, f"translation failed: {exc}", request_id=job.request_id).event())
                continue
            except Exception:
                log.exception("session %s: translation failed", self.id)
                self._outbox.put(ProtocolError(ErrorCode.INTERNAL, "translation failed",
                                               request_id=job.request_id).event())
                continue
            self._outbox.put(Translation(
                source=job.source, target=job.target, text=text, utterance=job.utterance, id=job.request_id,
                provisional=True if job.provisional else None,
            ))
            start = self._start
            if (start is not None and start.speak.translations and job.utterance is not None
                    and not job.provisional and text.strip()):
                await self._speech.put_when_room(_SpeakJob(job.utterance, text, start.speak.voice, job.target))
        self._speech.close()

    async def _speak(self) -> None:
        while (job := await self._speech.get()) is not None:
            await self._synthesize(job)
        audio_ms = self._input.audio_ms if self._input else 0
        self._outbox.put(Ended(reason=self._end_reason, stats={"audio_ms": audio_ms, "utterances": self._utterances}))
        self._outbox.close()

    async def _synthesize(self, job: _SpeakJob) -> None:
        request_id = job.id if isinstance(job.id, str) else None
        route = self._hub.voice(job.voice, job.language)
        if route is None:
            self._outbox.put(self._no_voice(job.voice, request_id, job.language).event())
            return
        voice_rate = route.voice.sample_rate_hz
        start = self._start
        out_rate = (start.speak.sample_rate_hz if start else None) or voice_rate
        resampler = (None if out_rate == voice_rate
                     else soxr.ResampleStream(voice_rate, out_rate, 1, dtype="int16", quality="HQ"))
        self._outbox.put(TtsStart(id=job.id, sample_rate=out_rate, voice=route.voice.id))
        chunks = route.synthesizer.synthesize(job.text, route.voice.id)
        samples = 0
        frame = out_rate * TTS_FRAME_MS // 1000
        first = True
        try:
            while True:
                # The first chunk is urgent: a listener is waiting in silence, while
                # other sessions' later chunks have audio queued ahead of them.
                chunk: Pcm16 | None = await self._call(route.runner, next, chunks, None, urgent=first)
                first = False
                last = chunk is None
                pcm = np.zeros(0, np.int16) if chunk is None else chunk
                if resampler is not None:
                    pcm = resampler.resample_chunk(pcm, last=last)
                for i in range(0, len(pcm), frame):
                    # Bulk audio waits for room rather than overflowing the outbox.
                    await self._outbox.below(self._outbox.limit // 2)
                    self._outbox.put(TtsAudio(id=job.id, pcm=pcm[i : i + frame].astype("<i2").tobytes()))
                samples += len(pcm)
                if last:
                    break
        except EngineError as exc:
            self._outbox.put(ProtocolError(ErrorCode.INTERNAL, f"synthesis failed: {exc}",
                                           request_id=request_id).event())
        except Exception:
            log.exception("session %s: synthesis failed", self.id)
            self._outbox.put(ProtocolError(ErrorCode.INTERNAL, "synthesis failed", request_id=request_id).event())
        finally:
            chunks_close = getattr(chunks, "close", None)
            if chunks_close is not None:
                chunks_close()
        self._outbox.put(TtsEnd(id=job.id, duration_ms=samples * 1000 // out_rate))

    async def _reopen_stream(self) -> None:
        if self._route is None or self._start is None:
            return
        old, self._stream = self._stream, None
        if old is not None:
            old.close()
        self._stream = self._route.transcriber.open_stream(
            language=self._start.language or self._settings.default_language, words=self._start.words
        )

    # Sender ------------------------------------------------------------------

    async def _send(self) -> None:
        while True:
            event = await self._outbox.get()
            if event is None:
                return
            await self._emit(event)

    async def _emit(self, event: ServerEvent) -> None:
        for frame in self._codec.encode(event):
            await self._transport.send(frame)
            self._on_event("bytes_out", len(frame))
        self._on_event("sent", event.type)


def _pick(value: int | None, default: int) -> int:
    return default if value is None else value


SessionFactory = Callable[[Transport], Awaitable[None]]
