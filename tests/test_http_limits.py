"""Connections that never finish their headers are closed; past the connection cap, HTTP 503."""

from __future__ import annotations

import asyncio
import dataclasses
import time

import httpx

from hushgate.server.settings import Settings
from tests.conftest import serve
from tests.fakes import fake_spec

SETTINGS = Settings(stt=("en=fake",), translators=(), synthesizers=(), speaker_encoder="")


async def _is_closed_by_server(reader: asyncio.StreamReader, within_s: float) -> bool:
    try:
        return await asyncio.wait_for(reader.read(), within_s) == b""
    except TimeoutError:
        return False


async def test_unfinished_request_headers_are_cut_off() -> None:
    with serve(dataclasses.replace(SETTINGS, header_timeout_s=0.5), [fake_spec()]) as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        started = time.monotonic()
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")  # and never the end
        await writer.drain()
        assert await _is_closed_by_server(reader, within_s=10)
        assert time.monotonic() - started < 5
        writer.close()
        # A silent connection is cut off too; a prompt request is served.
        silent_reader, silent = await asyncio.open_connection("127.0.0.1", server.port)
        assert await _is_closed_by_server(silent_reader, within_s=10)
        silent.close()
        async with httpx.AsyncClient() as http:
            assert (await http.get(server.http + "/healthz")).status_code == 200


async def test_connections_past_the_cap_get_503() -> None:
    with serve(dataclasses.replace(SETTINGS, max_connections=4, header_timeout_s=30.0), [fake_spec()]) as server:
        held = [await asyncio.open_connection("127.0.0.1", server.port) for _ in range(4)]
        for _, writer in held:  # each holds a connection with a request in progress
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            await writer.drain()
        await asyncio.sleep(0.2)
        async with httpx.AsyncClient() as http:
            refused = (await http.get(server.http + "/healthz")).status_code
        for _, writer in held:
            writer.close()
        assert refused == 503
