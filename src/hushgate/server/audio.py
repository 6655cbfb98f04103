"""Audio in: checks PCM (or G.711 μ-law/A-law) frames and resamples them, keeping state across chunks."""

from __future__ import annotations

import numpy as np
import soxr

from hushgate.engines.base import Pcm16
from hushgate.server.errors import BadRequest
from hushgate.wire import CloseCode

G711_ENCODINGS = ("mulaw", "alaw")
G711_RATE_HZ = 8_000


def _g711_tables() -> dict[str, Pcm16]:
    """Byte → sample tables of ITU-T G.711 (telephony's 8-bit companded audio)."""
    codes = np.arange(256, dtype=np.int32)
    u = ~codes & 0xFF
    exponent, mantissa = (u >> 4) & 7, u & 0x0F
    magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84
    mulaw = np.where(u & 0x80, -magnitude, magnitude)
    a = codes ^ 0x55
    exponent, mantissa = (a >> 4) & 7, a & 0x0F
    magnitude = np.where(exponent == 0, (mantissa << 4) + 8, ((mantissa << 4) + 0x108) << np.maximum(exponent - 1, 0))
    alaw = np.where(a & 0x80, magnitude, -magnitude)
    return {"mulaw": mulaw.astype(np.int16), "alaw": alaw.astype(np.int16)}


_G711 = _g711_tables()


def g711_decode(frame: bytes, encoding: str) -> Pcm16:
    """μ-law or A-law bytes as int16 samples, one sample per byte."""
    table: Pcm16 = _G711[encoding][np.frombuffer(frame, dtype=np.uint8)]
    return table


class AudioInput:
    """Turns a client's s16le frames at its own rate into int16 at ``target_rate_hz``.

    One per session: the soxr stream keeps filter state between chunks, so chunk
    boundaries leave no clicks and no samples are lost or duplicated.
    """

    def __init__(self, source_rate_hz: int, target_rate_hz: int, encoding: str = "pcm_s16le") -> None:
        self.source_rate_hz = source_rate_hz
        self.encoding = encoding
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
        if self.encoding in G711_ENCODINGS:
            pcm = g711_decode(frame, self.encoding)
        elif len(frame) % 2:
            raise BadRequest(
                f"audio frame of {len(frame)} bytes: s16le needs an even byte count", close=CloseCode.INVALID_PAYLOAD
            )
        else:
            pcm = np.frombuffer(frame, dtype="<i2").astype(np.int16, copy=False)
        self.samples_in += len(pcm)
        if self._resampler is None:
            return pcm
        resampled: Pcm16 = self._resampler.resample_chunk(pcm)
        return resampled

    def drain(self) -> Pcm16:
        """What the resampler still holds; call once when the client stops."""
        if self._resampler is None:
            return np.zeros(0, np.int16)
        tail: Pcm16 = self._resampler.resample_chunk(np.zeros(0, np.int16), last=True)
        return tail
