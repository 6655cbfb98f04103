"""Privacy promises, tested: a session with every feature writes no file and logs no words or credentials.

The real `hushgate serve` runs as a subprocess with an empty HOME, TMPDIR
and working directory of its own, so anything written there is the gateway's
(other programs on the machine cannot blur the result), and a Python audit hook
in that process reports every file opened for writing anywhere on the system.
Native libraries that write through their own C code would not trip the hook,
but they would have to write under HOME, TMPDIR or the working directory, which
are checked to stay empty.

The server runs at debug level, and every field a client can send carries a
canary word of its own: speak and translate texts, request ids, the enrollment
label and passphrase, and the recognized speech itself (a sentence synthesized
in the test with the real Piper voice, so the word really is heard and then
translated and spoken back). The whole log is searched for every canary, for the
browser token the session used (also offered once more, tampered, to be denied)
and for the API key. One run writes JSON logs: every line must be JSON.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from hushgate.server.auth import hash_key
from tests.audio_helpers import read_wav
from tests.conftest import free_port
from tests.media_helpers import encode
from tests.wsclient import Client, Received

pytestmark = pytest.mark.slow
WORDS = ("americans", "country")
API_KEY = "sgw_privacy_test_key_" + "k" * 24
# Speech canary: synthesized, recognized, translated and spoken back; also the enrollment passphrase.
SPOKEN = "pineapple"
SENTENCE = f"Please carry the {SPOKEN} to the old harbour before the evening tide comes in."
CANARIES = {
    "speech": SPOKEN,
    "speak text": "marmalade",
    "translate text": "porcupine",
    "request id": "quokka",
    "label": "wombat",
}

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


def start_gateway(
    tmp_path: Path, models_dir: Path, *, log_content: bool, full: bool, json_logs: bool = False
) -> tuple[subprocess.Popen, int, dict[str, Path]]:
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
        "HUSHGATE_VOICEPRINT_KEY": "privacy-test-sealing-key-" + "v" * 16,
        "HUSHGATE_TOKEN_SECRET": "privacy-test-token-secret-" + "t" * 16,
        "HUSHGATE_API_KEYS": hash_key(API_KEY),
        "HUSHGATE_ENROLL_NEEDED_MS": "4000",
        "HUSHGATE_LOG_JSON": "true" if json_logs else "false",
    }
    if not full:
        env |= {"HUSHGATE_TRANSLATORS": "", "HUSHGATE_SYNTHESIZERS": "", "HUSHGATE_SPEAKER_ENCODER": ""}
    proc = subprocess.Popen(
        [sys.executable, "-c", LAUNCHER],
        cwd=dirs["cwd"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
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


def spoken_sentence() -> np.ndarray:
    """SENTENCE in the real Piper voice, at 16 kHz."""
    import soxr

    from hushgate.engines import piper
    from hushgate.engines.base import EngineOptions

    synthesizer = piper.create(EngineOptions())
    try:
        voice = synthesizer.voices()[0]
        pcm = np.concatenate(list(synthesizer.synthesize(SENTENCE, voice.id)))
    finally:
        synthesizer.close()
    resampled = soxr.resample(pcm.astype(np.float32) / 32768, voice.sample_rate_hz, 16_000)
    return (np.clip(resampled, -1, 1) * 32767).astype(np.int16)


def new_token(port: int) -> str:
    response = httpx.post(
        f"http://127.0.0.1:{port}/v1/tokens", json={"ttl_s": 600}, headers={"Authorization": f"Bearer {API_KEY}"}
    )
    assert response.status_code == 200, response.text
    return response.json()["token"]


async def full_session(port: int, audio_dir: Path, token: str) -> list[str]:
    jfk = read_wav(audio_dir / "misc" / "jfk.wav")[0]
    sentence = spoken_sentence()
    silence = np.zeros(16_000, np.int16)
    tampered = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    with pytest.raises(Exception, match="401"):  # a denial is logged too
        await Client.connect(f"ws://127.0.0.1:{port}/v1/stream?token={tampered}")
    tts = httpx.post(
        f"http://127.0.0.1:{port}/v1/tts?token={token}",
        json={"text": f"Say {CANARIES['speak text']} over HTTP."},
        timeout=60,
    )
    assert tts.status_code == 200, tts.text
    client = await Client.connect(f"ws://127.0.0.1:{port}/v1/stream?token={token}")
    ready = await client.start(
        translate={"targets": ["es"]}, speak={"translations": True}, speakers={"identify": True, "diarize": True}
    )
    assert ready["type"] == "ready" and "translate" in ready["engines"] and "tts" in ready["engines"]
    client.read_in_background()
    rid = CANARIES["request id"]
    await client.send(
        {
            "type": "enroll",
            "id": f"{rid}-e1",
            "consent": True,
            "label": CANARIES["label"].title(),
            "passphrase": SENTENCE,
        }
    )
    for _ in range(2):
        await client.stream(np.concatenate([sentence, silence]))
    await client.stream(np.concatenate([jfk, silence]))
    await client.send(
        {
            "type": "speak",
            "id": f"{rid}-s1",
            "text": f"Nothing said here about {CANARIES['speak text']} may be written down.",
        }
    )
    await client.send(
        {
            "type": "translate",
            "id": f"{rid}-t1",
            "target": "es",
            "text": f"Ask not what your country can do for the {CANARIES['translate text']}.",
        }
    )

    def answered(received: Received) -> bool:
        enrollment_over = received.of("enrolled") or [e for e in received.of("error") if e.get("id") == f"{rid}-e1"]
        return bool(enrollment_over and received.of("tts.end") and received.of("translation"))

    try:
        await client.seen(answered, timeout_s=300)
    except TimeoutError:
        pass  # the assertion below says what was heard
    heard = [e for e in client.received.events if e["type"] in ("enroll.progress", "final", "error")]
    assert client.received.of("enrolled"), heard
    (enrolled,) = client.received.of("enrolled")
    vid = enrolled["voiceprint_id"]
    await client.send({"type": "verify", "id": f"{rid}-v", "voiceprint_id": vid})
    await client.send({"type": "voiceprint.export", "id": f"{rid}-x", "voiceprint_id": vid})
    await client.seen(lambda received: bool(received.of("voiceprint.exported")))
    sealed = client.received.of("voiceprint.exported")[0]["voiceprint"]
    await client.send({"type": "voiceprint.delete", "id": f"{rid}-d", "voiceprint_id": vid})
    await client.send({"type": "voiceprint.import", "id": f"{rid}-i", "voiceprint": sealed})
    await client.stream(np.concatenate([sentence, silence]))
    received = await client.finish(timeout_s=300)
    kinds = set(received.types)
    for kind in (
        "final",
        "translation",
        "tts.start",
        "tts.end",
        "enrolled",
        "voiceprint.exported",
        "voiceprint.deleted",
        "voiceprint.imported",
        "ended",
    ):
        assert kind in kinds, (kind, sorted(kinds))
    assert any(f.get("speaker") for f in received.of("final"))
    # The OpenAI-compatible API too: an MP3 upload decoded by PyAV, speech encoded by it.
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{port}", timeout=300, headers={"Authorization": f"Bearer {API_KEY}"}
    ) as http:
        upload = await http.post(
            "/v1/audio/transcriptions",
            files={"file": ("jfk.mp3", encode(audio_dir / "misc" / "jfk.wav", "mp3", "libmp3lame"))},
            data={"model": "whisper-1", "stream": "true"},
        )
        spoken = await http.post(
            "/v1/audio/speech",
            json={
                "model": "tts-1",
                "input": f"Nothing about {CANARIES['speak text']} is kept.",
                "response_format": "mp3",
            },
        )
    assert upload.status_code == 200 and "transcript.text.done" in upload.text, upload.text
    assert spoken.status_code == 200 and spoken.content
    return [f["text"].lower() for f in received.of("final")] + [upload.text.lower()]


@pytest.mark.parametrize("json_logs", [False, True], ids=["text-log", "json-log"])
async def test_a_full_session_writes_no_file_and_logs_no_words(
    audio_dir: Path, tmp_path: Path, ge2e_models_dir: Path, json_logs: bool
) -> None:
    proc, port, dirs = start_gateway(tmp_path, ge2e_models_dir, log_content=False, full=True, json_logs=json_logs)
    try:
        token = new_token(port)
        finals = await full_session(port, audio_dir, token)
    finally:
        output = stop_gateway(proc)
    heard = " ".join(finals)
    assert any(w in heard for w in WORDS) and SPOKEN in heard, finals  # the session really heard the words
    leftovers = {name: sorted(str(p) for p in path.rglob("*")) for name, path in dirs.items()}
    assert leftovers == {"home": [], "tmp": [], "cwd": []}, leftovers
    lines = output.splitlines()
    writes = [line for line in lines if line.startswith(("AUDIT-WRITE", "AUDIT-FS"))]
    assert writes == [], writes
    logged = output.lower()
    assert "session" in logged  # logging works and carries ids
    secrets = {
        "token": token,
        "token signature": token.rsplit(".", 1)[-1],
        "token body": token.split(".")[2],
        "api key": API_KEY,
    }
    leaks = {
        name: [line for line in lines if needle.lower() in line.lower()]
        for name, needle in {**{w: w for w in WORDS}, **CANARIES, **secrets}.items()
    }
    assert not any(leaks.values()), {name: found[:3] for name, found in leaks.items() if found}
    if json_logs:
        not_json = [line for line in lines if line.strip() and not line.startswith("AUDIT-") and not _is_json(line)]
        assert not_json == [], not_json[:10]


def _is_json(line: str) -> bool:
    try:
        return isinstance(json.loads(line), dict)
    except ValueError:
        return False


async def test_the_content_switch_really_puts_words_in_the_log(
    audio_dir: Path, tmp_path: Path, ge2e_models_dir: Path
) -> None:
    """The control: with --log-content the same check finds the words, so it is able to fail."""
    proc, port, _dirs = start_gateway(tmp_path, ge2e_models_dir, log_content=True, full=False)
    try:
        jfk = read_wav(audio_dir / "misc" / "jfk.wav")[0]
        client = await Client.connect(
            f"ws://127.0.0.1:{port}/v1/stream", additional_headers={"Authorization": f"Bearer {API_KEY}"}
        )
        await client.start()
        client.read_in_background()
        await client.stream(np.concatenate([jfk, np.zeros(16_000, np.int16)]))
        await client.finish()
    finally:
        output = stop_gateway(proc)
    assert any(w in output.lower() for w in WORDS)
