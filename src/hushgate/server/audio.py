"""Audio in: checks PCM frames and resamples them, keeping state across chunks."""

from __future__ import annotations

import numpy as np
import soxr

from hushgate.engines.base import Pcm16
from hushgate.server.errors import BadRequest
from hushgate.server.protocol import CloseCode


class AudioInput:
    """Turns a client's s16le frames at its own rate into int16 at ``target_rate_hz``.

    One per session: the soxr stream keeps filter state between chunks, so chunk
    boundaries leave no clicks and no samples are lost or duplicated.
    """

    def __init__(self, source_rate_hz: int, target_rate_hz: int) -> None:
        self.source_rate_hz = source_rate_hz
        self.target_rate_hz = target_rate_hz
        self.samples_in = 0
        self._resampler = (
            None
            if source_rate_hz == target_rate_hz
            else soxr.ResampleStream(source_rate_hz, target_rate_hz, 1, dtype="int16", quality="HQ")
        )

    @property
    def audio_ms(self) -> int:
        """Audio received so far, on the session's audio clock."""
        return self.samples_in * 1000 // self.source_rate_hz

    def push(self, frame: bytes) -> Pcm16:
        if len(frame) % 2:
            raise BadRequest(
                f"audio frame of {len(frame)} bytes: s16le needs an even byte count", close=CloseCode.INVALID_PAYLOAD
            )
        pcm = np.frombuffer(frame, dtype="<i2").astype(np.int16, copy=False)
        self.samples_in += len(pcm)
        if self._resampler is None:
            return pcm
        return self._resampler.resample_chunk(pcm)

    def drain(self) -> Pcm16:
        """What the resampler still holds; call once when the client stops."""
        if self._resampler is None:
            return np.zeros(0, np.int16)
        return self._resampler.resample_chunk(np.zeros(0, np.int16), last=True)
