"""Bad input and limits over a real socket: each gets its error and close code, and the server keeps serving."""

from __future__ import annotations

import json

import httpx
import numpy as np
import pytest

from tests.conftest import wait_until
from tests.fakes import FakeTranscriber
from tests.server_helpers import SETTINGS, fake_fixture, jfk_fixture, server_fixture  # noqa: F401 - fixtures
from tests.wsclient import Client

FATAL_CASES = [
    ("message before start", [json.dumps({"type": "ping"})], "not_started", 1008),
    ("audio before start", [b"\x00\x00"], "not_started", 1008),
    ("invalid json", ["{oops"], "bad_message", 1007),
    ("wrong field types", [json.dumps({"type": "start", "audio": {"sample_rate": "fast"}})], "bad_message", 1007),
    ("rate 7999", [json.dumps({"type": "start", "audio": {"sample_rate": 7999}})], "unsupported_audio", 1003),
    ("rate 96000", [json.dumps({"type": "start", "audio": {"sample_rate": 96000}})], "unsupported_audio", 1003),
    (
        "unknown language",
        [json.dumps({"type": "start", "audio": {"sample_rate": 16000}, "language": "tlh"})],
        "engine_unavailable",
        1003,
    ),
    (
        "odd pcm length",
        [json.dumps({"type": "start", "audio": {"sample_rate": 16000}}), b"\x00\x01\x02"],
        "bad_message",
        1007,
    ),
    (
        "frame over the limit",
        [json.dumps({"type": "start", "audio": {"sample_rate": 16000}}), b"\x00" * (SETTINGS.max_frame_bytes + 2)],
        "too_large",
        1009,
    ),
]


@pytest.mark.parametrize("name,frames,code,close", FATAL_CASES, ids=[c[0] for c in FATAL_CASES])
async def test_bad_input_gets_its_error_and_close_code_and_the_server_keeps_serving(
    server,
    name: str,
    frames: list,
    code: str,
    close: int,
    fake: FakeTranscriber,  # noqa: ANN001
) -> None:
    client = await Client.connect(server.ws())
    for frame in frames:
        await client.ws.send(frame)
    received = await client.closed()
    errors = received.of("error")
    assert errors and errors[-1]["code"] == code and errors[-1]["fatal"] is True, received.events
    assert received.close_code == close
    await assert_still_serving(server)
    await wait_until(lambda: fake.open_streams == 0)


async def assert_still_serving(server) -> None:  # noqa: ANN001
    await wait_until(lambda: server.counters.active == 0)
    async with httpx.AsyncClient() as http:
        assert (await http.get(server.http + "/healthz")).status_code == 200
    client = await Client.connect(server.ws())
    assert (await client.start())["type"] == "ready"
    assert (await client.finish()).close_code == 1000


async def test_a_frame_far_over_the_limit_is_closed_1009_by_the_socket_layer(server) -> None:  # noqa: ANN001
    client = await Client.connect(server.ws())
    await client.start()
    await client.ws.send(b"\x00" * (4 * SETTINGS.max_frame_bytes))
    received = await client.closed()
    assert received.close_code == 1009
    await assert_still_serving(server)


async def test_text_frame_on_msgpack_session_and_unknown_format(server) -> None:  # noqa: ANN001
    client = await Client.connect(server.ws(), "msgpack")
    await client.ws.send(json.dumps({"type": "start", "audio": {"sample_rate": 16000}}))
    received = await client.closed()
    assert received.close_code == 1003
    client = await Client.connect(server.ws("format=xml"))
    received = await client.closed()
    assert received.close_code == 1003 and received.of("error")[0]["code"] == "bad_message"


async def test_no_start_in_time_is_a_policy_close(server) -> None:  # noqa: ANN001
    client = await Client.connect(server.ws())
    received = await client.closed(timeout_s=10)
    assert received.close_code == 1008 and received.of("error")[0]["code"] == "not_started"


async def test_sessions_over_the_limit_are_refused_with_1013(server) -> None:  # noqa: ANN001
    clients = [await Client.connect(server.ws()) for _ in range(SETTINGS.max_sessions)]
    for client in clients:
        assert (await client.start())["type"] == "ready"
    extra = await Client.connect(server.ws())
    received = await extra.closed()
    assert received.close_code == 1013 and received.of("error")[0]["code"] == "overloaded"
    for client in clients:
        await client.finish()
    await assert_still_serving(server)


async def test_abrupt_disconnect_mid_utterance_leaks_nothing(server, jfk: np.ndarray, fake: FakeTranscriber) -> None:  # noqa: ANN001
    for _ in range(3):
        client = await Client.connect(server.ws())
        await client.start()
        await client.stream(jfk[: 16_000 * 3])
        client.ws.transport.abort()  # a dropped TCP connection: no close frame
    await wait_until(lambda: server.counters.active == 0)
    await wait_until(lambda: fake.open_streams == 0)
    await assert_still_serving(server)
