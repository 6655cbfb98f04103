"""The text messages of vosk-server's WebSocket protocol: ``config``, ``eof`` and ``reset``.

Parsing only, no I/O: a text frame becomes a JSON object, and a ``config``
object updates the connection's `VoskConfig`. What a client gets wrong is
raised as `BadRequest` with the close code vosk clients expect: 1007 for text
that is not JSON, 1003 for a message or setting this server does not support.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from typing import Any

from hushgate.server.errors import BadRequest
from hushgate.wire import MAX_SAMPLE_RATE_HZ, MIN_SAMPLE_RATE_HZ, CloseCode

DEFAULT_SAMPLE_RATE_HZ = 16_000


@dataclass(frozen=True, slots=True)
class VoskConfig:
    """What a client may set with ``{"config": ...}``; defaults are vosk-server's."""

    sample_rate_hz: int = DEFAULT_SAMPLE_RATE_HZ
    words: bool = True  # vosk-server's VOSK_SHOW_WORDS defaults to on
    phrase_list: tuple[str, ...] | None = None


def unsupported(message: str) -> BadRequest:
    """A refusal that closes with 1003 (unsupported data)."""
    return BadRequest(message, close=CloseCode.UNSUPPORTED_DATA)


def apply_config(raw: object, current: VoskConfig) -> VoskConfig:
    """``current`` updated by a client's ``config`` object; keys it leaves out keep their value."""
    if not isinstance(raw, dict):
        raise unsupported("`config` must be an object")
    config = current
    if "sample_rate" in raw:
        rate = raw["sample_rate"]
        # vosk-server does float(sample_rate): 16000.0 is fine, 44100.5 or "16k" is not.
        if (
            isinstance(rate, bool)
            or not isinstance(rate, (int, float))
            or not math.isfinite(rate)
            or rate != int(rate)
            or not MIN_SAMPLE_RATE_HZ <= rate <= MAX_SAMPLE_RATE_HZ
        ):
            raise unsupported(f"sample_rate must be a whole number {MIN_SAMPLE_RATE_HZ}-{MAX_SAMPLE_RATE_HZ}")
        config = replace(config, sample_rate_hz=int(rate))
    if "words" in raw:
        words = raw["words"]
        if not isinstance(words, (bool, int)):
            raise unsupported("words must be true or false")
        config = replace(config, words=bool(words))
    if "max_alternatives" in raw:
        alternatives = raw["max_alternatives"]
        if isinstance(alternatives, bool) or not isinstance(alternatives, int) or alternatives < 0:
            raise unsupported("max_alternatives must be a whole number")
        if alternatives > 0:
            raise unsupported("max_alternatives > 0 is not supported by this server")
    if "phrase_list" in raw:
        phrases = raw["phrase_list"]
        if phrases is not None and (not isinstance(phrases, list) or not all(isinstance(p, str) for p in phrases)):
            raise unsupported("phrase_list must be a list of strings")
        config = replace(config, phrase_list=tuple(phrases) if phrases is not None else None)
    # Other keys ("model", ...) are ignored, as vosk-server ignores keys it does not know.
    return config


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def parse_text_frame(text: str) -> dict[str, Any]:
    try:
        message = json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        raise BadRequest("text frames must be JSON", close=CloseCode.INVALID_PAYLOAD) from None
    if not isinstance(message, dict):
        raise unsupported('expected {"config": ...}, {"eof": 1} or {"reset": 1}')
    return message
