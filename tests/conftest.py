"""A real uvicorn server on loopback, started per test or per module."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette

from hushgate.engines.base import EngineSpec
from hushgate.engines.registry import EngineRegistry
from hushgate.server.app import create_app
from hushgate.server.server import uvicorn_config
from hushgate.server.settings import Settings
from tests.audio_helpers import shared_audio_dir

if TYPE_CHECKING:
    from hushgate.engines.resemblyzer import ResemblyzerEncoder


@dataclass(frozen=True)
class Running:
    app: Starlette
    port: int

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def ws(self, query: str = "") -> str:
        return f"ws://127.0.0.1:{self.port}/v1/stream" + (f"?{query}" if query else "")

    @property
    def counters(self):  # noqa: ANN201 - the app's Counters
        return self.app.state.gateway.metrics


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def serve(
    settings: Settings,
    specs: list[EngineSpec] | None = None,
    *,
    discover: bool = True,
    ping_interval_s: float | None = 20.0,
) -> Iterator[Running]:
    """Run the gateway with uvicorn in a thread of its own, as in production."""
    port = free_port()
    settings = Settings(**{**_fields(settings), "port": port})
    app = create_app(settings, registry=EngineRegistry(specs or [], discover=discover))
    config = uvicorn_config(
        app, settings, host="127.0.0.1", log_level="warning", lifespan="on", ws_ping_interval=ping_interval_s
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    try:
        while True:
            if time.monotonic() > deadline:
                raise RuntimeError("server did not become ready")
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        yield Running(app, port)
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def _fields(settings: Settings) -> dict[str, object]:
    import dataclasses

    return {f.name: getattr(settings, f.name) for f in dataclasses.fields(settings)}


async def wait_until(predicate, timeout_s: float = 5.0) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


@pytest.fixture(autouse=True)
async def _close_leftover_clients():  # noqa: ANN202
    """A test that failed half-way may leave connections open: close them so no session outlives its test."""
    yield
    from tests.wsclient import Client

    for client in list(Client.unclosed):
        await client.aclose()


@pytest.fixture(scope="session")
def audio_dir():  # noqa: ANN201
    path = shared_audio_dir()
    if not path.is_dir():
        pytest.fail(f"shared test audio not found at {path}: CI clones ../shared beside the repo")
    return path


@pytest.fixture(scope="session")
def ge2e_models_dir(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    """A models directory holding the GE2E speaker weights, pulled once per test run.

    The pull is the real one (``pip download --no-deps resemblyzer==0.1.4``, hash-checked).
    """
    from hushgate.models.errors import ChecksumMismatch, PullError
    from hushgate.models.pull import pull_model

    root = tmp_path_factory.mktemp("resemblyzer-models")
    try:
        pull_model("resemblyzer-ge2e", models_dir=root, progress=False)
    except ChecksumMismatch:
        raise  # a different file is a failure, not a missing network
    except PullError as exc:
        pytest.skip(f"could not download the Resemblyzer weights (pip download resemblyzer==0.1.4): {exc}")
    return root


@pytest.fixture(scope="session")
def ge2e_encoder(ge2e_models_dir: Path) -> Iterator[ResemblyzerEncoder]:
    """The real GE2E speaker encoder, loaded once per test run."""
    from hushgate.engines.base import EngineOptions
    from hushgate.engines.resemblyzer import create

    loaded = create(EngineOptions(models_dir=ge2e_models_dir))
    yield loaded
    loaded.close()
