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

* utterances are cut by the gateway's VAD segmenter (judging pauses by the
  text too with ``endpointing`` text and Whisper), not Kaldi's endpointer;
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

Only the protocol is here, and its text messages are parsed in
``hushgate.server.vosk_config``. Admission, the frame size cap, the idle and
session-length limits and the drain are ``/v1/stream``'s own
(``hushgate.server.admission``, ``hushgate.server.transport``); the audio path,
partial cadence, word times and engine calls are the session's speech-to-text
core (``hushgate.server.session.recognition``).

Whisper cannot afford a decode per frame, so a partial is only computed when
the engine's ``partial_interval_ms`` of new audio has arrived; other frames are
answered at once with the last partial text, without any engine call.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.websockets import WebSocket

from hushgate.engines.base import Transcript
from hushgate.server import admission
from hushgate.server.admission import Gate, evicted_error
from hushgate.server.audio import AudioInput
from hushgate.server.drain import next_or_drain
from hushgate.server.errors import Busy, ClientGone, NotStarted, to_wire
from hushgate.server.gateway import Gateway
from hushgate.server.hub import EngineHub, SttRoute
from hushgate.server.segmenter import (
    PauseSeen,
    Segment,
    Segmenter,
    UtteranceAudio,
    UtteranceEnd,
    UtteranceStart,
)
from hushgate.server.session.calls import EngineCalls
from hushgate.server.session.recognition import (
    Recognition,
    Step,
    Utterance,
    final_latency_s,
    open_audio_path,
    placed_words,
    stt_route,
)
from hushgate.server.settings import Settings
from hushgate.server.transport import SEND_TIMEOUT_S, Inbox, InputEnded, Transport, WebSocketTransport, close_quietly
from hushgate.server.vosk_config import DEFAULT_SAMPLE_RATE_HZ, VoskConfig, apply_config, parse_text_frame, unsupported
from hushgate.wire import (
    CloseCode,
    ProtocolError,
    VadOptions,
    WordTiming,
)

log = logging.getLogger("hushgate.vosk")
Reply = dict[str, Any]


def _seconds(ms: int) -> float:
    return round(ms / 1000, 3)


def _word(word: WordTiming) -> dict[str, Any]:
    """A word in vosk's shape: seconds on the connection's audio clock."""
    return {"conf": float(word.conf), "end": _seconds(word.t1_ms), "start": _seconds(word.t0_ms), "word": word.w}


class VoskSession:
    """One vosk-protocol connection, after admission.

    A single loop: read a frame, do its engine work, send its one reply. That is
    vosk-server's own shape and gives one engine call in flight per connection
    for free; a client that sends faster than that is held back by TCP.
    """

    def __init__(
        self,
        *,
        transport: Transport,
        settings: Settings,
        hub: EngineHub,
        route: SttRoute,
        language: str,
        on_event: Callable[[str, Any], None],
        gate: Gate,
        max_session_s: float | None = None,
        default_sample_rate_hz: int = DEFAULT_SAMPLE_RATE_HZ,
    ) -> None:
        self.id = str(uuid.uuid4())
        self._transport = transport
        self._settings = settings
        self._hub = hub
        self._language = language
        self._on_event = on_event
        self._gate = gate
        self._inbox = Inbox(transport, settings, on_event, max_session_s=max_session_s)
        self._recognition = Recognition(route, settings, EngineCalls(), on_event)
        self._config = VoskConfig(sample_rate_hz=default_sample_rate_hz)
        self._audio_path: tuple[AudioInput, Segmenter] | None = None
        self._utterance: Utterance | None = None
        self._partial: Reply = {"partial": ""}
        self._utterances = 0

    def drain(self) -> None:
        """The server is going away: send the final of what was heard, close 1001."""
        self._inbox.drain()

    async def run(self) -> None:
        code, reason = CloseCode.NORMAL, "eof"
        client_gone = False
        try:
            first = await self._await_audio()
            if first is not None:
                async with self._gate.session(self):  # counted from the first audio; refused: 1013
                    code, reason = await self._serve(first)
        except ClientGone:
            client_gone = True
        except Exception as exc:  # noqa: BLE001 - every failure ends in a close code
            # vosk clients know no error message: the close code and reason are all they get.
            error = to_wire(exc, "internal error", fatal=True, session=self.id)
            code, reason = error.close or CloseCode.INTERNAL, error.message
            self._on_event("rejected", error.code.value)
        finally:
            await self._recognition.close()
            if not client_gone:
                await close_quietly(self._transport, int(code), reason)
            log.info(
                "vosk session %s closed code=%d audio_ms=%d utterances=%d",
                self.id,
                int(code),
                self._audio_path[0].audio_ms if self._audio_path else 0,
                self._utterances,
            )

    async def _await_audio(self) -> bytes | None:
        """The first audio frame; None when the client said `eof` first (answered already).

        Until then the connection waits to start (see ``admission``): ``config``
        frames are taken but do not extend ``start_timeout_s``.
        """
        deadline = time.monotonic() + self._settings.start_timeout_s
        with self._gate.waiting() as evicted:
            while True:
                try:
                    frame = await next_or_drain(self._inbox.receive, evicted, deadline - time.monotonic())
                except TimeoutError:
                    raise NotStarted("no audio received in time", close=CloseCode.POLICY) from None
                if frame is None:
                    raise evicted_error()
                if isinstance(frame, bytes):
                    return frame
                message = parse_text_frame(frame)
                if "config" in message:
                    self._configure(message["config"])
                elif message.get("eof"):
                    await self._reply({"text": ""})
                    return None
                elif message.get("reset"):
                    await self._reply({"text": ""})
                else:
                    raise unsupported('expected {"config": ...}, {"eof": 1} or {"reset": 1}')

    async def _serve(self, first: bytes) -> tuple[CloseCode, str]:
        await self._reply(await self._audio(first))
        while True:
            frame = await self._inbox.next()
            if isinstance(frame, InputEnded):
                await self._reply(await self._end_of_stream())
                return frame.close, frame.reason
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
                raise unsupported('expected {"config": ...}, {"eof": 1} or {"reset": 1}')

    def _configure(self, raw: object) -> None:
        config = apply_config(raw, self._config)
        if self._audio_path is not None and config != self._config:
            raise unsupported("config must come before the first audio frame")
        self._config = config

    # Audio -----------------------------------------------------------------

    async def _open(self) -> tuple[AudioInput, Segmenter]:
        self._audio_path = open_audio_path(
            self._hub,
            self._settings,
            VadOptions(),
            source_rate_hz=self._config.sample_rate_hz,
            engine_rate_hz=self._recognition.rate_hz,
        )
        try:
            await self._recognition.open(self._language, self._config.words)
        except Exception as exc:  # noqa: BLE001 - becomes the close code
            raise to_wire(exc, "speech-to-text is not available", fatal=True, session=self.id) from None
        return self._audio_path

    async def _audio(self, frame: bytes) -> Reply:
        audio_in, segmenter = self._audio_path or await self._open()
        samples = audio_in.push(frame)  # odd length: ProtocolError, close 1007
        self._on_event("audio_ms", len(frame) * 500 // audio_in.source_rate_hz)
        return await self._advance(segmenter.push(samples) if len(samples) else [], final=False)

    async def _end_of_stream(self) -> Reply:
        if self._audio_path is None:
            return {"text": ""}
        audio_in, segmenter = self._audio_path
        tail = audio_in.drain()
        segments = segmenter.push(tail) if len(tail) else []
        return await self._advance(segments + segmenter.flush(), final=True)

    async def _flush(self) -> Reply:
        if self._audio_path is None:
            return {"text": ""}
        return await self._advance(self._audio_path[1].flush(), final=True)

    async def _advance(self, segments: list[Segment], *, final: bool) -> Reply:
        """Apply one frame's segments and return its one reply (a ``text`` one when ``final``)."""
        recognition = self._recognition
        steps: list[Step] = []
        ended: list[UtteranceEnd] = []
        for segment in segments:
            if isinstance(segment, UtteranceStart):
                self._utterance = recognition.begin(segment)
            elif isinstance(segment, UtteranceAudio):
                if self._utterance is not None:
                    # Held back until a partial or the final needs it: for
                    # Whisper, accepting is only buffering anyway, and this
                    # way a frame with nothing to report costs no thread hop.
                    recognition.hear(self._utterance, segment.pcm)
            elif isinstance(segment, UtteranceEnd):
                if self._utterance is not None:
                    recognition.ask_final(self._utterance, steps)
                    ended.append(segment)
                self._utterance = None
                self._partial = {"partial": ""}  # vosk's partial starts empty after a result
        utt = self._utterance
        pause = None
        if not final and not ended and utt is not None:
            pause = self._pause_to_judge(segments)
            if pause is not None or recognition.partial_due(utt):
                recognition.ask_partial(utt, steps, probe=pause is not None)
        if not steps:
            return {"text": ""} if final else self._partial
        ended_at = time.monotonic()
        try:
            results = await recognition.run(steps)
        except Exception as exc:  # noqa: BLE001 - becomes the close code
            # vosk clients have no way to hear "this utterance was dropped";
            # closing (1013 when overloaded) at least tells them to come back later.
            raise to_wire(exc, "speech-to-text failed", fatal=True, session=self.id) from None
        if ended:
            return self._final_reply(
                [(r or Transcript(""), end) for r, end in zip(results, ended, strict=True)], ended_at
            )
        if final:
            return {"text": ""}
        latest = results[-1] if results else None
        if pause is not None and self._audio_path is not None:
            self._audio_path[1].judge_text(pause, latest.text if latest is not None else "")
        if latest is not None and latest.text and utt is not None:
            reply: Reply = {"partial": latest.text}
            if self._config.words and latest.words:
                words = placed_words(latest.words, utt.t0_ms, recognition.t1_ms(utt))
                reply["partial_result"] = [_word(w) for w in words]
            self._partial = reply
        # None means "nothing new": the client sees the last partial again.
        return self._partial

    def _pause_to_judge(self, segments: list[Segment]) -> PauseSeen | None:
        """The last pause of this frame worth a decode, if any."""
        if self._audio_path is None:
            return None
        segmenter = self._audio_path[1]
        pauses = [s for s in segments if isinstance(s, PauseSeen) and self._recognition.judges(segmenter, s)]
        return pauses[-1] if pauses else None

    def _final_reply(self, finals: list[tuple[Transcript, UtteranceEnd]], ended_at: float) -> Reply:
        for _ in finals:
            self._utterances += 1
            self._on_event("final", final_latency_s(ended_at))
        reply: Reply = {}
        if self._config.words:
            words = [_word(w) for result, end in finals for w in placed_words(result.words, end.t0_ms, end.t1_ms)]
            if words:  # vosk-server leaves `result` out of an empty result too
                reply["result"] = words
        reply["text"] = " ".join(result.text for result, _ in finals if result.text)
        return reply

    async def _reply(self, reply: Reply) -> None:
        text = json.dumps(reply, ensure_ascii=False)
        try:
            await asyncio.wait_for(self._transport.send(text), SEND_TIMEOUT_S)
        except TimeoutError:
            raise Busy("client is not reading its results", close=CloseCode.TRY_AGAIN_LATER) from None
        self._on_event("bytes_out", len(text.encode()))


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
        principal = await admission.accept(gateway, websocket)
        if principal is None:
            return
        transport = WebSocketTransport(websocket)
        language = websocket.query_params.get("language") or settings.default_language
        address = admission.client_address(websocket)
        try:
            refusal = admission.arrival(gateway, principal, address)  # at once when full; audio checks again
            if refusal is not None:
                raise refusal
            route = stt_route(gateway.hub, language)
        except ProtocolError as exc:
            admission.rejected(gateway, exc)
            # vosk clients know no error message: the close code and reason are all they get.
            await close_quietly(transport, int(exc.close or CloseCode.POLICY), exc.message)
            return
        session = VoskSession(
            transport=transport,
            settings=settings,
            hub=gateway.hub,
            route=route,
            language=language,
            on_event=gateway.metrics.on_event,
            gate=admission.Gate(gateway, principal, address),
            max_session_s=principal.max_session_s,
            default_sample_rate_hz=default_sample_rate_hz,
        )
        # Counted with /v1/stream's sessions, so limits are shared and SIGTERM drains it too.
        await session.run()

    return endpoint
