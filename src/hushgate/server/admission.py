"""Who gets a connection: credentials before the upgrade, capacity after it.

Every entry point decides the same way, here: ``/v1/stream``, ``/vosk``, the
HTTP routes (the OpenAI-compatible API included) and the Wyoming server.

* **Credentials** (:func:`decide`, :func:`denied`): refused before the upgrade
  with HTTP 401/403, counted as ``rejected{unauthorized}``.
* **Waiting to start**: a connection with credentials is *pending* until it
  sends ``start`` (on ``/vosk``: its first audio), for at most
  ``start_timeout_s``, whatever else it sends meanwhile. At most
  ``max_pending`` wait at once server-wide; one more closes the *oldest*
  waiting connection (1013), so a flood of idle sockets only churns itself and
  a client that starts promptly always gets in.
* **Sessions** (:func:`refusal`, :func:`session`): counted only once started,
  against ``max_sessions`` and the caps per API key (its tokens included), per
  client address (loopback exempt: behind a local proxy every client is
  127.0.0.1) and per token (one session at a time: a token is reusable until
  it expires, but not in parallel). A refusal is ``overloaded`` and 1013, or
  ``engine_unavailable`` and 1013 while loading or draining. A connection is
  checked when it arrives (so a full server says so at once) and again at
  ``start``, which is the check that counts.
* **Session starts** (:func:`arrival`): how fast one client address (loopback
  exempt, as above) and one API key (its tokens included) may open sessions,
  a token bucket each (``session_rate_per_min``, bursts of
  ``session_rate_burst``; see ``session_rate``). Charged when a connection
  arrives, not at ``start``: a reconnect storm that never starts is paced too,
  and a session costs one token however long it waits to start. An HTTP request
  and a Wyoming connection arrive and start at once. A refusal is ``overloaded``
  and 1013 (HTTP 429 with ``Retry-After``), counted as ``rejected{session_rate}``;
  a refusal costs no token, nor does a connection the checks above refuse.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Iterator
from contextlib import AbstractAsyncContextManager, AbstractContextManager, asynccontextmanager, contextmanager
from dataclasses import dataclass

from starlette.requests import HTTPConnection
from starlette.responses import JSONResponse, Response
from starlette.websockets import WebSocket

from hushgate.server.auth import Decision, Principal, Scope
from hushgate.server.errors import Busy, EngineUnavailable, GatewayError
from hushgate.server.gateway import Drainable, Gateway
from hushgate.wire import CloseCode, ProtocolError

UNKEYED = frozenset({"loopback", "anonymous", "wyoming"})  # principals that are not an API key


class OverCap(Busy):
    """A key, address or token is at its own cap (the server may still have room for others)."""


class TooFast(OverCap):
    """An address or key started sessions faster than ``session_rate_per_min``; it may again in ``retry_after_s``."""

    def __init__(self, message: str, *, retry_after_s: float) -> None:
        super().__init__(message, close=CloseCode.TRY_AGAIN_LATER)
        self.retry_after_s = retry_after_s


def decide(gateway: Gateway, connection: HTTPConnection, scope: Scope, *, bearer: bool = True) -> Decision:
    """What the credentials on a request or WebSocket upgrade allow, for ``scope``.

    A browser token carries its scopes (sessions and speech); API keys and
    loopback clients have every scope. ``bearer=False`` ignores the Authorization header.
    """
    decision = gateway.auth.decide(
        client_host=connection.client.host if connection.client else None,
        authorization=connection.headers.get("authorization") if bearer else None,
        token=connection.query_params.get("token"),
        origin=connection.headers.get("origin"),
        host=connection.headers.get("host"),
    )
    if decision.outcome == "ok" and decision.principal is not None and scope not in decision.principal.scopes:
        return Decision("forbidden", f"these credentials do not cover {scope}")
    return decision


def denial_status(gateway: Gateway, decision: Decision) -> int:
    """401 or 403 for a refused decision, counted as a rejection."""
    gateway.metrics.on_event("rejected", "unauthorized")
    return 401 if decision.outcome == "unauthorized" else 403


def denied(gateway: Gateway, decision: Decision) -> Response:
    """The HTTP 401/403 for a refused decision, counted as a rejection."""
    status = denial_status(gateway, decision)
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else {}
    return JSONResponse({"error": decision.reason, "code": "unauthorized"}, status_code=status, headers=headers)


def client_address(connection: HTTPConnection) -> str | None:
    return connection.client.host if connection.client else None


async def accept(gateway: Gateway, websocket: WebSocket) -> Principal | None:
    """Accept the upgrade for a client with credentials; None when it was refused.

    Refused before the upgrade: the client sees HTTP 401/403, never a socket.
    """
    decision = decide(gateway, websocket, "stream")
    if decision.outcome != "ok" or decision.principal is None:
        await websocket.send_denial_response(denied(gateway, decision))
        return None
    await websocket.accept()
    return decision.principal


def refusal(gateway: Gateway, principal: Principal, address: str | None) -> GatewayError | None:
    """Why this client cannot have a session now (close 1013: try again later), if it cannot."""
    settings = gateway.settings
    if not gateway.ready or gateway.draining:
        return EngineUnavailable(
            "server is shutting down" if gateway.draining else "engines are still loading; try again shortly",
            close=CloseCode.TRY_AGAIN_LATER,
        )
    if gateway.metrics.active >= settings.max_sessions:
        return Busy(f"server is at its limit of {settings.max_sessions} sessions", close=CloseCode.TRY_AGAIN_LATER)
    per_key, per_address, per_token = settings.session_caps()
    if per_key and principal.key_id not in UNKEYED and gateway.per_key.get(principal.key_id, 0) >= per_key:
        return OverCap(f"this key is at its limit of {per_key} sessions", close=CloseCode.TRY_AGAIN_LATER)
    if (
        per_address
        and address
        and not gateway.auth.is_loopback(address)
        and gateway.per_address.get(address, 0) >= per_address
    ):
        return OverCap(f"this address is at its limit of {per_address} sessions", close=CloseCode.TRY_AGAIN_LATER)
    token_id = principal.token_id
    if per_token and token_id and gateway.per_token.get(token_id, 0) >= per_token:
        return OverCap(
            f"this token is in use by {per_token} live session(s); it opens one at a time",
            close=CloseCode.TRY_AGAIN_LATER,
        )
    return None


def arrival(gateway: Gateway, principal: Principal, address: str | None) -> GatewayError | None:
    """:func:`refusal` for a connection or request that has just arrived, which also charges its session start."""
    refused = refusal(gateway, principal, address)
    if refused is not None:
        return refused
    rate_address = address if address and not gateway.auth.is_loopback(address) else None
    wait = gateway.session_rate.take(rate_address, None if principal.key_id in UNKEYED else principal.key_id)
    if wait is None:
        return None
    wait_s = math.ceil(wait.wait_s * 10) / 10  # rounded up: a client that waits this long gets in
    return TooFast(f"this {wait.kind} starts sessions too fast; try again in {wait_s:.1f} s", retry_after_s=wait_s)


def rejected(gateway: Gateway, error: ProtocolError) -> None:
    """Count a refused connection or request under its reason (the error code, or ``session_rate``)."""
    gateway.metrics.on_event("rejected", "session_rate" if isinstance(error, TooFast) else error.code.value)


@asynccontextmanager
async def session(
    gateway: Gateway, live: Drainable, principal: Principal, address: str | None, *, arriving: bool = False
) -> AsyncIterator[None]:
    """Admit and count a session for as long as it runs; raises the refusal (1013) when it cannot have one.

    ``arriving``: the connection has just arrived and its start is charged here (see :func:`arrival`).
    """
    refused = (arrival if arriving else refusal)(gateway, principal, address)
    if refused is not None:
        rejected(gateway, refused)
        raise refused
    async with gateway.admitted(live, principal, address):
        yield


@contextmanager
def waiting(gateway: Gateway) -> Iterator[asyncio.Event]:
    """A connection waiting to start; the event is set when a newer one evicts it (see the module doc)."""
    queue = gateway.waiting
    if len(queue) >= gateway.settings.max_pending:
        oldest = next(iter(queue))
        del queue[oldest]
        oldest.set()
        gateway.metrics.on_event("rejected", "pending")
    evicted = asyncio.Event()
    queue[evicted] = None
    try:
        yield evicted
    finally:
        queue.pop(evicted, None)


def evicted_error() -> Busy:
    return Busy("too many connections are waiting to start; this one waited longest", close=CloseCode.TRY_AGAIN_LATER)


@dataclass(frozen=True, slots=True)
class Gate:
    """One connection's way through admission: waiting to start, then a counted session."""

    gateway: Gateway
    principal: Principal
    address: str | None

    def waiting(self) -> AbstractContextManager[asyncio.Event]:
        return waiting(self.gateway)

    def session(self, live: Drainable) -> AbstractAsyncContextManager[None]:
        return session(self.gateway, live, self.principal, self.address)
