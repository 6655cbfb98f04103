"""A session's spoken language: fixed or identified, and where its translations come from.

`plan_speech` turns `start` into a `SpeechPlan` once, so the session only asks
it questions: which engine route, which stream to open, which targets the
speech engine itself translates (Whisper's X→English task) and which go
through a text translator, and what `ready` says about it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hushgate.engines.base import SpeechOptions, SpeechTranscriber, TranscriberStream
from hushgate.server.hub import EngineHub, SttRoute
from hushgate.server.settings import Settings
from hushgate.wire import CloseCode, ErrorCode, ProtocolError, Start

AUTO = "auto"


@dataclass(frozen=True, slots=True)
class SpeechPlan:
    route: SttRoute
    language: str
    """The requested language, or "auto" until a final names one."""
    options: SpeechOptions | None
    """None: a plain stream of one known language."""
    speech_targets: tuple[str, ...]
    """Targets the speech engine produces itself (English from Whisper's translate task)."""
    text_targets: tuple[str, ...]
    """Targets that go through a text translator (pivoting if needed)."""

    @property
    def detecting(self) -> bool:
        return self.options is not None and self.options.language is None

    def open_stream(self, words: bool) -> TranscriberStream:
        transcriber = self.route.transcriber
        if self.options is not None and isinstance(transcriber, SpeechTranscriber):
            return transcriber.open_speech_stream(options=self.options, words=words)
        return transcriber.open_stream(language=self.language, words=words)

    def ready_stt(self) -> dict[str, Any]:
        """`ready.engines.stt`: the plain fields, plus `detection` when the language is identified."""
        t = self.route.transcriber
        out: dict[str, Any] = {"name": t.name, "model": t.model, "language": self.language}
        if self.detecting and self.options is not None:
            out["detection"] = {
                "languages": list(self.options.candidates) or list(t.languages),
                "switching": self.options.switching,
            }
        return out

    def ready_translate(self) -> dict[str, Any]:
        t = self.route.transcriber
        return {target: {"name": t.name, "model": f"{t.model} (translate task)"} for target in self.speech_targets}


def plan_speech(hub: EngineHub, start: Start, settings: Settings) -> tuple[SpeechPlan, list[ProtocolError]]:
    """The session's plan, and the non-fatal complaints about translation targets.

    Raises a fatal `ProtocolError` when no engine can serve the language asked for.
    """
    language = start.language or settings.default_language
    if language == AUTO:
        route = hub.identifier()
        if route is None:
            raise ProtocolError(
                ErrorCode.ENGINE_UNAVAILABLE,
                "language identification needs a multilingual model (e.g. --stt '*=whisper:whisper-base')",
                close=CloseCode.UNSUPPORTED_DATA,
            )
        known = set(route.transcriber.languages)
        candidates = tuple(dict.fromkeys(code.split("-")[0].lower() for code in start.languages))
        unknown = [code for code in candidates if code not in known]
        if unknown:
            raise ProtocolError(
                ErrorCode.ENGINE_UNAVAILABLE,
                f"{route.transcriber.model} does not know {', '.join(unknown)}",
                close=CloseCode.UNSUPPORTED_DATA,
            )
    else:
        found = hub.stt(language)
        if found is None:
            raise ProtocolError(
                ErrorCode.ENGINE_UNAVAILABLE,
                f"no speech-to-text engine for language {language!r}; available: {', '.join(hub.languages)}",
                close=CloseCode.UNSUPPORTED_DATA,
            )
        route, candidates = found, ()
    source = None if language == AUTO else language.split("-")[0]
    speech_targets: list[str] = []
    text_targets: list[str] = []
    complaints: list[ProtocolError] = []
    for target in start.translate.targets:
        if hub.speech_translation(route, source, target):
            speech_targets.append(target)
        elif source is None and any(t == target for _, t in hub.pairs()):
            text_targets.append(target)  # checked per final, once the language is known
        elif source is not None and hub.translator(language, target) is not None:
            text_targets.append(target)
        else:
            pairs = ", ".join(f"{a}-{b}" for a, b in hub.pairs()) or "none"
            complaints.append(
                ProtocolError(
                    ErrorCode.ENGINE_UNAVAILABLE,
                    f"no translation from {language!r} to {target!r}; installed pairs: {pairs}",
                )
            )
    options = None
    if source is None or speech_targets:
        options = SpeechOptions(
            language=source,
            candidates=candidates,
            switching=settings.language_switching,
            translate_to_english=bool(speech_targets),
        )
    plan = SpeechPlan(route, language, options, tuple(speech_targets), tuple(text_targets))
    return plan, complaints
