"""The server's own counters from ``GET /metrics`` (Prometheus text), as deltas over a bench round."""

from __future__ import annotations

import asyncio
import contextlib
import re
import urllib.error
import urllib.request
from dataclasses import dataclass

Samples = dict[str, float]  # 'name{labels}' -> value

_ENGINE_KEY = re.compile(r'^hushgate_engine_(calls|busy_seconds|queue_delay_seconds)_total\{engine="([^"]+)"\}$')


def parse_prometheus(text: str) -> Samples:
    """``{'name{labels}': value}`` for every sample line of a Prometheus text page."""
    samples: Samples = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        key, _, value = line.rpartition(" ")
        with contextlib.suppress(ValueError):
            samples[key] = float(value)
    return samples


def scrape(http: str) -> Samples | None:
    """The server's counters now, or None when it has no (reachable) ``/metrics``."""
    try:
        with urllib.request.urlopen(f"{http}/metrics", timeout=5) as response:
            return parse_prometheus(response.read().decode("utf-8", "replace"))
    except (urllib.error.URLError, OSError, ValueError):
        return None


async def scrape_async(http: str) -> Samples | None:
    return await asyncio.to_thread(scrape, http)


def engine_deltas(before: Samples, after: Samples) -> dict[str, dict[str, float]]:
    """{engine runner: {calls, busy_seconds, queue_delay_seconds}} between two scrapes."""
    out: dict[str, dict[str, float]] = {}
    for key, value in after.items():
        match = _ENGINE_KEY.match(key)
        if match:
            out.setdefault(match.group(2), {})[match.group(1)] = value - before.get(key, 0.0)
    return out


@dataclass(frozen=True)
class EngineCounters:
    """One engine runner's counters (``tts:piper``, ``translate:apertium``): calls, seconds in and before calls."""

    calls: float = 0.0
    busy_s: float = 0.0
    queue_delay_s: float = 0.0

    def __sub__(self, other: EngineCounters) -> EngineCounters:
        return EngineCounters(
            self.calls - other.calls, self.busy_s - other.busy_s, self.queue_delay_s - other.queue_delay_s
        )


def engine_counters(http: str, engine: str) -> EngineCounters | None:
    """Counters of one engine runner now, None if unreadable or unknown."""
    samples = scrape(http)
    mine = engine_deltas({}, samples or {}).get(engine)
    if mine is None:
        return None
    return EngineCounters(mine.get("calls", 0.0), mine.get("busy_seconds", 0.0), mine.get("queue_delay_seconds", 0.0))


@dataclass
class ServerView:
    """Deltas of the server's own counters over one round (speech-to-text engines only)."""

    stt_calls: float
    stt_busy_s: float
    stt_queue_s: float
    audio_s: float
    finals: float
    final_latency_s: float

    @classmethod
    def between(cls, before: Samples, after: Samples) -> ServerView:
        def delta(prefix: str) -> float:
            return sum(v - before.get(k, 0.0) for k, v in after.items() if k.startswith(prefix))

        stt = '{engine="stt:'
        return cls(
            stt_calls=delta("hushgate_engine_calls_total" + stt),
            stt_busy_s=delta("hushgate_engine_busy_seconds_total" + stt),
            stt_queue_s=delta("hushgate_engine_queue_delay_seconds_total" + stt),
            audio_s=delta("hushgate_audio_seconds_total"),
            finals=delta("hushgate_final_latency_seconds_count"),
            final_latency_s=delta("hushgate_final_latency_seconds_sum"),
        )
