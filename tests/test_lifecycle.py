"""Metrics, and draining on SIGTERM, against the real `hushgate serve`."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from hushgate.server.settings import Settings
from tests.audio_helpers import read_wav
from tests.conftest import free_port, serve
from tests.fakes import fake_spec
from tests.wsclient import Client

pytestmark = pytest.mark.slow


async def test_metrics_are_scraped(audio_dir: Path) -> None:
    pcm, _ = read_wav(audio_dir / "misc" / "jfk.wav")
    with serve(
        Settings(stt=("en=fake",), translators=(), synthesizers=(), speaker_encoder="", max_sessions=1), [fake_spec()]
    ) as server:
        client = await Client.connect(server.ws())
        await client.start()
        client.read_in_background()
        extra = await Client.connect(server.ws())  # over the limit: a rejection to count
        await extra.closed()
        await client.stream(np.concatenate([pcm, np.zeros(16_000, np.int16)]))
        received = await client.finish()
        async with httpx.AsyncClient() as http:
            text = (await http.get(server.http + "/metrics")).text
    finals = len(received.of("final"))
    values = {
        line.split(" ")[0]: float(line.split(" ")[-1])
        for line in text.splitlines()
        if line and not line.startswith("#")
    }
    assert values["hushgate_sessions_total"] == 1
    assert values["hushgate_sessions_active"] == 0
    assert values["hushgate_audio_seconds_total"] == pytest.approx(12.0)
    assert values["hushgate_utterances_total"] == finals
    assert values["hushgate_final_latency_seconds_count"] == finals
    assert values['hushgate_rejections_total{reason="overloaded"}'] == 1
    assert values["hushgate_bytes_in_total"] > 12 * 32_000
    assert values['hushgate_engine_calls_total{engine="stt:fake:fake-model"}'] > 0
    assert 'hushgate_engine_real_time_factor{engine="stt:fake:fake-model"}' in values


def start_ready(argv: list[str], env: dict[str, str], port: int, cwd: Path | None = None) -> subprocess.Popen:
    """The gateway as a process of its own, once `/readyz` says it is ready."""
    proc = subprocess.Popen(argv, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    pytest.fail(proc.communicate(timeout=10)[0].decode() if proc.stdout else "server did not start")


@pytest.fixture
def gateway_process():  # noqa: ANN201
    port = free_port()
    env = {
        **os.environ,
        "HUSHGATE_PORT": str(port),
        "HUSHGATE_DRAIN_TIMEOUT_S": "1.5",
        "HUSHGATE_TRANSLATORS": "",
        "HUSHGATE_SYNTHESIZERS": "",
    }
    proc = start_ready([sys.executable, "-m", "hushgate.server.cli", "serve"], env, port)
    yield proc, port
    if proc.poll() is None:
        proc.kill()
    proc.wait(10)


async def test_sigterm_drains_a_live_session_final_before_1001(gateway_process, audio_dir: Path) -> None:  # noqa: ANN001
    proc, port = gateway_process
    pcm, _ = read_wav(audio_dir / "misc" / "jfk.wav")
    client = await Client.connect(f"ws://127.0.0.1:{port}/v1/stream")
    await client.start()
    client.read_in_background()
    # Mid-sentence: three seconds into JFK's eleven, then keep talking.
    await client.stream(pcm[: 3 * 16_000], realtime=True)
    proc.send_signal(signal.SIGTERM)
    await asyncio.sleep(0.3)
    async with httpx.AsyncClient() as http:
        assert (await http.get(f"http://127.0.0.1:{port}/readyz")).status_code == 503
    late = await Client.connect(f"ws://127.0.0.1:{port}/v1/stream")
    late_received = await late.closed()
    assert late_received.close_code == 1013
    try:
        await client.stream(pcm[3 * 16_000 :], realtime=True)
    except Exception:  # noqa: BLE001 - the server may close while we still talk
        pass
    received = await client.closed(timeout_s=30)
    assert received.close_code == 1001
    finals = received.of("final")
    assert finals and any("americans" in f["text"].lower() for f in finals)
    assert received.events[-1] == {"type": "ended", "reason": "shutdown", "stats": received.events[-1]["stats"]}
    assert received.events.index(finals[-1]) < len(received.events) - 1
    assert proc.wait(20) == 0


STUCK_LAUNCHER = """
import sys
import threading

from hushgate.engines import registry
from tests.fakes import FakeSynthesizer, fake_spec, fake_tts_spec


class StuckSynthesizer(FakeSynthesizer):
    '''A fake engine that never returns, standing for a native library that hangs.'''

    def synthesize(self, text, voice):
        threading.Event().wait()
        yield from ()


original = registry.EngineRegistry.__init__


def only_fakes(self, specs=None, discover=True):
    original(self, [fake_spec(), fake_tts_spec(StuckSynthesizer())], discover=discover)


registry.EngineRegistry.__init__ = only_fakes
from hushgate.server.cli import main
sys.exit(main(["serve"]))
"""
# Drain (1 s) + the finish grace (10 s) + bounded waits for tasks and engine threads, with room for a busy machine.
STUCK_SHUTDOWN_BOUND_S = 45


async def test_shutdown_is_bounded_even_with_a_stuck_engine() -> None:
    port = free_port()
    env = {
        **os.environ,
        "HUSHGATE_PORT": str(port),
        "HUSHGATE_DRAIN_TIMEOUT_S": "1",
        "HUSHGATE_STT": "en=fake",
        "HUSHGATE_TRANSLATORS": "",
        "HUSHGATE_SYNTHESIZERS": "fake-tts",
        "HUSHGATE_SPEAKER_ENCODER": "",
    }
    proc = start_ready([sys.executable, "-c", STUCK_LAUNCHER], env, port, cwd=Path(__file__).parent.parent)
    try:
        client = await Client.connect(f"ws://127.0.0.1:{port}/v1/stream")
        await client.start()
        client.read_in_background()
        await client.send({"type": "speak", "id": "stuck", "text": "this never comes out"})
        await asyncio.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        started = time.monotonic()
        while proc.poll() is None and time.monotonic() - started < STUCK_SHUTDOWN_BOUND_S:
            await asyncio.sleep(0.2)
        assert proc.poll() is not None, f"still running {STUCK_SHUTDOWN_BOUND_S} s after SIGTERM"
        await client.closed(timeout_s=10)
    finally:
        if proc.poll() is None:
            proc.kill()
        output = proc.communicate(timeout=10)[0].decode(errors="replace")
    assert "still running" in output and "tts:fake-tts" in output, output[-2000:]
