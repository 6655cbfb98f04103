"""The state one server shares between its endpoints: engines, limits, live sessions."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Protocol

from hushgate.server.auth import Authenticator
from hushgate.server.hub import EngineHub
from hushgate.server.metrics import Metrics
from hushgate.server.runtime import Runtime
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
    ready: bool = False
    draining: bool = False
    load_error: str | None = None
    stuck_engines: list[str] = field(default_factory=list)

    def drain(self) -> None:
        """Stop taking sessions; `/readyz` turns 503 so load balancers move on."""
        self.draining = True

    def finish_sessions(self) -> None:
        for session in list(self.sessions):
            session.drain()

    @asynccontextmanager
    async def admitted(self, session: Drainable, key_id: str) -> AsyncIterator[None]:
        """Count a live session everywhere it is counted, for as long as it runs."""
        self.metrics.session_opened()
        self.sessions.add(session)
        self.per_key[key_id] = self.per_key.get(key_id, 0) + 1
        try:
            yield
        finally:
            self.metrics.session_closed()
            self.sessions.discard(session)
            self.per_key[key_id] -= 1
            if not self.per_key[key_id]:
                del self.per_key[key_id]
