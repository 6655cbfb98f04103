"""Frames to typed values and back, in both encodings.

The server side is a :class:`Codec` per session (:class:`JsonCodec` or
:class:`MsgpackCodec`): it decodes client messages through
:func:`hushgate.wire.validate.decode_client_message` and encodes events. The
client side is :func:`encode_message` and :class:`EventReader`.

JSON: control messages and events are text frames; audio (both ways) travels
as bare binary frames. msgpack: every frame is a binary map with a ``type``,
audio in-band as ``bin``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Literal, Protocol, TypeAlias, Union

import msgspec

from hushgate.wire.codes import CloseCode, ErrorCode
from hushgate.wire.errors import ProtocolError
from hushgate.wire.events import EVENT_TYPES, ServerEvent, TtsAudio, UnknownEvent
from hushgate.wire.messages import JSON_CONTROL_TYPES, Audio, ClientMessage
from hushgate.wire.validate import decode_client_message, lenient

Frame: TypeAlias = str | bytes
"""A WebSocket frame: text (str) or binary (bytes)."""
Format: TypeAlias = Literal["json", "msgpack"]


def _scalar(value: Any) -> Any:
    # Engines hand over numpy scalars now and then; float64 is a float, int64 is not an int.
    for kind in (bool, int, float, str):
        if isinstance(value, kind):
            return kind(value)
    item = getattr(value, "item", None)
    if callable(item):
        return item()
    raise TypeError(f"cannot send a {type(value).__name__} on the wire")


_JSON_ENCODER = msgspec.json.Encoder(enc_hook=_scalar)
_MSGPACK_ENCODER = msgspec.msgpack.Encoder(enc_hook=_scalar)
_JSON_PLAIN = msgspec.json.Decoder()
_MSGPACK_PLAIN = msgspec.msgpack.Decoder()


def to_wire(value: ServerEvent | ClientMessage) -> dict[str, Any]:
    """The frame's map as plain data, ``type`` first (what both encodings carry)."""
    # Through msgpack and back: exactly the map a client decodes (lists, bytes as bytes).
    out: dict[str, Any] = _MSGPACK_PLAIN.decode(_MSGPACK_ENCODER.encode(value))
    return out


class Codec(Protocol):
    name: str

    def decode(self, frame: Frame, *, started: bool) -> ClientMessage: ...

    def encode(self, event: ServerEvent) -> list[Frame]: ...


class JsonCodec:
    """Control and events as JSON text frames; audio as bare binary frames."""

    name = "json"
    _typed: msgspec.json.Decoder[ClientMessage] = msgspec.json.Decoder(Union[JSON_CONTROL_TYPES])  # noqa: UP007

    def decode(self, frame: Frame, *, started: bool) -> ClientMessage:
        if isinstance(frame, bytes):
            if not started:
                raise ProtocolError(ErrorCode.NOT_STARTED, "audio arrived before `start`", close=CloseCode.POLICY)
            return Audio(frame)
        # The slow path reads JSON with the standard library, as v1 always did.
        return decode_client_message(frame, self._typed.decode, json.loads, started=started)

    def encode(self, event: ServerEvent) -> list[Frame]:
        if isinstance(event, TtsAudio):
            return [event.pcm]
        return [_JSON_ENCODER.encode(event).decode()]


class MsgpackCodec:
    """Every frame a binary msgpack map with a ``type``; audio in-band as ``bin``."""

    name = "msgpack"
    _typed = msgspec.msgpack.Decoder(ClientMessage)

    def __init__(self, max_frame_bytes: int) -> None:
        # The WebSocket layer refuses larger frames; a declared length beyond
        # the frame is "truncated" to msgspec, so nothing allocates more.
        self.max_frame_bytes = max_frame_bytes

    def decode(self, frame: Frame, *, started: bool) -> ClientMessage:
        if isinstance(frame, str):
            raise ProtocolError(
                ErrorCode.BAD_MESSAGE,
                "text frame on a msgpack session: send binary msgpack maps",
                close=CloseCode.UNSUPPORTED_DATA,
            )
        return decode_client_message(frame, self._typed.decode, _MSGPACK_PLAIN.decode, started=started)

    def encode(self, event: ServerEvent) -> list[Frame]:
        return [_MSGPACK_ENCODER.encode(event)]


def codec_for(name: str, *, max_frame_bytes: int) -> Codec:
    if name == "json":
        return JsonCodec()
    if name == "msgpack":
        return MsgpackCodec(max_frame_bytes)
    raise ProtocolError(
        ErrorCode.BAD_MESSAGE, f"format must be json or msgpack, not {name[:20]!r}", close=CloseCode.UNSUPPORTED_DATA
    )


# Client side -----------------------------------------------------------------------


def encode_message(message: ClientMessage | Mapping[str, Any], fmt: Format) -> Frame:
    """One client frame; a mapping goes as it is (``None`` values left out), for types newer than this code."""
    if isinstance(message, Audio) and fmt == "json":
        return message.pcm
    body: Any = message
    if isinstance(message, Mapping):
        body = {k: v for k, v in message.items() if v is not None}
    if fmt == "json":
        return _JSON_ENCODER.encode(body).decode()
    return _MSGPACK_ENCODER.encode(body)


class EventParseError(ValueError):
    """A frame of a known event type is missing a field or has one of the wrong type."""


Event: TypeAlias = ServerEvent | UnknownEvent

_JSON_EVENTS = msgspec.json.Decoder(ServerEvent)
_MSGPACK_EVENTS = msgspec.msgpack.Decoder(ServerEvent)


def parse_event(data: Mapping[str, Any]) -> Event:
    """One server event from its plain map (the same in both encodings).

    Unknown types give :class:`UnknownEvent` and unknown fields are ignored, so an
    older client keeps working against a newer server. A known type with a
    missing or mistyped field raises :class:`EventParseError`.
    """
    kind = data.get("type") if isinstance(data, Mapping) else None
    if not isinstance(kind, str):
        raise EventParseError("an event must be an object with a string `type`")
    cls = EVENT_TYPES.get(kind)
    if cls is None:
        return UnknownEvent(type=kind, raw=dict(data))
    try:
        event: ServerEvent = msgspec.convert(lenient(dict(data), drop_null=False), cls)
    except msgspec.ValidationError as exc:
        raise EventParseError(f"`{kind}` event: {exc}") from None
    return event


def decode_event(frame: Frame) -> Event:
    """One server frame: text is JSON (a refusal before the encoding is agreed is always JSON), bytes msgpack.

    Bare binary audio of a JSON session is not a frame this reads; see the SDK's session.
    """
    try:
        return _JSON_EVENTS.decode(frame) if isinstance(frame, str) else _MSGPACK_EVENTS.decode(frame)
    except msgspec.ValidationError:
        pass  # an unknown type, or lenient reading needed: the slow path tells which
    except msgspec.DecodeError as exc:
        raise EventParseError(f"not a valid frame: {exc}") from None
    try:
        data = _JSON_PLAIN.decode(frame) if isinstance(frame, str) else _MSGPACK_PLAIN.decode(frame)
    except (msgspec.DecodeError, RecursionError) as exc:
        raise EventParseError(f"not a valid frame: {exc}") from None
    if not isinstance(data, dict):
        raise EventParseError("a server frame is not an object")
    return parse_event(data)
