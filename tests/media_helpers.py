"""Encoded audio made in memory from the shared WAV recordings (never written to disk or committed)."""

from __future__ import annotations

import io
from pathlib import Path

import av


def encode(wav: Path, fmt: str, codec: str, *, rate_hz: int = 16_000) -> bytes:
    """``wav`` re-encoded as ``fmt``/``codec`` (e.g. ``mp3``/``libmp3lame``), mono."""
    out = io.BytesIO()
    with av.open(str(wav)) as source, av.open(out, "w", format=fmt) as sink:
        stream = sink.add_stream(codec, rate=rate_hz, layout="mono")
        resampler = av.AudioResampler(format=stream.codec_context.format.name, layout="mono", rate=rate_hz)
        pts = 0
        for frame in [*source.decode(audio=0), None]:
            for piece in resampler.resample(frame):
                piece.pts = pts
                pts += piece.samples
                for packet in stream.encode(piece):
                    sink.mux(packet)
        for packet in stream.encode(None):
            sink.mux(packet)
    return out.getvalue()


def words(text: str) -> list[str]:
    return "".join(c.lower() if c.isalnum() or c == "'" else " " for c in text).split()


#: The first half of the JFK recording's sentence (../shared/audio/misc/jfk.wav).
JFK_WORDS = {
    "and",
    "so",
    "my",
    "fellow",
    "americans",
    "ask",
    "not",
    "what",
    "your",
    "country",
    "can",
    "do",
    "for",
    "you",
}
