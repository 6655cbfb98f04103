from __future__ import annotations

import numpy as np
import pytest
import soxr

from hushgate.server.audio import AudioInput
from hushgate.wire import CloseCode, ProtocolError


def tone(rate_hz: int, seconds: float, freq_hz: float = 440.0) -> np.ndarray:
    t = np.arange(int(rate_hz * seconds)) / rate_hz
    return (np.sin(2 * np.pi * freq_hz * t) * 8000).astype(np.int16)


@pytest.mark.parametrize("rate_hz", [8000, 11025, 22050, 44100, 48000])
def test_streaming_resampler_matches_one_shot_and_keeps_the_length(rate_hz: int) -> None:
    pcm = tone(rate_hz, 2.0)
    audio = AudioInput(rate_hz, 16_000)
    sizes = [1, 333, 4096, 17, 10_000]
    out, pos, i = [], 0, 0
    while pos < len(pcm):
        n = sizes[i % len(sizes)]
        out.append(audio.push(pcm[pos : pos + n].tobytes()))
        pos, i = pos + n, i + 1
    out.append(audio.drain())
    streamed = np.concatenate(out)
    assert abs(len(streamed) - 32_000) <= 1
    reference = soxr.resample(pcm, rate_hz, 16_000, quality="HQ")
    n = min(len(reference), len(streamed))
    # Identical apart from rounding: chunk boundaries leave no trace.
    assert np.max(np.abs(streamed[:n].astype(int) - reference[:n].astype(int))) <= 2
    assert audio.audio_ms == 2000


def test_same_rate_passes_through() -> None:
    pcm = tone(16_000, 0.1)
    audio = AudioInput(16_000, 16_000)
    assert np.array_equal(audio.push(pcm.tobytes()), pcm)
    assert len(audio.drain()) == 0


def test_odd_byte_count_is_a_fatal_invalid_payload() -> None:
    with pytest.raises(ProtocolError) as info:
        AudioInput(16_000, 16_000).push(b"\x00\x01\x02")
    assert info.value.close == CloseCode.INVALID_PAYLOAD
