"""alphacep vosk-server's WebSocket protocol, served by the gateway's own engines.

Why this exists: plenty of clients were written for vosk-server (its example
scripts, telephony and home-automation plugins, browser demos). Speaking its
protocol lets them point at the gateway unchanged and get the gateway's
engines (Whisper, Vosk, ...), its VAD, its authentication and its limits,
instead of running a second, unauthenticated speech server beside it.

The protocol, as vosk-server publishes it:

* optionally, first, a text frame ``{"config": {"sample_rate": 16000,
  "words": true, "max_alternatives": 0, "phrase_list": [...]}}``; no reply;
* binary frames of 16-bit little-endian mono PCM; after **each** one the
  server sends exactly one text frame: ``{"partial": "..."}`` while an
  utterance goes on, or ``{"result": [{"conf", "end", "start", "word"}...],
  "text": "..."}`` when one ended (``result`` only with ``words``; times in
  seconds on the connection's audio clock);
* the text frame ``{"eof" : 1}``: the server answers with the final ``text``
  of what remains and closes normally (1000).

Where this endpoint differs, on purpose:

* utterances are cut by the gateway's VAD segmenter, not Kaldi's endpointer;
  two utterances ending inside one large frame are answered as one ``text``
  (their texts joined) so that the one-reply-per-frame rule still holds;
* ``phrase_list`` is accepted and ignored (no engine here takes a grammar);
  ``max_alternatives`` above 0 is refused (1003): vosk-server then answers in
  a different shape (``alternatives``) that this endpoint does not produce;
* a ``config`` that changes anything after audio has started is refused (1003)
  rather than silently ignored, as vosk-server does, since a new sample rate
  would otherwise turn into garbage;
* text frames are parsed as JSON, so ``{"eof": 1}`` works without the space;
  ``{"reset": 1}`` (newer vosk-server) returns the final and goes on;
* bad JSON or odd-length PCM closes with 1007, an unsupported config with
  1003, and server limits (sessions, idle time, session length, frame size)
  are the gateway's, with the same close codes as ``/v1/stream``.

Whisper cannot afford a decode per frame, so a partial is only computed when
the engine's ``partial_interval_ms`` of new audio has arrived; other frames are
answered at once with the last partial text, without any engine call.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from starlette.responses import JSONResponse, Response
from starlette.websockets import WebSocket, WebSocketDisconnect

from hushgate.engines.base import EngineError, Pcm16, Transcript, TranscriberStream, Word
from hushgate.server.audio import AudioInput
from hushgate.server.auth import Decision
from hushgate.server.drain import next_or_drain
from hushgate.server.hub import EngineHub, SttRoute
from hushgate.wire import MAX_SAMPLE_RATE_HZ, MIN_SAMPLE_RATE_HZ, CloseCode, ErrorCode, ProtocolError
from hushgate.server.runtime import Overloaded
from hushgate.server.segmenter import Segment, Segmenter, UtteranceAudio, UtteranceEnd, UtteranceStart
from hushgate.server.settings import Settings

if TYPE_CHECKING:  # app.py imports this module to mount the route: no runtime import back
    from hushgate.server.app import Gateway

log = logging.getLogger("hushgate.vosk")
DEFAULT_SAMPLE_RATE_HZ = 16_000
SEND_TIMEOUT_S = 10.0
CLOSE_TIMEOUT_S = 5.0
Reply = dict[str, Any]
Step = tuple[Literal["accept", "partial", "finish"], Pcm16 | None]


class _ClientGone(Exception):
    pass


@dataclass(frozen=True, slots=True)
class VoskConfig:
    """What a client may set with ``{"config": ...}``; defaults are vosk-server's."""

    sample_rate_hz: int = DEFAULT_SAMPLE_RATE_HZ
    words: bool = True  # vosk-server's VOSK_SHOW_WORDS defaults to on
    phrase_list: tuple[str, ...] | None = None


def _unsupported(message: str) -> ProtocolError:
    return ProtocolError(ErrorCode.BAD_MESSAGE, message, close=CloseCode.UNSUPPORTED_DATA)


def apply_config(raw: object, current: VoskConfig) -> VoskConfig:
    """``current`` updated by a client's ``config`` object; keys it leaves out keep their value."""
    if not isinstance(raw, dict):
        raise _unsupported("`config` must be an object")
    config = current
    if "sample_rate" in raw:
        rate = raw["sample_rate"]
        # vosk-server does float(sample_rate): 16000.0 is fine, 44100.5 or "16k" is not.
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not math.isfinite(rate) \
                or rate != int(rate) or not MIN_SAMPLE_RATE_HZ <= rate <= MAX_SAMPLE_RATE_HZ:
            raise _unsupported(f"sample_rate must be a whole number {MIN_SAMPLE_RATE_HZ}-{MAX_SAMPLE_RATE_HZ}")
        config = replace(config, sample_rate_hz=int(rate))
    if "words" in raw:
        words = raw["words"]
        if not isinstance(words, (bool, int)):
            raise _unsupported("words must be true or false")
        config = replace(config, words=bool(words))
    if "max_alternatives" in raw:
        alternatives = raw["max_alternatives"]
        if isinstance(alternatives, bool) or not isinstance(alternatives, int) or alternatives < 0:
            raise _unsupported("max_alternatives must be a whole number")
        if alternatives > 0:
            raise _unsupported("max_alternatives > 0 is not supported by this server")
    if "phrase_list" in raw:
        phrases = raw["phrase_list"]
        if phrases is not None and (not isinstance(phrases, list) or not all(isinstance(p, str) for p in phrases)):
            raise _unsupported("phrase_list must be a list of strings")
        config = replace(config, phrase_list=tuple(phrases) if phrases is not None else None)
    # Other keys ("model", ...) are ignored, as vosk-server ignores keys it does not know.
    return config


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def parse_text_frame(text: str) -> dict[str, Any]:
    try:
        message = json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        raise ProtocolError(
            ErrorCode.BAD_MESSAGE, "text frames must be JSON", close=CloseCode.INVALID_PAYLOAD) from None
    if not isinstance(message, dict):
        raise _unsupported('expected {"config": ...}, {"eof": 1} or {"reset": 1}')
    return message


@dataclass(slots=True)
class _Utterance:
    index: int
    t0_ms: int
    samples: int = 0  # at the engine's rate, fed or pending
    samples_at_partial: int = 0
    pending: list[Pcm16] = field(default_factory=list)  # not yet given to the engine


def _run_steps(stream: TranscriberStream, steps: list[Step]) -> list[Transcript | None]:
    """One thread hop for all of a frame's engine work, in order."""
    results: list[Transcript | None] = []
    for kind, pcm in steps:
        if kind == "accept" and pcm is not None:
            stream.accept(pcm)
        elif kind == "partial":
            results.append(stream.partial())
        elif kind == "finish":
            results.append(stream.finish())
    return results


def _seconds(ms: int) -> float:
    return round(ms / 1000, 3)


def _word(word: Word, t0_ms: int, t1_ms: int) -> dict[str, Any]:
    """A word in vosk's shape; engine times are relative to the utterance, capped at its end."""
    return {
        "conf": float(word.conf),
        "end": _seconds(min(t1_ms, t0_ms + word.t1_ms)),
        "start": _seconds(min(t1_ms, t0_ms + word.t0_ms)),
        "word": word.w,
    }


class VoskSession:
    """One vosk-protocol connection, after admission.

    A single loop: read a frame, do its engine work, send its one reply. That is
    vosk-server's own shape and gives one engine call in flight per connection
    for free; a client that sends faster than that is held back by TCP.
    """

    def __init__(
        self,
        *,
        websocket: WebSocket,
        settings: Settings,
        hub: EngineHub,
        route: SttRoute,
        language: str,
        on_event: Callable[[str, Any], None],
        max_session_s: float | None = None,
        default_sample_rate_hz: int = DEFAULT_SAMPLE_RATE_HZ,
    ) -> None:
        self.id = str(uuid.uuid4())
        self._ws = websocket
        self._settings = settings
        self._hub = hub
        self._route = route
        self._language = language
        self._on_event = on_event
        self._max_session_s = min(settings.max_session_s, max_session_s or settings.max_session_s)
        self._config = VoskConfig(sample_rate_hz=default_sample_rate_hz)
        self._input: AudioInput | None = None
        self._segmenter: Segmenter | None = None
        self._stream: TranscriberStream | None = None
        self._utterance: _Utterance | None = None
        self._partial: Reply = {"partial": ""}
        self._in_flight: asyncio.Future[Any] | None = None
        self._utterances = 0
        self._started_at = time.monotonic()
        self._client_gone = False
        self._loop = asyncio.get_running_loop()
        self._draining = asyncio.Event()

    def drain(self) -> None:
        """The server is going away: send the final of what was heard, close 1001.

        Safe from any thread (the server's drain runs on its loop; tests do not).
        """
        try:
            self._loop.call_soon_threadsafe(self._draining.set)
        except RuntimeError:
            pass  # the loop is closed: the connection is gone with it

    async def run(self) -> None:
        code, reason = CloseCode.NORMAL, "eof"
        try:
            code, reason = await self._serve()
        except ProtocolError as exc:
            code, reason = exc.close or CloseCode.INTERNAL, exc.message
            self._on_event("rejected", exc.code.value)
        except _ClientGone:
            self._client_gone = True
        except Exception:
            log.exception("vosk session %s failed", self.id)
            code, reason = CloseCode.INTERNAL, "internal error"
        finally:
            await self._release()
            if not self._client_gone:
                await self._close(int(code), reason)
            log.info(
                "vosk session %s closed code=%d audio_ms=%d utterances=%d",
                self.id, int(code), self._input.audio_ms if self._input else 0, self._utterances,
            )

    async def _close(self, code: int, reason: str) -> None:
        # Close reasons are capped at 123 bytes by RFC 6455.
        reason = reason.encode()[:120].decode("utf-8", "ignore")
        # A client that stopped reading will not take a close frame either.
        timeout_s = 1.0 if code == CloseCode.TRY_AGAIN_LATER else CLOSE_TIMEOUT_S
        try:
            await asyncio.wait_for(self._ws.close(code, reason), timeout_s)
        except Exception:  # noqa: BLE001 - the socket may already be gone
            pass

    async def _release(self) -> None:
        # A call cancelled with us still runs in its thread with our stream:
        # the stream must outlive it.
        if self._in_flight is not None and not self._in_flight.done():
            await asyncio.gather(self._in_flight, return_exceptions=True)
        stream, self._stream = self._stream, None
        if stream is None:
            return
        try:
            await self._route.runner.run(stream.close)
        except (Overloaded, RuntimeError):
            # The runner is full or already shut down (server exit); closing
            # decodes nothing, it only frees the stream's memory.
            stream.close()

    # Reading ---------------------------------------------------------------

    async def _serve(self) -> tuple[int, str]:
        s = self._settings
        while True:
            remaining_s = self._max_session_s - (time.monotonic() - self._started_at)
            if remaining_s <= 0:
                await self._reply(await self._end_of_stream())
                return CloseCode.NORMAL, "max_duration"
            try:
                frame = await self._next_frame(min(s.idle_timeout_s, remaining_s))
            except TimeoutError:
                await self._reply(await self._end_of_stream())
                return CloseCode.NORMAL, "idle" if remaining_s > s.idle_timeout_s else "max_duration"
            if frame is None:
                await self._reply(await self._end_of_stream())
                return CloseCode.GOING_AWAY, "shutdown"
            if isinstance(frame, bytes):
                await self._reply(await self._audio(frame))
                continue
            message = parse_text_frame(frame)
            # vosk-server looks for "config" first, then eof; so does this.
            if "config" in message:
                self._configure(message["config"])  # no reply, as in vosk-server
            elif message.get("eof"):
                await self._reply(await self._end_of_stream())
                return CloseCode.NORMAL, "eof"
            elif message.get("reset"):
                await self._reply(await self._flush())
            else:
                raise _unsupported('expected {"config": ...}, {"eof": 1} or {"reset": 1}')

    async def _next_frame(self, timeout_s: float) -> str | bytes | None:
        """The next frame; None when the server is draining. Raises TimeoutError."""
        return await next_or_drain(self._receive, self._draining, timeout_s)

    async def _receive(self) -> str | bytes:
        message = await self._ws.receive()
        if message["type"] == "websocket.disconnect":
            raise _ClientGone()
        text = message.get("text")
        frame: str | bytes = text if text is not None else bytes(message.get("bytes") or b"")
        size = len(frame) if isinstance(frame, bytes) else len(frame.encode("utf-8", "surrogatepass"))
        self._on_event("bytes_in", size)
        if size > self._settings.max_frame_bytes:
            raise ProtocolError(
                ErrorCode.TOO_LARGE, f"frame of {size} bytes exceeds the limit of {self._settings.max_frame_bytes}",
                close=CloseCode.TOO_BIG)
        return frame

    def _configure(self, raw: object) -> None:
        config = apply_config(raw, self._config)
        if self._segmenter is not None and config != self._config:
            raise _unsupported("config must come before the first audio frame")
        self._config = config

    # Audio -----------------------------------------------------------------

    async def _begin(self) -> None:
        s = self._settings
        transcriber = self._route.transcriber
        vad = self._hub.vad.open(aggressiveness=s.vad_aggressiveness)  # microseconds: inline, as in Session
        self._input = AudioInput(self._config.sample_rate_hz, transcriber.sample_rate_hz)
        self._segmenter = Segmenter(
            vad, silence_ms=s.silence_ms, max_utterance_ms=s.max_utterance_ms, preroll_ms=s.preroll_ms,
            hangover_ms=s.hangover_ms,
        )
        language, words = self._language, self._config.words
        try:
            self._stream = await self._engine(lambda: transcriber.open_stream(language=language, words=words))
        except EngineError as exc:
            raise ProtocolError(ErrorCode.ENGINE_UNAVAILABLE, str(exc), close=CloseCode.UNSUPPORTED_DATA) from None

    async def _audio(self, frame: bytes) -> Reply:
        if self._input is None:
            await self._begin()
        audio_in, segmenter = self._input, self._segmenter
        assert audio_in is not None and segmenter is not None
        samples = audio_in.push(frame)  # odd length: ProtocolError, close 1007
        self._on_event("audio_ms", len(frame) * 500 // audio_in.source_rate_hz)
        return await self._advance(segmenter.push(samples) if len(samples) else [], final=False)

    async def _end_of_stream(self) -> Reply:
        audio_in, segmenter = self._input, self._segmenter
        if audio_in is None or segmenter is None:
            return {"text": ""}
        tail = audio_in.drain()
        segments = segmenter.push(tail) if len(tail) else []
        return await self._advance(segments + segmenter.flush(), final=True)

    async def _flush(self) -> Reply:
        if self._segmenter is None:
            return {"text": ""}
        return await self._advance(self._segmenter.flush(), final=True)

    def _partial_due(self, utt: _Utterance) -> bool:
        rate_hz = self._route.transcriber.sample_rate_hz
        interval_ms = self._settings.partial_interval_ms or self._route.transcriber.partial_interval_ms
        # Under contention partials come less often, as in Session; finals never wait for them.
        interval_ms *= 1 + self._route.runner.waiting
        return (utt.samples - utt.samples_at_partial) * 1000 // rate_hz >= interval_ms

    def _feed(self, utt: _Utterance, steps: list[Step]) -> None:
        if not utt.pending:
            return
        pcm = np.concatenate(utt.pending) if len(utt.pending) > 1 else utt.pending[0]
        utt.pending = []
        steps.append(("accept", pcm))
        ms = len(pcm) * 1000 // self._route.transcriber.sample_rate_hz
        self._on_event("stt_audio_ms", (self._route.runner.name, ms))

    async def _advance(self, segments: list[Segment], *, final: bool) -> Reply:
        """Apply one frame's segments and return its one reply (a ``text`` one when ``final``)."""
        steps: list[Step] = []
        ended: list[tuple[UtteranceEnd, _Utterance]] = []
        for segment in segments:
            if isinstance(segment, UtteranceStart):
                self._utterance = _Utterance(segment.utterance, segment.t0_ms)
            elif isinstance(segment, UtteranceAudio):
                if self._utterance is not None:
                    # Held back until a partial or the final needs it: for
                    # Whisper, accepting is only buffering anyway, and this
                    # way a frame with nothing to report costs no thread hop.
                    self._utterance.pending.append(segment.pcm)
                    self._utterance.samples += len(segment.pcm)
            elif isinstance(segment, UtteranceEnd):
                if self._utterance is not None:
                    self._feed(self._utterance, steps)
                    steps.append(("finish", None))
                    ended.append((segment, self._utterance))
                self._utterance = None
                self._partial = {"partial": ""}  # vosk's partial starts empty after a result
        utt = self._utterance
        partial = not final and not ended and utt is not None and self._partial_due(utt)
        if partial and utt is not None:
            self._feed(utt, steps)
            steps.append(("partial", None))
            utt.samples_at_partial = utt.samples
        if not steps:
            return {"text": ""} if final else self._partial
        stream = self._stream
        assert stream is not None
        ended_at = time.monotonic()
        results = await self._engine(_run_steps, stream, steps)
        if ended:
            return self._final_reply([(r or Transcript(""), end) for r, (end, _) in zip(results, ended)], ended_at)
        if final:
            return {"text": ""}
        latest = results[-1] if results else None
        if latest is not None and latest.text and utt is not None:
            reply: Reply = {"partial": latest.text}
            if self._config.words and latest.words:
                t1_ms = utt.t0_ms + utt.samples * 1000 // self._route.transcriber.sample_rate_hz
                reply["partial_result"] = [_word(w, utt.t0_ms, t1_ms) for w in latest.words]
            self._partial = reply
        # None means "nothing new": the client sees the last partial again.
        return self._partial

    def _final_reply(self, finals: list[tuple[Transcript, UtteranceEnd]], ended_at: float) -> Reply:
        for _ in finals:
            self._utterances += 1
            self._on_event("final", time.monotonic() - ended_at)
        reply: Reply = {}
        if self._config.words:
            words = [_word(w, end.t0_ms, end.t1_ms) for result, end in finals for w in result.words]
            if words:  # vosk-server leaves `result` out of an empty result too
                reply["result"] = words
        reply["text"] = " ".join(result.text for result, _ in finals if result.text)
        return reply

    async def _engine(self, fn: Callable[..., Any], *args: Any) -> Any:
        future = asyncio.ensure_future(self._route.runner.run(fn, *args))
        self._in_flight = future
        try:
            # Shielded: if this connection is cancelled, the call still owns the
            # stream until its thread returns, and _release waits for exactly that.
            return await asyncio.shield(future)
        except Overloaded:
            # vosk clients have no way to hear "this utterance was dropped";
            # closing with 1013 at least tells them to come back later.
            raise ProtocolError(
                ErrorCode.OVERLOADED, "speech-to-text is overloaded; try again later",
                close=CloseCode.TRY_AGAIN_LATER) from None

    async def _reply(self, reply: Reply) -> None:
        text = json.dumps(reply, ensure_ascii=False)
        try:
            await asyncio.wait_for(self._ws.send_text(text), SEND_TIMEOUT_S)
        except TimeoutError:
            raise ProtocolError(
                ErrorCode.OVERLOADED, "client is not reading its results", close=CloseCode.TRY_AGAIN_LATER) from None
        except WebSocketDisconnect:
            raise _ClientGone() from None
        self._on_event("bytes_out", len(text.encode()))


def _denied(gateway: Gateway, decision: Decision) -> Response:
    """The same refusal /v1/stream sends before the upgrade."""
    gateway.metrics.on_event("rejected", "unauthorized")
    status = 401 if decision.outcome == "unauthorized" else 403
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else {}
    return JSONResponse({"error": decision.reason, "code": "unauthorized"}, status_code=status, headers=headers)


def make_vosk_endpoint(
    gateway: Gateway, *, default_sample_rate_hz: int = DEFAULT_SAMPLE_RATE_HZ
) -> Callable[[WebSocket], Awaitable[None]]:
    """A Starlette WebSocket endpoint speaking vosk-server's protocol (mount it at ``/vosk``).

    ``?language=xx`` picks the engine (default: the server's default language).
    Authentication, admission and session counting are /v1/stream's, on the
    same counters, so both endpoints share one session limit.
    """
    settings = gateway.settings

    async def endpoint(websocket: WebSocket) -> None:
        decision = gateway.auth.decide(
            client_host=websocket.client.host if websocket.client else None,
            authorization=websocket.headers.get("authorization"),
            token=websocket.query_params.get("token"),
            origin=websocket.headers.get("origin"),
            host=websocket.headers.get("host"),
        )
        if decision.outcome != "ok" or decision.principal is None:
            # Refused before the upgrade: the client sees HTTP 401/403, never a socket.
            await websocket.send_denial_response(_denied(gateway, decision))
            return
        principal = decision.principal
        await websocket.accept()
        metrics = gateway.metrics
        refusal: ProtocolError | None = None
        if not gateway.ready or gateway.draining:
            refusal = ProtocolError(
                ErrorCode.ENGINE_UNAVAILABLE,
                "server is shutting down" if gateway.draining else "engines are still loading; try again shortly",
                close=CloseCode.TRY_AGAIN_LATER)
        elif metrics.active >= settings.max_sessions:
            refusal = ProtocolError(
                ErrorCode.OVERLOADED, f"server is at its limit of {settings.max_sessions} sessions",
                close=CloseCode.TRY_AGAIN_LATER)
        elif (settings.max_sessions_per_key
              and gateway.per_key.get(principal.key_id, 0) >= settings.max_sessions_per_key):
            refusal = ProtocolError(
                ErrorCode.OVERLOADED, f"this key is at its limit of {settings.max_sessions_per_key} sessions",
                close=CloseCode.TRY_AGAIN_LATER)
        language = websocket.query_params.get("language") or settings.default_language
        route = gateway.hub.stt(language) if refusal is None else None
        if refusal is None and route is None:
            available = ", ".join(gateway.hub.languages)
            refusal = ProtocolError(
                ErrorCode.ENGINE_UNAVAILABLE,
                f"no speech-to-text engine for language {language[:16]!r}; available: {available}",
                close=CloseCode.UNSUPPORTED_DATA)
        if refusal is not None:
            metrics.on_event("rejected", refusal.code.value)
            # vosk clients know no error message: the close code and reason are all they get.
            reason = refusal.message.encode()[:120].decode("utf-8", "ignore")
            try:
                await websocket.close(int(refusal.close or CloseCode.POLICY), reason)
            except Exception:  # noqa: BLE001 - the client may be gone already
                pass
            return
        assert route is not None  # no refusal means the language has an engine
        session = VoskSession(
            websocket=websocket, settings=settings, hub=gateway.hub, route=route, language=language,
            on_event=metrics.on_event, max_session_s=principal.max_session_s,
            default_sample_rate_hz=default_sample_rate_hz,
        )
        # Counted with /v1/stream's sessions, so limits are shared and SIGTERM drains it too.
        async with gateway.admitted(session, principal.key_id):
            await session.run()

    return endpoint
