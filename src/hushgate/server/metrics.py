"""What the server has done, for people and for Prometheus (``GET /metrics``).

Counts, durations and sizes only: no metric carries content. Each app has its
own registry, so tests and several apps in one process never share numbers.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from hushgate.server.runtime import Runtime

LATENCY_BUCKETS_S = (0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)


class _EngineCollector(Collector):
    """Reads the runtime's per-engine statistics at scrape time."""

    def __init__(self, runtime: Runtime, stt_audio_s: dict[str, float]) -> None:
        self._runtime = runtime
        self._stt_audio_s = stt_audio_s

    def collect(self) -> Iterator[Any]:
        calls = CounterMetricFamily("hushgate_engine_calls", "Engine calls completed", labels=["engine"])
        busy = CounterMetricFamily("hushgate_engine_busy_seconds", "Time spent inside engine calls", labels=["engine"])
        delay = CounterMetricFamily(
            "hushgate_engine_queue_delay_seconds", "Time calls waited for an engine slot", labels=["engine"]
        )
        waiting = GaugeMetricFamily("hushgate_engine_waiting", "Calls waiting for an engine slot", labels=["engine"])
        rtf = GaugeMetricFamily(
            "hushgate_engine_real_time_factor",
            "Engine compute seconds per second of audio (speech-to-text)",
            labels=["engine"],
        )
        for key, runner in self._runtime.runners.items():
            calls.add_metric([key], runner.stats.calls)
            busy.add_metric([key], runner.stats.busy_s)
            delay.add_metric([key], runner.stats.queue_delay_s)
            waiting.add_metric([key], runner.waiting)
            audio_s = self._stt_audio_s.get(key, 0.0)
            if audio_s > 0:
                rtf.add_metric([key], runner.stats.busy_s / audio_s)
        yield from (calls, busy, delay, waiting, rtf)


class Metrics:
    def __init__(self, runtime: Runtime) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.sessions_active = Gauge("hushgate_sessions_active", "Sessions open now", registry=r)
        self.sessions = Counter("hushgate_sessions", "Sessions accepted", registry=r)
        self.audio_seconds = Counter("hushgate_audio_seconds", "Audio received", registry=r)
        self.utterances = Counter("hushgate_utterances", "Finals delivered", registry=r)
        self.final_latency = Histogram(
            "hushgate_final_latency_seconds",
            "End of speech (VAD) to final ready to send",
            buckets=LATENCY_BUCKETS_S,
            registry=r,
        )
        self.rejections = Counter(
            "hushgate_rejections", "Refused sessions and requests, by reason", ["reason"], registry=r
        )
        self.bytes_in = Counter("hushgate_bytes_in", "WebSocket payload bytes received", registry=r)
        self.bytes_out = Counter("hushgate_bytes_out", "WebSocket payload bytes sent", registry=r)
        self._stt_audio_s: dict[str, float] = {}
        r.register(_EngineCollector(runtime, self._stt_audio_s))
        # Plain counts for tests and /v1/engines, without parsing Prometheus text.
        self.active = 0
        self.total = 0

    def on_event(self, name: str, value: Any) -> None:
        """The sessions' one reporting hook (see Session.on_event)."""
        match name:
            case "audio_ms":
                self.audio_seconds.inc(value / 1000)
            case "final":
                self.utterances.inc()
                self.final_latency.observe(value)
            case "rejected":
                self.rejections.labels(reason=str(value)).inc()
            case "bytes_in":
                self.bytes_in.inc(value)
            case "bytes_out":
                self.bytes_out.inc(value)
            case "stt_audio_ms":
                key, ms = value
                self._stt_audio_s[key] = self._stt_audio_s.get(key, 0.0) + ms / 1000

    def session_opened(self) -> None:
        self.active += 1
        self.total += 1
        self.sessions.inc()
        self.sessions_active.set(self.active)

    def session_closed(self) -> None:
        self.active -= 1
        self.sessions_active.set(self.active)

    def render(self) -> bytes:
        return generate_latest(self.registry)
