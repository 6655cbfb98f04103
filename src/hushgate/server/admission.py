"""Who gets a connection: credentials before the upgrade, capacity after it.

Both WebSocket endpoints and the HTTP routes that need a key decide the same way;
both endpoints count their sessions on the same :class:`Gateway`, so one
session limit covers them all.
"""

from __future__ import annotations

from starlette.requests import HTTPConnection
from starlette.responses import JSONResponse, Response
from starlette.websockets import WebSocket

from hushgate.server.auth import Decision, Principal, Scope
from hushgate.server.errors import Busy, EngineUnavailable, GatewayError
from hushgate.server.gateway import Gateway
from hushgate.wire import CloseCode


def decide(gateway: Gateway, connection: HTTPConnection, scope: Scope) -> Decision:
    """What the credentials on a request or WebSocket upgrade allow, for ``scope``.

    A browser token carries its scopes (sessions and speech); API keys and
    loopback clients have every scope.
    """
    decision = gateway.auth.decide(
        client_host=connection.client.host if connection.client else None,
        authorization=connection.headers.get("authorization"),
        token=connection.query_params.get("token"),
        origin=connection.headers.get("origin"),
        host=connection.headers.get("host"),
    )
    if decision.outcome == "ok" and decision.principal is not None and scope not in decision.principal.scopes:
        return Decision("forbidden", f"these credentials do not cover {scope}")
    return decision


def denied(gateway: Gateway, decision: Decision) -> Response:
    """The HTTP 401/403 for a refused decision, counted as a rejection."""
    gateway.metrics.on_event("rejected", "unauthorized")
    status = 401 if decision.outcome == "unauthorized" else 403
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else {}
    return JSONResponse({"error": decision.reason, "code": "unauthorized"}, status_code=status, headers=headers)


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


def refusal(gateway: Gateway, principal: Principal) -> GatewayError | None:
    """Why an accepted client cannot have a session now (close 1013: try again later), if it cannot."""
    settings = gateway.settings
    if not gateway.ready or gateway.draining:
        return EngineUnavailable(
            "server is shutting down" if gateway.draining else "engines are still loading; try again shortly",
            close=CloseCode.TRY_AGAIN_LATER,
        )
    if gateway.metrics.active >= settings.max_sessions:
        return Busy(f"server is at its limit of {settings.max_sessions} sessions", close=CloseCode.TRY_AGAIN_LATER)
    per_key = settings.max_sessions_per_key
    if per_key and gateway.per_key.get(principal.key_id, 0) >= per_key:
        return Busy(f"this key is at its limit of {per_key} sessions", close=CloseCode.TRY_AGAIN_LATER)
    return None
