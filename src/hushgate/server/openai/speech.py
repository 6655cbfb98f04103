"""Synthesized speech streamed in the container a client asked for.

``wav`` and ``pcm`` are written here (a streamed WAV says "unknown length" in
its header, as OpenAI's does); ``flac``, ``mp3``, ``opus`` (in Ogg) and ``aac``
(ADTS) are encoded by PyAV when its FFmpeg build has the encoder, checked when
the request arrives. ``speed`` is applied with FFmpeg's ``atempo`` filter, which
keeps the pitch. Everything here is blocking and runs in the voice's engine
thread, chunk by chunk, so the first bytes leave as soon as the first clause
is synthesized.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from fractions import Fraction
from typing import Any, Literal

import numpy as np

from hushgate.engines.base import Pcm16

SpeechFormat = Literal["wav", "pcm", "flac", "mp3", "opus", "aac"]
SPEECH_FORMATS: tuple[SpeechFormat, ...] = ("mp3", "opus", "aac", "flac", "wav", "pcm")
MEDIA_TYPES: dict[SpeechFormat, str] = {
    "wav": "audio/wav",
    "pcm": "audio/pcm",
    "flac": "audio/flac",
    "mp3": "audio/mpeg",
    "opus": "audio/ogg",
    "aac": "audio/aac",
}
# format → (FFmpeg muxer, encoder, sample rates it takes or None for any)
_PYAV: dict[str, tuple[str, str, tuple[int, ...] | None]] = {
    "flac": ("flac", "flac", None),
    "mp3": ("mp3", "libmp3lame", (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000)),
    "opus": ("ogg", "libopus", (8000, 12000, 16000, 24000, 48000)),
    "aac": ("adts", "aac", (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000)),
}


def available_formats() -> list[SpeechFormat]:
    """The formats this server can produce with the installed PyAV."""
    import av

    found: list[SpeechFormat] = []
    for fmt in SPEECH_FORMATS:
        spec = _PYAV.get(fmt)
        if spec is None:
            found.append(fmt)
            continue
        try:
            av.codec.Codec(spec[1], "w")
        except Exception:  # noqa: BLE001, S112 - PyAV raises several kinds for a missing encoder
            continue
        found.append(fmt)
    return found


def wav_header(rate_hz: int) -> bytes:
    """A 16-bit mono WAV header whose sizes say "until the end of the stream"."""
    unknown = 0xFFFFFFFF
    return (
        b"RIFF"
        + struct.pack("<I", unknown)
        + b"WAVEfmt "
        + struct.pack("<IHHIIHH", 16, 1, 1, rate_hz, rate_hz * 2, 2, 16)
        + b"data"
        + struct.pack("<I", unknown)
    )


class _Sink:
    """A write-only file for PyAV's muxer; what it wrote is taken out after every chunk."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def write(self, data: bytes) -> int:
        self._parts.append(bytes(data))
        return len(data)

    def take(self) -> bytes:
        out = b"".join(self._parts)
        self._parts.clear()
        return out


class Encoder:
    """int16 chunks in, bytes of the chosen container out; one per response."""

    def __init__(self, fmt: SpeechFormat, rate_hz: int, speed: float) -> None:
        self.fmt = fmt
        self.rate_hz = rate_hz
        self._pts = 0
        self._tempo = _Tempo(rate_hz, speed) if speed != 1.0 else None
        self._container: Any = None
        self._sink = _Sink()
        if fmt in _PYAV:
            import av

            muxer, codec, rates = _PYAV[fmt]
            out_rate = rate_hz if rates is None or rate_hz in rates else min(r for r in rates if r >= rate_hz)
            self._container = av.open(self._sink, mode="w", format=muxer)
            self._stream = self._container.add_stream(codec, rate=out_rate, layout="mono")
            self._resampler = av.AudioResampler(
                format=self._stream.codec_context.format.name, layout="mono", rate=out_rate
            )

    def start(self) -> bytes:
        return wav_header(self.rate_hz) if self.fmt == "wav" else b""

    def push(self, pcm: Pcm16) -> bytes:
        if self._tempo is not None:
            pcm = self._tempo.push(pcm)
        return self._encode(pcm)

    def finish(self) -> bytes:
        out = b""
        if self._tempo is not None:
            out = self._encode(self._tempo.finish())
        if self._container is None:
            return out
        for frame in self._resampler.resample(None):
            self._mux(frame)
        for packet in self._stream.encode(None):
            self._container.mux(packet)
        self._container.close()
        return out + self._sink.take()

    def _encode(self, pcm: Pcm16) -> bytes:
        if self._container is None or not len(pcm):
            return pcm.astype("<i2").tobytes() if self._container is None else b""
        import av

        frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1).astype(np.int16), format="s16", layout="mono")
        frame.sample_rate = self.rate_hz
        for out in self._resampler.resample(frame):
            self._mux(out)
        return self._sink.take()

    def _mux(self, frame: Any) -> None:
        frame.pts = self._pts
        self._pts += frame.samples
        for packet in self._stream.encode(frame):
            self._container.mux(packet)


class _Tempo:
    """FFmpeg's ``atempo`` (pitch kept), chained because one stage spans only 0.5–2."""

    def __init__(self, rate_hz: int, speed: float) -> None:
        import av.filter

        self.rate_hz = rate_hz
        self._graph = av.filter.Graph()
        source = self._graph.add_abuffer(
            format="s16", sample_rate=rate_hz, layout="mono", time_base=Fraction(1, rate_hz)
        )
        node = source
        for factor in _tempo_stages(speed):
            stage = self._graph.add("atempo", f"{factor:.6f}")
            node.link_to(stage)
            node = stage
        fmt = self._graph.add("aformat", "sample_fmts=s16:channel_layouts=mono")
        node.link_to(fmt)
        sink = self._graph.add("abuffersink")
        fmt.link_to(sink)
        self._graph.configure()
        self._pts = 0

    def push(self, pcm: Pcm16) -> Pcm16:
        import av

        frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1).astype(np.int16), format="s16", layout="mono")
        frame.sample_rate = self.rate_hz
        frame.pts = self._pts
        self._pts += len(pcm)
        self._graph.push(frame)
        return self._pull()

    def finish(self) -> Pcm16:
        self._graph.push(None)
        return self._pull()

    def _pull(self) -> Pcm16:
        import av

        out: list[Pcm16] = []
        while True:
            try:
                frame = self._graph.pull()
            except (av.error.BlockingIOError, av.error.EOFError):
                break
            if not isinstance(frame, av.AudioFrame):
                continue
            out.append(frame.to_ndarray().reshape(-1)[: frame.samples].astype(np.int16))
        return np.concatenate(out) if out else np.zeros(0, np.int16)


def _tempo_stages(speed: float) -> Iterator[float]:
    while speed < 0.5:
        yield 0.5
        speed /= 0.5
    while speed > 2.0:
        yield 2.0
        speed /= 2.0
    yield speed
