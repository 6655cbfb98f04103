"""The one place the benches speak the protocol: building, encoding and decoding messages.

Messages go out as plain mappings built by the functions below, and every
server frame comes back through `Wire.decode` as the wire mapping (a
``dict``), because the benches time and count raw events. Both directions go
through the protocol's own codec (``hushgate.wire``), so a server event that
does not fit the protocol's types fails the bench that received it.

A JSON session's bare binary frame (TTS audio) decodes to
``{"type": "tts.audio", "pcm": bytes}`` so that both encodings look alike.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Mapping, Sequence
from typing import Any

import websockets
from websockets.asyncio.client import ClientConnection

from hushgate.wire import Audio, EventParseError, Format, UnknownEvent, decode_event, encode_message, to_wire

from .audio import SAMPLE_RATE_HZ

Event = dict[str, Any]
Message = dict[str, Any]


class Wire:
    """Encode client messages and decode server frames for one encoding (``json`` or ``msgpack``)."""

    def __init__(self, fmt: Format) -> None:
        if fmt not in ("json", "msgpack"):
            raise ValueError(fmt)
        self.format: Format = fmt

    def encode(self, message: Mapping[str, Any]) -> str | bytes:
        return encode_message(message, self.format)

    def audio(self, pcm: bytes) -> str | bytes:
        """One audio frame: bare binary in JSON, an ``audio`` map in msgpack."""
        return encode_message(Audio(pcm), self.format)

    def decode(self, frame: str | bytes) -> Event:
        if isinstance(frame, bytes) and self.format == "json":
            return {"type": "tts.audio", "pcm": bytes(frame)}
        try:
            event = decode_event(frame)
        except EventParseError as exc:
            return {"type": "<not-an-event>", "value": str(exc)[:80]}
        return event.raw if isinstance(event, UnknownEvent) else to_wire(event)


def stream_url(base: str, fmt: Format) -> str:
    """``base`` with ``format=`` set, unless it already names one."""
    sep = "&" if "?" in base else "?"
    return base if "format=" in base else f"{base}{sep}format={fmt}"


def connect(
    url: str,
    *,
    compression: str | None = "deflate",
    headers: Mapping[str, str] | None = None,
    open_timeout_s: float = 30.0,
) -> Any:
    """``websockets.connect`` as the benches use it: no frame size limit, permessage-deflate like browsers."""
    return websockets.connect(
        url,
        max_size=None,
        compression=compression,
        additional_headers=headers,
        open_timeout=open_timeout_s,
        close_timeout=10,
    )


# Messages -----------------------------------------------------------------------------------


def start(*, sample_rate_hz: int = SAMPLE_RATE_HZ, **options: Any) -> Message:
    """``start`` for 16-bit mono PCM, with any other start options (``partials``, ``vad``, ...) as given."""
    return {
        "type": "start",
        "audio": {"encoding": "pcm_s16le", "sample_rate": sample_rate_hz, "channels": 1},
        **options,
    }


def plain(kind: str) -> Message:
    """A message without fields: ``stop``, ``flush``, ``ping``."""
    return {"type": kind}


def translate(request_id: str, text: str, source: str, target: str) -> Message:
    return {"type": "translate", "id": request_id, "text": text, "source": source, "target": target}


def speak(request_id: str, text: str, voice: str) -> Message:
    return {"type": "speak", "id": request_id, "text": text, "voice": voice}


def enroll(request_id: str, label: str, needed_ms: int) -> Message:
    return {"type": "enroll", "id": request_id, "consent": True, "label": label, "needed_ms": needed_ms}


def verify(request_id: str, voiceprint_id: str) -> Message:
    return {"type": "verify", "id": request_id, "voiceprint_id": voiceprint_id}


def export_voiceprint(request_id: str, voiceprint_id: str) -> Message:
    return {"type": "voiceprint.export", "id": request_id, "voiceprint_id": voiceprint_id}


def speakers_options(*, identify: bool, diarize: bool, voiceprints: Sequence[str] = ()) -> Message:
    """``start.speakers``."""
    return {"identify": identify, "diarize": diarize, "voiceprints": list(voiceprints)}


def vad_options(*, silence_ms: int) -> Message:
    """``start.vad``."""
    return {"silence_ms": silence_ms}


def translate_options(*targets: str) -> Message:
    """``start.translate``: every non-empty final translated into each target language."""
    return {"targets": list(targets)}


def speak_options(*, translations: bool) -> Message:
    """``start.speak``."""
    return {"translations": translations}


# Sessions on a bare connection ------------------------------------------------------------------


async def open_session(ws: ClientConnection, wire: Wire, start_message: Message) -> Event:
    """Send ``start``, return ``ready``; raise on a refusal. Non-fatal notices after it are left unread."""
    await ws.send(wire.encode(start_message))
    event = wire.decode(await ws.recv())
    if event.get("type") != "ready":
        raise RuntimeError(f"session refused: {event}")
    return event


async def close_session(ws: ClientConnection, wire: Wire, timeout_s: float = 30.0) -> None:
    """``stop``, then read until ``ended`` / close."""
    with contextlib.suppress(Exception):
        await ws.send(wire.encode(plain("stop")))
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            event = wire.decode(await asyncio.wait_for(ws.recv(), deadline - time.monotonic()))
            if event.get("type") == "ended":
                break
