"""The vosk-compatible endpoint refusing bad input (the connection closes, never the server),
and sharing /v1/stream's keys and limits.
"""

from __future__ import annotations

import asyncio
import json

import pytest
import websockets
from websockets.exceptions import ConnectionClosed, InvalidStatus

from hushgate.server.auth import hash_key
from hushgate.server.settings import Settings
from tests.fakes import fake_spec
from tests.server_helpers import jfk_fixture  # noqa: F401 - a fixture
from tests.vosk_helpers import (  # noqa: F401 - the *_fixture names are fixtures
    CHUNK_BYTES,
    EOF,
    close_code_after,
    fake_fixture,
    recognize,
    server_fixture,
    settled,
    vosk_server,
    vosk_url,
)

# Bad input closes the connection, never the server ------------------------------


async def test_odd_length_pcm_closes_1007(server, fake) -> None:  # noqa: ANN001
    assert await close_code_after(vosk_url(server), '{"config": {"sample_rate": 16000}}', b"\x00" * 7999) == 1007
    assert await close_code_after(vosk_url(server), b"\x00" * 8000, b"\x00" * 3) == 1007
    await settled(server, fake)


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("not json", 1007),
        ('{"config": {"sample_rate": NaN}}', 1007),
        ("[1, 2]", 1003),
        ('{"config": 16000}', 1003),
        ('{"config": {"sample_rate": "16k"}}', 1003),
        ('{"config": {"sample_rate": 1000}}', 1003),
        ('{"config": {"sample_rate": 96000}}', 1003),
        ('{"config": {"sample_rate": true}}', 1003),
        ('{"config": {"words": "yes"}}', 1003),
        ('{"config": {"max_alternatives": 3}}', 1003),
        ('{"config": {"phrase_list": "one two"}}', 1003),
        ('{"hello": 1}', 1003),
    ],
)
async def test_malformed_config_closes_1003_or_1007(server, fake, frame: str, code: int) -> None:  # noqa: ANN001
    assert await close_code_after(vosk_url(server), frame) == code
    await settled(server, fake)


async def test_config_is_for_before_the_audio(server, fake) -> None:  # noqa: ANN001
    same = '{"config": {"sample_rate": 16000, "phrase_list": ["yes", "no"]}}'
    async with websockets.connect(vosk_url(server)) as ws:
        await ws.send(same)
        await ws.send(b"\x00" * 3200)
        assert json.loads(await ws.recv()) == {"partial": ""}
        await ws.send(same)  # repeating it changes nothing, so it is fine
        await ws.send(EOF)
        assert json.loads(await ws.recv()) == {"text": ""}
    assert await close_code_after(vosk_url(server), b"\x00" * 3200, '{"config": {"sample_rate": 8000}}') == 1003
    await settled(server, fake)


async def test_unknown_language_closes_1003(server, fake) -> None:  # noqa: ANN001
    assert await close_code_after(vosk_url(server, "language=tlh")) == 1003
    await settled(server, fake)


# Auth and admission are /v1/stream's --------------------------------------------

KEY = "sgw_vosk_test_key_0123456789"


async def test_keys_are_required_once_configured(fake, jfk) -> None:  # noqa: ANN001
    settings = Settings(
        stt=("en=fake",), translators=(), synthesizers=(), speaker_encoder="", api_keys=(hash_key(KEY),)
    )
    with vosk_server(settings, [fake_spec(fake)]) as server:
        for headers in ({}, {"Authorization": "Bearer wrong"}):
            with pytest.raises(InvalidStatus) as info:
                await websockets.connect(vosk_url(server), additional_headers=headers)
            assert info.value.response.status_code == 401
        with pytest.raises(InvalidStatus) as info:
            await websockets.connect(vosk_url(server, "token=v1.bogus.token"))
        assert info.value.response.status_code == 401
        data = jfk[: 16_000 * 3].astype("<i2").tobytes()
        _, _, final, code = await recognize(
            vosk_url(server), data, config=None, additional_headers={"Authorization": f"Bearer {KEY}"}
        )
        assert code == 1000 and "text" in final
        await settled(server, fake)


async def test_sessions_share_the_gateways_limit(fake) -> None:  # noqa: ANN001
    settings = Settings(stt=("en=fake",), translators=(), synthesizers=(), speaker_encoder="", max_sessions=1)
    with vosk_server(settings, [fake_spec(fake)]) as server:
        async with websockets.connect(vosk_url(server)) as first:
            await first.send(b"\x00" * 3200)
            assert json.loads(await first.recv()) == {"partial": ""}
            assert server.counters.active == 1
            assert await close_code_after(vosk_url(server)) == 1013
            # /v1/stream counts the vosk session too.
            start = json.dumps({"type": "start", "audio": {"sample_rate": 16000}})
            assert await close_code_after(server.ws(), start) == 1013
            await first.send(EOF)
            assert json.loads(await first.recv()) == {"text": ""}
        await settled(server, fake)
        assert server.counters.total == 1


async def test_idle_clients_and_oversized_frames(fake, jfk) -> None:  # noqa: ANN001
    settings = Settings(
        stt=("en=fake",),
        translators=(),
        synthesizers=(),
        speaker_encoder="",
        idle_timeout_s=0.5,
        max_frame_bytes=16_000,
    )
    with vosk_server(settings, [fake_spec(fake)]) as server:
        assert await close_code_after(vosk_url(server), b"\x00" * 16_002) == 1009
        speech = jfk[: 16_000 * 2].astype("<i2").tobytes()
        async with websockets.connect(vosk_url(server)) as ws:
            for pos in range(0, len(speech), CHUNK_BYTES):
                await ws.send(speech[pos : pos + CHUNK_BYTES])
                await ws.recv()
            final = json.loads(await asyncio.wait_for(ws.recv(), 10))
            assert final["text"].startswith("word0")
            with pytest.raises(ConnectionClosed):
                await ws.recv()
            assert ws.close_code == 1000
        await settled(server, fake)
