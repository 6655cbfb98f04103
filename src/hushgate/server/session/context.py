"""What every part of one session shares."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hushgate.server.hub import EngineHub
from hushgate.server.outbox import Outbox
from hushgate.server.session.calls import EngineCalls
from hushgate.server.settings import Settings


@dataclass(frozen=True, slots=True)
class SessionContext:
    """The server's engines and settings, and the session's own outbox, engine calls and metrics sink."""

    id: str
    hub: EngineHub
    settings: Settings
    outbox: Outbox
    calls: EngineCalls
    on_event: Callable[[str, Any], None]
