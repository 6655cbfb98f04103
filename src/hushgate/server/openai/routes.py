"""``/v1/audio/transcriptions``, ``/v1/audio/translations``, ``/v1/audio/speech`` and ``/v1/models``.

Same engines, auth, limits and privacy rules as the WebSocket: each request
counts as a session while it runs (``max_sessions``, ``max_sessions_per_key``,
drained on SIGTERM), bodies are capped before they are read, engines run only
through the runtime, and nothing is logged but sizes and timings.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from hushgate.engines.base import EngineError, Pcm16
from hushgate.server import admission
from hushgate.server.auth import Principal, Scope
from hushgate.server.errors import Busy
from hushgate.server.gateway import Gateway
from hushgate.server.openai.body import parse_json_object, parse_multipart, read_capped
from hushgate.server.openai.errors import ApiError
from hushgate.server.openai.formats import (
    FileTranscript,
    Segment,
    delta_event,
    done_event,
    render,
    sse,
)
from hushgate.server.openai.params import (
    STT_ALIASES,
    TTS_ALIASES,
    AudioRequest,
    SpeechRequest,
    Task,
    audio_request,
    speech_request,
)
from hushgate.server.openai.plan import FilePlan, plan_file
from hushgate.server.openai.speech import MEDIA_TYPES, Encoder
from hushgate.server.openai.transcribe import CutFile, cut_file, segments
from hushgate.server.runtime import Overloaded

log = logging.getLogger("hushgate.openai")
SPEECH_BODY_BYTES = 256 * 1024  # a 4096-character input and its few fields, with room to spare
CREATED = 1_700_000_000  # OpenAI lists a creation time per model; these have none worth telling


class _HttpRequest:
    """A request as the gateway's session count sees it; it ends on its own when drained."""

    def drain(self) -> None:
        return None


def make_routes(gateway: Gateway) -> list[Route]:
    settings, hub = gateway.settings, gateway.hub
    decoder = gateway.runtime.add("decode", settings.stt_concurrency)

    def admit(request: Request, scope: Scope = "stream") -> Principal:
        # OpenAI clients always send a bearer value; with no keys to check it
        # against (loopback mode, or --no-auth) it carries no meaning.
        bearer = gateway.auth.keys_configured and not gateway.auth.no_auth
        decision = admission.decide(gateway, request, scope, bearer=bearer)
        if decision.outcome != "ok" or decision.principal is None:
            status = admission.denial_status(gateway, decision)
            raise ApiError(
                status,
                f"{decision.reason} (send the API key as Authorization: Bearer KEY)",
                code="invalid_api_key" if status == 401 else "forbidden",
            )
        return decision.principal

    def check_capacity(request: Request, principal: Principal) -> None:
        """The WebSocket's refusal, told the OpenAI way: 429 for a cap of one's own, else 503.

        The request's session start is charged here (see ``admission.arrival``).
        """
        refused = admission.arrival(gateway, principal, admission.client_address(request))
        if refused is None:
            return
        admission.rejected(gateway, refused)
        if isinstance(refused, admission.OverCap):
            retry_after_s = refused.retry_after_s if isinstance(refused, admission.TooFast) else None
            raise ApiError(429, refused.message, code="rate_limit_exceeded", retry_after_s=retry_after_s)
        raise ApiError(503, refused.message, code="overloaded" if isinstance(refused, Busy) else "unavailable")

    def counted(request: Request, principal: Principal) -> AbstractAsyncContextManager[None]:
        return gateway.admitted(_HttpRequest(), principal, admission.client_address(request))

    async def audio(request: Request, task: Task) -> Response:
        try:
            principal = admit(request)
            check_capacity(request, principal)
            body = await read_capped(request, settings.max_upload_bytes)
            req = audio_request(parse_multipart(body, request.headers.get("content-type", "")), task, hub, settings)
            del body
            if req.stream:
                cut = await cut_file(settings, hub, decoder, req.upload.data, req.route.transcriber.sample_rate_hz)
                plan = await plan_file(req, hub, [u.pcm for u in cut.utterances], settings.default_language)
                return StreamingResponse(
                    stream_text(req, plan, cut, counted(request, principal)),
                    media_type="text/event-stream",
                    headers={"Cache-Control": "no-store"},
                )
            async with counted(request, principal):
                cut = await cut_file(settings, hub, decoder, req.upload.data, req.route.transcriber.sample_rate_hz)
                plan = await plan_file(req, hub, [u.pcm for u in cut.utterances], settings.default_language)
                result = FileTranscript(
                    req.task, plan.language, cut.duration_ms, tuple([s async for s in transcribed(req, plan, cut)])
                )
            return render(result, req.response_format, words=req.words)
        except ApiError as exc:
            return exc.response()

    async def transcribed(req: AudioRequest, plan: FilePlan, cut: CutFile) -> AsyncIterator[Segment]:
        started = time.perf_counter()
        gateway.metrics.on_event("audio_ms", cut.duration_ms)
        batcher = plan.translator
        async for segment in segments(plan, cut, words=req.words and batcher is None):
            gateway.metrics.on_event("stt_audio_ms", (plan.route.runner.name, segment.t1_ms - segment.t0_ms))
            if batcher is not None and segment.text:
                try:
                    text = await batcher.translate(segment.text, plan.language, "en")
                except Overloaded:
                    raise ApiError(503, "translation is overloaded; try again shortly", code="overloaded") from None
                segment = Segment(segment.index, segment.t0_ms, segment.t1_ms, text)
            yield segment
        log.info("%s: %d ms of audio in %.2f s", req.task, cut.duration_ms, time.perf_counter() - started)

    async def stream_text(
        req: AudioRequest, plan: FilePlan, cut: CutFile, count: AbstractAsyncContextManager[None]
    ) -> AsyncIterator[bytes]:
        async with count:
            texts: list[str] = []
            try:
                async for segment in transcribed(req, plan, cut):
                    if segment.text:
                        yield delta_event(segment.text if not texts else " " + segment.text)
                        texts.append(segment.text)
            except ApiError as exc:
                # Headers are gone already: the error travels as an event, as OpenAI's streams do.
                yield sse({"type": "error", "error": {"message": exc.message, "code": exc.code}})
                return
            yield done_event(" ".join(texts))

    async def transcriptions(request: Request) -> Response:
        return await audio(request, "transcribe")

    async def translations(request: Request) -> Response:
        return await audio(request, "translate")

    async def speech(request: Request) -> Response:
        try:
            principal = admit(request, "tts")
            check_capacity(request, principal)
            req = speech_request(parse_json_object(await read_capped(request, SPEECH_BODY_BYTES)), hub, settings)
            route = req.voice
            try:
                # The engine checks the text and voice here, before the first chunk: a refusal is still a 400.
                chunks = await route.runner.run(route.synthesizer.synthesize, req.text, route.voice.id)
            except EngineError as exc:
                raise ApiError(400, f"synthesis refused: {exc}", param="input") from None
            except Overloaded:
                raise ApiError(503, "speech synthesis is overloaded; try again shortly", code="overloaded") from None
        except ApiError as exc:
            return exc.response()
        return StreamingResponse(
            spoken(req, chunks, counted(request, principal)),
            media_type=MEDIA_TYPES[req.response_format],
            headers={"X-Voice": req.voice.voice.id, "Cache-Control": "no-store"},
        )

    async def spoken(req: SpeechRequest, chunks: Any, count: AbstractAsyncContextManager[None]) -> AsyncIterator[bytes]:
        route = req.voice
        async with count:
            encoder = await route.runner.run(Encoder, req.response_format, route.voice.sample_rate_hz, req.speed)
            if head := encoder.start():
                yield head
            step = functools.partial(_next_piece, chunks, encoder)
            try:
                while (piece := await route.runner.run(step)) is not None:
                    if piece:
                        yield piece
                yield await route.runner.run(encoder.finish)
            except (EngineError, Overloaded) as exc:
                # The status line has gone out; a short body is all that can tell the client.
                log.warning("speech stream cut short: %s", type(exc).__name__)

    async def models(request: Request) -> Response:
        try:
            admit(request)
        except ApiError as exc:
            return exc.response()
        return JSONResponse({"object": "list", "data": model_list()})

    async def model(request: Request) -> Response:
        try:
            admit(request)
        except ApiError as exc:
            return exc.response()
        wanted = request.path_params["model"]
        for entry in model_list():
            if entry["id"] == wanted:
                return JSONResponse(entry)
        return ApiError(404, f"The model {wanted!r} does not exist", param="model", code="model_not_found").response()

    def model_list() -> list[dict[str, Any]]:
        if not gateway.ready:
            return []
        entries: list[dict[str, Any]] = []
        for language in hub.languages:
            route = hub.stt(language)
            if route is not None:
                entries.append(
                    {
                        "id": route.transcriber.model,
                        "object": "model",
                        "created": CREATED,
                        "owned_by": route.transcriber.name,
                        "capability": "transcription",
                        "languages": [language],
                    }
                )
        merged: dict[str, dict[str, Any]] = {}
        for entry in entries:  # one model may serve several languages
            merged.setdefault(entry["id"], {**entry, "languages": []})["languages"] += entry["languages"]
        alias = {"object": "model", "created": CREATED, "owned_by": "hushgate"}
        data = list(merged.values()) + [
            {"id": a, **alias, "capability": "transcription", "languages": hub.languages} for a in STT_ALIASES
        ]
        voices = hub.voices()
        data += [
            {
                "id": engine,
                "object": "model",
                "created": CREATED,
                "owned_by": engine,
                "capability": "speech",
                "voices": [v.id for v in voices if v.engine == engine],
            }
            for engine in sorted({v.engine for v in voices})
        ]
        data += [{"id": a, **alias, "capability": "speech", "voices": [v.id for v in voices]} for a in TTS_ALIASES]
        data += [
            {
                "id": v.id,
                "object": "voice",
                "created": CREATED,
                "owned_by": v.engine,
                "capability": "voice",
                "language": v.language,
                "sample_rate": v.sample_rate_hz,
            }
            for v in voices
        ]
        return data

    return [
        Route("/v1/audio/transcriptions", transcriptions, methods=["POST"]),
        Route("/v1/audio/translations", translations, methods=["POST"]),
        Route("/v1/audio/speech", speech, methods=["POST"]),
        Route("/v1/models", models, methods=["GET"]),
        Route("/v1/models/{model:path}", model, methods=["GET"]),
    ]


def _next_piece(chunks: Any, encoder: Encoder) -> bytes | None:
    chunk: Pcm16 | None = next(chunks, None)
    return None if chunk is None else encoder.push(chunk)
