"""What users install: the client wheel alone in a fresh venv, and the server wheel's layout.

These build real wheels (setuptools from PyPI, in pip's build isolation) and
install the client's dependencies from PyPI, so they need the network and take
a minute on a busy machine.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow

# What a speech engine would drag in; none of it belongs in a client install.
ENGINE_DISTRIBUTIONS = {
    "ctranslate2",
    "faster-whisper",
    "av",
    "onnxruntime",
    "tokenizers",
    "huggingface-hub",
    "numpy",
    "soxr",
    "webrtcvad-wheels",
    "starlette",
    "uvicorn",
    "torch",
    "hushgate",
}


def run(*args: str | Path, cwd: Path | None = None, timeout_s: float = 600) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [str(a) for a in args], cwd=cwd, capture_output=True, text=True, timeout=timeout_s, check=False
    )
    assert done.returncode == 0, f"{args}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


def build_wheel(source: Path, files: list[str], out: Path) -> Path:
    """A wheel built from a copy of ``files`` of ``source``, so that no build output lands in the work tree."""
    tree = out / "tree"
    for name in files:
        if (source / name).is_dir():
            shutil.copytree(source / name, tree / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            tree.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source / name, tree / name)
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", out / "dist", tree)
    (wheel,) = (out / "dist").glob("*.whl")
    return wheel


def test_the_client_installs_alone_without_any_engine(tmp_path: Path) -> None:
    wheel = build_wheel(ROOT / "client", ["pyproject.toml", "README.md", "src"], tmp_path)
    assert wheel.name.startswith("hushgate_client-")
    names = zipfile.ZipFile(wheel).namelist()
    assert "hushgate/wire/py.typed" in names and "hushgate/client/py.typed" in names
    assert not any(n.startswith(("hushgate/server/", "hushgate/engines/", "hushgate/models/")) for n in names)
    assert "hushgate/__init__.py" not in names  # a namespace shared with the server distribution

    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", venv)
    python, bindir = venv / "bin" / "python", venv / "bin"
    run(python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", wheel)

    listed = json.loads(run(python, "-m", "pip", "list", "--format", "json").stdout)
    installed = {entry["name"].lower().replace("_", "-") for entry in listed}
    assert not installed & ENGINE_DISTRIBUTIONS, installed & ENGINE_DISTRIBUTIONS
    assert {"hushgate-client", "websockets", "msgspec"} <= installed

    # Importing the SDK, its sync API and the wire vocabulary pulls in no numpy,
    # and the wire codec works there as it does in the server.
    probe = (
        "import sys, hushgate.client, hushgate.client.sync, hushgate.client.commands, hushgate.wire as w\n"
        "assert 'numpy' not in sys.modules, 'numpy imported'\n"
        "frame = w.encode_message(w.Speak(text='hi', id='s1'), 'msgpack')\n"
        "assert w.MsgpackCodec(1 << 20).decode(frame, started=True) == w.Speak(text='hi', id='s1')\n"
        'assert w.decode_event(\'{"type":"pong"}\') == w.Pong()\n'
        "print(hushgate.client.Client('ws://127.0.0.1:1'))\n"
    )
    assert "Client(" in run(python, "-c", probe).stdout
    usage = subprocess.run([bindir / "hushgate-client"], capture_output=True, text=True, timeout=60, check=False)
    assert usage.returncode == 2 and "transcribe" in usage.stderr
    for command in ("transcribe", "speak", "translate"):
        assert "usage:" in run(bindir / "hushgate-client", command, "--help").stdout
    # Nothing listens on port 1: the command fails as a command should, with exit status 1.
    refused = subprocess.run(
        [bindir / "hushgate-client", "translate", "hello", "--to", "es", "--url", "ws://127.0.0.1:1/v1/stream"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert refused.returncode == 1 and "unreachable" in refused.stderr


def test_the_server_wheel_holds_one_top_level_package(tmp_path: Path) -> None:
    wheel = build_wheel(ROOT, ["pyproject.toml", "README.md", "src"], tmp_path)
    names = zipfile.ZipFile(wheel).namelist()
    top = {name.split("/", 1)[0] for name in names}
    dist_info = {t for t in top if t.endswith(".dist-info")}
    assert top - dist_info == {"hushgate"} and len(dist_info) == 1, top
    # The wire vocabulary and the SDK come from hushgate-client, once.
    assert not any(n.startswith(("hushgate/client/", "hushgate/wire/")) for n in names)
    for shipped in (
        "hushgate/server/app.py",
        "hushgate/models/catalogue.json",
        "hushgate/web/sdk.js",
        "hushgate/web/sdk.d.ts",
        "hushgate/web/protocol.schema.json",
        "hushgate/web/package.json",
    ):
        assert shipped in names, shipped
    metadata = zipfile.ZipFile(wheel).read(f"{dist_info.pop()}/METADATA").decode()
    assert "Requires-Dist: hushgate-client" in metadata
