"""Uploaded audio files to the speech engines' input: mono int16 at one rate, bounded.

The bytes are already in memory (the HTTP layer caps the body before it reads
it); decoding is bounded again by duration, so a small, highly compressed file
cannot expand into hours of samples. Nothing touches the disk: PyAV reads the
bytes from memory.
"""

from __future__ import annotations

import io

import numpy as np

from hushgate.client.media import MediaError, decode_pcm16
from hushgate.engines.base import Pcm16


class AudioTooLong(MediaError):
    """The decoded audio runs past the configured longest file."""


def decode_file(data: bytes, *, rate_hz: int, max_duration_s: float) -> Pcm16:
    """The whole file as one array; blocking (call it from a worker thread).

    Raises :class:`MediaError` for undecodable or empty input and
    :class:`AudioTooLong` past ``max_duration_s``.
    """
    if not data:
        raise MediaError("the file is empty")
    limit = int(max_duration_s * rate_hz)
    blocks: list[Pcm16] = []
    total = 0
    for block in decode_pcm16(io.BytesIO(data), rate_hz):
        total += len(block)
        if total > limit:
            raise AudioTooLong(f"the audio is longer than the {max_duration_s:.0f} s this server accepts")
        blocks.append(block)
    if not total:
        raise MediaError("the file holds no audio samples")
    return np.concatenate(blocks)
