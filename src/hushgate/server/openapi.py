"""``GET /openapi.json``: the HTTP routes, described for people and code generators.

Written by hand, next to the routes it describes; ``tests/test_openapi.py``
checks that every HTTP route of the app is here and nothing here is missing
from the app. The WebSocket endpoints (``/v1/stream``, ``/vosk``) are
described in docs/protocol.md, since OpenAPI has no words for them.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

_ERROR = {"$ref": "#/components/schemas/Error"}
_OPENAI_ERROR = {"$ref": "#/components/schemas/OpenAIError"}


def _json(description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema or {"type": "object"}}}}


def _openai_errors(*statuses: int) -> dict[str, Any]:
    errors = {str(s): _json("an OpenAI-shaped error", _OPENAI_ERROR) for s in statuses}
    if "429" in errors:
        errors["429"]["headers"] = {
            "Retry-After": {
                "description": "sent when requests were started too fast (session_rate_per_min): seconds to wait",
                "schema": {"type": "integer"},
            }
        }
    return errors


_AUDIO_FORM: dict[str, Any] = {
    "type": "object",
    "required": ["file", "model"],
    "properties": {
        "file": {
            "type": "string",
            "format": "binary",
            "description": "MP3, Ogg/Opus, FLAC, M4A, WebM, WAV … (anything FFmpeg decodes)",
        },
        "model": {"type": "string", "description": "whisper-1 (or another alias) or a model id from /v1/models"},
        "language": {"type": "string", "description": "ISO 639-1 code; default: the server's default language"},
        "prompt": {"type": "string", "description": "accepted and ignored"},
        "response_format": {"type": "string", "enum": ["json", "text", "srt", "vtt", "verbose_json"]},
        "temperature": {"type": "number", "description": "accepted and ignored"},
    },
}
_TRANSCRIPTION_FORM = {
    **_AUDIO_FORM,
    "properties": {
        **_AUDIO_FORM["properties"],
        "timestamp_granularities[]": {"type": "array", "items": {"type": "string", "enum": ["word", "segment"]}},
        "stream": {
            "type": "boolean",
            "description": "server-sent events: transcript.text.delta, then transcript.text.done",
        },
    },
}
_TRANSCRIPT_RESPONSES = {
    "200": {
        "description": "the transcript in the requested format",
        "content": {
            "application/json": {"schema": {"type": "object", "properties": {"text": {"type": "string"}}}},
            "text/plain": {"schema": {"type": "string"}},
            "text/vtt": {"schema": {"type": "string"}},
            "application/x-subrip": {"schema": {"type": "string"}},
            "text/event-stream": {"schema": {"type": "string"}},
        },
    },
    **_openai_errors(400, 401, 403, 413, 429, 503),
}


def _audio_op(summary: str, form: dict[str, Any]) -> dict[str, Any]:
    return {
        "post": {
            "summary": summary,
            "requestBody": {"required": True, "content": {"multipart/form-data": {"schema": form}}},
            "responses": _TRANSCRIPT_RESPONSES,
        }
    }


SPEC: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "hushgate",
        "version": "1",
        "description": "Self-hosted speech gateway. Streaming: WebSocket /v1/stream (docs/protocol.md); "
        "files: the OpenAI-compatible /v1/audio API (docs/openai.md).",
    },
    "components": {
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        "schemas": {
            "Error": {"type": "object", "properties": {"error": {"type": "string"}, "code": {"type": "string"}}},
            "OpenAIError": {
                "type": "object",
                "properties": {
                    "error": {
                        "type": "object",
                        "properties": {
                            "message": {"type": "string"},
                            "type": {"type": "string"},
                            "param": {"type": ["string", "null"]},
                            "code": {"type": ["string", "null"]},
                        },
                    }
                },
            },
        },
    },
    "security": [{"bearer": []}, {}],
    "paths": {
        "/healthz": {"get": {"summary": "the process is alive", "security": [], "responses": {"200": _json("ok")}}},
        "/readyz": {
            "get": {
                "summary": "engines loaded and not draining",
                "security": [],
                "responses": {"200": _json("ready"), "503": _json("loading or draining")},
            }
        },
        "/v1/engines": {
            "get": {
                "summary": "languages, voices, translation pairs, engines and limits",
                "security": [],
                "responses": {"200": _json("what this server offers")},
            }
        },
        "/v1/tts": {
            "post": {
                "summary": "synthesize a whole text into one WAV",
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["text"],
                                "properties": {
                                    "text": {"type": "string"},
                                    "voice": {"type": "string"},
                                    "language": {"type": "string"},
                                },
                            }
                        }
                    },
                },
                "responses": {
                    "200": {"description": "audio/wav", "content": {"audio/wav": {}}},
                    "400": _json("bad request", _ERROR),
                    "404": _json("unknown voice", _ERROR),
                    "413": _json("text too long", _ERROR),
                },
            }
        },
        "/v1/tokens": {
            "post": {
                "summary": "trade an API key for a short-lived browser token",
                "requestBody": {
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "properties": {"ttl_s": {"type": "number"}, "max_session_s": {"type": "number"}},
                            }
                        }
                    }
                },
                "responses": {
                    "200": _json("the token"),
                    "400": _json("bad request", _ERROR),
                    "401": _json("no or bad API key", _ERROR),
                },
            }
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics (counts and timings, no content)",
                "responses": {"200": {"description": "text/plain", "content": {"text/plain": {}}}},
            }
        },
        "/": {
            "get": {
                "summary": "the demo page",
                "security": [],
                "responses": {"200": {"description": "HTML", "content": {"text/html": {}}}},
            }
        },
        "/overlay": {
            "get": {
                "summary": "caption overlay for streaming software",
                "security": [],
                "responses": {"200": {"description": "HTML", "content": {"text/html": {}}}},
            }
        },
        "/openapi.json": {"get": {"summary": "this document", "security": [], "responses": {"200": _json("OpenAPI")}}},
        "/v1/audio/transcriptions": _audio_op("transcribe an audio file (OpenAI-compatible)", _TRANSCRIPTION_FORM),
        "/v1/audio/translations": _audio_op("transcribe an audio file into English (OpenAI-compatible)", _AUDIO_FORM),
        "/v1/audio/speech": {
            "post": {
                "summary": "synthesize speech, streamed as it is made (OpenAI-compatible)",
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["model", "input"],
                                "properties": {
                                    "model": {
                                        "type": "string",
                                        "description": "tts-1 (or another alias) or an engine name",
                                    },
                                    "input": {"type": "string", "maxLength": 4096},
                                    "voice": {
                                        "type": "string",
                                        "description": "a voice id; OpenAI's names mean the default voice",
                                    },
                                    "response_format": {
                                        "type": "string",
                                        "enum": ["mp3", "opus", "aac", "flac", "wav", "pcm"],
                                    },
                                    "speed": {"type": "number", "minimum": 0.25, "maximum": 4.0},
                                    "instructions": {"type": "string", "description": "accepted and ignored"},
                                    "stream_format": {"type": "string", "enum": ["audio"]},
                                },
                            }
                        }
                    },
                },
                "responses": {
                    "200": {
                        "description": "audio in the requested format",
                        "content": {
                            t: {}
                            for t in ("audio/mpeg", "audio/ogg", "audio/aac", "audio/flac", "audio/wav", "audio/pcm")
                        },
                    },
                    **_openai_errors(400, 401, 403, 429, 503),
                },
            }
        },
        "/v1/models": {
            "get": {
                "summary": "speech-to-text models, speech models and voices",
                "responses": {"200": _json("a list of models"), **_openai_errors(401, 403)},
            }
        },
        "/v1/models/{model}": {
            "get": {
                "summary": "one model or voice",
                "parameters": [{"name": "model", "in": "path", "required": True, "schema": {"type": "string"}}],
                "responses": {"200": _json("the model"), **_openai_errors(401, 403, 404)},
            }
        },
    },
}


async def openapi(request: Request) -> Response:
    return JSONResponse(SPEC)
