"""One open session of the gateway: the reader task, the event queue and the requests."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any, TypeAlias

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from hushgate.wire import (
    Audio,
    Ended,
    Enroll,
    Error,
    Event,
    EventParseError,
    Flush,
    Format,
    Ping,
    Ready,
    Speak,
    Stop,
    Translate,
    TtsAudio,
    TtsEnd,
    TtsStart,
    Verify,
    VoiceprintDelete,
    VoiceprintExport,
    VoiceprintImport,
    decode_event,
    encode_message,
)
from hushgate.wire.messages import ClientMessage

if TYPE_CHECKING:
    import numpy.typing as npt

#: What ``send_audio`` takes: s16le bytes, or a 1-D numpy array (int16, or float in -1..1).
PcmChunk: TypeAlias = "bytes | bytearray | memoryview | npt.NDArray[Any]"

# Room for the msgpack map around an audio payload, so a split chunk never exceeds the frame limit.
_MSGPACK_AUDIO_OVERHEAD = 64


class GatewayError(Exception):
    """The session cannot go on: a fatal ``error`` event, an abnormal close, or a failed connection.

    ``code`` is the protocol's error code (``bad_message``, ``overloaded``, …) when the
    server named one; otherwise one of the SDK's own: ``closed`` (the connection ended
    without an ``error`` or ``ended``), ``unreachable`` (no connection at all),
    ``http_error`` (the upgrade was answered with an unexpected HTTP status), and
    ``bad_event`` (the server sent something this SDK cannot read). ``close_code`` is
    the WebSocket close code when there was a close; ``http_status`` is set when the
    handshake itself was refused (401 and 403 come with code ``unauthorized``).
    """

    def __init__(
        self, code: str, message: str, close_code: int | None = None, *, http_status: int | None = None
    ) -> None:
        super().__init__(code, message, close_code)
        self.code = code
        self.message = message
        self.close_code = close_code
        self.http_status = http_status

    def __str__(self) -> str:
        where = f" (close {self.close_code})" if self.close_code is not None else ""
        if self.http_status is not None:
            where = f" (HTTP {self.http_status})"
        return f"{self.code}: {self.message}{where}"


def pcm_bytes(pcm: PcmChunk) -> bytes:
    """s16le bytes from what callers naturally have: bytes from a file, or an array from numpy."""
    if hasattr(pcm, "dtype"):
        import numpy as np  # only arrays need it, and only callers with numpy send arrays

        array = np.asarray(pcm)
        if array.ndim != 1:
            raise ValueError(f"audio must be one channel (a 1-D array), not shape {array.shape}")
        if np.issubdtype(array.dtype, np.floating):
            array = np.clip(np.rint(array * 32768.0), -32768, 32767)
        elif array.dtype != np.int16:
            raise TypeError(f"audio arrays must be int16, or float in -1..1; not {array.dtype}")
        return bytes(array.astype("<i2", copy=False).tobytes())
    data = bytes(pcm)
    if len(data) % 2:
        raise ValueError("s16le audio has an even number of bytes; this chunk has an odd one")
    return data


def new_id() -> str:
    return str(uuid.uuid4())


class _End:
    """The end of a session's events, after ``ended`` or an orderly close."""


# Session --------------------------------------------------------------------------


class Session:
    """One open session. Made by :meth:`Client.session`; not constructed directly.

    A background task reads the socket all the time, so the server never sees a
    client that stopped reading (it would close with 1013); events wait in memory
    until :meth:`events` or :meth:`receive` takes them. Read them from one task.
    """

    def __init__(self, ws: ClientConnection, fmt: Format) -> None:
        self._ws = ws
        self._format = fmt
        self._queue: asyncio.Queue[Event | GatewayError | _End] = asyncio.Queue()
        self._reader: asyncio.Task[None] | None = None
        self._tts_id: str | int | None = None
        self._fatal: Error | None = None
        self._ready: Ready | None = None
        self.ended: Ended | None = None
        self.stopped = False

    # Opening and closing ----------------------------------------------------------

    async def _open(self, start: Mapping[str, Any], timeout_s: float | None) -> Ready:
        self._reader = asyncio.create_task(self._read(), name="hushgate-reader")
        # `start` goes as the caller gave it (options newer than this SDK pass
        # through); the server is the one judge of what it may ask for.
        await self.send(start)
        try:
            first = await asyncio.wait_for(self.receive(), timeout_s)
        except TimeoutError:
            raise GatewayError("closed", f"no `ready` within {timeout_s} s") from None
        if not isinstance(first, Ready):
            got = first.type if first is not None else "the end of the connection"
            raise GatewayError("bad_event", f"expected `ready` first, got {got}")
        self._ready = first
        return first

    async def close(self) -> None:
        """Close the connection now. Pending events are dropped; the server discards the session."""
        with contextlib.suppress(Exception):
            await self._ws.close()
        if self._reader is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(self._reader, 5.0)

    @property
    def ready(self) -> Ready:
        """The session's ``ready`` event: the engines in use and the limits."""
        if self._ready is None:
            raise RuntimeError("the session has not started")
        return self._ready

    @property
    def close_code(self) -> int | None:
        return self._ws.close_code

    # Reading ----------------------------------------------------------------------

    async def _read(self) -> None:
        terminal: GatewayError | _End = _End()
        try:
            async for frame in self._ws:
                event = self._decode(frame)
                if isinstance(event, Error) and event.fatal:
                    # Raised once the close that follows tells its close code.
                    self._fatal = event
                    continue
                if isinstance(event, Ended):
                    self.ended = event
                self._queue.put_nowait(event)
        except ConnectionClosed:
            pass
        except (EventParseError, ValueError) as exc:
            terminal = GatewayError("bad_event", f"cannot read a server frame: {exc}")
            with contextlib.suppress(Exception):
                await self._ws.close(1002, "unreadable frame")
            self._queue.put_nowait(terminal)
            return
        code = self._ws.close_code if self._ws.close_code is not None else 1006
        reason = self._ws.close_reason or ""
        if self._fatal is not None:
            terminal = GatewayError(self._fatal.code, self._fatal.message, code)
        elif self.ended is None and code != 1000:
            terminal = GatewayError("closed", reason or f"the connection closed with code {code}", code)
        self._queue.put_nowait(terminal)

    def _decode(self, frame: str | bytes) -> Event:
        if isinstance(frame, bytes) and self._format == "json":
            # Bare binary frames in a JSON session are the audio of the synthesis in progress.
            return TtsAudio(id=self._tts_id, pcm=frame)
        event = decode_event(frame)
        if isinstance(event, TtsStart):
            self._tts_id = event.id
        elif isinstance(event, TtsEnd):
            self._tts_id = None
        return event

    async def receive(self, timeout_s: float | None = None) -> Event | None:
        """The next event; None once the session is over.

        Raises :class:`GatewayError` when it ended by a fatal error or an abnormal
        close (again on every later call), and ``TimeoutError`` after ``timeout_s``.
        """
        item = await asyncio.wait_for(self._queue.get(), timeout_s)
        if isinstance(item, (_End, GatewayError)):
            self._queue.put_nowait(item)  # the end stays the end for later calls
            if isinstance(item, GatewayError):
                raise item
            return None
        return item

    async def events(self) -> AsyncIterator[Event]:
        """Every event until ``ended`` (included) or the close; raises GatewayError on a fatal end."""
        while (event := await self.receive()) is not None:
            yield event

    def __aiter__(self) -> AsyncIterator[Event]:
        return self.events()

    async def finish(self, timeout_s: float | None = None) -> list[Event]:
        """Send ``stop`` (if not yet sent) and collect every remaining event up to ``ended``."""
        if not self.stopped:
            await self.stop()
        out: list[Event] = []

        async def collect() -> None:
            async for event in self.events():
                out.append(event)

        await asyncio.wait_for(collect(), timeout_s)
        return out

    # Sending ----------------------------------------------------------------------

    async def _send_frame(self, frame: str | bytes) -> None:
        try:
            await self._ws.send(frame)
        except ConnectionClosed as exc:
            raise await self._why_closed() from exc

    async def _why_closed(self) -> GatewayError:
        """The reason the server gave for the close, once the reader has seen it."""
        if self._reader is not None:
            with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(self._reader), 5.0)
        if self._fatal is not None:
            return GatewayError(self._fatal.code, self._fatal.message, self._ws.close_code)
        code = self._ws.close_code
        return GatewayError("closed", self._ws.close_reason or "the session is closed", code)

    async def send(self, message: ClientMessage | Mapping[str, Any]) -> None:
        """Send one control message: a wire struct, or a mapping as it is (``None`` values left out)
        for message types and options newer than this SDK."""
        await self._send_frame(encode_message(message, self._format))

    async def send_audio(self, pcm: PcmChunk) -> None:
        """Send s16le mono PCM at the session's rate; long buffers are split to fit the frame limit.

        The send waits while the server is not reading (its engines are behind), which
        is how a file sent faster than real time is slowed to what the server can take.
        """
        data = pcm_bytes(pcm)
        limit = self.ready.max_frame_bytes - (_MSGPACK_AUDIO_OVERHEAD if self._format == "msgpack" else 0)
        limit -= limit % 2
        for pos in range(0, len(data), limit) if data else ():
            await self._send_frame(encode_message(Audio(data[pos : pos + limit]), self._format))
            # While the socket takes every write at once, ``send`` never suspends: a
            # loop of sends would starve this connection's reader and keepalive, so
            # events pile up unread until a ping times out (close 1006).
            await asyncio.sleep(0)

    async def flush(self) -> None:
        """End the utterance in progress now (a push-to-talk release); its ``final`` follows."""
        await self.send(Flush())

    async def stop(self) -> None:
        """Ask for an orderly end: remaining finals, translations and speech, then ``ended``.

        Keep reading :meth:`events` to get them; the server reads nothing after this.
        """
        self.stopped = True
        await self.send(Stop())

    async def ping(self) -> None:
        """Answered by a ``Pong`` event; also keeps an otherwise idle session alive."""
        await self.send(Ping())

    async def speak(
        self, text: str, voice: str | None = None, language: str | None = None, id: str | None = None
    ) -> str:
        """Synthesize ``text``; returns the request id found on its TtsStart/TtsAudio/TtsEnd and errors."""
        request_id = id or new_id()
        await self.send(Speak(id=request_id, text=text, voice=voice, language=language))
        return request_id

    async def translate(self, text: str, target: str, source: str | None = None, id: str | None = None) -> str:
        """Translate ``text``; returns the request id the ``Translation`` answer will carry."""
        request_id = id or new_id()
        await self.send(Translate(id=request_id, text=text, source=source, target=target))
        return request_id

    async def enroll(
        self,
        consent: bool,
        label: str | None = None,
        passphrase: str | None = None,
        needed_ms: int | None = None,
        id: str | None = None,
    ) -> str:
        """Enroll the speaker of the next utterances; ``consent`` must be the speaker's own yes."""
        request_id = id or new_id()
        await self.send(Enroll(id=request_id, consent=consent, label=label, passphrase=passphrase, needed_ms=needed_ms))
        return request_id

    async def verify(self, voiceprint_id: str, id: str | None = None) -> str:
        """Check the speaker of the next utterance against a voiceprint; a ``Verified`` answers."""
        request_id = id or new_id()
        await self.send(Verify(id=request_id, voiceprint_id=voiceprint_id))
        return request_id

    async def export_voiceprint(self, voiceprint_id: str, id: str | None = None) -> str:
        request_id = id or new_id()
        await self.send(VoiceprintExport(id=request_id, voiceprint_id=voiceprint_id))
        return request_id

    async def import_voiceprint(self, voiceprint: str, id: str | None = None) -> str:
        request_id = id or new_id()
        await self.send(VoiceprintImport(id=request_id, voiceprint=voiceprint))
        return request_id

    async def delete_voiceprint(self, voiceprint_id: str, id: str | None = None) -> str:
        request_id = id or new_id()
        await self.send(VoiceprintDelete(id=request_id, voiceprint_id=voiceprint_id))
        return request_id
