"""One codec per wire encoding: frames in, typed messages out, and back.

Codecs only translate between bytes and plain mappings; the validation of what a
mapping says is :func:`hushgate.server.protocol.parse_client_message`, shared by both.
"""

from __future__ import annotations

import json
from typing import Any, Protocol

import msgpack

from hushgate.server.protocol import (
    Audio,
    ClientMessage,
    CloseCode,
    ErrorCode,
    ProtocolError,
    ServerEvent,
    TtsAudio,
    event_to_wire,
    parse_client_message,
)

MAX_CONTAINER_ITEMS = 64
Frame = str | bytes
"""A WebSocket frame: text (str) or binary (bytes)."""


class Codec(Protocol):
    name: str

    def decode(self, frame: Frame, *, started: bool) -> ClientMessage: ...

    def encode(self, event: ServerEvent) -> list[Frame]: ...


def _malformed(what: str) -> ProtocolError:
    return ProtocolError(ErrorCode.BAD_MESSAGE, what, close=CloseCode.INVALID_PAYLOAD)


class JsonCodec:
    """Control and events as JSON text frames; audio as bare binary frames."""

    name = "json"

    def decode(self, frame: Frame, *, started: bool) -> ClientMessage:
        if isinstance(frame, bytes):
            if not started:
                raise ProtocolError(
                    ErrorCode.NOT_STARTED, "audio arrived before `start`", close=CloseCode.POLICY
                )
            return Audio(frame)
        try:
            obj = json.loads(frame)
        except (ValueError, RecursionError) as exc:
            raise _malformed(f"not valid JSON: {str(exc)[:80]}") from None
        return parse_client_message(obj, started=started)

    def encode(self, event: ServerEvent) -> list[Frame]:
        if isinstance(event, TtsAudio):
            return [event.pcm]
        return [json.dumps(event_to_wire(event), ensure_ascii=False, separators=(",", ":"))]


class MsgpackCodec:
    """Every frame a binary msgpack map with a `type`; audio in-band as `bin`."""

    name = "msgpack"

    def __init__(self, max_frame_bytes: int) -> None:
        self._max_frame_bytes = max_frame_bytes

    def decode(self, frame: Frame, *, started: bool) -> ClientMessage:
        if isinstance(frame, str):
            raise ProtocolError(
                ErrorCode.BAD_MESSAGE,
                "text frame on a msgpack session: send binary msgpack maps",
                close=CloseCode.UNSUPPORTED_DATA,
            )
        try:
            # Containers sized to the protocol (its longest list has 50 items, its
            # largest map a few dozen keys): no message needs a million-element array.
            obj: Any = msgpack.unpackb(
                frame,
                raw=False,
                strict_map_key=True,
                max_bin_len=self._max_frame_bytes,
                max_str_len=self._max_frame_bytes,
                max_array_len=MAX_CONTAINER_ITEMS,
                max_map_len=MAX_CONTAINER_ITEMS,
                max_ext_len=0,
            )
        except (ValueError, TypeError, RecursionError, msgpack.ExtraData, msgpack.FormatError,
                msgpack.StackError, UnicodeDecodeError) as exc:
            raise _malformed(f"not a valid msgpack map: {type(exc).__name__}") from None
        return parse_client_message(obj, started=started)

    def encode(self, event: ServerEvent) -> list[Frame]:
        return [msgpack.packb(event_to_wire(event), use_bin_type=True)]


def codec_for(name: str, *, max_frame_bytes: int) -> Codec:
    if name == "json":
        return JsonCodec()
    if name == "msgpack":
        return MsgpackCodec(max_frame_bytes)
    raise ProtocolError(
        ErrorCode.BAD_MESSAGE, f"format must be json or msgpack, not {name[:20]!r}", close=CloseCode.UNSUPPORTED_DATA
    )
