"""A small protocol client for tests, over a real `websockets` connection.

It sends maps exactly as a test writes them (so tests can send what no SDK
would), and reads every event through the wire codec, so a server event that
does not fit the protocol's types fails the test that received it. Tests get
the plain maps back, as they appear on the wire.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import msgspec
import numpy as np
import websockets
from websockets.asyncio.client import ClientConnection

from hushgate.wire import Audio, UnknownEvent, decode_event, encode_message, to_wire


@dataclass
class Received:
    events: list[dict[str, Any]] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    audio: list[bytes] = field(default_factory=list)
    close_code: int | None = None
    close_reason: str = ""

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["type"] == kind]

    @property
    def types(self) -> list[str]:
        return [e["type"] for e in self.events]


class Client:
    # Every client not yet closed: conftest closes them after each test, so a
    # test that fails half-way leaves no session behind for the next one.
    unclosed: ClassVar[weakref.WeakSet[Client]] = weakref.WeakSet()

    def __init__(self, ws: ClientConnection, fmt: str) -> None:
        self.ws = ws
        self.fmt = fmt
        self.received = Received()
        self.ready: dict[str, Any] = {}
        self._stashed: collections.deque[dict[str, Any]] = collections.deque()
        self._reader: asyncio.Task[None] | None = None
        self._arrived = asyncio.Event()
        Client.unclosed.add(self)

    async def aclose(self) -> None:
        Client.unclosed.discard(self)
        if self._reader is not None:
            self._reader.cancel()
        with contextlib.suppress(Exception):
            await self.ws.close()

    @classmethod
    async def connect(cls, url: str, fmt: str = "json", **kw: Any) -> Client:
        if fmt != "json":
            url += ("&" if "?" in url else "?") + f"format={fmt}"
        ws = await websockets.connect(url, max_size=None, **kw)
        return cls(ws, fmt)

    async def send(self, message: dict[str, Any]) -> None:
        if self.fmt == "json":
            # The standard library's JSON, so that a test can send what msgspec would refuse to write.
            await self.ws.send(json.dumps(message))
        else:
            await self.ws.send(msgspec.msgpack.encode(message))

    async def send_audio(self, pcm: bytes) -> None:
        await self.ws.send(encode_message(Audio(pcm), "json" if self.fmt == "json" else "msgpack"))

    async def start(self, sample_rate: int = 16_000, **options: Any) -> dict[str, Any]:
        await self.send({"type": "start", "audio": {"sample_rate": sample_rate}, **options})
        self.ready = await self.next_event()
        return self.ready

    async def next_event(self, timeout_s: float = 30.0) -> dict[str, Any]:
        if self._stashed:
            return self._stashed.popleft()
        while True:
            frame = await asyncio.wait_for(self.ws.recv(), timeout_s)
            event = self._decode(frame)
            if event is not None:
                return event

    async def next_matching(self, wanted: Callable[[dict[str, Any]], bool], timeout_s: float = 30.0) -> dict[str, Any]:
        """The first event ``wanted`` accepts; events before it stay for :meth:`next_event`, in order.

        For answers whose place among other events is not documented (a lag notice,
        a follow-up `speaker` event may come first).
        """
        skipped: list[dict[str, Any]] = []
        stashed, self._stashed = self._stashed, collections.deque()
        try:
            while stashed:
                event = stashed.popleft()
                if wanted(event):
                    return event
                skipped.append(event)
            while True:
                event = await self.next_event(timeout_s)
                if wanted(event):
                    return event
                skipped.append(event)
        finally:
            self._stashed = collections.deque([*skipped, *stashed, *self._stashed])

    async def reply(self, request_id: str, timeout_s: float = 30.0) -> dict[str, Any]:
        """The answer (or error) to request ``request_id``."""
        return await self.next_matching(lambda e: e.get("id") == request_id, timeout_s)

    async def next_of(self, kind: str, timeout_s: float = 30.0) -> dict[str, Any]:
        return await self.next_matching(lambda e: e["type"] == kind, timeout_s)

    def _decode(self, frame: str | bytes) -> dict[str, Any] | None:
        now = time.monotonic()
        if self.fmt == "json" and isinstance(frame, bytes):
            self.received.audio.append(frame)
            return None
        decoded = decode_event(frame)
        event = decoded.raw if isinstance(decoded, UnknownEvent) else to_wire(decoded)
        self.received.events.append(event)
        self.received.times.append(now)
        self._arrived.set()
        return event

    def read_in_background(self) -> None:
        async def reader() -> None:
            try:
                async for frame in self.ws:
                    self._decode(frame)
            except websockets.ConnectionClosed:
                pass
            finally:
                self._arrived.set()  # wakes `seen`, which then sees the close

        self._reader = asyncio.create_task(reader())

    async def seen(self, wanted: Callable[[Received], bool], timeout_s: float = 30.0) -> Received:
        """Wait until the events read in the background satisfy ``wanted``.

        For requests answered in no documented order relative to each other:
        the test states what must have arrived, not when. Fails at
        ``timeout_s`` or when the server closes first.
        """
        if self._reader is None:
            self.read_in_background()
        reader = self._reader

        async def arrival() -> None:
            while not wanted(self.received):
                if reader is not None and reader.done():
                    raise AssertionError(f"closed before the wanted events: {self.received.types}")
                self._arrived.clear()
                await self._arrived.wait()

        await asyncio.wait_for(arrival(), timeout_s)
        return self.received

    async def stream(
        self, pcm: np.ndarray, *, chunk_ms: int = 100, rate_hz: int = 16_000, realtime: bool = False
    ) -> None:
        step = rate_hz * chunk_ms // 1000
        started = time.monotonic()
        for i, pos in enumerate(range(0, len(pcm), step)):
            await self.send_audio(pcm[pos : pos + step].astype("<i2").tobytes())
            if realtime:
                delay = started + (i + 1) * chunk_ms / 1000 - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)

    async def finish(self, timeout_s: float = 120.0) -> Received:
        """Send stop and collect everything up to the close."""
        try:
            await self.send({"type": "stop"})
        except websockets.ConnectionClosed:
            pass
        return await self.closed(timeout_s)

    async def closed(self, timeout_s: float = 30.0) -> Received:
        if self._reader is None:
            self.read_in_background()
        if self._reader is not None:
            await asyncio.wait_for(self._reader, timeout_s)
        await self.ws.wait_closed()
        Client.unclosed.discard(self)
        self.received.close_code = self.ws.close_code
        self.received.close_reason = self.ws.close_reason or ""
        return self.received
