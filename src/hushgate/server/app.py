"""The ASGI application: HTTP routes beside the streaming WebSocket."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import math
import wave
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.websockets import WebSocket

from hushgate.engines.registry import EngineRegistry
from hushgate.server import admission
from hushgate.server.auth import Authenticator, Decision
from hushgate.server.gateway import Gateway
from hushgate.server.hub import EngineHub
from hushgate.server.intake import ControlBudget
from hushgate.server.metrics import Metrics
from hushgate.server.openai.body import read_capped
from hushgate.server.openai.errors import ApiError
from hushgate.server.openai.routes import make_routes as openai_routes
from hushgate.server.openapi import openapi
from hushgate.server.runtime import Runtime
from hushgate.server.session import Session
from hushgate.server.settings import Settings
from hushgate.server.transport import Transport, WebSocketTransport, close_quietly
from hushgate.server.vosk_compat import make_vosk_endpoint
from hushgate.server.wyoming import WyomingServer
from hushgate.wire import CloseCode, ProtocolError
from hushgate.wire.codec import Codec, JsonCodec, codec_for

log = logging.getLogger("hushgate")
TOKENS_BODY_BYTES = 4096  # a few numbers: ttl_s, max_session_s
WEB_DIR = Path(str(resources.files("hushgate.web")))
# At shutdown, how long engine calls still running may take before they are abandoned.
ENGINE_STOP_WAIT_S = 5.0


def create_app(settings: Settings | None = None, *, registry: EngineRegistry | None = None) -> Starlette:
    settings = settings or Settings.from_env()
    runtime = Runtime(max_waiting=settings.engine_queue)
    auth = Authenticator(
        key_hashes=settings.api_keys,
        token_secret=settings.token_secret,
        previous_token_secrets=settings.token_secrets_previous,
        allowed_origins=settings.allowed_origins,
        no_auth=settings.no_auth,
        loopback_addresses=settings.loopback_addresses,
    )
    gateway = Gateway(
        settings, EngineHub(settings, registry or EngineRegistry(), runtime), runtime, Metrics(runtime), auth
    )

    async def load_engines() -> None:
        try:
            await asyncio.to_thread(gateway.hub.load)
        except Exception as exc:  # noqa: BLE001 - reported by /readyz and logged
            gateway.load_error = f"{type(exc).__name__}: {exc}"
            log.error("engines failed to load: %s", gateway.load_error)
            return
        gateway.ready = True
        log.info("engines ready: %s", ", ".join(gateway.hub.languages))

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        loading = asyncio.create_task(load_engines())
        wyoming = WyomingServer(gateway, settings.wyoming_uri) if settings.wyoming_uri else None
        if wyoming is not None:
            await wyoming.start()
            app.state.wyoming = wyoming
        try:
            yield
        finally:
            if wyoming is not None:
                await wyoming.stop()
            loading.cancel()
            await asyncio.gather(loading, return_exceptions=True)
            await gateway.hub.aclose()
            gateway.stuck_engines = await asyncio.to_thread(runtime.shutdown, ENGINE_STOP_WAIT_S)
            if gateway.stuck_engines:
                log.warning(
                    "engine calls still running %.0f s after shutdown, abandoned: %s",
                    ENGINE_STOP_WAIT_S,
                    ", ".join(gateway.stuck_engines),
                )
            gateway.hub.close()

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        if gateway.ready and not gateway.draining:
            return JSONResponse({"ready": True})
        reason = "draining" if gateway.draining else gateway.load_error or "loading"
        return JSONResponse({"ready": False, "error": reason}, status_code=503)

    def denied(decision: Decision) -> Response:
        return admission.denied(gateway, decision)

    async def metrics(request: Request) -> Response:
        decision = admission.decide(gateway, request, "metrics")
        if decision.outcome != "ok":
            return denied(decision)
        return Response(gateway.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    async def tokens(request: Request) -> Response:
        """An operator's backend trades its API key for a short-lived browser token."""
        header = request.headers.get("authorization", "")
        principal = auth.check_key(header[7:].strip()) if header.lower().startswith("bearer ") else None
        if principal is None:
            return denied(Decision("unauthorized", "an API key is required (Authorization: Bearer KEY)"))
        try:
            raw = await read_capped(request, TOKENS_BODY_BYTES)
            body = json.loads(raw) if raw else {}
        except ApiError as exc:
            return JSONResponse({"error": exc.message}, status_code=exc.status)
        except (ValueError, UnicodeDecodeError):
            return JSONResponse({"error": "body must be JSON"}, status_code=400)
        ttl_s = body.get("ttl_s", settings.token_ttl_s) if isinstance(body, dict) else None
        cap_s = body.get("max_session_s") if isinstance(body, dict) else None
        if (
            not isinstance(ttl_s, (int, float))
            or isinstance(ttl_s, bool)
            or not 1 <= ttl_s <= 86_400
            or (
                cap_s is not None
                and (not isinstance(cap_s, (int, float)) or isinstance(cap_s, bool) or not 0 < cap_s < math.inf)
            )
        ):
            return JSONResponse({"error": "ttl_s must be 1–86400 s; max_session_s a positive number"}, status_code=400)
        ttl_s = min(float(ttl_s), auth.token_ttl_max_s)
        token = auth.issue_token(principal, ttl_s=ttl_s, max_session_s=cap_s)
        return JSONResponse({"token": token, "expires_in_s": ttl_s, "max_session_s": cap_s})

    async def engines(request: Request) -> Response:
        return JSONResponse(
            {
                "ready": gateway.ready,
                "languages": gateway.hub.languages if gateway.ready else [],
                "voices": [
                    {"id": v.id, "language": v.language, "sample_rate": v.sample_rate_hz, "engine": v.engine}
                    for v in gateway.hub.voices()
                ]
                if gateway.ready
                else [],
                "translation_pairs": [f"{a}-{b}" for a, b in gateway.hub.pairs()] if gateway.ready else [],
                "engines": gateway.hub.describe() if gateway.ready else {},
                "limits": {
                    "max_sessions": settings.max_sessions,
                    "max_sessions_per_key": settings.session_caps()[0],
                    "max_sessions_per_address": settings.session_caps()[1],
                    "max_sessions_per_token": settings.session_caps()[2],
                    "max_pending": settings.max_pending,
                    "session_rate_per_min": settings.session_rate_per_min,
                    "session_rate_burst": settings.session_rate_burst,
                    "start_timeout_s": settings.start_timeout_s,
                    "max_control_bytes": ControlBudget(settings.control_rate_per_s).max_frame_bytes,
                    "max_frame_bytes": settings.max_frame_bytes,
                    "max_session_s": settings.max_session_s,
                    "idle_timeout_s": settings.idle_timeout_s,
                    "max_utterance_ms": settings.max_utterance_ms,
                    "sample_rates_hz": [8000, 48000],
                    "max_text_chars": settings.max_text_chars,
                    "speak_queue": settings.speak_queue,
                    "control_rate_per_s": settings.control_rate_per_s,
                    "outbox_events": settings.outbox_events,
                },
            }
        )

    async def tts(request: Request) -> Response:
        """Synthesize a whole text into one WAV (for clients that do not stream)."""
        decision = admission.decide(gateway, request, "tts")
        if decision.outcome != "ok":
            return denied(decision)
        if not gateway.ready:
            return JSONResponse({"error": "engines are still loading"}, status_code=503)
        try:
            # Room for the longest text with every character escaped (\uXXXX\uXXXX), and the other fields.
            body = json.loads(await read_capped(request, 12 * settings.max_text_chars + TOKENS_BODY_BYTES))
        except ApiError as exc:
            return JSONResponse({"error": exc.message}, status_code=exc.status)
        except (ValueError, UnicodeDecodeError):
            return JSONResponse({"error": 'body must be JSON: {"text": ..., "voice": ...}'}, status_code=400)
        text = body.get("text") if isinstance(body, dict) else None
        voice = body.get("voice") if isinstance(body, dict) else None
        language = body.get("language") if isinstance(body, dict) else None
        if not isinstance(text, str) or not text.strip():
            return JSONResponse({"error": "`text` must be a non-empty string"}, status_code=400)
        if len(text) > settings.max_text_chars:
            return JSONResponse({"error": f"`text` is over {settings.max_text_chars} characters"}, status_code=413)
        if not isinstance(voice, (str, type(None))) or not isinstance(language, (str, type(None))):
            return JSONResponse({"error": "`voice` and `language` must be strings"}, status_code=400)
        route = gateway.hub.voice(voice, language or (None if voice else settings.default_language))
        if route is None:
            voices = [v.id for v in gateway.hub.voices()]
            return JSONResponse({"error": f"unknown voice {voice!r}", "voices": voices}, status_code=404)

        def synthesize() -> bytes:
            out = io.BytesIO()
            with wave.open(out, "wb") as wav:
                wav.setnchannels(1)
                wav.setsampwidth(2)
                wav.setframerate(route.voice.sample_rate_hz)
                for chunk in route.synthesizer.synthesize(text, route.voice.id):
                    wav.writeframes(chunk.astype("<i2").tobytes())
            return out.getvalue()

        try:
            audio = await route.runner.run(synthesize)
        except Exception as exc:  # noqa: BLE001 - the engine's message is for the client
            log.warning("POST /v1/tts failed: %s", type(exc).__name__)
            return JSONResponse({"error": f"synthesis failed: {exc}"}, status_code=500)
        return Response(audio, media_type="audio/wav", headers={"X-Voice": route.voice.id})

    async def index(request: Request) -> Response:
        return FileResponse(WEB_DIR / "index.html")

    async def overlay(request: Request) -> Response:
        return FileResponse(WEB_DIR / "overlay.html")

    async def stream(websocket: WebSocket) -> None:
        principal = await admission.accept(gateway, websocket)
        if principal is None:
            return
        transport = WebSocketTransport(websocket)
        try:
            codec = codec_for(websocket.query_params.get("format", "json"), max_frame_bytes=settings.max_frame_bytes)
        except ProtocolError as exc:
            await _refuse(transport, exc, JsonCodec())
            return
        address = admission.client_address(websocket)
        refusal = admission.arrival(gateway, principal, address)  # at once when full; `start` checks again
        if refusal is not None:
            admission.rejected(gateway, refusal)
            await _refuse(transport, refusal, codec)
            return
        session = Session(
            settings=settings,
            hub=gateway.hub,
            codec=codec,
            transport=transport,
            gate=admission.Gate(gateway, principal, address),
            on_event=gateway.metrics.on_event,
            max_session_s=principal.max_session_s,
        )
        await session.run()

    routes = [
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        Route("/v1/engines", engines),
        Route("/v1/tts", tts, methods=["POST"]),
        Route("/v1/tokens", tokens, methods=["POST"]),
        Route("/metrics", metrics),
        WebSocketRoute("/v1/stream", stream),
        WebSocketRoute("/vosk", make_vosk_endpoint(gateway)),
        Route("/openapi.json", openapi),
        *openai_routes(gateway),
        Route("/", index),
        Route("/overlay", overlay),
        Mount("/web", StaticFiles(directory=WEB_DIR), name="web"),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.gateway = gateway
    if not settings.api_keys and not settings.no_auth:
        log.warning("no API keys configured: only loopback clients will be served")
    elif settings.no_auth:
        log.warning("--no-auth: every address is served without credentials")
    return app


async def _refuse(transport: Transport, error: ProtocolError, codec: Codec) -> None:
    """Tell a client why it gets no session, then close."""
    try:
        for frame in codec.encode(error.event()):
            await transport.send(frame)
    except Exception:  # noqa: BLE001 - the client may be gone already
        return
    await close_quietly(transport, int(error.close or CloseCode.POLICY), error.message)
