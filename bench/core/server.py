"""The one spawned server: ``python -m hushgate.server.cli serve`` on a free loopback port.

It starts with the environment of the bench plus the overrides given, is waited
for on ``GET /readyz``, writes its output to a log file (a temp file unless one
is given) and is stopped with SIGTERM (then SIGKILL) when the bench ends. Also
the small HTTP helpers every bench uses against a running server.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

from .audio import REPO_ROOT


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def http_base(ws_url: str) -> str:
    """``http(s)://host:port`` of a ``ws(s)://`` URL."""
    parts = urlsplit(ws_url)
    return f"{'https' if parts.scheme == 'wss' else 'http'}://{parts.netloc}"


def get_json(url: str, timeout_s: float = 5.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout_s) as response:
        return json.loads(response.read())


def server_alive(http: str) -> bool:
    """True while ``GET /readyz`` answers 200 (the server is up and not draining)."""
    try:
        with urllib.request.urlopen(f"{http}/readyz", timeout=5) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


class SpawnedServer:
    """``hushgate serve`` on a free loopback port, for the length of a bench (a context manager)."""

    def __init__(
        self, extra_args: Sequence[str] = (), env: Mapping[str, str] | None = None, log_path: Path | None = None
    ) -> None:
        self.port = free_port()
        self.command = [
            sys.executable,
            "-m",
            "hushgate.server.cli",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--log-level",
            "warning",
            *extra_args,
        ]
        self.env_overrides = dict(env or {})
        if log_path is None:
            fd, name = tempfile.mkstemp(prefix="hushgate-bench-", suffix=".log")
            os.close(fd)
            log_path = Path(name)
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/v1/stream"

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def describe(self) -> str:
        env = " ".join(f"{k}={shlex.quote(v)}" for k, v in self.env_overrides.items())
        return f"{env} {shlex.join(self.command)}".strip()

    def log_tail(self, chars: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:] if self.log_path.exists() else ""

    def start(self, timeout_s: float = 180.0) -> None:
        """Start and wait for ``/readyz``; SystemExit (with the log's tail) if it dies or never gets ready."""
        print(f"# spawning: {self.describe()} (log {self.log_path})", file=sys.stderr, flush=True)
        begun = time.monotonic()
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                self.command,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, **self.env_overrides},
                cwd=REPO_ROOT,
            )
        deadline = begun + timeout_s
        while time.monotonic() < deadline:
            code = self.process.poll()
            if code is not None:
                self.process = None
                raise SystemExit(f"server exited with {code}; log: {self.log_path}\n{self.log_tail()}")
            reason = self._not_ready_reason()
            if reason is None:
                print(f"# server ready after {time.monotonic() - begun:.1f} s", file=sys.stderr, flush=True)
                return
            if reason not in ("", "loading"):
                self.stop()
                raise SystemExit(f"server not ready: {reason}; log: {self.log_path}")
            time.sleep(0.2)
        self.stop()
        raise SystemExit(f"server not ready after {timeout_s:.0f} s; log: {self.log_path}\n{self.log_tail()}")

    def _not_ready_reason(self) -> str | None:
        """None when ready; the ``error`` the server gives for not being ready; "" when it does not answer."""
        try:
            with urllib.request.urlopen(f"{self.http}/readyz", timeout=2) as response:
                return None if response.status == 200 else ""
        except urllib.error.HTTPError as exc:
            with contextlib.suppress(ValueError, AttributeError):
                return str(json.loads(exc.read().decode(errors="replace")).get("error") or "")
            return ""
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            return ""

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=40)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def __enter__(self) -> SpawnedServer:
        self.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()
