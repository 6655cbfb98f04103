"""What can go wrong in a connection, and the one way it is told to the client.

Every failure the gateway reports is a :class:`GatewayError`: one subclass per
wire error code, so a raise site names the kind of failure and the code comes
with it. They are :class:`ProtocolError` subclasses, so the codecs' own decode
failures and these travel the same paths. Anything else that escapes an engine
call or a task goes through :func:`to_wire`, the only place that decides which
code an exception becomes; ``/v1/stream`` and ``/vosk`` both use it.
"""

from __future__ import annotations

import logging
from typing import ClassVar

from hushgate.engines.base import ENGINE_FAILURES
from hushgate.server.runtime import Overloaded
from hushgate.wire import CloseCode, ErrorCode, ProtocolError

log = logging.getLogger("hushgate.session")


class ClientGone(Exception):
    """The client went away; nothing is left to tell it."""


class GatewayError(ProtocolError):
    """A failure reported to the client; fatal (the connection closes) when ``close`` is set."""

    wire_code: ClassVar[ErrorCode] = ErrorCode.INTERNAL

    def __init__(
        self,
        message: str,
        *,
        close: CloseCode | None = None,
        request_id: str | None = None,
        utterance: int | None = None,
    ) -> None:
        super().__init__(self.wire_code, message, close=close, request_id=request_id, utterance=utterance)


class BadRequest(GatewayError):
    """A message the gateway cannot act on: malformed, out of place, or asking for something odd."""

    wire_code = ErrorCode.BAD_MESSAGE


class NotStarted(GatewayError):
    """A session that never sent `start` (in time, or first)."""

    wire_code = ErrorCode.NOT_STARTED


class TooLarge(GatewayError):
    """A frame or text over the operator's size limits."""

    wire_code = ErrorCode.TOO_LARGE


class UnknownVoiceprint(GatewayError):
    """A voiceprint this session does not hold, or a sealed one it cannot open."""

    wire_code = ErrorCode.UNKNOWN_VOICEPRINT


class ConsentRequired(GatewayError):
    """Enrollment without the speaker's consent."""

    wire_code = ErrorCode.CONSENT_REQUIRED


class EngineUnavailable(GatewayError):
    """No engine for what was asked (language, pair, voice, speaker model), or not yet."""

    wire_code = ErrorCode.ENGINE_UNAVAILABLE


class Busy(GatewayError):
    """Over a limit (engine queue, lane, session count, rate): the client should slow down or retry."""

    wire_code = ErrorCode.OVERLOADED


class InternalError(GatewayError):
    """The gateway failed; the client did nothing wrong."""

    wire_code = ErrorCode.INTERNAL


def to_wire(
    exc: BaseException,
    failed: str,
    *,
    fatal: bool = False,
    request_id: str | None = None,
    utterance: int | None = None,
    session: str = "-",
) -> ProtocolError:
    """The error the client is told about for ``exc``; ``failed`` says what could not be done.

    A :class:`ProtocolError` is already that and passes unchanged. A full engine
    queue is ``overloaded``; an engine's own failure is ``internal`` with the
    engine's message (engines write it for clients); anything else is a bug:
    logged with its traceback (and the ``session`` id) here, and the client
    only hears ``failed``.
    With ``fatal`` the error closes the connection: 1013 (come back later)
    when overloaded, 1011 otherwise.
    """
    if isinstance(exc, ProtocolError):
        return exc
    if isinstance(exc, Overloaded):
        return Busy(
            f"{failed}: {exc}",
            close=CloseCode.TRY_AGAIN_LATER if fatal else None,
            request_id=request_id,
            utterance=utterance,
        )
    close = CloseCode.INTERNAL if fatal else None
    if isinstance(exc, ENGINE_FAILURES):
        return InternalError(f"{failed}: {exc}", close=close, request_id=request_id, utterance=utterance)
    log.error("session %s: %s", session, failed, exc_info=exc)
    return InternalError(failed, close=close, request_id=request_id, utterance=utterance)
