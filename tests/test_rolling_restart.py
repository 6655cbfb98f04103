"""Two replicas behind Debian's nginx (deploy/nginx/hushgate.conf); one is restarted mid-stream.

Several SDK clients stream real speech through nginx. One replica gets SIGTERM
while they talk: it drains (its sessions end with reason ``shutdown``) and the
SDK carries each stream over to the other replica, sending again the audio no
final had covered. Every client must end in order with every sentence in its
finals once: nothing lost at the seam, nothing said twice.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import jiwer
import numpy as np
import numpy.typing as npt
import pytest

from hushgate.client import Client, Ended, Final, Resumed
from tests.audio_helpers import read_wav
from tests.conftest import free_port

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
NGINX_SITE = REPO / "deploy" / "nginx" / "hushgate.conf"
FILES = ("librispeech/1089-134686-0000.wav", "librispeech/2412-153948-0000.wav")
CLIENTS = 3
PACE = 2.0  # times real time: long enough that the restart lands mid-stream
CHUNK_MS = 100
RESTART_AFTER_S = 4.0


def _normalise(text: str) -> str:
    return " ".join(re.sub(r"[^a-z' ]", " ", text.lower()).split())


@contextmanager
def replica(tmp: Path, name: str) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    port = free_port()
    env = {
        **os.environ,
        "HUSHGATE_PORT": str(port),
        "HUSHGATE_DRAIN_TIMEOUT_S": "1",
        "HUSHGATE_TRANSLATORS": "",
        "HUSHGATE_SYNTHESIZERS": "",
        "HUSHGATE_SPEAKER_ENCODER": "",
    }
    log = (tmp / f"{name}.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "hushgate.server.cli", "serve"], env=env, stdout=log, stderr=subprocess.STDOUT
    )
    try:
        _wait_ready(f"http://127.0.0.1:{port}/readyz", proc, tmp / f"{name}.log")
        yield proc, port
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(15)
        log.close()


def _wait_ready(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"{url}: server exited: {log.read_text()[-2000:]}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    pytest.fail(f"{url} not ready in time")


@contextmanager
def nginx(tmp: Path, ports: tuple[int, int]) -> Iterator[int]:
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(binary).exists():
        pytest.fail("nginx is not installed: scripts/test.sh installs Debian's nginx for this test")
    listen = free_port()
    site = NGINX_SITE.read_text()
    site = site.replace("127.0.0.1:8001", f"127.0.0.1:{ports[0]}").replace("127.0.0.1:8002", f"127.0.0.1:{ports[1]}")
    site = site.replace("listen 127.0.0.1:8080", f"listen 127.0.0.1:{listen}")
    conf = tmp / "nginx.conf"
    conf.write_text(
        f"daemon off;\npid {tmp}/nginx.pid;\nerror_log {tmp}/nginx-error.log warn;\nworker_processes 1;\n"
        f"events {{ worker_connections 256; }}\n"
        f"http {{\n client_body_temp_path {tmp}/body; proxy_temp_path {tmp}/proxy;\n"
        f" fastcgi_temp_path {tmp}/fastcgi; uwsgi_temp_path {tmp}/uwsgi; scgi_temp_path {tmp}/scgi;\n"
        f"{site}\n}}\n"
    )
    proc = subprocess.Popen(
        [binary, "-p", str(tmp), "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
    )
    try:
        _wait_ready(f"http://127.0.0.1:{listen}/readyz", proc, tmp / "nginx-error.log")
        yield listen
    finally:
        proc.terminate()
        proc.wait(15)


async def paced(pcm: npt.NDArray[np.int16]) -> AsyncIterator[npt.NDArray[np.int16]]:
    step = 16 * CHUNK_MS
    started = time.monotonic()
    for i, pos in enumerate(range(0, len(pcm), step)):
        yield pcm[pos : pos + step]
        await asyncio.sleep(max(0.0, started + (i + 1) * CHUNK_MS / 1000 / PACE - time.monotonic()))


async def talk(url: str, pcm: npt.NDArray[np.int16]) -> list[object]:
    return [event async for event in Client(url).stream(paced(pcm), 16_000, partials=False)]


async def test_a_replica_restarts_mid_stream_and_no_final_is_lost_or_repeated(audio_dir: Path, tmp_path: Path) -> None:
    gap = np.zeros(16_000, np.int16)
    pcm = np.concatenate([part for f in FILES for part in (read_wav(audio_dir / f)[0], gap)])
    lines = dict(line.split("\t")[::2] for line in (audio_dir / "transcripts.tsv").read_text().splitlines()[1:])
    reference = _normalise(" ".join(lines[f] for f in FILES))

    with (
        replica(tmp_path, "a") as (a, port_a),
        replica(tmp_path, "b") as (_b, port_b),
        nginx(tmp_path, (port_a, port_b)) as listen,
    ):
        url = f"ws://127.0.0.1:{listen}/v1/stream"
        talking = [asyncio.create_task(talk(url, pcm)) for _ in range(CLIENTS)]
        await asyncio.sleep(RESTART_AFTER_S)
        a.send_signal(signal.SIGTERM)
        results = await asyncio.wait_for(asyncio.gather(*talking), timeout=120)
        assert a.wait(30) == 0, "the drained replica should exit cleanly"

    resumed = 0
    for events in results:
        assert isinstance(events[-1], Ended) and events[-1].reason == "stop", events[-1]
        finals = [e for e in events if isinstance(e, Final)]
        resumed += sum(isinstance(e, Resumed) for e in events)
        # One continuous stream: utterances numbered up, their times never overlap.
        assert [f.utterance for f in finals] == sorted({f.utterance for f in finals})
        for before, after in zip(finals, finals[1:], strict=False):
            assert after.t0_ms >= before.t1_ms, (before, after)
        said = _normalise(" ".join(f.text for f in finals))
        assert jiwer.wer(reference, said) < 0.2, said
        # Nothing said twice: no more words than were spoken (and a little slack for splits).
        assert len(said.split()) <= len(reference.split()) + 3, said
    # Round-robin puts at least one of the clients on the restarted replica.
    assert resumed >= 1
