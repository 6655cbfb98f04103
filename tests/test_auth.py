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
    stt=("en=fake",),
    translators=(),
    synthesizers=(),
    speaker_encoder="",
    api_keys=(hash_key(KEY), hash_key(OTHER_KEY)),
    allowed_origins=("https://app.example.com",),
    max_sessions_per_key=2,
    token_secret="s3cret",
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
        assert (
            await http.post(server.http + "/v1/tokens", headers={"Authorization": "Bearer nope"})
        ).status_code == 401
        bad = await http.post(
            server.http + "/v1/tokens", json={"ttl_s": -5}, headers={"Authorization": f"Bearer {KEY}"}
        )
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
    for client_addr, status in [
        (("127.0.0.1", 5000), 200),
        (("::1", 5000), 200),
        (("203.0.113.9", 5000), 403),
        (("127.0.0.6", 5000), 403),
    ]:
        transport = httpx.ASGITransport(app=app, client=client_addr)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8000") as http:
            assert (await http.get("/metrics")).status_code == status
    auth = Authenticator(key_hashes=(), token_secret=b"x", allowed_origins=(), no_auth=False)
    assert (
        auth.decide(client_host="192.168.1.20", authorization=None, token=None, origin=None, host=None).outcome
        == "forbidden"
    )
    open_auth = Authenticator(key_hashes=(), token_secret=b"x", allowed_origins=(), no_auth=True)
    assert (
        open_auth.decide(client_host="192.168.1.20", authorization=None, token=None, origin=None, host=None).outcome
        == "ok"
    )


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


def test_loopback_is_127_0_0_1_and_colon_colon_1_unless_configured() -> None:
    """A same-pod sidecar connects from 127.0.0.6: all of 127/8 is not "this machine's user"."""

    def outcome(auth: Authenticator, client: str) -> str:
        return auth.decide(
            client_host=client, authorization=None, token=None, origin=None, host="127.0.0.1:8000"
        ).outcome

    default = Authenticator(key_hashes=(), token_secret=b"x", allowed_origins=(), no_auth=False)
    assert [outcome(default, c) for c in ("127.0.0.1", "::1", "127.0.0.6", "127.1.2.3", "::ffff:127.0.0.1")] == [
        "ok",
        "ok",
        "forbidden",
        "forbidden",
        "forbidden",
    ]
    configured = Authenticator(
        key_hashes=(),
        token_secret=b"x",
        allowed_origins=(),
        no_auth=False,
        loopback_addresses=("127.0.0.1", "127.0.0.6"),
    )
    assert [outcome(configured, c) for c in ("127.0.0.1", "127.0.0.6", "::1")] == ["ok", "ok", "forbidden"]


async def test_without_keys_a_rebinding_page_is_refused() -> None:
    """DNS rebinding: evil.example resolves to 127.0.0.1 and its page talks to the gateway as if same-origin.
    With no keys, only Host values naming loopback are served."""
    auth = Authenticator(key_hashes=(), token_secret=b"x", allowed_origins=(), no_auth=False)
    for host, outcome in [
        ("evil.example:8000", "forbidden"),
        ("127.0.0.1:8000", "ok"),
        ("localhost:8000", "ok"),
        ("LOCALHOST", "ok"),
        ("[::1]:8000", "ok"),
        (None, "forbidden"),
        ("127.0.0.1.evil.example", "forbidden"),
    ]:
        origin = f"http://{host}" if host else None
        decision = auth.decide(client_host="127.0.0.1", authorization=None, token=None, origin=origin, host=host)
        assert decision.outcome == outcome, (host, decision)
    app = create_app(Settings(stt=("en=fake",), translators=(), synthesizers=(), speaker_encoder=""))
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 5000))
    async with httpx.AsyncClient(transport=transport, base_url="http://evil.example:8000") as http:
        response = await http.get("/metrics", headers={"Origin": "http://evil.example:8000"})
        assert response.status_code == 403
    with serve(Settings(stt=("en=fake",), translators=(), synthesizers=(), speaker_encoder=""), [fake_spec()]) as gw:
        await refused(
            f"ws://127.0.0.1:{gw.port}/v1/stream",
            403,
            additional_headers={"Host": f"evil.example:{gw.port}"},
            origin=f"http://evil.example:{gw.port}",
        )
        client = await opens(gw.ws())
        await client.finish()


def test_origins_are_compared_as_browsers_send_them() -> None:
    auth = Authenticator(
        key_hashes=(hash_key(KEY),),
        token_secret=b"x",
        no_auth=False,
        allowed_origins=("https://App.Example.com/", "http://localhost:3000"),
    )

    def outcome(origin: str, host: str = "gw.example.com") -> str:
        return auth.decide(
            client_host="203.0.113.9", authorization=f"Bearer {KEY}", token=None, origin=origin, host=host
        ).outcome

    assert outcome("https://app.example.com") == "ok"
    assert outcome("HTTPS://APP.EXAMPLE.COM:443") == "ok"
    assert outcome("http://LocalHost:3000") == "ok"
    assert outcome("https://app.example.com:8443") == "forbidden"
    assert outcome("http://app.example.com") == "forbidden"
    assert outcome("https://app.example.com.evil.net") == "forbidden"
    # Same-origin pages of the gateway itself, whatever the case or default port.
    assert outcome("https://GW.example.com", host="gw.example.com") == "ok"
    assert outcome("https://gw.example.com:443", host="gw.example.com") == "ok"
    assert outcome("http://gw.example.com:8000", host="gw.example.com:8000") == "ok"
    assert outcome("http://gw.example.com:8001", host="gw.example.com:8000") == "forbidden"


async def test_a_browser_token_opens_sessions_and_tts_but_never_metrics(server) -> None:  # noqa: ANN001
    token = await new_token(server)
    async with httpx.AsyncClient() as http:
        for attempt in (
            http.get(server.http + "/metrics", headers={"Authorization": f"Bearer {token}"}),
            http.get(server.http + f"/metrics?token={token}"),
        ):
            assert (await attempt).status_code == 403
        tts = await http.post(server.http + f"/v1/tts?token={token}", json={"text": "hi"})
        assert tts.status_code not in (401, 403), tts.text
        assert (await http.get(server.http + "/metrics", headers={"Authorization": f"Bearer {KEY}"})).status_code == 200
    client = await opens(server.ws(f"token={token}"))
    await client.finish()


@pytest.mark.parametrize("cap", ["NaN", "Infinity", "-Infinity"])
async def test_token_numbers_must_be_finite(server, cap: str) -> None:  # noqa: ANN001
    async with httpx.AsyncClient() as http:
        for body in (f'{{"max_session_s": {cap}}}', f'{{"ttl_s": {cap}}}'):
            response = await http.post(
                server.http + "/v1/tokens",
                content=body,
                headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"},
            )
            assert response.status_code == 400, (body, response.status_code, response.text)


def test_loopback_addresses_are_ip_addresses() -> None:
    with pytest.raises(ValueError, match="loopback_addresses"):
        Settings(loopback_addresses=("localhost",)).validated()
    Settings(loopback_addresses=("127.0.0.1", "127.0.0.6", "::1")).validated()


def test_secrets_have_a_minimum_length() -> None:
    strong = "x" * 32
    for field_name in ("token_secret", "voiceprint_key"):
        with pytest.raises(ValueError, match=field_name):
            Settings(**{field_name: "s3cret"}).validated()
        Settings(**{field_name: strong}).validated()
    for field_name in ("token_secrets_previous", "voiceprint_keys_previous"):
        with pytest.raises(ValueError, match=field_name):
            Settings(**{field_name: ("short",)}).validated()


def test_token_secrets_rotate() -> None:
    old, new = "old-token-secret-" + "o" * 32, "new-token-secret-" + "n" * 32
    before = Authenticator(key_hashes=(), token_secret=old, allowed_origins=(), no_auth=False)
    token = before.issue_token(Principal("abc"), ttl_s=60, max_session_s=None, now=1000.0)
    rotated = Authenticator(
        key_hashes=(), token_secret=new, previous_token_secrets=(old,), allowed_origins=(), no_auth=False
    )
    assert rotated.check_token(token, now=1030.0) is not None  # signed with a previous key: still good
    fresh = rotated.issue_token(Principal("abc"), ttl_s=60, max_session_s=None, now=1000.0)
    assert fresh.split(".")[1] != token.split(".")[1]  # each token names its key id
    assert before.check_token(fresh, now=1030.0) is None  # the old deployment does not know the new key
    retired = Authenticator(key_hashes=(), token_secret=new, allowed_origins=(), no_auth=False)
    assert retired.check_token(token, now=1030.0) is None  # unknown key id
    assert old not in token and new not in fresh


def test_sealed_voiceprints_rotate_expire_and_stay_in_their_deployment() -> None:
    import numpy as np

    from hushgate.server.sealing import SealedContent, Sealer, SealError

    old, new = "old-sealing-key-" + "o" * 32, "new-sealing-key-" + "n" * 32
    content = SealedContent("vp", np.ones(4, np.float32) / 2, 1, 5000, "Ana", None, "ge2e")
    sealed = Sealer(old, deployment_id="prod", ttl_s=3600).seal(content, now=1000.0)
    rotated = Sealer(new, previous_keys=(old,), deployment_id="prod", ttl_s=3600)
    assert rotated.open(sealed, now=2000.0).label == "Ana"
    with pytest.raises(SealError, match="expired"):
        rotated.open(sealed, now=1000.0 + 3601)
    with pytest.raises(SealError):
        Sealer(new, deployment_id="prod").open(sealed, now=2000.0)  # unknown key id
    with pytest.raises(SealError):
        Sealer(old, deployment_id="staging").open(sealed, now=2000.0)  # another deployment
    resealed = rotated.seal(content, now=2000.0)
    assert resealed.split(".")[1] != sealed.split(".")[1]  # the key id travels with the blob
