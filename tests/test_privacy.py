"""Privacy promises, tested: a session with every feature writes no file and logs no words.

The real `hushgate serve` runs as a subprocess with an empty HOME, TMPDIR
and working directory of its own, so anything written there is the gateway's
(other programs on the machine cannot blur the result), and a Python audit hook
in that process reports every file opened for writing anywhere on the system.
Native libraries that write through their own C code would not trip the hook,
but they would have to write under HOME, TMPDIR or the working directory, which
are checked to stay empty.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.audio_helpers import read_wav
from tests.conftest import free_port
from tests.media_helpers import encode
from tests.wsclient import Client

pytestmark = pytest.mark.slow
WORDS = ("americans", "country")

LAUNCHER = """
import os, sys
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC

def hook(event, args):
    if event == "open":
        path, mode, flags = args
        writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
            isinstance(flags, int) and flags & WRITE_FLAGS)
        if writing and isinstance(path, (str, bytes)):
            name = os.fsdecode(path)
            if not name.startswith(("/dev/", "/proc/")):
                sys.__stderr__.write(f"AUDIT-WRITE {name}\\n")
    elif event in ("os.rename", "os.replace", "os.mkdir", "os.remove", "os.symlink", "os.truncate"):
        sys.__stderr__.write(f"AUDIT-FS {event} {args[0]!r}\\n")

sys.addaudithook(hook)
from hushgate.server.cli import main
sys.exit(main(["serve"]))
"""


def start_gateway(tmp_path: Path, models_dir: Path, *, log_content: bool, full: bool) -> tuple[subprocess.Popen, int, dict[str, Path]]:
    dirs = {name: tmp_path / name for name in ("home", "tmp", "cwd")}
    for path in dirs.values():
        path.mkdir()
    port = free_port()
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(dirs["home"]),
        "TMPDIR": str(dirs["tmp"]),
        "PYTHONDONTWRITEBYTECODE": "1",
        # This checkout's code, not whatever copy the virtualenv has installed.
        "PYTHONPATH": os.pathsep.join(str(Path(__file__).resolve().parents[1] / d) for d in ("src", "client/src")),
        "HUSHGATE_PORT": str(port),
        "HUSHGATE_LOG_LEVEL": "debug",
        "HUSHGATE_LOG_CONTENT": "true" if log_content else "false",
        "HUSHGATE_MODELS_DIR": str(models_dir),
        "HUSHGATE_VOICEPRINT_KEY": "privacy-test",
        "HUSHGATE_ENROLL_NEEDED_MS": "4000",
    }
    if not full:
        env |= {"HUSHGATE_TRANSLATORS": "", "HUSHGATE_SYNTHESIZERS": "", "HUSHGATE_SPEAKER_ENCODER": ""}
    proc = subprocess.Popen(
        [sys.executable, "-c", LAUNCHER], cwd=dirs["cwd"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return proc, port, dirs
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            break
        time.sleep(0.2)
    proc.kill()
    pytest.fail("gateway did not start:\n" + (proc.stdout.read().decode() if proc.stdout else ""))


def stop_gateway(proc: subprocess.Popen) -> str:
    proc.terminate()
    output, _ = proc.communicate(timeout=60)
    return output.decode(errors="replace")


async def full_session(port: int, audio_dir: Path) -> list[str]:
    jfk = read_wav(audio_dir / "misc" / "jfk.wav")[0]
    ana = read_wav(audio_dir / "librispeech" / "1221-135766-0001.wav")[0]
    silence = np.zeros(16_000, np.int16)
    client = await Client.connect(f"ws://127.0.0.1:{port}/v1/stream")
    ready = await client.start(
        translate={"targets": ["es"]}, speak={"translations": True}, speakers={"identify": True, "diarize": True}
    )
    assert ready["type"] == "ready" and "translate" in ready["engines"] and "tts" in ready["engines"]
    client.read_in_background()
    await client.send({"type": "enroll", "id": "e1", "consent": True, "label": "Ana"})
    await client.stream(np.concatenate([ana, silence]))
    await client.stream(np.concatenate([jfk, silence]))
    await client.send({"type": "speak", "id": "s1", "text": "Nothing said here may be written down."})
    await client.send({"type": "translate", "id": "t1", "text": "Ask not what your country can do for you.", "target": "es"})
    for _ in range(600):
        if client.received.of("enrolled") and client.received.of("tts.end") and client.received.of("translation"):
            break
        await _sleep(0.1)
    (enrolled,) = client.received.of("enrolled")
    vid = enrolled["voiceprint_id"]
    await client.send({"type": "voiceprint.export", "id": "x", "voiceprint_id": vid})
    for _ in range(100):
        if client.received.of("voiceprint.exported"):
            break
        await _sleep(0.05)
    sealed = client.received.of("voiceprint.exported")[0]["voiceprint"]
    await client.send({"type": "voiceprint.delete", "id": "d", "voiceprint_id": vid})
    await client.send({"type": "voiceprint.import", "id": "i", "voiceprint": sealed})
    received = await client.finish(timeout_s=300)
    kinds = set(received.types)
    for kind in ("final", "translation", "tts.start", "tts.end", "enrolled", "voiceprint.exported",
                 "voiceprint.deleted", "voiceprint.imported", "ended"):
        assert kind in kinds, (kind, sorted(kinds))
    assert any(f.get("speaker") for f in received.of("final"))
    # The OpenAI-compatible API too: an MP3 upload decoded by PyAV, speech encoded by it.
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=300) as http:
        upload = await http.post("/v1/audio/transcriptions", files={"file": ("jfk.mp3", encode(
            audio_dir / "misc" / "jfk.wav", "mp3", "libmp3lame"))}, data={"model": "whisper-1", "stream": "true"})
        spoken = await http.post("/v1/audio/speech", json={"model": "tts-1", "input": "Nothing said here is kept.",
                                                           "response_format": "mp3"})
    assert upload.status_code == 200 and "transcript.text.done" in upload.text, upload.text
    assert spoken.status_code == 200 and spoken.content
    return [f["text"].lower() for f in received.of("final")] + [upload.text.lower()]


async def _sleep(seconds: float) -> None:
    import asyncio

    await asyncio.sleep(seconds)


async def test_a_full_session_writes_no_file_and_logs_no_words(
    audio_dir: Path, tmp_path: Path, ge2e_models_dir: Path
) -> None:
    proc, port, dirs = start_gateway(tmp_path, ge2e_models_dir, log_content=False, full=True)
    try:
        finals = await full_session(port, audio_dir)
    finally:
        output = stop_gateway(proc)
    assert any(w in " ".join(finals) for w in WORDS), finals  # the session really heard the words
    leftovers = {name: sorted(str(p) for p in path.rglob("*")) for name, path in dirs.items()}
    assert leftovers == {"home": [], "tmp": [], "cwd": []}, leftovers
    writes = [line for line in output.splitlines() if line.startswith(("AUDIT-WRITE", "AUDIT-FS"))]
    assert writes == [], writes
    logged = output.lower()
    assert "session" in logged  # logging works and carries ids
    assert not any(w in logged for w in WORDS), [line for line in logged.splitlines() if any(w in line for w in WORDS)]


async def test_the_content_switch_really_puts_words_in_the_log(
    audio_dir: Path, tmp_path: Path, ge2e_models_dir: Path
) -> None:
    """The control: with --log-content the same check finds the words, so it is able to fail."""
    proc, port, _dirs = start_gateway(tmp_path, ge2e_models_dir, log_content=True, full=False)
    try:
        jfk = read_wav(audio_dir / "misc" / "jfk.wav")[0]
        client = await Client.connect(f"ws://127.0.0.1:{port}/v1/stream")
        await client.start()
        client.read_in_background()
        await client.stream(np.concatenate([jfk, np.zeros(16_000, np.int16)]))
        await client.finish()
    finally:
        output = stop_gateway(proc)
    assert any(w in output.lower() for w in WORDS)
