"""The ASGI application: HTTP routes beside the streaming WebSocket."""

from __future__ import annotations

import asyncio
import io
import logging
import wave
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.websockets import WebSocket, WebSocketState

from engines.registry import EngineRegistry
from gateway.codec import Frame, JsonCodec, codec_for
from gateway.hub import EngineHub
from gateway.protocol import CloseCode, ErrorCode, ProtocolError
from gateway.runtime import Runtime
from gateway.session import Session
from gateway.settings import Settings

log = logging.getLogger("speech_gateway")
WEB_DIR = Path(str(resources.files("web")))


@dataclass(slots=True)
class Counters:
    """What the server has done since it started (no content, only counts)."""

    sessions_active: int = 0
    sessions_total: int = 0
    audio_ms: int = 0
    finals: int = 0
    rejections: dict[str, int] = field(default_factory=dict)

    def on_event(self, name: str, value: Any) -> None:
        if name == "audio_ms":
            self.audio_ms += int(value)
        elif name == "final":
            self.finals += 1
        elif name == "rejected":
            self.rejections[value] = self.rejections.get(value, 0) + 1


@dataclass(slots=True)
class Gateway:
    settings: Settings
    hub: EngineHub
    runtime: Runtime
    counters: Counters = field(default_factory=Counters)
    ready: bool = False
    load_error: str | None = None


class WebSocketTransport:
    def __init__(self, websocket: WebSocket) -> None:
        self._ws = websocket

    async def receive(self) -> Frame | None:
        message = await self._ws.receive()
        if message["type"] == "websocket.disconnect":
            return None
        text = message.get("text")
        if text is not None:
            return str(text)
        return bytes(message.get("bytes") or b"")

    async def send(self, frame: Frame) -> None:
        if isinstance(frame, str):
            await self._ws.send_text(frame)
        else:
            await self._ws.send_bytes(frame)

    async def close(self, code: int, reason: str) -> None:
        if self._ws.application_state is not WebSocketState.DISCONNECTED:
            await self._ws.close(code, reason)


def create_app(settings: Settings | None = None, *, registry: EngineRegistry | None = None) -> Starlette:
    settings = settings or Settings.from_env()
    runtime = Runtime(max_waiting=settings.engine_queue)
    gateway = Gateway(settings, EngineHub(settings, registry or EngineRegistry(), runtime), runtime)

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
        try:
            yield
        finally:
            loading.cancel()
            await asyncio.gather(loading, return_exceptions=True)
            await gateway.hub.aclose()
            await asyncio.to_thread(runtime.shutdown)
            gateway.hub.close()

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        if gateway.ready:
            return JSONResponse({"ready": True})
        return JSONResponse({"ready": False, "error": gateway.load_error}, status_code=503)

    async def engines(request: Request) -> Response:
        return JSONResponse(
            {
                "ready": gateway.ready,
                "languages": gateway.hub.languages if gateway.ready else [],
                "voices": [
                    {"id": v.id, "language": v.language, "sample_rate": v.sample_rate_hz, "engine": v.engine}
                    for v in gateway.hub.voices()
                ] if gateway.ready else [],
                "translation_pairs": [f"{a}-{b}" for a, b in gateway.hub.pairs()] if gateway.ready else [],
                "engines": gateway.hub.describe() if gateway.ready else {},
                "limits": {
                    "max_sessions": settings.max_sessions,
                    "max_frame_bytes": settings.max_frame_bytes,
                    "max_session_s": settings.max_session_s,
                    "idle_timeout_s": settings.idle_timeout_s,
                    "max_utterance_ms": settings.max_utterance_ms,
                    "sample_rates_hz": [8000, 48000],
                    "max_text_chars": settings.max_text_chars,
                    "speak_queue": settings.speak_queue,
                },
            }
        )

    async def tts(request: Request) -> Response:
        """Synthesize a whole text into one WAV (for clients that do not stream)."""
        if not gateway.ready:
            return JSONResponse({"error": "engines are still loading"}, status_code=503)
        try:
            body = await request.json()
        except (ValueError, UnicodeDecodeError):
            return JSONResponse({"error": "body must be JSON: {\"text\": ..., \"voice\": ...}"}, status_code=400)
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
        await websocket.accept()
        transport = WebSocketTransport(websocket)
        counters = gateway.counters
        try:
            codec = codec_for(websocket.query_params.get("format", "json"), max_frame_bytes=settings.max_frame_bytes)
        except ProtocolError as exc:
            await _refuse(transport, exc)
            return
        if not gateway.ready:
            await _refuse(transport, ProtocolError(
                ErrorCode.ENGINE_UNAVAILABLE, "engines are still loading; try again shortly",
                close=CloseCode.TRY_AGAIN_LATER), codec)
            return
        if counters.sessions_active >= settings.max_sessions:
            counters.on_event("rejected", ErrorCode.OVERLOADED.value)
            await _refuse(transport, ProtocolError(
                ErrorCode.OVERLOADED, f"server is at its limit of {settings.max_sessions} sessions",
                close=CloseCode.TRY_AGAIN_LATER), codec)
            return
        counters.sessions_active += 1
        counters.sessions_total += 1
        try:
            session = Session(
                settings=settings, hub=gateway.hub, codec=codec, transport=transport, on_event=counters.on_event
            )
            await session.run()
        finally:
            counters.sessions_active -= 1

    routes = [
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        Route("/v1/engines", engines),
        Route("/v1/tts", tts, methods=["POST"]),
        WebSocketRoute("/v1/stream", stream),
        Route("/", index),
        Route("/overlay", overlay),
        Mount("/web", StaticFiles(directory=WEB_DIR), name="web"),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.gateway = gateway
    return app


async def _refuse(transport: WebSocketTransport, error: ProtocolError, codec: Any = None) -> None:
    codec = codec or JsonCodec()
    try:
        for frame in codec.encode(error.event()):
            await transport.send(frame)
        await transport.close(int(error.close or CloseCode.POLICY), error.message[:120])
    except Exception:  # noqa: BLE001 - the client may be gone already
        pass
