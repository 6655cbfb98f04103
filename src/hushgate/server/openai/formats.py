"""Transcripts rendered as OpenAI's response formats, and its server-sent events."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from starlette.responses import JSONResponse, PlainTextResponse, Response

from hushgate.client.captions import cue
from hushgate.engines.base import Word

ResponseFormat = Literal["json", "text", "srt", "vtt", "verbose_json"]
RESPONSE_FORMATS: tuple[ResponseFormat, ...] = ("json", "text", "srt", "vtt", "verbose_json")


@dataclass(frozen=True, slots=True)
class Segment:
    """One utterance of the file, with times on the file's clock."""

    index: int
    t0_ms: int
    t1_ms: int
    text: str
    words: tuple[Word, ...] = ()


@dataclass(frozen=True, slots=True)
class FileTranscript:
    task: Literal["transcribe", "translate"]
    language: str
    duration_ms: int
    segments: tuple[Segment, ...]

    @property
    def text(self) -> str:
        return " ".join(s.text.strip() for s in self.segments if s.text.strip())


_LANGUAGE_NAMES = {
    "en": "english",
    "de": "german",
    "es": "spanish",
    "fr": "french",
    "pt": "portuguese",
    "it": "italian",
    "nl": "dutch",
    "ko": "korean",
    "ja": "japanese",
    "zh": "chinese",
    "ru": "russian",
    "pl": "polish",
}


def render(result: FileTranscript, fmt: ResponseFormat, *, words: bool) -> Response:
    match fmt:
        case "json":
            return JSONResponse({"text": result.text})
        case "text":
            return PlainTextResponse(result.text + "\n")
        case "srt" | "vtt":
            cues = "".join(cue(i + 1, s.t0_ms, s.t1_ms, s.text, fmt) for i, s in enumerate(_spoken(result.segments)))
            if fmt == "vtt":
                return Response("WEBVTT\n\n" + cues, media_type="text/vtt; charset=utf-8")
            return Response(cues, media_type="application/x-subrip; charset=utf-8")
        case "verbose_json":
            return JSONResponse(verbose(result, words=words))


def _spoken(segments: Sequence[Segment]) -> list[Segment]:
    return [s for s in segments if s.text.strip()]


def verbose(result: FileTranscript, *, words: bool) -> dict[str, Any]:
    body: dict[str, Any] = {
        "task": result.task,
        "language": _LANGUAGE_NAMES.get(result.language, result.language),
        "duration": result.duration_ms / 1000,
        "text": result.text,
        "segments": [
            {
                "id": i,
                "seek": 0,
                "start": s.t0_ms / 1000,
                "end": s.t1_ms / 1000,
                "text": s.text.strip(),
                "tokens": [],
                "temperature": 0.0,
                "avg_logprob": 0.0,
                "compression_ratio": 0.0,
                "no_speech_prob": 0.0,
            }
            for i, s in enumerate(_spoken(result.segments))
        ],
    }
    if words:
        body["words"] = [
            {"word": w.w.strip(), "start": w.t0_ms / 1000, "end": w.t1_ms / 1000}
            for s in result.segments
            for w in s.words
        ]
    return body


def sse(event: dict[str, Any]) -> bytes:
    """One server-sent event carrying a JSON object, as OpenAI streams transcripts."""
    return f"data: {json.dumps(event, ensure_ascii=False)}\n\n".encode()


def delta_event(text: str) -> bytes:
    return sse({"type": "transcript.text.delta", "delta": text, "logprobs": None})


def done_event(text: str) -> bytes:
    return sse(
        {
            "type": "transcript.text.done",
            "text": text,
            "logprobs": None,
            "usage": {"type": "tokens", "input_tokens": 0, "output_tokens": 0, "total_tokens": 0},
        }
    )
