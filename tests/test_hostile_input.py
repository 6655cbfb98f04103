"""Hostile input stays cheap: control frames are charged before they are decoded, abuse is fatal,
and the worst frames the limits allow leave `/healthz` and other sessions' finals on time.

Plumbing against the fake engine (the cost under test is the gateway's own decoding on its
event loop, not an engine's).
"""

from __future__ import annotations

import asyncio
import dataclasses
import multiprocessing
import statistics
import time
from pathlib import Path
from typing import Any

import httpx
import msgpack
import numpy as np
import pytest
import websockets

from hushgate.server.settings import Settings
from tests.audio_helpers import read_wav
from tests.conftest import serve
from tests.fakes import fake_spec
from tests.wsclient import Client

pytestmark = pytest.mark.slow
SETTINGS = Settings(stt=("en=fake",), translators=(), synthesizers=(), speaker_encoder="")
START = {"type": "start", "audio": {"sample_rate": 16000}}
HEALTHZ_P95_BUDGET_MS = 250.0  # generous for a busy, shared 2-core machine


def empty_arrays(size_bytes: int, fan_out: int = 64) -> bytes:
    """A msgpack frame of about ``size_bytes`` that is nearly all empty arrays: the costliest bytes to decode."""
    leaves_per_inner = fan_out
    inner = b"\xdc" + fan_out.to_bytes(2, "big") + b"\x90" * leaves_per_inner  # array16 of empty arrays
    middles: list[bytes] = []
    budget = size_bytes
    while budget > len(inner) * fan_out + 3 and len(middles) < fan_out:
        middles.append(b"\xdc" + fan_out.to_bytes(2, "big") + inner * fan_out)
        budget -= len(middles[-1])
    return b"\xdc" + len(middles).to_bytes(2, "big") + b"".join(middles)


def test_the_crafted_frame_is_what_it_claims() -> None:
    frame = empty_arrays(100_000)
    decoded = msgpack.unpackb(frame, max_array_len=64)
    assert 90_000 < len(frame) <= 100_000 and len(decoded) > 10 and decoded[0][0][0] == []


async def test_control_flood_is_refused_then_closed_1008() -> None:
    with serve(dataclasses.replace(SETTINGS, control_rate_per_s=5), [fake_spec()]) as server:
        client = await Client.connect(server.ws())
        await client.start()
        client.read_in_background()
        for _ in range(40):
            try:
                await client.send({"type": "ping"})
            except websockets.ConnectionClosed:
                break
        received = await client.closed(timeout_s=10)
    refused = [e for e in received.of("error") if e["code"] == "overloaded"]
    # A burst of twice the rate is served, another burst's worth refused, then the session ends.
    assert len(received.of("pong")) in (10, 11)  # 11 if the bucket refilled a token meanwhile
    assert refused and refused[-1]["fatal"] and len([e for e in refused if not e["fatal"]]) in (9, 10, 11)
    assert received.close_code == 1008


async def test_a_big_control_frame_is_refused_before_it_is_decoded() -> None:
    with serve(SETTINGS, [fake_spec()]) as server:
        client = await Client.connect(server.ws(), "msgpack")
        await client.start()
        client.read_in_background()
        started = time.monotonic()
        await client.ws.send(empty_arrays(1 << 20))
        try:
            received = await client.closed(timeout_s=10)
        finally:
            await client.aclose()
        elapsed_s = time.monotonic() - started
    assert received.close_code == 1009 and received.of("error")[-1]["code"] == "too_large"
    assert elapsed_s < 5


async def _healthz_latencies_ms(url: str, until: asyncio.Event) -> list[float]:
    latencies: list[float] = []
    async with httpx.AsyncClient(timeout=10) as http:
        while not until.is_set():
            t0 = time.perf_counter()
            assert (await http.get(url)).status_code == 200
            latencies.append((time.perf_counter() - t0) * 1000)
            await asyncio.sleep(0.05)
    return latencies


async def _victim(url: str, pcm: np.ndarray) -> tuple[int, float]:
    """Stream speech at twice real time; (finals received, seconds from stop to `ended`)."""
    client = await Client.connect(url)
    await client.start(partials=False)
    client.read_in_background()
    for pos in range(0, len(pcm), 1600):
        await client.send_audio(pcm[pos : pos + 1600].astype("<i2").tobytes())
        await asyncio.sleep(0.05)
    stopped = time.monotonic()
    received = await client.finish(timeout_s=60)
    assert received.close_code == 1000 and received.types[-1] == "ended"
    return len(received.of("final")), time.monotonic() - stopped


async def _greedy_attacker(url: str, sent: list[int]) -> None:
    """Frames of empty arrays as fast as the server takes them, reconnecting whenever closed: on every
    other connection the largest control frame the limits let through to the decoder, else a bigger one."""
    largest = (2 * int(SETTINGS.control_rate_per_s) - 1) * 1024
    frames = [empty_arrays(1 << 20), empty_arrays(largest)]
    connections = 0
    while True:
        frame = frames[connections % 2]
        connections += 1
        try:
            async with websockets.connect(url + "?format=msgpack", max_size=None, close_timeout=1) as ws:
                await ws.send(msgpack.packb(START))
                await ws.recv()
                while True:
                    await ws.send(frame)
                    sent[0] += 1
                    await asyncio.sleep(0)  # let this client's reader see the server's close
        except (websockets.ConnectionClosed, OSError):
            # Reconnecting as fast as possible is a connection flood, another attack (see the report).
            await asyncio.sleep(0.05)


async def _budget_attacker(url: str, rate_per_s: float, sent: list[int]) -> None:
    """The worst the limits allow a client that never gets closed: the largest frames the budget refills."""
    # A valid ping padded with the costliest bytes, just under one second of refill.
    frame = msgpack.packb({"type": "ping", "id": "p"})
    frame = b"\x83" + frame[1:] + msgpack.packb("pad") + empty_arrays(int((rate_per_s - 3) * 1024))
    async with websockets.connect(url + "?format=msgpack", max_size=None, close_timeout=1) as ws:
        await ws.send(msgpack.packb(START))
        await ws.recv()
        while True:
            await ws.send(frame)
            assert msgpack.unpackb(await ws.recv())["type"] == "pong"
            sent[1] += 1
            await asyncio.sleep(1.0)


async def _attack(url: str, rate_per_s: float, duration_s: float) -> list[int]:
    sent = [0, 0]
    attackers = [
        asyncio.create_task(_greedy_attacker(url, sent)),
        asyncio.create_task(_budget_attacker(url, rate_per_s, sent)),
    ]
    await asyncio.sleep(duration_s)
    for attacker in attackers:
        attacker.cancel()
    await asyncio.gather(*attackers, return_exceptions=True)
    return sent


def attack_in_process(url: str, rate_per_s: float, duration_s: float, sent: Any) -> None:
    """The attackers in a process of their own, so they starve neither the test's loop nor share its GIL."""
    sent[:] = asyncio.run(_attack(url, rate_per_s, duration_s))


async def test_healthz_and_another_sessions_finals_hold_under_the_worst_frames(audio_dir: Path) -> None:
    pcm = read_wav(audio_dir / "misc" / "jfk.wav")[0]
    pcm = np.concatenate([pcm, np.zeros(16_000, np.int16)])
    with serve(SETTINGS, [fake_spec()]) as server:
        quiet_finals, quiet_s = await _victim(server.ws(), pcm)
        until = asyncio.Event()
        healthz = asyncio.create_task(_healthz_latencies_ms(server.http + "/healthz", until))
        context = multiprocessing.get_context("spawn")
        sent = context.Manager().list([0, 0])
        attackers = context.Process(
            target=attack_in_process, args=(server.ws(), SETTINGS.control_rate_per_s, quiet_s + 10, sent)
        )
        attackers.start()
        try:
            await asyncio.sleep(2.0)  # the attackers' interpreter starts
            finals, ended_s = await asyncio.wait_for(_victim(server.ws(), pcm), 90)
        finally:
            until.set()
            latencies = await healthz
            attackers.join(60)
            if attackers.is_alive():
                attackers.kill()
    p50 = statistics.median(latencies)
    p95 = statistics.quantiles(latencies, n=20)[-1]
    print(
        f"\nhostile frames sent: greedy {sent[0]} x 268 or 99 KiB of empty arrays, "
        f"budget {sent[1]} x {SETTINGS.control_rate_per_s - 3:.0f} KiB"
        f"\n/healthz under attack: n={len(latencies)} p50={p50:.1f} ms p95={p95:.1f} ms max={max(latencies):.1f} ms"
        f"\nvictim finals: {finals} (quiet run {quiet_finals}); stop→ended {ended_s:.2f} s (quiet {quiet_s:.2f} s)"
    )
    assert finals == quiet_finals >= 1
    assert p95 < HEALTHZ_P95_BUDGET_MS
    assert ended_s < quiet_s + 5
