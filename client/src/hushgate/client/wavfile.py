"""WAV files in and out: any PCM or float WAV read block by block as mono s16le, with the standard library.

numpy is needed only when a file must be converted (other widths, float,
several channels, a rate outside 8–48 kHz); 16-bit mono files at a rate the
gateway takes are sent sample for sample without it. Other formats go through
PyAV (:mod:`hushgate.client.media`).
"""

from __future__ import annotations

import io
import struct
import wave
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hushgate.wire import MAX_SAMPLE_RATE_HZ, MIN_SAMPLE_RATE_HZ

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

FALLBACK_RATE_HZ = 16_000


class InputError(Exception):
    """The input file cannot be read as audio (exit status 2)."""


# Reading WAV files ----------------------------------------------------------------

_WAVE_FORMAT_PCM = 0x0001
_WAVE_FORMAT_FLOAT = 0x0003
_WAVE_FORMAT_EXTENSIBLE = 0xFFFE


@dataclass(frozen=True)
class _WavLayout:
    rate_hz: int
    channels: int
    width: int  # bytes per sample
    floating: bool
    frames: int
    data_offset: int | None  # set when read by the RIFF fallback rather than `wave`


def _riff_layout(path: Path) -> _WavLayout:
    """Header of a WAV the `wave` module refuses: WAVE_FORMAT_EXTENSIBLE (usual for 24/32-bit) and float."""
    with path.open("rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            raise InputError(f"{path}: not a WAV file")
        fmt: tuple[int, int, int, int] | None = None
        while True:
            chunk = f.read(8)
            if len(chunk) < 8:
                raise InputError(f"{path}: no audio data in the WAV file")
            kind, size = chunk[:4], struct.unpack("<I", chunk[4:])[0]
            if kind == b"fmt ":
                body = f.read(size + (size & 1))[:size]
                if len(body) < 16:
                    raise InputError(f"{path}: truncated WAV header")
                tag, channels, rate, _, _, bits = struct.unpack("<HHIIHH", body[:16])
                if tag == _WAVE_FORMAT_EXTENSIBLE and len(body) >= 26:
                    tag = struct.unpack("<H", body[24:26])[0]  # first bytes of the sub-format GUID
                fmt = (tag, channels, rate, bits)
            elif kind == b"data":
                if fmt is None:
                    raise InputError(f"{path}: WAV data before its format")
                tag, channels, rate, bits = fmt
                width = bits // 8
                floating = tag == _WAVE_FORMAT_FLOAT
                if (
                    tag not in (_WAVE_FORMAT_PCM, _WAVE_FORMAT_FLOAT)
                    or bits % 8
                    or not channels
                    or (floating and width not in (4, 8))
                    or (not floating and width not in (1, 2, 3, 4))
                ):
                    raise InputError(
                        f"{path}: unsupported WAV encoding (format {tag:#x}, {bits}-bit); "
                        "use PCM 8/16/24/32-bit or float"
                    )
                return _WavLayout(rate, channels, width, floating, size // (width * channels), f.tell())
            else:
                f.seek(size + (size & 1), io.SEEK_CUR)  # chunks are padded to even sizes


def _to_float(data: bytes, layout: _WavLayout) -> npt.NDArray[np.float32]:
    """Interleaved samples of any supported width as float32 in -1..1, mixed down to mono."""
    numpy = _numpy()
    if layout.floating:
        samples = numpy.frombuffer(data, dtype="<f4" if layout.width == 4 else "<f8").astype(numpy.float32)
    elif layout.width == 1:  # 8-bit WAV is unsigned
        samples = (numpy.frombuffer(data, dtype=numpy.uint8).astype(numpy.float32) - 128.0) / 128.0
    elif layout.width == 2:
        samples = numpy.frombuffer(data, dtype="<i2").astype(numpy.float32) / 32768.0
    elif layout.width == 3:
        b = numpy.frombuffer(data, dtype=numpy.uint8).reshape(-1, 3).astype(numpy.int32)
        value = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
        value = numpy.where(value >= 1 << 23, value - (1 << 24), value)
        samples = value.astype(numpy.float32) / float(1 << 23)
    else:
        samples = (numpy.frombuffer(data, dtype="<i4").astype(numpy.float64) / float(1 << 31)).astype(numpy.float32)
    if layout.channels > 1:
        samples = samples[: len(samples) - len(samples) % layout.channels]
        samples = samples.reshape(-1, layout.channels).mean(axis=1, dtype=numpy.float32)
    out: npt.NDArray[np.float32] = samples
    return out


def _to_s16le(samples: npt.NDArray[np.float32]) -> bytes:
    numpy = _numpy()
    return bytes(numpy.clip(numpy.rint(samples * 32768.0), -32768, 32767).astype("<i2").tobytes())


def _numpy() -> Any:
    try:
        import numpy
    except ImportError:
        raise InputError(
            "converting this WAV file needs numpy: pip install 'hushgate-client[numpy]' "
            "(16-bit mono files at 8–48 kHz do not)"
        ) from None
    return numpy


class WavSource:
    """A WAV file read block by block as mono int16 at a rate the gateway accepts.

    The file is never loaded whole, so an hour of 48 kHz stereo costs a block of
    memory. Rates within 8–48 kHz are sent as they are (the server resamples);
    others are resampled here to 16 kHz, the rate speech engines use.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            with wave.open(str(path), "rb") as w:
                self._layout = _WavLayout(
                    w.getframerate(), w.getnchannels(), w.getsampwidth(), False, w.getnframes(), None
                )
        except wave.Error:
            # `wave` (Python 3.11) reads only plain PCM; 24/32-bit files are often EXTENSIBLE, some are float.
            self._layout = _riff_layout(path)
        except EOFError:
            raise InputError(f"{path}: truncated WAV file") from None
        if self._layout.rate_hz <= 0 or self._layout.channels <= 0:
            raise InputError(f"{path}: the WAV header is not valid")
        inside = MIN_SAMPLE_RATE_HZ <= self._layout.rate_hz <= MAX_SAMPLE_RATE_HZ
        self.rate_hz = self._layout.rate_hz if inside else FALLBACK_RATE_HZ

    @property
    def duration_s(self) -> float:
        return self._layout.frames / self._layout.rate_hz

    def _raw_blocks(self, frames_per_block: int) -> Iterator[bytes]:
        layout = self._layout
        if layout.data_offset is None:
            with wave.open(str(self.path), "rb") as w:
                while data := w.readframes(frames_per_block):
                    yield data
            return
        frame_bytes = layout.width * layout.channels
        remaining = layout.frames * frame_bytes
        with self.path.open("rb") as f:
            f.seek(layout.data_offset)
            while remaining > 0 and (data := f.read(min(remaining, frames_per_block * frame_bytes))):
                remaining -= len(data)
                yield data[: len(data) - len(data) % frame_bytes]

    def chunks(self, chunk_ms: int) -> Iterator[bytes]:
        """Consecutive mono s16le chunks of about ``chunk_ms`` at ``rate_hz``."""
        layout = self._layout
        frames = max(1, layout.rate_hz * chunk_ms // 1000)
        if layout.rate_hz == self.rate_hz and layout.width == 2 and layout.channels == 1 and not layout.floating:
            for data in self._raw_blocks(frames):  # the common case, sample for sample
                yield data[: len(data) - len(data) % 2]
            return
        resampler = None
        if layout.rate_hz != self.rate_hz:
            numpy = _numpy()
            try:
                import soxr  # type: ignore[import-untyped,unused-ignore]
            except ImportError:
                raise InputError(f"{self.path}: resampling {layout.rate_hz} Hz needs soxr: pip install soxr") from None
            resampler = soxr.ResampleStream(layout.rate_hz, self.rate_hz, 1, dtype="float32", quality="HQ")
        for data in self._raw_blocks(frames):
            samples = _to_float(data, layout)
            if resampler is not None:
                samples = resampler.resample_chunk(samples)
            if len(samples):
                yield _to_s16le(samples)
        if resampler is not None:
            tail = resampler.resample_chunk(numpy.zeros(0, numpy.float32), last=True)
            if len(tail):
                yield _to_s16le(tail)


def wav_bytes(pcm: bytes, rate_hz: int) -> bytes:
    """A mono 16-bit WAV file in memory (written whole, so stdout works as a destination too)."""
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate_hz)
        w.writeframes(pcm)
    return out.getvalue()
