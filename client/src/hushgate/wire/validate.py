"""The one path from a received frame to a valid message, or to the right error.

A frame is decoded straight into the tagged union of messages (msgspec checks
every type and limit while it decodes). Only when that fails is the frame
decoded again as plain data, to tell which error it is, in this order:

1. not a map, no string ``type``, undecodable → ``bad_message``, close 1007;
2. anything but ``start`` before ``start`` → ``not_started``, close 1008;
3. ``audio`` whose ``pcm`` is not binary → ``bad_message``, close 1007;
4. an unknown type → ``bad_message``, not fatal (a newer client may probe);
5. a field of the wrong type or out of its limits → ``bad_message``: fatal
   (1007) for the opening ``start``, for any later request it costs only that
   request (the error names its ``id``).

A ``start`` that parses but asks for audio other than 8–48 kHz s16le mono (or
8 kHz G.711 mu-law / A-law) is ``unsupported_audio`` (close 1003 for the opening one). The second, slower
decode also accepts what the protocol always accepted and msgspec's strict
decoding does not: ``null`` for "the default" and whole numbers written as
floats (``16000.0``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, TypeVar

import msgspec

from hushgate.wire.codes import (
    AUDIO_ENCODINGS,
    G711_RATE_HZ,
    MAX_ID_CHARS,
    MAX_SAMPLE_RATE_HZ,
    MIN_SAMPLE_RATE_HZ,
    CloseCode,
    ErrorCode,
)
from hushgate.wire.errors import ProtocolError
from hushgate.wire.messages import MESSAGE_TYPES, Audio, ClientMessage, Start

T = TypeVar("T")


def malformed(what: str) -> ProtocolError:
    return ProtocolError(ErrorCode.BAD_MESSAGE, what, close=CloseCode.INVALID_PAYLOAD)


def lenient(value: Any, *, drop_null: bool = True) -> Any:
    """Plain data as the protocol reads it: ``3.0`` is ``3``, and (``drop_null``) a ``null`` map value is absent."""
    if isinstance(value, dict):
        return {k: lenient(v, drop_null=drop_null) for k, v in value.items() if v is not None or not drop_null}
    if isinstance(value, list):
        return [lenient(v, drop_null=drop_null) for v in value]
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    return value


def is_text(value: Any) -> bool:
    """False when a string in ``value`` holds a lone surrogate (JSON can spell ``\\ud800``; UTF-8 cannot carry it)."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return False
        return True
    if isinstance(value, dict):
        return all(is_text(k) and is_text(v) for k, v in value.items())
    if isinstance(value, list):
        return all(is_text(v) for v in value)
    return True


PLAIN_PATH_MAX_BYTES = 1024


def is_plain(value: Any) -> bool:
    """True when decoded msgpack holds only JSON's kinds of values (string keys, no extension types)."""
    if isinstance(value, dict):
        return all(isinstance(k, str) and is_plain(v) for k, v in value.items())
    if isinstance(value, list):
        return all(is_plain(v) for v in value)
    return value is None or isinstance(value, (str, bytes, bool, int, float))


def decode_client_message(
    frame: Any,
    typed: Callable[[Any], ClientMessage],
    plain: Callable[[Any], Any],
    *,
    started: bool,
) -> ClientMessage:
    """One control frame through ``typed`` (a msgspec decoder of the union), else through ``plain``."""
    try:
        message = typed(frame)
    except (msgspec.ValidationError, msgspec.DecodeError, RecursionError) as exc:
        # msgspec refuses some JSON that the protocol accepts (`NaN`, a lone
        # surrogate `\ud800`); `plain` is the judge of what is malformed.
        # Except for large msgpack frames: building and walking plain objects
        # costs about 1.6 µs a byte of empty arrays on the event loop, and
        # msgpack has neither NaN-as-text nor lone surrogates to rescue.
        if isinstance(frame, bytes) and len(frame) > PLAIN_PATH_MAX_BYTES:
            raise malformed(f"not a valid message: {str(exc)[:80]}") from None
    else:
        if not started and not isinstance(message, Start):
            raise ProtocolError(
                ErrorCode.NOT_STARTED,
                f"the first message must be `start`, not `{message.type}`",
                close=CloseCode.POLICY,
            )
        return _supported(message, fatal=not started)
    try:
        obj = plain(frame)
    except (msgspec.DecodeError, RecursionError, ValueError) as exc:
        raise malformed(f"not a valid frame: {str(exc)[:80]}") from None
    try:
        if not is_plain(obj):
            raise malformed("not a valid frame: only maps with string keys, no extension types")
        return parse_client_message(obj, started=started)
    except RecursionError:
        raise malformed("not a valid frame: nested too deeply") from None


def parse_client_message(obj: Any, *, started: bool) -> ClientMessage:
    """Validate one frame already decoded to plain data (the slow path of :func:`decode_client_message`).

    ``started`` says whether the session has accepted ``start``: a malformed
    ``start`` is fatal, a malformed request later costs only that request.
    """
    if not isinstance(obj, dict):
        raise malformed("a control frame must be an object with a `type`")
    kind = obj.get("type")
    if not isinstance(kind, str):
        raise malformed("a control frame needs a string `type`")
    if not started and kind != "start":
        raise ProtocolError(
            ErrorCode.NOT_STARTED, f"the first message must be `start`, not `{kind[:40]}`", close=CloseCode.POLICY
        )
    raw_id = obj.get("id")
    # Every id is echoed, and an id no UTF-8 frame can carry would fail the whole session.
    request_id = raw_id if isinstance(raw_id, str) and len(raw_id) <= MAX_ID_CHARS and is_text(raw_id) else None
    if kind == "audio":
        pcm = obj.get("pcm")
        if not isinstance(pcm, (bytes, bytearray)):
            raise malformed("audio: `pcm` must be binary")
        return Audio(bytes(pcm))
    cls = MESSAGE_TYPES.get(kind)
    if cls is None:
        raise ProtocolError(ErrorCode.BAD_MESSAGE, f"unknown message type {kind[:40]!r}", request_id=request_id)
    # Only the opening `start` is fatal when malformed; a repeated one costs nothing.
    fatal = kind == "start" and not started
    try:
        if not is_text(obj):
            raise msgspec.ValidationError("a string holds a lone surrogate, which is not text")
        message: ClientMessage = msgspec.convert(lenient(obj), cls)
    except msgspec.ValidationError as exc:
        raise ProtocolError(
            ErrorCode.BAD_MESSAGE,
            f"{kind}: {exc}",
            close=CloseCode.INVALID_PAYLOAD if fatal else None,
            request_id=request_id,
        ) from None
    return _supported(message, fatal=fatal)


def _supported(message: ClientMessage, *, fatal: bool) -> ClientMessage:
    """The rule msgspec cannot say: the audio a ``start`` asks for must be audio the server takes."""
    if not isinstance(message, Start):
        return message
    audio = message.audio
    close = CloseCode.UNSUPPORTED_DATA if fatal else None
    if audio.encoding not in AUDIO_ENCODINGS or audio.channels != 1:
        raise ProtocolError(
            ErrorCode.UNSUPPORTED_AUDIO,
            f"only mono pcm_s16le, mulaw or alaw is accepted, not {audio.encoding} with {audio.channels} channels",
            close=close,
        )
    if audio.encoding != "pcm_s16le" and audio.sample_rate_hz != G711_RATE_HZ:
        # G.711 is telephony audio: 8 kHz by definition.
        raise ProtocolError(
            ErrorCode.UNSUPPORTED_AUDIO,
            f"{audio.encoding} is {G711_RATE_HZ} Hz audio, not {audio.sample_rate_hz} Hz",
            close=close,
        )
    if not MIN_SAMPLE_RATE_HZ <= audio.sample_rate_hz <= MAX_SAMPLE_RATE_HZ:
        raise ProtocolError(
            ErrorCode.UNSUPPORTED_AUDIO,
            f"sample_rate must be {MIN_SAMPLE_RATE_HZ}–{MAX_SAMPLE_RATE_HZ} Hz, not {audio.sample_rate_hz}",
            close=close,
        )
    return message
