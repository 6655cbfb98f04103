"""What the vosk-compatible endpoint tests share: a server with /vosk mounted, a vosk-style client."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from unittest.mock import patch

import pytest
import websockets
from starlette.routing import WebSocketRoute
from websockets.exceptions import ConnectionClosed

import tests.conftest as conftest
from hushgate.engines.base import EngineSpec
from hushgate.server.app import create_app
from hushgate.server.settings import Settings
from hushgate.server.vosk_compat import make_vosk_endpoint
from tests.conftest import Running, serve, wait_until
from tests.fakes import FakeTranscriber, fake_spec

CHUNK_BYTES = 8000
EOF = '{"eof" : 1}'  # byte for byte what vosk-server's examples send
FAKE = Settings(stt=("en=fake",), translators=(), synthesizers=(), speaker_encoder="", max_sessions=8)


@contextmanager
def vosk_server(settings: Settings, specs: list[EngineSpec] | None = None) -> Iterator[Running]:
    """conftest.serve, with /vosk mounted unless app.py already mounts it."""

    def create_with_vosk(*args: Any, **kwargs: Any):  # noqa: ANN202
        app = create_app(*args, **kwargs)
        if not any(getattr(route, "path", None) == "/vosk" for route in app.router.routes):
            app.router.routes.append(WebSocketRoute("/vosk", make_vosk_endpoint(app.state.gateway)))
        return app

    with patch.object(conftest, "create_app", create_with_vosk), serve(settings, specs) as running:
        yield running


def vosk_url(server: Running, query: str = "") -> str:
    return f"ws://127.0.0.1:{server.port}/vosk" + (f"?{query}" if query else "")


@pytest.fixture(name="fake", scope="module")
def fake_fixture() -> FakeTranscriber:
    return FakeTranscriber()


@pytest.fixture(name="server", scope="module")
def server_fixture(fake: FakeTranscriber) -> Iterator[Running]:
    with vosk_server(FAKE, [fake_spec(fake)]) as running:
        yield running


async def settled(server: Running, fake: FakeTranscriber | None = None) -> None:
    """Every session counted out and every engine stream closed."""
    await wait_until(lambda: server.counters.active == 0 and (fake is None or fake.open_streams == 0))


async def recognize(
    url: str, data: bytes, *, config: str | None, chunk_bytes: int = CHUNK_BYTES, **connect: Any
) -> tuple[list[dict[str, Any]], list[float], dict[str, Any], int | None]:
    """vosk-server's example client: one reply read per chunk, then eof and the final.

    Returns the per-chunk replies, how long each took, the final, and the close code.
    """
    replies: list[dict[str, Any]] = []
    waits: list[float] = []
    async with websockets.connect(url, **connect) as ws:
        if config is not None:
            await ws.send(config)
        for pos in range(0, len(data), chunk_bytes):
            sent = time.monotonic()
            await ws.send(data[pos : pos + chunk_bytes])
            replies.append(json.loads(await asyncio.wait_for(ws.recv(), 60)))
            waits.append(time.monotonic() - sent)
        await ws.send(EOF)
        final = json.loads(await asyncio.wait_for(ws.recv(), 60))
        # The final is the last message: anything more would be a second reply to some frame.
        with pytest.raises(ConnectionClosed):
            extra = await asyncio.wait_for(ws.recv(), 30)
            pytest.fail(f"unexpected message after the final: {extra}")
        return replies, waits, final, ws.close_code


async def close_code_after(url: str, *frames: str | bytes) -> int | None:
    """Send frames, read until the server closes, and return its close code."""
    async with websockets.connect(url) as ws:
        try:
            for frame in frames:
                await ws.send(frame)
            while True:
                await asyncio.wait_for(ws.recv(), 30)
        except ConnectionClosed:
            pass
        return ws.close_code


def check_shape(message: dict[str, Any], *, words: bool) -> None:
    if "partial" in message:
        assert set(message) <= {"partial", "partial_result"}, message
        assert isinstance(message["partial"], str)
        return
    assert isinstance(message.get("text"), str), message
    assert set(message) == ({"text", "result"} if words and message["text"] else {"text"}), message
    for word in message.get("result", []):
        assert set(word) == {"conf", "end", "start", "word"}, word
        assert all(isinstance(word[k], float) for k in ("conf", "end", "start")), word
        assert 0.0 <= word["start"] <= word["end"], word


def texts(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [m for m in messages if "text" in m]
