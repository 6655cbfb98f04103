"""What may reach the log: never a credential, and content only when asked for.

The gateway's own records carry ids, sizes and timings. Other code logs more
than that at debug level, so every record passes three filters on the way to
the handler (handler filters also see records propagated from child loggers,
which logger filters would not):

* credentials are redacted from every message: ``token=…`` in URLs (uvicorn
  writes the request path of every WebSocket it accepts or denies, query
  included) and ``Bearer …`` values;
* the WebSocket library's frame and handshake dumps (``< TEXT '{"text": …'``,
  ``> BINARY …``, ``< Authorization: …``) are dropped at every level: they
  quote what clients say, and uvicorn hands the library its ``uvicorn.error``
  logger, so they cannot be told apart by logger name;
* unless ``log_content`` is on, records below WARNING from other libraries are
  dropped: Piper's ``piper.voice`` writes ``text=…, phonemes=…`` for every
  synthesis, Argos logs what it translates, and a new library could do the
  same. Warnings and errors still pass.
"""

from __future__ import annotations

import logging
import re

# Loggers whose debug and info records are known to carry ids and timings only.
OWN_LOGGERS = ("hushgate", "uvicorn")
# Raised to WARNING without log_content so they do not even format their records.
CONTENT_LOGGERS = ("piper", "argostranslate", "stanza")
REDACTED = "[redacted]"
_CREDENTIAL = re.compile(r"(?i)(\btoken=|\bbearer\s+)[^\s&\"'<>]+")
_FRAME_DUMP_PREFIXES = ("< ", "> ")


def redact(text: str) -> str:
    return _CREDENTIAL.sub(lambda m: m.group(1) + REDACTED, text)


def _message(record: logging.LogRecord) -> str | None:
    try:
        return record.getMessage()
    except (TypeError, ValueError):
        return None  # a record with broken arguments: the handler reports it, without our help


class CredentialRedactor(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = _message(record)
        if message is not None:
            redacted = redact(message)
            if redacted != message:
                record.msg, record.args = redacted, None
        return True


class FrameDumpFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        from_socket_library = record.name == "uvicorn.error" or record.name.startswith("websockets")
        return not (from_socket_library and isinstance(record.msg, str) and record.msg.startswith(_FRAME_DUMP_PREFIXES))


class ThirdPartyContentFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.WARNING:
            return True
        return any(record.name == name or record.name.startswith(name + ".") for name in OWN_LOGGERS)


def install(handler: logging.Handler, *, log_content: bool) -> None:
    handler.addFilter(FrameDumpFilter())
    handler.addFilter(CredentialRedactor())
    if not log_content:
        handler.addFilter(ThirdPartyContentFilter())
        for name in CONTENT_LOGGERS:
            logging.getLogger(name).setLevel(logging.WARNING)
