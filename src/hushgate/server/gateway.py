"""The state one server shares between its endpoints: engines, limits, live sessions."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Protocol

from hushgate.server.auth import Authenticator, Principal
from hushgate.server.hub import EngineHub
from hushgate.server.metrics import Metrics
from hushgate.server.runtime import Runtime
from hushgate.server.session_rate import SessionRate
from hushgate.server.settings import Settings


class Drainable(Protocol):
    """A live connection the server can ask to finish (see DrainingServer)."""

    def drain(self) -> None: ...


@dataclass(slots=True)
class Gateway:
    settings: Settings
    hub: EngineHub
    runtime: Runtime
    metrics: Metrics
    auth: Authenticator
    sessions: set[Drainable] = field(default_factory=set)
    per_key: dict[str, int] = field(default_factory=dict)
    per_address: dict[str, int] = field(default_factory=dict)
    per_token: dict[str, int] = field(default_factory=dict)
    # Connections waiting to send `start`, oldest first; each event is set to evict it.
    waiting: dict[asyncio.Event, None] = field(default_factory=dict)
    ready: bool = False
    draining: bool = False
    load_error: str | None = None
    stuck_engines: list[str] = field(default_factory=list)
    # Session starts per address and key (see ``admission``); built from the settings.
    session_rate: SessionRate = field(init=False)

    def __post_init__(self) -> None:
        self.session_rate = SessionRate(self.settings.session_rate_per_min, self.settings.session_rate_burst)

    def drain(self) -> None:
        """Stop taking sessions; `/readyz` turns 503 so load balancers move on."""
        self.draining = True

    def finish_sessions(self) -> None:
        for session in list(self.sessions):
            session.drain()

    def count(self, principal: Principal, address: str | None, step: int = 1) -> None:
        """Add (or with ``step=-1`` remove) one session for its key, address and token."""
        for counts, key in (
            (self.per_key, principal.key_id),
            (self.per_address, address),
            (self.per_token, principal.token_id),
        ):
            if key is None:
                continue
            counts[key] = counts.get(key, 0) + step
            if counts[key] <= 0:
                del counts[key]

    @asynccontextmanager
    async def admitted(self, session: Drainable, principal: Principal, address: str | None) -> AsyncIterator[None]:
        """Count a live session everywhere it is counted, for as long as it runs (see ``admission``)."""
        self.metrics.session_opened()
        self.sessions.add(session)
        self.count(principal, address)
        try:
            yield
        finally:
            self.metrics.session_closed()
            self.sessions.discard(session)
            self.count(principal, address, -1)
