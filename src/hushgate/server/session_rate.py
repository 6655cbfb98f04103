"""How fast one client may start sessions: a token bucket per client address and per API key.

A bucket holds up to ``burst`` tokens and refills at ``rate_per_s``; starting a
session takes one token from its address's bucket and one from its key's, and
only when both have one (a refusal costs nothing, so retrying is never punished
beyond the wait). See :mod:`hushgate.server.admission` for who is charged when.

Memory is bounded: a bucket that has refilled is the same as no bucket and is
dropped, and at most ``max_buckets`` are kept per kind. Past that the least
recently charged bucket is forgotten, the one that has had longest to refill;
its client starts again with a full burst. So a client gains an extra burst only
while ``max_buckets`` other clients are charging faster than it does, and then it
is one among that many addresses anyway.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

# Per kind (addresses, keys): a few hundred bytes each, so a few megabytes at most.
MAX_BUCKETS = 10_000


@dataclass(slots=True)
class _Level:
    tokens: float
    at_s: float


@dataclass(frozen=True, slots=True)
class Wait:
    """A start that was not allowed: whose bucket was empty, and how long until it holds a token."""

    kind: Literal["address", "key"]
    wait_s: float


class Buckets:
    """Token buckets by name (``rate_per_s`` > 0); at most ``max_buckets`` are kept (see the module doc)."""

    def __init__(self, rate_per_s: float, burst: int, *, max_buckets: int = MAX_BUCKETS) -> None:
        self._rate_per_s = rate_per_s
        self._burst = float(burst)
        self._max_buckets = max_buckets
        self._levels: OrderedDict[str, _Level] = OrderedDict()  # least recently charged first

    def __len__(self) -> int:
        return len(self._levels)

    def tokens(self, name: str, now_s: float) -> float:
        level = self._levels.get(name)
        return self._burst if level is None else self._refilled(level, now_s)

    def wait_s(self, name: str, now_s: float) -> float:
        """Seconds until ``name`` holds a whole token; 0 when it holds one now."""
        return max(0.0, (1.0 - self.tokens(name, now_s)) / self._rate_per_s)

    def take(self, name: str, now_s: float) -> None:
        self._levels[name] = _Level(self.tokens(name, now_s) - 1.0, now_s)
        self._levels.move_to_end(name)
        self._forget(now_s)

    def _refilled(self, level: _Level, now_s: float) -> float:
        return min(self._burst, level.tokens + max(0.0, now_s - level.at_s) * self._rate_per_s)

    def _forget(self, now_s: float) -> None:
        while self._levels:
            name, level = next(iter(self._levels.items()))
            if len(self._levels) <= self._max_buckets and self._refilled(level, now_s) < self._burst:
                return
            del self._levels[name]


class SessionRate:
    """The session-start limit of one server; ``per_min`` 0 turns it off."""

    def __init__(
        self,
        per_min: float,
        burst: int,
        *,
        max_buckets: int = MAX_BUCKETS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.enabled = per_min > 0
        rate_per_s = per_min / 60.0
        self.addresses = Buckets(rate_per_s, burst, max_buckets=max_buckets)
        self.keys = Buckets(rate_per_s, burst, max_buckets=max_buckets)
        self.clock = clock  # a test seam: the server reads it on every start

    def take(self, address: str | None, key: str | None) -> Wait | None:
        """Charge one start to ``address`` and ``key`` (None: that kind is not limited); a Wait when refused."""
        if not self.enabled:
            return None
        now_s = self.clock()
        charged: list[tuple[Literal["address", "key"], Buckets, str]] = []
        if address is not None:
            charged.append(("address", self.addresses, address))
        if key is not None:
            charged.append(("key", self.keys, key))
        waits = [Wait(kind, buckets.wait_s(name, now_s)) for kind, buckets, name in charged]
        longest = max(waits, key=lambda wait: wait.wait_s, default=None)
        if longest is not None and longest.wait_s > 0:
            return longest
        for _kind, buckets, name in charged:
            buckets.take(name, now_s)
        return None
