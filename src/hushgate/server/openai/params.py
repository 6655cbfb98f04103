"""The OpenAI request parameters: checked, with the ones this server does not use accepted and ignored.

OpenAI documents each of these parameters; the ignored ones are listed in
docs/openai.md. A parameter OpenAI does not define is refused, as OpenAI
refuses it ("Unrecognized request argument").
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal, cast

from hushgate.server.hub import EngineHub, SttRoute, VoiceRoute
from hushgate.server.openai.body import Form, Upload
from hushgate.server.openai.errors import bad_param
from hushgate.server.openai.formats import RESPONSE_FORMATS, ResponseFormat
from hushgate.server.openai.speech import (
    SPEECH_FORMATS,
    SpeechFormat,
    available_formats,
)
from hushgate.server.settings import Settings

Task = Literal["transcribe", "translate"]

# OpenAI's model names, served by the gateway's engine for the language.
STT_ALIASES = ("whisper-1", "gpt-4o-transcribe", "gpt-4o-mini-transcribe")
TTS_ALIASES = ("tts-1", "tts-1-hd", "gpt-4o-mini-tts")
# OpenAI's voice names: clients send one by default, so each means the default voice.
OPENAI_VOICES = (
    "alloy",
    "ash",
    "ballad",
    "coral",
    "echo",
    "fable",
    "nova",
    "onyx",
    "sage",
    "shimmer",
    "verse",
    "marin",
    "cedar",
)

TRANSCRIPTION_FIELDS = {
    "file",
    "model",
    "language",
    "prompt",
    "response_format",
    "temperature",
    "timestamp_granularities[]",
    "timestamp_granularities",
    "stream",
    "include[]",
    "include",
    "chunking_strategy",
    "known_speaker_names[]",
    "known_speaker_references[]",
}
TRANSLATION_FIELDS = {"file", "model", "prompt", "response_format", "temperature", "language"}
IGNORED_TRANSCRIPTION = (
    "prompt",
    "temperature",
    "include[]",
    "chunking_strategy",
    "known_speaker_names[]",
    "known_speaker_references[]",
)
SPEECH_FIELDS = {"model", "input", "voice", "response_format", "speed", "instructions", "stream_format"}
IGNORED_SPEECH = ("instructions",)
MAX_SPEECH_INPUT_CHARS = 4096


@dataclass(frozen=True, slots=True)
class AudioRequest:
    task: Task
    upload: Upload
    route: SttRoute
    """The named language's route, or the identifying one when ``language`` is None."""
    language: str | None
    """None: identify it from the audio."""
    response_format: ResponseFormat
    words: bool
    stream: bool


@dataclass(frozen=True, slots=True)
class SpeechRequest:
    text: str
    voice: VoiceRoute
    response_format: SpeechFormat
    speed: float


def _refuse_unknown(names: set[str]) -> None:
    if names:
        name = min(names)
        raise bad_param(name, f"Unrecognized request argument supplied: {name}", code="unknown_parameter")


def stt_model_ids(hub: EngineHub) -> list[str]:
    return sorted({r.transcriber.model for r in (hub.stt(lang) for lang in hub.languages) if r is not None})


def _choice(form: Form, name: str, allowed: tuple[str, ...], default: str) -> str:
    value = form.get(name)
    if value is None or value == "":
        return default
    if value not in allowed:
        raise bad_param(name, f"{name} must be one of {', '.join(allowed)}, not {value!r}")
    return value


def _flag(form: Form, name: str) -> bool:
    value = (form.get(name) or "false").strip().lower()
    if value not in ("true", "false", "1", "0"):
        raise bad_param(name, f"{name} must be true or false, not {value!r}")
    return value in ("true", "1")


def audio_request(form: Form, task: Task, hub: EngineHub, settings: Settings) -> AudioRequest:
    known = TRANSCRIPTION_FIELDS if task == "transcribe" else TRANSLATION_FIELDS
    _refuse_unknown(form.names() - known)
    upload = form.files.get("file")
    if upload is None:
        raise bad_param("file", "`file` is required: the audio file, as a multipart file part", code="missing_file")
    model = form.get("model")
    if not model:
        raise bad_param("model", "`model` is required (e.g. whisper-1)", code="missing_model")
    if model not in STT_ALIASES and model not in stt_model_ids(hub):
        raise bad_param("model", f"unknown model {model!r}; GET /v1/models lists them", code="model_not_found")
    named = (form.get("language") or "").strip().lower()
    # No language named: a multilingual model identifies it (openai/plan.py); else the default.
    identifier = None if named else hub.identifier()
    language = None if identifier is not None else named or settings.default_language
    route = identifier if language is None else hub.stt(language)
    if route is None:
        raise bad_param(
            "language",
            f"no speech-to-text engine for language {language!r}; available: {', '.join(hub.languages)}",
            code="unsupported_language",
        )
    if (
        task == "translate"
        and language is not None
        and language.split("-")[0] != "en"
        and not hub.speech_translation(route, language.split("-")[0], "en")
        and hub.translator(language, "en") is None
    ):
        raise bad_param(
            "language", f"no translation from {language!r} into English is installed", code="unsupported_language"
        )
    temperature = form.get("temperature")
    if temperature:
        try:
            ok = 0.0 <= float(temperature) <= 1.0
        except ValueError:
            ok = False
        if not ok:
            raise bad_param("temperature", f"temperature must be a number from 0 to 1, not {temperature!r}")
    fmt = cast(ResponseFormat, _choice(form, "response_format", RESPONSE_FORMATS, "json"))
    granularities = form.fields.get("timestamp_granularities[]", []) + form.fields.get("timestamp_granularities", [])
    for value in granularities:
        if value not in ("word", "segment"):
            raise bad_param(
                "timestamp_granularities[]", f"timestamp granularity must be word or segment, not {value!r}"
            )
    if granularities and fmt != "verbose_json":
        raise bad_param("timestamp_granularities[]", "timestamp_granularities needs response_format=verbose_json")
    stream = _flag(form, "stream") if task == "transcribe" else False
    return AudioRequest(task, upload, route, language, fmt, "word" in granularities, stream)


def speech_request(body: dict[str, Any], hub: EngineHub, settings: Settings) -> SpeechRequest:
    _refuse_unknown(set(body) - SPEECH_FIELDS)
    model = body.get("model")
    engines = {v.engine for v in hub.voices()}
    if not isinstance(model, str) or not model:
        raise bad_param("model", "`model` is required (e.g. tts-1)", code="missing_model")
    if model not in TTS_ALIASES and model not in engines:
        raise bad_param("model", f"unknown model {model!r}; GET /v1/models lists them", code="model_not_found")
    text = body.get("input")
    if not isinstance(text, str) or not text.strip():
        raise bad_param("input", "`input` must be a non-empty string", code="missing_input")
    limit = min(MAX_SPEECH_INPUT_CHARS, settings.max_text_chars)
    if len(text) > limit:
        raise bad_param("input", f"`input` is longer than {limit} characters", code="string_above_max_length")
    voice = body.get("voice")
    if isinstance(voice, dict):  # newer SDKs may send {"id": ...}
        voice = voice.get("id")
    if voice is not None and not isinstance(voice, str):
        raise bad_param("voice", "`voice` must be a string")
    wanted = None if voice in (None, "") or voice in OPENAI_VOICES else voice
    route = hub.voice(wanted, None if wanted else settings.default_language)
    if route is None:
        raise bad_param("voice", f"unknown voice {voice!r}; GET /v1/models lists the voices", code="voice_not_found")
    fmt = body.get("response_format", "mp3")
    if fmt not in SPEECH_FORMATS:
        raise bad_param("response_format", f"response_format must be one of {', '.join(SPEECH_FORMATS)}, not {fmt!r}")
    if fmt not in available_formats():
        raise bad_param(
            "response_format",
            f"this server's FFmpeg cannot encode {fmt}; use one of {', '.join(available_formats())}",
            code="unsupported_format",
        )
    speed = body.get("speed", 1.0)
    if (
        isinstance(speed, bool)
        or not isinstance(speed, (int, float))
        or not math.isfinite(speed)
        or not 0.25 <= speed <= 4.0
    ):
        raise bad_param("speed", f"speed must be a number from 0.25 to 4.0, not {speed!r}")
    stream_format = body.get("stream_format", "audio")
    if stream_format != "audio":
        raise bad_param("stream_format", "only stream_format=audio is served", code="unsupported_value")
    return SpeechRequest(text, route, cast(SpeechFormat, fmt), float(speed))
