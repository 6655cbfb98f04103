"""``hushgate transcribe`` with any audio format and from stdin, and ``--version``, as a user runs them."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from hushgate.server.settings import Settings
from tests.conftest import Running, serve
from tests.media_helpers import JFK_WORDS as JFK
from tests.media_helpers import encode, words

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def server() -> Iterator[Running]:
    with serve(Settings(translators=(), synthesizers=(), speaker_encoder="")) as running:
        yield running


def hushgate(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT / 'client' / 'src'}"}
    return subprocess.run(
        [sys.executable, "-m", "hushgate.server.cli", *args],
        input=stdin,
        capture_output=True,
        env=env,
        timeout=180,
        check=False,
    )


def test_transcribe_an_mp3_and_stdin(server: Running, audio_dir: Path, tmp_path: Path) -> None:
    mp3 = encode(audio_dir / "misc" / "jfk.wav", "mp3", "libmp3lame")
    path = tmp_path / "jfk.mp3"
    path.write_bytes(mp3)
    from_file = hushgate("transcribe", str(path), "--url", server.ws(), "-q")
    assert from_file.returncode == 0, from_file.stderr
    assert len(JFK - set(words(from_file.stdout.decode()))) <= 1, from_file.stdout
    ogg = encode(audio_dir / "misc" / "jfk.wav", "ogg", "libopus", rate_hz=48_000)
    from_stdin = hushgate("transcribe", "-", "--url", server.ws(), "--format", "srt", "-q", stdin=ogg)
    assert from_stdin.returncode == 0, from_stdin.stderr
    assert from_stdin.stdout.startswith(b"1\n00:00:0") and b"country" in from_stdin.stdout.lower()


def test_unreadable_input_is_exit_status_2(server: Running, tmp_path: Path) -> None:
    garbage = hushgate("transcribe", "-", "--url", server.ws(), stdin=b"definitely not audio" * 100)
    assert garbage.returncode == 2 and b"stdin" in garbage.stderr and b"Traceback" not in garbage.stderr
    (tmp_path / "empty.mp3").write_bytes(b"")
    empty = hushgate("transcribe", str(tmp_path / "empty.mp3"), "--url", server.ws())
    assert empty.returncode == 2 and b"empty.mp3" in empty.stderr and b"Traceback" not in empty.stderr


def test_version() -> None:
    result = hushgate("--version")
    assert result.returncode == 0 and result.stdout.decode().startswith("hushgate ")
    client = subprocess.run(
        [sys.executable, "-m", "hushgate.client.commands", "--version"],
        capture_output=True,
        env={**os.environ, "PYTHONPATH": str(ROOT / "client" / "src")},
        check=False,
    )
    assert client.returncode == 0 and client.stdout.decode().startswith("hushgate-client ")
