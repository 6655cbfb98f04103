"""uvicorn, taught to drain instead of dropping live sessions on SIGTERM."""

from __future__ import annotations

import logging
import signal
import time
from types import FrameType
from typing import Any

import uvicorn
from starlette.applications import Starlette

from hushgate.server import log_policy
from hushgate.server.gateway import Gateway
from hushgate.server.http_limits import header_deadline_protocol
from hushgate.server.settings import Settings

log = logging.getLogger("hushgate")
# After sessions are told to finish, how long they get to flush their finals.
FINISH_GRACE_S = 10.0
# On shutdown, how long session tasks may wait for their engines before they are cancelled.
TASKS_STOP_WAIT_S = 5.0
SPURIOUS_DENIAL_ERROR = "ASGI callable returned without completing handshake."


class _DenialNoiseFilter(logging.Filter):
    """uvicorn's websockets-sansio protocol logs this ERROR after every valid
    HTTP 401/403 denial response, although the client received the denial
    (upstream: Kludex/uvicorn PR #3138). Alerting on it would page an operator
    for every refused token; the gateway never returns without accepting or
    denying, so the line carries no information here."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != SPURIOUS_DENIAL_ERROR


def install_log_filters(handler: logging.Handler, *, log_content: bool) -> None:
    """Everything that decides what reaches ``handler`` (see log_policy)."""
    logging.getLogger("uvicorn.error").addFilter(_DenialNoiseFilter())
    log_policy.install(handler, log_content=log_content)


class DrainingServer(uvicorn.Server):
    """First SIGTERM/SIGINT: drain. A second SIGINT: uvicorn's own hard stop.

    Draining: ``/readyz`` answers 503 and new sessions are refused (1013), so a
    load balancer moves traffic away; running sessions go on for up to
    ``drain_timeout_s``; then each is finished (its last utterance flushed to a
    final, ``ended`` with reason ``shutdown``) and closed with 1001.
    """

    def __init__(self, config: uvicorn.Config, gateway: Gateway) -> None:
        super().__init__(config)
        self._gateway = gateway
        self._drain_deadline: float | None = None
        self._finish_deadline: float | None = None

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self._drain_deadline is None and not self.should_exit:
            # Runs as a signal handler: only set flags; on_tick does the work.
            self._drain_deadline = time.monotonic() + self._gateway.settings.drain_timeout_s
            self._gateway.drain()
            log.info(
                "%s: draining %d sessions for up to %.0f s",
                signal.Signals(sig).name,
                len(self._gateway.sessions),
                self._gateway.settings.drain_timeout_s,
            )
            return
        super().handle_exit(sig, frame)

    async def on_tick(self, counter: int) -> bool:
        if self._drain_deadline is not None:
            now = time.monotonic()
            if not self._gateway.sessions:
                return True
            if now >= self._drain_deadline and self._finish_deadline is None:
                log.info("drain timeout: finishing %d sessions", len(self._gateway.sessions))
                self._gateway.finish_sessions()
                self._finish_deadline = now + FINISH_GRACE_S
            if self._finish_deadline is not None and now >= self._finish_deadline:
                return True
        return await super().on_tick(counter)


def uvicorn_config(app: Starlette, settings: Settings, **overrides: Any) -> uvicorn.Config:
    """The one mapping of Settings onto uvicorn's options; tests pass their own loop options."""
    options: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "log_level": settings.log_level,
        # Frames past twice the limit are refused by the WebSocket layer itself
        # (close 1009) before they are buffered; the session reports the rest.
        "ws_max_size": 2 * settings.max_frame_bytes,
        "access_log": False,
        # uvicorn's own handlers would print its lines past our formatter (breaking
        # --log-json) and past the filters that redact tokens: everything goes to ours.
        "log_config": None,
        # Session tasks still waiting on a stuck engine are cancelled after this long.
        "timeout_graceful_shutdown": TASKS_STOP_WAIT_S,
        "http": header_deadline_protocol(settings.header_timeout_s),
        "limit_concurrency": settings.max_connections,
        **overrides,
    }
    return uvicorn.Config(app, **options)
