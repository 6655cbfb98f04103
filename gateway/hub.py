"""The engines a server has loaded, and which one serves which language.

Heavy model objects live here, one per (engine, model), shared by every session
(Wyoming's pattern); sessions open light streams on them.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from engines.base import EngineOptions, Transcriber, VoiceDetector
from engines.registry import EngineRegistry
from gateway.runtime import EngineRunner, Runtime
from gateway.settings import Settings

log = logging.getLogger("speech_gateway.engines")


@dataclass(frozen=True, slots=True)
class SttRoute:
    language: str
    transcriber: Transcriber
    runner: EngineRunner


class EngineHub:
    def __init__(self, settings: Settings, registry: EngineRegistry, runtime: Runtime) -> None:
        self._settings = settings
        self._registry = registry
        self._runtime = runtime
        self._routes: dict[str, SttRoute] = {}
        self._vad: VoiceDetector | None = None
        self.load_seconds: dict[str, float] = {}

    def load(self) -> None:
        """Load every configured engine; slow, so the app calls it in a thread."""
        s = self._settings
        vad_spec = self._registry.get(s.vad, "vad")
        self._vad = vad_spec.factory(EngineOptions(models_dir=s.models_dir))
        loaded: dict[tuple[str, str | None], Transcriber] = {}
        for language, (engine, model) in s.stt_table().items():
            key = (engine, model)
            if key not in loaded:
                spec = self._registry.get(engine, "stt")
                started = time.perf_counter()
                extra: dict[str, Any] = {"workers": s.stt_concurrency, "beam_size": s.whisper_beam_size,
                                         "whisper_context": s.whisper_context}
                transcriber = spec.factory(
                    EngineOptions(model=model, models_dir=s.models_dir, threads=s.engine_threads, extra=extra)
                )
                if not isinstance(transcriber, Transcriber):
                    raise TypeError(f"engine {engine!r} did not build a Transcriber")
                self.load_seconds[f"{engine}:{transcriber.model}"] = time.perf_counter() - started
                log.info("loaded stt engine %s model %s in %.1f s", engine, transcriber.model,
                         time.perf_counter() - started)
                loaded[key] = transcriber
            transcriber = loaded[key]
            runner = self._runtime.add(f"stt:{transcriber.name}:{transcriber.model}", s.stt_concurrency)
            self._routes[language] = SttRoute(language, transcriber, runner)

    @property
    def vad(self) -> VoiceDetector:
        if self._vad is None:
            raise RuntimeError("engines are not loaded yet")
        return self._vad

    def stt(self, language: str) -> SttRoute | None:
        route = self._routes.get(language)
        if route is None and "-" in language:
            # "en-US" is served by the "en" engine when no regional one exists.
            route = self._routes.get(language.split("-")[0])
        return route

    @property
    def languages(self) -> list[str]:
        return sorted(self._routes)

    def describe(self) -> dict[str, Any]:
        stt = [
            {
                "language": r.language,
                "engine": r.transcriber.name,
                "model": r.transcriber.model,
                "sample_rate": r.transcriber.sample_rate_hz,
                "partial_interval_ms": r.transcriber.partial_interval_ms,
            }
            for r in self._routes.values()
        ]
        return {
            "stt": stt,
            "vad": {"engine": self._vad.name if self._vad else None},
            "translate": [],
            "tts": [],
            "speaker": None,
        }

    def close(self) -> None:
        closed: set[int] = set()
        for route in self._routes.values():
            if id(route.transcriber) not in closed:
                closed.add(id(route.transcriber))
                route.transcriber.close()
        self._routes.clear()
