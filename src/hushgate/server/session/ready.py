"""The `ready` event: what a session got, answered to its `start`."""

from __future__ import annotations

from typing import Any

from hushgate.server.hub import EngineHub
from hushgate.server.intake import ControlBudget
from hushgate.server.languages import SpeechPlan
from hushgate.server.settings import Settings
from hushgate.wire import Ready, Start


def ready_event(
    session_id: str,
    start: Start,
    plan: SpeechPlan,
    hub: EngineHub,
    settings: Settings,
    *,
    max_session_s: float,
) -> Ready:
    return Ready(
        session=session_id,
        audio={"encoding": start.audio.encoding, "sample_rate": start.audio.sample_rate_hz, "channels": 1},
        engines=engines_used(start, plan, hub),
        limits=limits(settings, hub, max_session_s=max_session_s),
    )


def engines_used(start: Start, plan: SpeechPlan, hub: EngineHub) -> dict[str, Any]:
    """Name and model of each engine the session will use, per capability."""
    language = plan.language
    used: dict[str, Any] = {
        "stt": plan.ready_stt(),
        "vad": {"name": hub.vad.name, "model": hub.vad.name},
    }
    translate = plan.ready_translate()
    for target in plan.text_targets:
        batcher = hub.translator(language, target)
        if batcher is not None:
            translate[target] = {"name": batcher.translator.name, "model": f"{language}-{target}"}
    if translate:
        used["translate"] = translate
    voice = hub.voice(start.speak.voice, None if start.speak.voice else language)
    if voice is not None:
        used["tts"] = {"name": voice.synthesizer.name, "model": voice.voice.id}
    return used


def limits(settings: Settings, hub: EngineHub, *, max_session_s: float) -> dict[str, Any]:
    s = settings
    return {
        "max_frame_bytes": s.max_frame_bytes,
        "max_session_s": max_session_s,  # a token may cap it below the server's
        "idle_timeout_s": s.idle_timeout_s,
        "max_utterance_ms": s.max_utterance_ms,
        "backlog_ms": s.backlog_ms,
        "outbox_events": s.outbox_events,
        "enroll_needed_ms": s.enroll_needed_ms,
        "control_rate_per_s": s.control_rate_per_s,
        "max_control_bytes": ControlBudget(s.control_rate_per_s).max_frame_bytes,
        "max_text_chars": s.max_text_chars,
        "speak_queue": s.speak_queue,
        "voiceprint_exports_survive_restart": hub.sealer.persistent,
    }
