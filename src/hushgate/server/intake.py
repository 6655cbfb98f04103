"""What a frame costs before it is decoded: audio or control, and the session's control budget.

Decoding is the one thing a client can make the event loop do for every byte it
sends: a megabyte of msgpack empty arrays is a million objects to build. So the
reader classifies each frame without decoding it and charges control frames to
a token bucket *before* the codec sees them:

* audio is free (it is paced by the engine's backlog instead): on JSON sessions
  every binary frame; on msgpack sessions a map of at most four scalar entries
  whose ``type`` is ``"audio"``, recognised by reading a few header bytes. A
  frame with any container in it is never audio, so a frame let through as
  audio is cheap to decode whatever its size;
* every other frame costs ``1 + size // 1024`` tokens: a ping costs 1, a
  64 KiB frame 65. The bucket refills at ``control_rate_per_s`` and holds two
  seconds of it, so the largest control frame is that burst in KiB (100 KiB
  by default, room for a `start` with 50 sealed voiceprints); a larger one is
  refused (1009) without being read;
* an empty bucket refuses the frame, not decoded, as ``overloaded``; the bucket
  goes into debt by the frame's cost, and a client that runs up another
  burst's worth of debt is closed with ``overloaded`` and 1008: it broke a
  limit the server published in ``ready.limits``, so it should not just retry
  (1013 means "the server is busy, come back", an invitation to reconnect).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from hushgate.server.errors import Busy, TooLarge
from hushgate.wire import CloseCode
from hushgate.wire.codec import Frame

BYTES_PER_TOKEN = 1024
MAX_AUDIO_ENTRIES = 4
SMALL_FRAME_BYTES = 256  # small enough to decode for a `stop` even when the bucket is empty


def _str_at(frame: bytes, pos: int) -> tuple[str, int] | None:
    """A msgpack str at ``pos`` (fixstr or str8) and the position after it."""
    if pos >= len(frame):
        return None
    head = frame[pos]
    if 0xA0 <= head <= 0xBF:
        start, length = pos + 1, head & 0x1F
    elif head == 0xD9 and pos + 1 < len(frame):
        start, length = pos + 2, frame[pos + 1]
    else:
        return None
    end = start + length
    if end > len(frame):
        return None
    return frame[start:end].decode("utf-8", "replace"), end


_FIXED = {
    0xC0: 0,
    0xC2: 0,
    0xC3: 0,
    0xCC: 1,
    0xCD: 2,
    0xCE: 4,
    0xCF: 8,
    0xD0: 1,
    0xD1: 2,
    0xD2: 4,
    0xD3: 8,
    0xCA: 4,
    0xCB: 8,
}
_LENGTH_BYTES = {0xC4: 1, 0xC5: 2, 0xC6: 4, 0xD9: 1, 0xDA: 2, 0xDB: 4}  # bin8/16/32, str8/16/32


def _skip_scalar(frame: bytes, pos: int) -> int | None:
    """The position after the scalar at ``pos``; None when it is a container, an ext or cut short."""
    if pos >= len(frame):
        return None
    head = frame[pos]
    if head <= 0x7F or head >= 0xE0:  # fixints
        return pos + 1
    if 0xA0 <= head <= 0xBF:
        return pos + 1 + (head & 0x1F)
    if head in _FIXED:
        return pos + 1 + _FIXED[head]
    width = _LENGTH_BYTES.get(head)
    if width is None or pos + 1 + width > len(frame):
        return None
    return pos + 1 + width + int.from_bytes(frame[pos + 1 : pos + 1 + width], "big")


def is_msgpack_audio(frame: bytes) -> bool:
    """Whether a msgpack frame is an `audio` message, from its headers alone."""
    if not frame or not 0x81 <= frame[0] <= 0x80 + MAX_AUDIO_ENTRIES:
        return False
    pos, kind = 1, None
    for _ in range(frame[0] & 0x0F):
        key = _str_at(frame, pos)
        if key is None:
            return False
        name, pos = key
        if name == "type":
            value = _str_at(frame, pos)
            if value is None:
                return False
            kind, pos = value
            continue
        after = _skip_scalar(frame, pos)
        if after is None:
            return False
        pos = after
    return kind == "audio" and pos == len(frame)


def is_audio(frame: Frame, codec_name: str) -> bool:
    if isinstance(frame, str):
        return False
    return codec_name == "json" or is_msgpack_audio(frame)


@dataclass(slots=True)
class ControlBudget:
    """A session's token bucket for control frames, charged by size before decoding."""

    rate_per_s: float
    tokens: float = 0.0
    refilled_at: float = 0.0

    def __post_init__(self) -> None:
        self.tokens = self.burst
        self.refilled_at = time.monotonic()

    @property
    def burst(self) -> float:
        return 2 * self.rate_per_s

    @property
    def max_frame_bytes(self) -> int:
        return int(self.burst - 1) * BYTES_PER_TOKEN

    def check_size(self, size_bytes: int) -> None:
        """Raises :class:`TooLarge` (1009) for a control frame no burst can pay for."""
        if size_bytes > self.max_frame_bytes:
            raise TooLarge(
                f"control message of {size_bytes} bytes exceeds the limit of {self.max_frame_bytes}",
                close=CloseCode.TOO_BIG,
            )

    def charge(self, size_bytes: int) -> bool:
        """Spend a frame's cost: True when it may be decoded, False when it is refused (not fatal).

        Raises :class:`TooLarge` (1009) for a frame no burst can pay for and
        :class:`Busy` (1008) once refusals have run up another burst of debt.
        """
        self.check_size(size_bytes)
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.refilled_at) * self.rate_per_s)
        self.refilled_at = now
        cost = 1 + size_bytes // BYTES_PER_TOKEN
        self.tokens -= cost
        if self.tokens >= 0:
            return True
        if self.tokens < -self.burst:
            raise Busy(
                f"kept sending control messages past the limit of {self.rate_per_s:g} per second",
                close=CloseCode.POLICY,
            )
        return False
