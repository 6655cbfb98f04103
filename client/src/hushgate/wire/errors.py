"""The exception that carries a protocol failure to the client as an ``error`` event."""

from __future__ import annotations

from hushgate.wire.codes import CloseCode, ErrorCode
from hushgate.wire.events import Error


class ProtocolError(Exception):
    """A failure to report to the client; fatal when ``close`` is set."""

    def __init__(
        self,
        code: ErrorCode,
        message: str,
        *,
        close: CloseCode | None = None,
        request_id: str | None = None,
        utterance: int | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.close = close
        self.request_id = request_id
        self.utterance = utterance

    @property
    def fatal(self) -> bool:
        return self.close is not None

    def event(self) -> Error:
        return Error(
            code=self.code, message=self.message, fatal=self.fatal, id=self.request_id, utterance=self.utterance
        )
