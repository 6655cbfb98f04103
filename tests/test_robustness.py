"""Hostile and careless clients: fuzz, slow readers, dropped connections, soak.

All against a real server on loopback with the fake engines, so what is tested
is the gateway's own handling, at a volume a real model would make too slow.
"""

from __future__ import annotations

import asyncio
import json
import random
import socket
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import msgpack
import numpy as np
import psutil
import pytest
import websockets

from hushgate.server.settings import Settings
from tests.audio_helpers import read_wav
from tests.conftest import serve, wait_until
from tests.fakes import FakeSynthesizer, FakeTranscriber, fake_spec, fake_tts_spec
from tests.wsclient import Client

pytestmark = pytest.mark.slow
START = {"type": "start", "audio": {"sample_rate": 16000}}


@pytest.fixture(scope="module")
def jfk(audio_dir: Path) -> np.ndarray:
    return read_wav(audio_dir / "misc" / "jfk.wav")[0]


# Fuzz ----------------------------------------------------------------------------


def fatal_case(rng: random.Random) -> tuple[str, str, list, int]:
    """(kind, format, frames to send, expected close code) for one connection."""
    kind = rng.choice(
        [
            "random-bytes-msgpack",
            "truncated-msgpack",
            "invalid-utf8-text",
            "deep-json",
            "deep-msgpack",
            "huge-number-start",
            "wrong-type-start",
            "before-start",
            "odd-pcm",
            "not-an-object",
            "msgpack-text-frame",
            "bad-rate",
        ]
    )
    packed_start = msgpack.packb(START)
    match kind:
        case "random-bytes-msgpack":
            junk = bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 64)))
            return kind, "msgpack", [packed_start, b"\xc1" + junk], 1007
        case "truncated-msgpack":
            whole = msgpack.packb({"type": "speak", "id": "x", "text": "y" * rng.randint(5, 50)})
            return kind, "msgpack", [packed_start, whole[: rng.randint(1, len(whole) - 1)]], 1007
        case "invalid-utf8-text":
            return kind, "json", [json.dumps(START), ("raw", b'{"type": "\xff\xfe"}')], 1007
        case "deep-json":
            return kind, "json", [json.dumps(START), "[" * rng.randint(2_000, 50_000)], 1007
        case "deep-msgpack":
            return kind, "msgpack", [packed_start, b"\x91" * rng.randint(2_000, 50_000)], 1007
        case "huge-number-start":
            return (
                kind,
                "json",
                ['{"type":"start","audio":{"sample_rate":' + "7" * rng.randint(5_000, 9_000) + "}}"],
                1007,
            )
        case "wrong-type-start":
            value = rng.choice(['"16000"', "true", "[16000]", "{}", "16000.5", "null"])
            return kind, "json", ['{"type":"start","audio":{"sample_rate":' + value + "}}"], 1007
        case "before-start":
            first = rng.choice([json.dumps({"type": "ping"}), json.dumps({"type": "stop"}), b"\x00\x00"])
            return kind, "json", [first], 1008
        case "odd-pcm":
            return kind, "json", [json.dumps(START), bytes(rng.randrange(1, 4001, 2))], 1007
        case "not-an-object":
            return kind, "json", [json.dumps(START), rng.choice(["[]", "1", '"start"', "null"])], 1007
        case "msgpack-text-frame":
            return kind, "msgpack", [packed_start, '{"type":"ping"}'], 1003
        case _:
            rate = rng.choice([0, 7_999, 48_001, 96_000, -16_000, 2**40])
            return kind, "json", [json.dumps({"type": "start", "audio": {"sample_rate": rate}})], 1003


def non_fatal_frame(rng: random.Random, fmt: str) -> tuple[str | bytes, str]:
    """A frame that must cost only itself: (frame, expected error code)."""
    message, code = rng.choice(
        [
            ({"type": rng.choice(["dance", "", "START", "audio2", "x" * 200]), "id": "u"}, "bad_message"),
            ({"type": "speak", "id": "s", "text": rng.choice([1, None, [], {}, True, 1e300])}, "bad_message"),
            ({"type": "translate", "id": "t", "text": "hi", "target": rng.choice([5, None, ["es"]])}, "bad_message"),
            ({"type": "verify", "id": "v", "voiceprint_id": rng.choice([1, None, {"a": 1}])}, "bad_message"),
            (
                {"type": "enroll", "id": "e", "consent": rng.choice([False, "yes", 1])},
                rng.choice(["x"]) and "bad_message",
            ),
            ({"type": "start", "audio": {"sample_rate": rng.choice(["x", True, 1.5])}}, "bad_message"),
        ]
    )
    if message.get("type") == "enroll" and message.get("consent") is False:
        code = "consent_required"
    frame = json.dumps(message) if fmt == "json" else msgpack.packb(message)
    return frame, code


async def test_fuzz_ten_thousand_malformed_frames() -> None:
    rng = random.Random(20261122)
    fake = FakeTranscriber()
    settings = Settings(
        stt=("en=fake",),
        translators=(),
        synthesizers=(),
        speaker_encoder="",
        max_frame_bytes=1 << 20,
        max_sessions=8,
        control_rate_per_s=1e6,
    )
    sent = 0
    outcomes: Counter[str] = Counter()
    with serve(settings, [fake_spec(fake)]) as server:
        # Fatal kinds: a fresh connection each, and the documented close code every time.
        for _ in range(1_500):
            kind, fmt, frames, close = fatal_case(rng)
            client = await Client.connect(server.ws(), fmt)
            for frame in frames:
                if isinstance(frame, tuple):
                    await client.ws.send(frame[1], text=True)  # bytes sent as a text frame: invalid UTF-8
                else:
                    await client.ws.send(frame)
                sent += 1
            received = await client.closed(timeout_s=10)
            assert received.close_code == close, (kind, received.close_code, received.events[-2:])
            outcomes[kind] += 1
        # Non-fatal kinds: thousands through a few long-lived sessions, each answered in order.
        for fmt in ("json", "msgpack"):
            client = await Client.connect(server.ws(), fmt)
            await client.start()
            for _ in range(4_000):
                frame, code = non_fatal_frame(rng, fmt)
                await client.ws.send(frame)
                sent += 1
                error = await client.next_event()
                assert (error["type"], error["code"], error["fatal"]) == ("error", code, False), (frame, error)
            await client.send({"type": "ping"})
            assert (await client.next_event())["type"] == "pong"
            assert (await client.finish()).close_code == 1000
        # Frames past the limit: with an error event up to twice the limit, by the socket layer beyond.
        for size, with_event in [(settings.max_frame_bytes + 10, True), (100 * 1024 * 1024, False)]:
            client = await Client.connect(server.ws())
            await client.start()
            try:
                await client.ws.send(b"\x00" * size)
            except websockets.ConnectionClosed:
                pass
            sent += 1
            received = await client.closed(timeout_s=30)
            assert received.close_code == 1009
            assert bool(received.of("error")) == with_event
        await wait_until(lambda: server.counters.active == 0, timeout_s=10)
        await wait_until(lambda: fake.open_streams == 0)
        async with httpx.AsyncClient() as http:
            assert (await http.get(server.http + "/healthz")).status_code == 200
        client = await Client.connect(server.ws())
        assert (await client.start())["type"] == "ready"
        await client.finish()
    print(f"\nfuzz: {sent} malformed frames; fatal kinds {dict(outcomes)}")
    assert sent >= 10_000


# Slow reader -----------------------------------------------------------------------


async def test_a_client_that_stops_reading_does_not_delay_the_others(jfk: np.ndarray) -> None:
    settings = Settings(
        stt=("en=fake",), translators=(), synthesizers=("fake-tts",), outbox_events=64, speaker_encoder=""
    )
    # No keepalive pings: a stalled pipe would also stall them, and the connection
    # could then be dropped for that before the outbox policy is what ends it.
    with serve(settings, [fake_spec(), fake_tts_spec(FakeSynthesizer())], ping_interval_s=None) as server:
        # The stalled client asks for lots of audio and speech events, then never reads.
        # Its receive buffer is pinned small: loopback otherwise autotunes it to
        # tens of MB and the kernel, not the gateway, would absorb the flood.
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        sock.connect(("127.0.0.1", server.port))
        # No compression: the fake voice is a pure tone that deflate would shrink 100-fold.
        stalled = await Client.connect(server.ws(), sock=sock, compression=None, ping_interval=None)
        await stalled.start()
        await stalled.send({"type": "speak", "id": "long", "text": "stalled " * 600})

        async def stall() -> None:
            try:
                for _ in range(20):
                    await stalled.stream(np.concatenate([jfk, np.zeros(16_000, np.int16)]), chunk_ms=200)
            except websockets.ConnectionClosed:
                pass

        # First let the speech fill the pipe (the synthesis then waits at half the
        # outbox), so every event the stalled stream produces really piles up.
        (stalled_session,) = list(server.app.state.gateway.sessions)
        outbox = stalled_session._outbox
        del stalled_session  # hold no session reference while it is being torn down
        await wait_until(lambda: len(outbox) >= settings.outbox_events // 2, timeout_s=30)
        stalling = asyncio.create_task(stall())

        async def live() -> list[float]:
            client = await Client.connect(server.ws())
            await client.start()
            client.read_in_background()
            sent_at = time.monotonic()
            await client.stream(np.concatenate([jfk, np.zeros(16_000, np.int16)]), realtime=True)
            received = await client.finish()
            assert received.close_code == 1000
            finals = received.of("final")
            assert finals and len(finals) == len(received.of("speech.started"))
            # How long after its audio was sent each final arrived.
            return [received.times[received.events.index(f)] - (sent_at + f["t1_ms"] / 1000) for f in finals]

        lags = await asyncio.gather(*(live() for _ in range(3)))
        assert max(max(lag) for lag in lags) < 1.5, lags
        # The stalled client's own library stops reading too, so it cannot see
        # the 1013 close frame; the server's count of the refusal is the proof.
        rejections = server.app.state.gateway.metrics.rejections.labels(reason="overloaded")
        # Generous: on an idle machine the refusal has happened before the live streams end.
        await wait_until(lambda: rejections._value.get() == 1, timeout_s=120)
        stalling.cancel()
        stalled.ws.transport.abort()  # else shutting the server down waits for this dead socket
        await wait_until(lambda: server.counters.active == 0, timeout_s=10)


# Dropped connections ---------------------------------------------------------------


async def test_abrupt_disconnects_mid_utterance_and_mid_synthesis_leak_nothing(jfk: np.ndarray) -> None:
    fake = FakeTranscriber(delay_s=0.01)
    synthesizer = FakeSynthesizer(delay_s=0.05)
    settings = Settings(stt=("en=fake",), translators=(), synthesizers=("fake-tts",), speaker_encoder="")
    with serve(settings, [fake_spec(fake), fake_tts_spec(synthesizer)]) as server:
        runtime = server.app.state.gateway.runtime

        async def round_of_drops() -> None:
            for i in range(20):
                client = await Client.connect(server.ws())
                await client.start()
                if i % 2:
                    await client.send({"type": "speak", "id": "s", "text": "a few words to say " * 5})
                    await asyncio.sleep(0.1)  # mid-synthesis
                else:
                    await client.stream(jfk[: 16_000 * 2])  # mid-utterance
                client.ws.transport.abort()

        await round_of_drops()
        await wait_until(lambda: server.counters.active == 0, timeout_s=10)
        threads_after_first = threading.active_count()
        await round_of_drops()
        await wait_until(lambda: server.counters.active == 0, timeout_s=10)
        await wait_until(lambda: fake.open_streams == 0)
        await wait_until(lambda: all(not r.busy for r in runtime.runners.values()))
        assert threading.active_count() <= threads_after_first  # pools are bounded, nothing piles up
        assert not server.app.state.gateway.sessions and not server.app.state.gateway.per_key


# Soak ------------------------------------------------------------------------------

RSS_GROWTH_BOUND_MB = 25


async def test_soak_500_short_sessions_memory_stays_flat(jfk: np.ndarray) -> None:
    """RSS growth over 500 sessions (after 50 warm-up ones) stays under 25 MB."""
    settings = Settings(stt=("en=fake",), translators=(), synthesizers=(), speaker_encoder="")
    audio = np.concatenate([jfk[16_000 : 16_000 * 2], np.zeros(8_000, np.int16)])
    process = psutil.Process()

    async def one(fmt: str) -> None:
        client = await Client.connect(server.ws(), fmt)
        await client.start()
        client.read_in_background()
        await client.stream(audio, chunk_ms=250)
        received = await client.finish()
        assert received.close_code == 1000 and received.types[-1] == "ended"

    with serve(settings, [fake_spec()]) as server:
        for _ in range(50):
            await one("json")
        rss_before = process.memory_info().rss
        for i in range(500):
            await one(("json", "msgpack")[i % 2])
        await wait_until(lambda: server.counters.active == 0)
        rss_after = process.memory_info().rss
    growth_mb = (rss_after - rss_before) / 2**20
    print(f"\nsoak: RSS {rss_before / 2**20:.1f} → {rss_after / 2**20:.1f} MB over 500 sessions")
    assert growth_mb < RSS_GROWTH_BOUND_MB
