"""One client connection on ``/v1/stream``: its lifecycle and the tasks that serve it.

* the **reader** decodes frames and answers control messages; audio goes to listening;
* the **listener** transcribes what was heard, one engine call in flight at a time;
* **translate** and **speak** work through speaking's two lanes;
* the **sender** writes the outbox to the socket.

One :class:`asyncio.TaskGroup` supervises the five: the first to fail ends the
others. Everything the session hears or says lives in these objects and dies
with them.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import uuid
from collections.abc import Callable
from typing import Any

from hushgate.server.admission import Gate, evicted_error
from hushgate.server.drain import next_or_drain
from hushgate.server.errors import BadRequest, Busy, ClientGone, NotStarted, to_wire
from hushgate.server.hub import EngineHub
from hushgate.server.intake import SMALL_FRAME_BYTES, ControlBudget, is_audio
from hushgate.server.languages import plan_speech
from hushgate.server.outbox import Outbox
from hushgate.server.session.calls import EngineCalls
from hushgate.server.session.context import SessionContext
from hushgate.server.session.listening import Listening
from hushgate.server.session.ready import ready_event
from hushgate.server.session.speaking import Speaking
from hushgate.server.session.voiceprints import Voiceprints
from hushgate.server.settings import Settings
from hushgate.server.transport import SEND_TIMEOUT_S, Inbox, InputEnded, Transport, close_quietly, frame_bytes
from hushgate.wire import (
    Audio,
    ClientMessage,
    CloseCode,
    Ended,
    Enroll,
    ErrorCode,
    Flush,
    Ping,
    Pong,
    ProtocolError,
    Speak,
    Start,
    Stop,
    Translate,
    Verify,
    VoiceprintDelete,
    VoiceprintExport,
    VoiceprintImport,
)
from hushgate.wire.codec import Codec, Frame

log = logging.getLogger("hushgate.session")


class State(enum.Enum):
    AWAITING_START = "awaiting_start"
    STREAMING = "streaming"
    STOPPING = "stopping"
    CLOSED = "closed"


_ALLOWED: dict[State, set[State]] = {
    State.AWAITING_START: {State.STREAMING, State.CLOSED},
    State.STREAMING: {State.STOPPING, State.CLOSED},
    State.STOPPING: {State.CLOSED},
    State.CLOSED: set(),
}


class _Parts:
    """What a session is made of once `start` is accepted."""

    def __init__(self, listening: Listening, speaking: Speaking, voiceprints: Voiceprints) -> None:
        self.listening = listening
        self.speaking = speaking
        self.voiceprints = voiceprints


class Session:
    def __init__(
        self,
        *,
        settings: Settings,
        hub: EngineHub,
        codec: Codec,
        transport: Transport,
        gate: Gate,
        on_event: Callable[[str, Any], None] | None = None,
        max_session_s: float | None = None,
    ) -> None:
        self.id = str(uuid.uuid4())
        self.state = State.AWAITING_START
        self._settings = settings
        self._hub = hub
        self._codec = codec
        self._transport = transport
        self._gate = gate
        self._on_event = on_event or (lambda _name, _value: None)
        self._inbox = Inbox(transport, settings, self._on_event, max_session_s=max_session_s)
        self._outbox = Outbox(settings.outbox_events)
        self._calls = EngineCalls()
        self._parts: _Parts | None = None
        self._serving = False  # the tasks run: a fatal error may find the client not reading
        self._end_reason = "stop"
        self._close_code = CloseCode.NORMAL
        self._budget = ControlBudget(settings.control_rate_per_s)

    @property
    def voiceprints(self) -> Voiceprints | None:
        return self._parts.voiceprints if self._parts else None

    def _transition(self, to: State) -> None:
        if to not in _ALLOWED[self.state]:
            raise RuntimeError(f"session {self.id}: cannot go from {self.state.value} to {to.value}")
        self.state = to

    def drain(self) -> None:
        """The server is going away: finish what was heard, send `ended`, close 1001."""
        self._inbox.drain()

    async def run(self) -> None:
        close_code, close_reason = CloseCode.NORMAL, "stopped"
        try:
            start = await self._await_start()
            async with self._gate.session(self):  # counted from here on; refused: 1013
                parts = await self._begin(start)
                self._serving = True
                try:
                    async with asyncio.TaskGroup() as tasks:
                        tasks.create_task(self._read(parts), name=f"{self.id}-read")
                        tasks.create_task(parts.listening.work(), name=f"{self.id}-listen")
                        tasks.create_task(parts.speaking.translate(), name=f"{self.id}-translate")
                        tasks.create_task(self._speak(parts), name=f"{self.id}-speak")
                        tasks.create_task(self._send(), name=f"{self.id}-send")
                except BaseExceptionGroup as group:
                    raise _first(group) from None
            close_code, close_reason = self._close_code, self._end_reason
        except ClientGone:
            close_code, close_reason = CloseCode.NORMAL, "client gone"
        except Exception as exc:  # noqa: BLE001 - every failure ends in a close code
            error = to_wire(exc, "internal error", fatal=True, session=self.id)
            close_code, close_reason = error.close or CloseCode.INTERNAL, error.message
            await self._send_fatal(error)
        finally:
            await self._release()
            if self.state is not State.CLOSED:
                self._transition(State.CLOSED)
            await close_quietly(self._transport, int(close_code), close_reason)
            log.info(
                "session %s closed code=%d audio_ms=%d utterances=%d",
                self.id,
                int(close_code),
                self._parts.listening.audio_ms if self._parts else 0,
                self._parts.listening.utterances if self._parts else 0,
            )

    async def _send_fatal(self, error: ProtocolError) -> None:
        self._on_event("rejected", error.code.value)
        if error.code is ErrorCode.OVERLOADED and error.close is CloseCode.TRY_AGAIN_LATER and self._serving:
            return  # the client is not reading: another frame would only wait
        try:
            for frame in self._codec.encode(error.event()):
                await asyncio.wait_for(self._transport.send(frame), SEND_TIMEOUT_S)
        except Exception:  # noqa: BLE001 - the client may be gone
            pass

    async def _release(self) -> None:
        parts = self._parts
        if parts is None:
            return
        try:
            await parts.listening.recognition.close()  # after every engine call of the session has returned
        finally:
            parts.voiceprints.forget()

    # Start -------------------------------------------------------------------

    async def _await_start(self) -> Start:
        with self._gate.waiting() as evicted:
            try:
                frame = await next_or_drain(self._inbox.receive, evicted, self._settings.start_timeout_s)
            except TimeoutError:
                raise NotStarted("no `start` received in time", close=CloseCode.POLICY) from None
        if frame is None:
            raise evicted_error()
        self._budget.check_size(frame_bytes(frame))  # `start` itself is not charged
        message = self._codec.decode(frame, started=False)
        if not isinstance(message, Start):  # the codec guarantees this; keep the type checker honest
            raise NotStarted("the first message must be `start`", close=CloseCode.POLICY)
        return message

    async def _begin(self, start: Start) -> _Parts:
        plan, complaints = plan_speech(self._hub, start, self._settings)
        route, language = plan.route, plan.language
        context = SessionContext(self.id, self._hub, self._settings, self._outbox, self._calls, self._on_event)
        voiceprints = Voiceprints(context, start.speakers)
        speaking = Speaking(context, start, language, plan, complaints)
        listening = Listening(context, start, route, speaking, voiceprints)
        self._parts = _Parts(listening, speaking, voiceprints)
        await listening.open(plan)
        self._transition(State.STREAMING)
        self._on_event("session_started", None)
        self._outbox.put(
            ready_event(self.id, start, plan, self._hub, self._settings, max_session_s=self._inbox.max_session_s)
        )
        speaking.open()
        voiceprints.open()
        return self._parts

    # Reader ------------------------------------------------------------------

    async def _read(self, parts: _Parts) -> None:
        while True:
            frame = await self._inbox.next()
            if isinstance(frame, InputEnded):
                self._end_reason, self._close_code = frame.reason, frame.close
                await self._stop(parts)
                return
            try:
                message = self._decode(frame)
                if message is not None and await self._handle(message, parts):
                    return
            except ProtocolError as exc:
                if exc.fatal:
                    raise
                self._outbox.put(exc.event())

    def _decode(self, frame: Frame) -> ClientMessage | None:
        """The frame's message, or None when it was refused undecoded for the control rate (see intake)."""
        if is_audio(frame, self._codec.name):
            return self._codec.decode(frame, started=True)
        size = frame_bytes(frame)
        if self._budget.charge(size):
            return self._codec.decode(frame, started=True)
        if size <= SMALL_FRAME_BYTES:
            # `stop` is always honoured (refusing it would keep the session open); small frames are cheap.
            message = self._codec.decode(frame, started=True)
            if isinstance(message, Stop):
                return message
        self._on_event("rejected", "control_rate")
        raise Busy(f"more than {self._settings.control_rate_per_s:g} control messages per second")

    async def _handle(self, message: ClientMessage, parts: _Parts) -> bool:
        """Act on one message; True when the client asked to stop."""
        match message:
            case Audio(pcm=pcm):
                await parts.listening.audio(pcm)
            case Flush():
                await parts.listening.flush()
            case Stop():
                await self._stop(parts)
                return True
            case Ping():
                self._outbox.put(Pong())
            case Start():
                raise BadRequest("`start` was already accepted for this session")
            case Speak():
                parts.speaking.request_speech(message)
            case Translate():
                parts.speaking.request_translation(message)
            case Enroll() | Verify() | VoiceprintExport() | VoiceprintImport() | VoiceprintDelete():
                parts.voiceprints.handle(message, next_utterance=parts.listening.next_utterance)
        return False

    async def _stop(self, parts: _Parts) -> None:
        self._transition(State.STOPPING)
        await parts.listening.stop()

    # Speaking and sending -----------------------------------------------------

    async def _speak(self, parts: _Parts) -> None:
        # Listening closes the translation lane, translation the speech lane:
        # when speech is done, everything the session will say has been said.
        await parts.speaking.speak()
        listening = parts.listening
        self._outbox.put(
            Ended(reason=self._end_reason, stats={"audio_ms": listening.audio_ms, "utterances": listening.utterances})
        )
        self._outbox.close()

    async def _send(self) -> None:
        while (event := await self._outbox.get()) is not None:
            for frame in self._codec.encode(event):
                await self._transport.send(frame)
                self._on_event("bytes_out", len(frame))
            self._on_event("sent", event.type)


def _first(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The failure that ended a task group (the others were cancelled because of it)."""
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            return _first(exc)
        if not isinstance(exc, asyncio.CancelledError):
            return exc
    first: BaseException = group.exceptions[0]
    return first
