"""Carrying a stream over to another replica when its server goes away.

A draining server finishes every utterance it has heard, sends ``ended`` with
reason ``shutdown`` and ``stats.audio_ms`` (all the audio it took), and closes
with 1001. Everything before that point is settled: its finals went out. A
server that vanished without ``ended`` (close 1006) settled only what its last
final covered. So the SDK keeps the audio it sent since the last settled point
and, on a new session (through the load balancer, on another replica), sends
that audio again before going on with the source: no final is lost, and none
is repeated, because the new session hears only unsettled audio.

The new session's clock starts at the settled point, so event times and
utterance numbers are shifted to read as one continuous stream.
"""

from __future__ import annotations

from collections import deque
from typing import Any, TypeVar

import msgspec

# Close codes after which the same audio may be sent again elsewhere: the
# server is going away (1001), restarting (1012), refusing for now (1013), or
# the connection broke without a close (1006).
RESUMABLE_CLOSE_CODES = frozenset({1001, 1006, 1012, 1013})
# How much unsettled audio is kept for a resend. Overflow policy: the oldest
# audio is dropped, so after a stretch longer than this with no final (one
# utterance that long cannot happen under the default max_utterance_s) a resume
# starts later than the last settled point.
RESUME_BUFFER_S = 60.0
# Bounded retries to open the next session; the waits double from the first.
RESUME_ATTEMPTS = 6
RESUME_FIRST_WAIT_S = 0.2

E = TypeVar("E")


class AudioTail:
    """The s16le audio of the current session that no final has settled yet."""

    def __init__(self, sample_rate_hz: int, max_s: float = RESUME_BUFFER_S) -> None:
        self._bytes_per_ms = sample_rate_hz * 2 / 1000
        self._max_bytes = int(max_s * 1000 * self._bytes_per_ms)
        self._chunks: deque[bytes] = deque()
        self._start_byte = 0  # session-relative offset of the first kept byte
        self._end_byte = 0  # bytes sent in this session

    @property
    def sent_ms(self) -> int:
        return int(self._end_byte / self._bytes_per_ms)

    def sent(self, data: bytes) -> None:
        self._chunks.append(data)
        self._end_byte += len(data)
        while self._end_byte - self._start_byte > self._max_bytes and len(self._chunks) > 1:
            self._start_byte += len(self._chunks.popleft())

    def settle(self, through_ms: int) -> None:
        """Forget the audio before ``through_ms`` (session time): a final or ``ended`` covers it."""
        through_byte = min(self._end_byte, int(through_ms * self._bytes_per_ms) & ~1)
        while self._chunks and self._start_byte + len(self._chunks[0]) <= through_byte:
            self._start_byte += len(self._chunks.popleft())
        if self._chunks and self._start_byte < through_byte:
            cut = through_byte - self._start_byte
            self._chunks[0] = self._chunks[0][cut:]
            self._start_byte = through_byte

    def restart(self) -> tuple[int, bytes]:
        """For the next session: (ms of this session that are settled, the audio to send again)."""
        settled_ms = int(self._start_byte / self._bytes_per_ms)
        unsettled = b"".join(self._chunks)
        self._chunks.clear()
        self._start_byte = self._end_byte = 0
        return settled_ms, unsettled


class Timeline:
    """Shifts the events of later sessions so the stream reads as one."""

    def __init__(self) -> None:
        self.offset_ms = 0
        self.utterance_offset = 0
        self._next_utterance = 0  # in the current session

    def seen(self, event: Any) -> None:
        utterance = getattr(event, "utterance", None)
        if isinstance(utterance, int):
            self._next_utterance = max(self._next_utterance, utterance + 1)

    def advance(self, settled_ms: int, utterances: int = 0) -> None:
        """A new session starts at ``settled_ms`` of the current one."""
        self.offset_ms += settled_ms
        self.utterance_offset += max(self._next_utterance, utterances)
        self._next_utterance = 0

    def shift(self, event: E) -> E:
        if self.offset_ms == 0 and self.utterance_offset == 0:
            return event
        changes: dict[str, Any] = {}
        for name in ("t_ms", "t0_ms", "t1_ms"):
            value = getattr(event, name, None)
            if isinstance(value, int):
                changes[name] = value + self.offset_ms
        utterance = getattr(event, "utterance", None)
        if isinstance(utterance, int):
            changes["utterance"] = utterance + self.utterance_offset
        words = getattr(event, "words", None)
        if words:
            changes["words"] = tuple(
                _replace(w, t0_ms=w.t0_ms + self.offset_ms, t1_ms=w.t1_ms + self.offset_ms) for w in words
            )
        return _replace(event, **changes) if changes else event


def _replace(value: E, **changes: Any) -> E:
    # Every event is a msgspec Struct (hushgate.wire).
    return msgspec.structs.replace(value, **changes)  # type: ignore[type-var,unused-ignore]
