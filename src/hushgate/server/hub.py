"""The engines a server has loaded, and which one serves which language.

Heavy model objects live here, one per (engine, model), shared by every session
(Wyoming's pattern); sessions open light streams on them.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from hushgate.engines.base import (
    EngineError,
    EngineOptions,
    ModelNotFound,
    PrioritisedTranscriber,
    SpeakerEncoder,
    SpeechTranscriber,
    Synthesizer,
    Transcriber,
    Translator,
    Voice,
    VoiceDetector,
)
from hushgate.engines.pivot import PivotTranslator
from hushgate.engines.registry import EngineRegistry
from hushgate.server.batcher import TranslationBatcher
from hushgate.server.runtime import EngineRunner, Runtime
from hushgate.server.sealing import Sealer
from hushgate.server.settings import Settings

log = logging.getLogger("hushgate.engines")


@dataclass(frozen=True, slots=True)
class SttRoute:
    language: str
    transcriber: Transcriber
    runner: EngineRunner


@dataclass(frozen=True, slots=True)
class VoiceRoute:
    voice: Voice
    synthesizer: Synthesizer
    runner: EngineRunner


class EngineHub:
    def __init__(self, settings: Settings, registry: EngineRegistry, runtime: Runtime) -> None:
        self._settings = settings
        self._registry = registry
        self._runtime = runtime
        self._routes: dict[str, SttRoute] = {}
        # The route of the `*` entry: every other language its model knows, and "auto".
        self._any: SttRoute | None = None
        self._vad: VoiceDetector | None = None
        self._translators: list[TranslationBatcher] = []
        self._synthesizers: list[tuple[Synthesizer, EngineRunner]] = []
        self.unavailable: dict[str, str] = {}
        self.load_seconds: dict[str, float] = {}
        self.encoder: SpeakerEncoder | None = None
        self.encoder_runner: EngineRunner | None = None
        self.sealer = Sealer(
            settings.voiceprint_key,
            previous_keys=settings.voiceprint_keys_previous,
            deployment_id=settings.deployment_id,
            ttl_s=settings.voiceprint_ttl_s,
        )

    def load(self) -> None:
        """Load every configured engine; slow, so the app calls it in a thread."""
        s = self._settings
        vad_spec = self._registry.get(s.vad, "vad")
        self._vad = vad_spec.factory(EngineOptions(models_dir=s.models_dir))
        loaded: dict[tuple[str, str | None], Transcriber] = {}
        table = s.stt_table()
        for language, (engine, model) in table.items():
            key = (engine, model)
            if key not in loaded:
                spec = self._registry.get(engine, "stt")
                started = time.perf_counter()
                extra: dict[str, Any] = {
                    "workers": s.stt_concurrency,
                    "beam_size": s.whisper_beam_size,
                    "whisper_context": s.whisper_context,
                    "final_window": s.whisper_final_window,
                    "left_context_s": s.whisper_left_context_s,
                    "settle_inside_s": s.whisper_settle_inside_s,
                    "device": s.whisper_device,
                    "compute_type": s.whisper_compute_type,
                    "switch_margin": s.language_switch_margin,
                    "partial_nice": s.whisper_partial_nice,
                }
                try:
                    transcriber = spec.factory(
                        EngineOptions(model=model, models_dir=s.models_dir, threads=s.engine_threads, extra=extra)
                    )
                except ModelNotFound as exc:
                    if language != "*" or len(table) == 1:
                        raise
                    # The catch-all is an extra; the languages named explicitly still work.
                    self.unavailable[f"stt:*={engine}:{model or ''}"] = f"{type(exc).__name__}: {exc}"
                    log.warning("stt engine for other languages not loaded: %s", exc)
                    continue
                if not isinstance(transcriber, Transcriber):
                    raise TypeError(f"engine {engine!r} did not build a Transcriber")
                self.load_seconds[f"{engine}:{transcriber.model}"] = time.perf_counter() - started
                log.info(
                    "loaded stt engine %s model %s in %.1f s", engine, transcriber.model, time.perf_counter() - started
                )
                loaded[key] = transcriber
            transcriber = loaded[key]
            reserve = transcriber.urgent_workers if isinstance(transcriber, PrioritisedTranscriber) else 0
            runner = self._runtime.add(f"stt:{transcriber.name}:{transcriber.model}", s.stt_concurrency, reserve)
            if language == "*":
                self._any = SttRoute(language, transcriber, runner)
            else:
                self._routes[language] = SttRoute(language, transcriber, runner)
        if self._any is not None:
            for code in self._any.transcriber.languages:
                self._routes.setdefault(code, SttRoute(code, self._any.transcriber, self._any.runner))
        for name in s.translators:
            translator = self._load_optional(name, "translate")
            if isinstance(translator, Translator):
                runner = self._runtime.add(f"translate:{name}", s.translate_concurrency)
                self._translators.append(
                    TranslationBatcher(PivotTranslator(translator), runner, max_waiting=s.engine_queue)
                )
        if s.speaker_encoder:
            encoder = self._load_optional(s.speaker_encoder, "speaker")
            if isinstance(encoder, SpeakerEncoder):
                self.encoder = encoder
                self.encoder_runner = self._runtime.add(f"speaker:{encoder.name}", 1)
        for name in s.synthesizers:
            synthesizer = self._load_optional(name, "tts")
            if isinstance(synthesizer, Synthesizer):
                self._synthesizers.append((synthesizer, self._runtime.add(f"tts:{name}", s.tts_concurrency)))

    def _load_optional(self, name: str, capability: str) -> object | None:
        """Load an engine that the server can do without, recording why it is missing."""
        s = self._settings
        started = time.perf_counter()
        try:
            spec = self._registry.get(name, capability)  # type: ignore[arg-type]
            engine = spec.factory(EngineOptions(models_dir=s.models_dir, threads=s.engine_threads))
        except (EngineError, ModelNotFound, ImportError, OSError) as exc:
            self.unavailable[name] = f"{type(exc).__name__}: {exc}"
            log.warning("%s engine %s not loaded: %s", capability, name, exc)
            return None
        self.load_seconds[name] = time.perf_counter() - started
        log.info("loaded %s engine %s in %.1f s", capability, name, self.load_seconds[name])
        loaded: object = engine
        return loaded

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

    def identifier(self) -> SttRoute | None:
        """The route that serves `language: "auto"`: a multilingual model that identifies languages."""
        candidates = ([self._any] if self._any else []) + list(self._routes.values())
        for route in candidates:
            if isinstance(route.transcriber, SpeechTranscriber) and len(route.transcriber.languages) > 1:
                return route
        return None

    @staticmethod
    def speaks_english(route: SttRoute) -> bool:
        """Whether the route's model can translate its speech into English itself (Whisper's task)."""
        return isinstance(route.transcriber, SpeechTranscriber) and len(route.transcriber.languages) > 1

    def translator(self, source: str, target: str) -> TranslationBatcher | None:
        for batcher in self._translators:
            if (source, target) in batcher.translator.pairs():
                return batcher
        return None

    def pairs(self) -> list[tuple[str, str]]:
        return sorted({p for b in self._translators for p in b.translator.pairs()})

    def voices(self) -> list[Voice]:
        return [v for synthesizer, _ in self._synthesizers for v in synthesizer.voices()]

    def voice(self, voice_id: str | None, language: str | None) -> VoiceRoute | None:
        """The named voice, else the first voice of the language (engines in configured order)."""
        for synthesizer, runner in self._synthesizers:
            for voice in synthesizer.voices():
                if voice_id is not None and voice.id == voice_id:
                    return VoiceRoute(voice, synthesizer, runner)
        if voice_id is not None:
            return None
        for synthesizer, runner in self._synthesizers:
            for voice in synthesizer.voices():
                if language is None or voice.language == language or voice.language.split("-")[0] == language:
                    return VoiceRoute(voice, synthesizer, runner)
        return None

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
        identifier = self.identifier()
        return {
            "stt": stt,
            "language_detection": {
                "engine": identifier.transcriber.name,
                "model": identifier.transcriber.model,
                "languages": list(identifier.transcriber.languages),
            }
            if identifier
            else None,
            "speech_translation": [
                {"engine": t.name, "model": t.model, "target": "en", "sources": [c for c in t.languages if c != "en"]}
                for t in {
                    id(r.transcriber): r.transcriber for r in self._routes.values() if self.speaks_english(r)
                }.values()
            ],
            "vad": {"engine": self._vad.name if self._vad else None},
            "translate": [
                {
                    "engine": b.translator.name,
                    "pairs": [f"{a}-{t}" for a, t in b.translator.pairs()],
                    "pivots": {f"{a}-{t}": p for (a, t), p in _pivots(b.translator).items()},
                }
                for b in self._translators
            ],
            "tts": [
                {"engine": v.engine, "voice": v.id, "language": v.language, "sample_rate": v.sample_rate_hz}
                for v in self.voices()
            ],
            "speaker": {"engine": self.encoder.name, "model": self.encoder.model} if self.encoder else None,
            "unavailable": dict(self.unavailable),
        }

    def speech_translation(self, route: SttRoute, source: str | None, target: str) -> bool:
        """Whether ``target`` comes from the speech itself (Whisper's translate task) on this route."""
        return target == "en" and source != "en" and self.speaks_english(route)

    async def aclose(self) -> None:
        for batcher in self._translators:
            await batcher.aclose()

    def close(self) -> None:
        for batcher in self._translators:
            batcher.translator.close()
        for synthesizer, _ in self._synthesizers:
            synthesizer.close()
        if self.encoder is not None:
            self.encoder.close()
            self.encoder = None
        self._translators.clear()
        self._synthesizers.clear()
        closed: set[int] = set()
        for route in self._routes.values():
            if id(route.transcriber) not in closed:
                closed.add(id(route.transcriber))
                route.transcriber.close()
        self._routes.clear()
        self._any = None


def _pivots(translator: Translator) -> dict[tuple[str, str], str]:
    return translator.pivots() if isinstance(translator, PivotTranslator) else {}
