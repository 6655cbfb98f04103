"""Fair admission: idle connections cannot lock others out, caps per key, address and token, bodies capped."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import time
from typing import Any

import httpx
import pytest
import websockets

from hushgate.server import admission
from hushgate.server.app import create_app
from hushgate.server.auth import Principal, hash_key
from hushgate.server.settings import Settings
from tests.conftest import Running, serve, wait_until
from tests.fakes import fake_spec
from tests.wsclient import Client

pytestmark = pytest.mark.slow
KEY = "sgw_admission_key_0123456789"
OTHER_KEY = "sgw_admission_other_9876543210"
SETTINGS = Settings(stt=("en=fake",), translators=(), synthesizers=(), speaker_encoder="", start_timeout_s=2.0)
START = json.dumps({"type": "start", "audio": {"sample_rate": 16000}})
IDLE = 200


async def _all_closed(sockets: list[websockets.ClientConnection], within_s: float) -> list[int | None]:
    await asyncio.wait_for(asyncio.gather(*(ws.wait_closed() for ws in sockets)), within_s)
    return [ws.close_code for ws in sockets]


async def _open_idle(url: str, count: int) -> list[websockets.ClientConnection]:
    sockets = []
    for _ in range(count):
        sockets.append(await websockets.connect(url, open_timeout=30, close_timeout=1))
    return sockets


async def _close_all(sockets: list[websockets.ClientConnection]) -> None:
    await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)


async def test_idle_websockets_do_not_lock_out_a_client() -> None:
    with serve(SETTINGS, [fake_spec()]) as server:
        idle = await _open_idle(server.ws(), IDLE)
        try:
            opened = time.monotonic()
            client = await Client.connect(server.ws())
            ready = await client.start()
            waited_s = time.monotonic() - opened
            assert ready["type"] == "ready", ready
            assert server.counters.active == 1  # counted after `start`, not before
            await client.finish()
            codes = await _all_closed(idle, within_s=SETTINGS.start_timeout_s + 15)
        finally:
            await _close_all(idle)
    print(f"\n{IDLE} idle sockets: client ready after {waited_s:.2f} s; closes {sorted(set(codes))}")
    assert waited_s < 1.5
    assert set(codes) <= {1008, 1013}


async def test_idle_vosk_sockets_do_not_lock_out_a_client_even_sending_config() -> None:
    with serve(SETTINGS, [fake_spec()]) as server:
        url = f"ws://127.0.0.1:{server.port}/vosk"
        idle = await _open_idle(url, IDLE)
        try:

            async def keep_configuring() -> None:  # a `config` used to reset the idle timer
                while True:
                    for ws in idle:
                        if ws.close_code is None:
                            await asyncio.gather(ws.send(json.dumps({"config": {}})), return_exceptions=True)
                    await asyncio.sleep(0.5)

            configuring = asyncio.create_task(keep_configuring())
            opened = time.monotonic()
            async with websockets.connect(url) as vosk:
                await vosk.send(b"\x00" * 3200)
                assert json.loads(await vosk.recv()) == {"partial": ""}
                waited_s = time.monotonic() - opened
                assert server.counters.active == 1
                await vosk.send('{"eof": 1}')
                assert "text" in json.loads(await vosk.recv())
            codes = await _all_closed(idle, within_s=SETTINGS.start_timeout_s + 15)
            configuring.cancel()
        finally:
            await _close_all(idle)
    print(f"\n{IDLE} idle /vosk sockets: client answered after {waited_s:.2f} s; closes {sorted(set(codes))}")
    assert waited_s < 1.5
    assert set(codes) <= {1008, 1013}


async def _refused_at_start(server: Running, **kw: object) -> dict[str, object]:
    client = await Client.connect(server.ws(), **kw)
    with contextlib.suppress(websockets.ConnectionClosed):  # refused on arrival, or at `start`
        await client.ws.send(START)
    received = await client.closed()
    assert received.close_code == 1013, received.close_code
    return received.of("error")[0]


async def test_keys_have_a_session_cap_by_default() -> None:
    settings = dataclasses.replace(SETTINGS, api_keys=(hash_key(KEY), hash_key(OTHER_KEY)), max_sessions=4)
    with serve(settings, [fake_spec()]) as server:
        auth = {"Authorization": f"Bearer {KEY}"}
        held = [await Client.connect(server.ws(), additional_headers=auth) for _ in range(2)]
        for client in held:
            await client.start()
        error = await _refused_at_start(server, additional_headers=auth)
        assert error["code"] == "overloaded" and "key" in str(error["message"])
        other = await Client.connect(server.ws(), additional_headers={"Authorization": f"Bearer {OTHER_KEY}"})
        assert (await other.start())["type"] == "ready"
        for client in [*held, other]:
            await client.finish()


async def test_a_token_holds_one_session_at_a_time() -> None:
    settings = dataclasses.replace(SETTINGS, api_keys=(hash_key(KEY),), token_secret="s3cret-admission")
    with serve(settings, [fake_spec()]) as server:
        async with httpx.AsyncClient() as http:
            response = await http.post(server.http + "/v1/tokens", headers={"Authorization": f"Bearer {KEY}"})
        token = response.json()["token"]
        first = await Client.connect(server.ws(f"token={token}"))
        await first.start()
        second = await Client.connect(server.ws(f"token={token}"))
        with contextlib.suppress(websockets.ConnectionClosed):  # refused on arrival, or at `start`
            await second.ws.send(START)
        received = await second.closed()
        assert received.close_code == 1013 and "token" in received.of("error")[0]["message"]
        await first.finish()
        again = await Client.connect(server.ws(f"token={token}"))  # reusable once the first has ended
        assert (await again.start())["type"] == "ready"
        await again.finish()


def test_client_addresses_have_a_session_cap() -> None:
    settings = dataclasses.replace(SETTINGS, max_sessions=16)  # a quarter: 4 per address
    gateway = create_app(settings).state.gateway
    gateway.ready = True
    who = Principal("anonymous")
    for _ in range(4):
        assert admission.refusal(gateway, who, "203.0.113.7") is None
        gateway.count(who, "203.0.113.7")
    refused = admission.refusal(gateway, who, "203.0.113.7")
    assert refused is not None and "address" in refused.message and refused.close == 1013
    assert admission.refusal(gateway, who, "203.0.113.8") is None
    assert admission.refusal(gateway, who, "127.0.0.1") is None  # loopback: a local proxy's clients look alike


async def _status_before_body_is_sent(port: int, path: str, headers: str) -> bytes:
    """Declare a 40 MB body, send 1 KiB of it: the answer must come without the rest."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(
            (
                f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n{headers}"
                f"Content-Length: 40000000\r\n\r\n"
            ).encode()
            + b" " * 1024
        )
        await writer.drain()
        return await asyncio.wait_for(reader.readline(), 10)
    finally:
        writer.close()


async def test_request_bodies_are_capped_before_they_are_read() -> None:
    settings = dataclasses.replace(SETTINGS, api_keys=(hash_key(KEY),))
    with serve(settings, [fake_spec()]) as server:
        auth = f"Authorization: Bearer {KEY}\r\n"
        for path in ("/v1/tts", "/v1/tokens", "/v1/audio/speech", "/v1/audio/transcriptions"):
            status = await _status_before_body_is_sent(server.port, path, auth)
            assert b" 413 " in status, (path, status)


async def test_wyoming_is_admitted_like_every_other_entry_point() -> None:
    from wyoming.client import AsyncTcpClient
    from wyoming.error import Error
    from wyoming.info import Describe

    from tests.conftest import free_port

    port = free_port()
    settings = dataclasses.replace(SETTINGS, max_sessions=1, wyoming_uri=f"tcp://127.0.0.1:{port}")
    with serve(settings, [fake_spec()]) as server:
        client = await Client.connect(server.ws())
        await client.start()  # the one session the server has room for
        async with AsyncTcpClient("127.0.0.1", port) as wyoming:
            await wyoming.write_event(Describe().event())
            event = await asyncio.wait_for(wyoming.read_event(), 10)
        assert event is not None and Error.is_type(event.type)
        error = Error.from_event(event)
        assert error.code == "overloaded" and "limit of 1 sessions" in error.text  # /v1/stream's refusal
        await client.finish()
        async with AsyncTcpClient("127.0.0.1", port) as wyoming:  # room again: served
            await wyoming.write_event(Describe().event())
            event = await asyncio.wait_for(wyoming.read_event(), 10)
        assert event is not None and event.type == "info"
        await wait_until(lambda: server.counters.active == 0)


# Session starts are paced per address (loopback exempt) and per key. Here 127.0.0.1 is not taken for
# loopback, so its starts are paced; 127.0.0.2 is another client. One token every 200 ms.
PACED = dataclasses.replace(
    SETTINGS, no_auth=True, loopback_addresses=("::1",), session_rate_per_min=300.0, session_rate_burst=3
)
REFILL_S = 60 / PACED.session_rate_per_min


class _RateClock:
    """The server's session-rate clock, stopped: nothing refills while a test spends a burst, however slow."""

    def __init__(self, server: Running) -> None:
        self.now_s = time.monotonic()
        self._shift_s: float | None = None
        server.app.state.gateway.session_rate.clock = self

    def __call__(self) -> float:
        return self.now_s if self._shift_s is None else time.monotonic() + self._shift_s

    def run(self) -> None:
        """Let real time pass again, from the current reading."""
        self._shift_s = self.now_s - time.monotonic()


async def _try_session(url: str, **kw: Any) -> dict[str, Any]:
    """Start a session and end it; its first event: `ready`, or the refusal (then closed with 1013)."""
    client = await Client.connect(url, **kw)
    with contextlib.suppress(websockets.ConnectionClosed):  # refused on arrival: it may be closed already
        await client.ws.send(START)
    first = await client.next_event()
    if first["type"] == "ready":
        await client.finish()
    else:
        assert (await client.closed()).close_code == 1013, first
    return first


async def _wyoming_refusal(port: int) -> str:
    """The error a Wyoming client is told when it asks to be described."""
    from wyoming.client import AsyncTcpClient
    from wyoming.error import Error
    from wyoming.info import Describe

    async with AsyncTcpClient("127.0.0.1", port) as wyoming:
        await wyoming.write_event(Describe().event())
        event = await asyncio.wait_for(wyoming.read_event(), 10)
    assert event is not None and Error.is_type(event.type), event
    error = Error.from_event(event)
    return f"{error.code}: {error.text}"


async def test_an_address_that_starts_sessions_too_fast_is_paced_on_every_entry_point() -> None:
    from tests.conftest import free_port

    wyoming_port = free_port()
    settings = dataclasses.replace(PACED, wyoming_uri=f"tcp://127.0.0.1:{wyoming_port}")
    with serve(settings, [fake_spec()]) as server:
        clock = _RateClock(server)
        for _ in range(settings.session_rate_burst):
            assert (await _try_session(server.ws()))["type"] == "ready"
        refused = await _try_session(server.ws())
        assert refused["code"] == "overloaded" and "address starts sessions too fast" in refused["message"]
        async with websockets.connect(f"ws://127.0.0.1:{server.port}/vosk") as vosk:  # the same bucket
            await vosk.wait_closed()
        assert vosk.close_code == 1013
        assert (await _wyoming_refusal(wyoming_port)).startswith("overloaded: this address starts sessions too fast")
        assert (await _try_session(server.ws(), local_addr=("127.0.0.2", 0)))["type"] == "ready"  # another client
        clock.now_s += REFILL_S / 2
        assert (await _try_session(server.ws()))["type"] == "error"  # half a token
        waiting_since = time.monotonic()
        clock.run()
        while (await _try_session(server.ws()))["type"] != "ready":  # a refusal costs nothing: retry
            assert time.monotonic() - waiting_since < 30, "no token came back"
            await asyncio.sleep(REFILL_S / 4)
        assert time.monotonic() - waiting_since >= 0.99 * REFILL_S / 2  # the other half, in real time
        rejections = server.counters.rejections.labels(reason="session_rate")._value.get()
        assert rejections >= 4  # /v1/stream twice, /vosk, Wyoming, and any retries while waiting


async def test_a_key_and_its_tokens_share_one_pace_and_http_says_when_to_retry() -> None:
    settings = dataclasses.replace(
        SETTINGS,
        api_keys=(hash_key(KEY), hash_key(OTHER_KEY)),
        token_secret="s3cret-admission-0123456789abcdef",
        session_rate_per_min=PACED.session_rate_per_min,
        session_rate_burst=3,
    )
    with serve(settings, [fake_spec()]) as server:  # the client is on loopback: only its key is paced
        _RateClock(server)
        auth = {"Authorization": f"Bearer {KEY}"}
        async with httpx.AsyncClient(base_url=server.http) as http:
            token = (await http.post("/v1/tokens", headers=auth)).json()["token"]  # not a session: free
            assert (await _try_session(server.ws(f"token={token}")))["type"] == "ready"
            assert (await _try_session(server.ws(), additional_headers=auth))["type"] == "ready"
            admitted = await http.post("/v1/audio/transcriptions", headers=auth)
            assert admitted.status_code == 400  # charged, then refused for its (missing) body
            refused = await http.post("/v1/audio/transcriptions", headers=auth)
            assert refused.status_code == 429 and refused.headers["retry-after"] == "1", refused.headers
            assert refused.json()["error"]["code"] == "rate_limit_exceeded"
            assert "key starts sessions too fast" in refused.json()["error"]["message"]
            assert (await _try_session(server.ws(f"token={token}")))["code"] == "overloaded"  # its key's pace
            other = await http.post("/v1/audio/transcriptions", headers={"Authorization": f"Bearer {OTHER_KEY}"})
            assert other.status_code == 400
        assert server.counters.rejections.labels(reason="session_rate")._value.get() == 2
