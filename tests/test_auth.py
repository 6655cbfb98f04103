"""Who gets in: API keys, signed tokens, origins, and the loopback-only default."""

from __future__ import annotations

import asyncio
import logging
import time

import httpx
import pytest
import websockets
from websockets.exceptions import InvalidStatus

from hushgate.server.app import create_app
from hushgate.server.auth import Authenticator, Principal, hash_key
from hushgate.server.settings import Settings
from tests.conftest import serve
from tests.fakes import fake_spec
from tests.wsclient import Client

KEY = "sgw_test_key_0123456789"
OTHER_KEY = "sgw_other_key_9876543210"
SETTINGS = Settings(
    stt=("en=fake",), translators=(), synthesizers=(), speaker_encoder="", api_keys=(hash_key(KEY), hash_key(OTHER_KEY)),
    allowed_origins=("https://app.example.com",), max_sessions_per_key=2, token_secret="s3cret",
)


@pytest.fixture
def server():  # noqa: ANN201
    with serve(SETTINGS, [fake_spec()]) as running:
        yield running


async def refused(url: str, status: int, **kw) -> None:  # noqa: ANN003
    with pytest.raises(InvalidStatus) as info:
        await websockets.connect(url, **kw)
    assert info.value.response.status_code == status


async def opens(url: str, **kw) -> Client:  # noqa: ANN003
    client = await Client.connect(url, **kw)
    assert (await client.start())["type"] == "ready"
    return client


async def new_token(server, key: str = KEY, **body) -> str:  # noqa: ANN001, ANN003
    async with httpx.AsyncClient() as http:
        response = await http.post(server.http + "/v1/tokens", json=body, headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 200, response.text
    return response.json()["token"]


async def test_keys_are_required_once_configured(server) -> None:  # noqa: ANN001
    await refused(server.ws(), 401)
    await refused(server.ws(), 401, additional_headers={"Authorization": "Bearer wrong"})
    await refused(server.ws("token=v1.bogus.token"), 401)
    client = await opens(server.ws(), additional_headers={"Authorization": f"Bearer {KEY}"})
    assert (await client.finish()).close_code == 1000


async def test_tokens_for_browsers(server) -> None:  # noqa: ANN001
    async with httpx.AsyncClient() as http:
        assert (await http.post(server.http + "/v1/tokens")).status_code == 401
        assert (await http.post(server.http + "/v1/tokens", headers={"Authorization": "Bearer nope"})).status_code == 401
        bad = await http.post(server.http + "/v1/tokens", json={"ttl_s": -5}, headers={"Authorization": f"Bearer {KEY}"})
        assert bad.status_code == 400
    token = await new_token(server)
    client = await opens(server.ws(f"token={token}"))
    await client.finish()
    tampered = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    await refused(server.ws(f"token={tampered}"), 401)
    # A token cannot mint tokens: only API keys can.
    async with httpx.AsyncClient() as http:
        response = await http.post(server.http + "/v1/tokens", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 401


async def test_an_expired_token_is_refused_even_after_it_worked(server) -> None:  # noqa: ANN001
    token = await new_token(server, ttl_s=1)
    client = await opens(server.ws(f"token={token}"))
    await client.finish()
    await asyncio.sleep(2.1)
    await refused(server.ws(f"token={token}"), 401)


async def test_a_token_can_cap_the_session_length(server) -> None:  # noqa: ANN001
    token = await new_token(server, max_session_s=1)
    client = await opens(server.ws(f"token={token}"))
    received = await client.closed(timeout_s=10)
    assert received.events[-1]["type"] == "ended" and received.events[-1]["reason"] == "max_duration"


async def test_origins(server) -> None:  # noqa: ANN001
    auth = {"Authorization": f"Bearer {KEY}"}
    await refused(server.ws(), 403, origin="https://evil.example.net", additional_headers=auth)
    client = await opens(server.ws(), origin="https://app.example.com", additional_headers=auth)
    await client.finish()
    # The gateway's own pages (demo, overlay) are same-origin.
    client = await opens(server.ws(), origin=f"http://127.0.0.1:{server.port}", additional_headers=auth)
    await client.finish()


async def test_sessions_per_key(server) -> None:  # noqa: ANN001
    headers = {"Authorization": f"Bearer {KEY}"}
    held = [await opens(server.ws(), additional_headers=headers) for _ in range(2)]
    extra = await Client.connect(server.ws(), additional_headers=headers)
    received = await extra.closed()
    assert received.close_code == 1013 and received.of("error")[0]["code"] == "overloaded"
    other = await opens(server.ws(), additional_headers={"Authorization": f"Bearer {OTHER_KEY}"})
    for client in [*held, other]:
        await client.finish()


async def test_http_routes_that_use_engines_need_credentials(server) -> None:  # noqa: ANN001
    async with httpx.AsyncClient() as http:
        assert (await http.get(server.http + "/healthz")).status_code == 200
        assert (await http.get(server.http + "/readyz")).status_code == 200
        assert (await http.get(server.http + "/metrics")).status_code == 401
        assert (await http.post(server.http + "/v1/tts", json={"text": "hi"})).status_code == 401
        ok = await http.get(server.http + "/metrics", headers={"Authorization": f"Bearer {KEY}"})
        assert ok.status_code == 200


async def test_without_keys_only_loopback_is_served() -> None:
    app = create_app(Settings(stt=("en=fake",), translators=(), synthesizers=(), speaker_encoder=""))
    for client_addr, status in [(("127.0.0.1", 5000), 200), (("::1", 5000), 200), (("203.0.113.9", 5000), 403)]:
        transport = httpx.ASGITransport(app=app, client=client_addr)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as http:
            assert (await http.get("/metrics")).status_code == status
    auth = Authenticator(key_hashes=(), token_secret=b"x", allowed_origins=(), no_auth=False)
    assert auth.decide(client_host="192.168.1.20", authorization=None, token=None, origin=None, host=None).outcome \
        == "forbidden"
    open_auth = Authenticator(key_hashes=(), token_secret=b"x", allowed_origins=(), no_auth=True)
    assert open_auth.decide(client_host="192.168.1.20", authorization=None, token=None, origin=None,
                            host=None).outcome == "ok"


def test_keys_must_be_configured_as_hashes() -> None:
    with pytest.raises(ValueError, match="hashes"):
        Settings(api_keys=(KEY,)).validated()


def test_token_signature_and_expiry_offline() -> None:
    auth = Authenticator(key_hashes=(hash_key(KEY),), token_secret=b"k1", allowed_origins=(), no_auth=False)
    token = auth.issue_token(Principal("abc"), ttl_s=60, max_session_s=None, now=1000.0)
    assert auth.check_token(token, now=1030.0) is not None
    assert auth.check_token(token, now=1061.0) is None
    other = Authenticator(key_hashes=(), token_secret=b"k2", allowed_origins=(), no_auth=False)
    assert other.check_token(token, now=1030.0) is None  # another deployment's secret
    # A token lives at least its ttl, even when issued late in a second.
    short = auth.issue_token(Principal("abc"), ttl_s=1, max_session_s=None, now=1000.9)
    assert auth.check_token(short, now=1001.85) is not None
    assert auth.check_token(short, now=1003.0) is None


async def test_keys_never_reach_the_log(server, caplog: pytest.LogCaptureFixture) -> None:  # noqa: ANN001
    caplog.set_level(logging.DEBUG)
    client = await opens(server.ws(), additional_headers={"Authorization": f"Bearer {KEY}"})
    await client.finish()
    await refused(server.ws(), 401, additional_headers={"Authorization": f"Bearer {KEY}x"})
    time.sleep(0.1)
    # The test's own client logs its request headers at debug level; the server must not.
    server_records = [r for r in caplog.records if not r.name.startswith("websockets.client")]
    assert server_records and not any(KEY in r.getMessage() for r in server_records)
