"""A client's socket as both endpoints use it: frames in with their limits, frames out, close.

``/v1/stream`` and ``/vosk`` read through the same :class:`Inbox`, so the frame
size cap, the idle timeout, the session length limit and the server's drain
behave the same on both, and both close the socket through :func:`close_quietly`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from hushgate.server.drain import next_or_drain
from hushgate.server.errors import ClientGone, TooLarge
from hushgate.server.settings import Settings
from hushgate.wire import CloseCode
from hushgate.wire.codec import Frame

EventSink = Callable[[str, Any], None]
"""Where a connection reports what it did (the server's metrics)."""
SEND_TIMEOUT_S = 10.0
# A client that stopped reading will not take a close frame either.
CLOSE_TIMEOUT_BUSY_S = 1.0
MAX_CLOSE_REASON_BYTES = 120  # RFC 6455 allows 123


class Transport(Protocol):
    """What a connection needs of a WebSocket."""

    async def receive(self) -> Frame | None:
        """The next frame, or None when the client has gone."""
        ...

    async def send(self, frame: Frame) -> None:
        """Raises :class:`ClientGone` when the client has gone."""
        ...

    async def close(self, code: int, reason: str) -> None: ...


class WebSocketTransport:
    def __init__(self, websocket: WebSocket) -> None:
        self._ws = websocket

    async def receive(self) -> Frame | None:
        message = await self._ws.receive()
        if message["type"] == "websocket.disconnect":
            return None
        text = message.get("text")
        if text is not None:
            return str(text)
        return bytes(message.get("bytes") or b"")

    async def send(self, frame: Frame) -> None:
        try:
            if isinstance(frame, str):
                await self._ws.send_text(frame)
            else:
                await self._ws.send_bytes(frame)
        except WebSocketDisconnect:
            raise ClientGone() from None

    async def close(self, code: int, reason: str) -> None:
        if self._ws.application_state is not WebSocketState.DISCONNECTED:
            await self._ws.close(code, reason)


def frame_bytes(frame: Frame) -> int:
    return len(frame) if isinstance(frame, bytes) else len(frame.encode("utf-8", "surrogatepass"))


async def close_quietly(transport: Transport, code: int, reason: str) -> None:
    """Close with ``code``; a socket that is already gone or not reading is left as it is."""
    reason = reason.encode()[:MAX_CLOSE_REASON_BYTES].decode("utf-8", "ignore")
    timeout_s = CLOSE_TIMEOUT_BUSY_S if code == CloseCode.TRY_AGAIN_LATER else SEND_TIMEOUT_S
    try:
        await asyncio.wait_for(transport.close(code, reason), timeout_s)
    except Exception:  # noqa: BLE001 - the socket may already be gone
        pass


@dataclass(frozen=True, slots=True)
class InputEnded:
    """The client's input is over without it saying so."""

    reason: str  # "idle", "max_duration" or "shutdown", as the `ended` event says it
    close: CloseCode


class Inbox:
    """A connection's incoming frames, with the server's limits applied."""

    def __init__(
        self, transport: Transport, settings: Settings, on_event: EventSink, *, max_session_s: float | None
    ) -> None:
        self._transport = transport
        self._settings = settings
        self._on_event = on_event
        # A token may cap a session below the server's limit, never above it.
        self.max_session_s = min(settings.max_session_s, max_session_s or settings.max_session_s)
        self._started_at = time.monotonic()
        self._draining = asyncio.Event()
        self._loop = asyncio.get_running_loop()

    def drain(self) -> None:
        """The server is going away: :meth:`next` returns ``shutdown`` from now on.

        Safe from any thread (the server's drain runs on its loop; tests do not).
        """
        try:
            self._loop.call_soon_threadsafe(self._draining.set)
        except RuntimeError:
            pass  # the loop is closed: the connection is gone with it

    async def receive(self) -> Frame:
        """The next frame, whatever the time; raises :class:`ClientGone` or, over the size cap, 1009."""
        frame = await self._transport.receive()
        if frame is None:
            raise ClientGone()
        size = frame_bytes(frame)
        self._on_event("bytes_in", size)
        limit = self._settings.max_frame_bytes
        if size > limit:
            raise TooLarge(f"frame of {size} bytes exceeds the limit of {limit}", close=CloseCode.TOO_BIG)
        return frame

    async def next(self) -> Frame | InputEnded:
        """The next frame, or why none will come: idle too long, session too long, server draining."""
        idle_s = self._settings.idle_timeout_s
        remaining_s = self.max_session_s - (time.monotonic() - self._started_at)
        if remaining_s <= 0:
            return InputEnded("max_duration", CloseCode.NORMAL)
        try:
            frame = await next_or_drain(self.receive, self._draining, min(idle_s, remaining_s))
        except TimeoutError:
            return InputEnded("idle" if remaining_s > idle_s else "max_duration", CloseCode.NORMAL)
        if frame is None:
            return InputEnded("shutdown", CloseCode.GOING_AWAY)
        return frame
