"""A small protocol client for tests, over a real `websockets` connection."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import weakref
from dataclasses import dataclass, field
from typing import Any, ClassVar

import msgpack
import numpy as np
import websockets
from websockets.asyncio.client import ClientConnection


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
        self._reader: asyncio.Task[None] | None = None
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
            await self.ws.send(json.dumps(message))
        else:
            await self.ws.send(msgpack.packb(message, use_bin_type=True))

    async def send_audio(self, pcm: bytes) -> None:
        if self.fmt == "json":
            await self.ws.send(pcm)
        else:
            await self.ws.send(msgpack.packb({"type": "audio", "pcm": pcm}, use_bin_type=True))

    async def start(self, sample_rate: int = 16_000, **options: Any) -> dict[str, Any]:
        await self.send({"type": "start", "audio": {"sample_rate": sample_rate}, **options})
        self.ready = await self.next_event()
        return self.ready

    async def next_event(self, timeout_s: float = 30.0) -> dict[str, Any]:
        while True:
            frame = await asyncio.wait_for(self.ws.recv(), timeout_s)
            event = self._decode(frame)
            if event is not None:
                return event

    def _decode(self, frame: str | bytes) -> dict[str, Any] | None:
        now = time.monotonic()
        if self.fmt == "json" and isinstance(frame, bytes):
            self.received.audio.append(frame)
            return None
        event = json.loads(frame) if self.fmt == "json" else msgpack.unpackb(frame, raw=False)
        self.received.events.append(event)
        self.received.times.append(now)
        return event

    def read_in_background(self) -> None:
        async def reader() -> None:
            try:
                async for frame in self.ws:
                    self._decode(frame)
            except websockets.ConnectionClosed:
                pass

        self._reader = asyncio.create_task(reader())

    async def stream(self, pcm: np.ndarray, *, chunk_ms: int = 100, rate_hz: int = 16_000,
                     realtime: bool = False) -> None:
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
