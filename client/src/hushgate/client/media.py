"""Any audio file (MP3, Ogg/Opus, FLAC, M4A, WebM, WAV …) as mono int16 at one rate, via PyAV.

PyAV is optional for the client (``pip install hushgate-client[formats]``; the
server always has it, through faster-whisper). Without it, only WAV files can
be read (by :mod:`hushgate.client.commands`). The server's HTTP API uses the
same decoder with its own size and duration bounds (``hushgate.server.decode``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:  # numpy comes with the `formats` extra; importing this module needs neither it nor PyAV
    import numpy as np
    import numpy.typing as npt


class MediaError(Exception):
    """The input is not audio PyAV can decode (the message says why, safe to show)."""


def pyav_available() -> bool:
    try:
        import av  # noqa: F401
    except ImportError:
        return False
    return True


def decode_pcm16(source: str | IO[bytes], rate_hz: int) -> Iterator[npt.NDArray[np.int16]]:
    """The first audio stream of ``source``, mixed to mono and resampled to ``rate_hz``, block by block.

    Raises :class:`MediaError` for anything that is not decodable audio,
    including a file cut off in the middle.
    """
    try:
        import av
        from av.error import FFmpegError
    except ImportError:
        raise MediaError("reading this audio format needs PyAV: pip install 'hushgate-client[formats]'") from None
    try:
        container = av.open(source, mode="r", metadata_errors="ignore")
    except (FFmpegError, OSError, ValueError) as exc:
        raise MediaError(f"not a readable audio file ({_reason(exc)})") from None
    with container:
        if not container.streams.audio:
            raise MediaError("the file holds no audio stream")
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format="s16", layout="mono", rate=rate_hz)
        got_any = False
        try:
            for frame in container.decode(stream):
                for out in resampler.resample(frame):
                    got_any = True
                    yield _samples(out)
            for out in resampler.resample(None):
                yield _samples(out)
        except (FFmpegError, ValueError) as exc:
            raise MediaError(f"the audio could not be decoded ({_reason(exc)})") from None
        if not got_any:
            raise MediaError("the file holds no decodable audio (empty or truncated)")


def _samples(frame: Any) -> npt.NDArray[np.int16]:
    import numpy as np

    # Packed s16 mono: one plane, possibly padded past the last sample.
    data: npt.NDArray[np.int16] = frame.to_ndarray().reshape(-1)[: frame.samples].astype(np.int16, copy=False)
    return data


def _reason(exc: BaseException) -> str:
    text = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return str(text).split(": '")[0]


class MediaSource:
    """An encoded file (or stdin's bytes) as the transcribe command reads audio: mono int16 blocks at 16 kHz.

    The container is probed when the source is made, so an unreadable file is
    reported before anything is sent.
    """

    rate_hz = 16_000

    def __init__(self, source: str | bytes, name: str) -> None:
        self._source = source
        self.name = name
        self.duration_s = 0.0  # unknown until decoded, for streams without a duration
        try:
            import av
            from av.error import FFmpegError
        except ImportError:
            raise MediaError(
                f"{name}: reading this audio format needs PyAV: pip install 'hushgate-client[formats]'"
            ) from None
        try:
            with av.open(self._open(), mode="r", metadata_errors="ignore") as container:
                if not container.streams.audio:
                    raise MediaError(f"{name}: the file holds no audio stream")
                if container.duration:
                    self.duration_s = container.duration / 1_000_000  # microseconds (AV_TIME_BASE)
        except (FFmpegError, OSError, ValueError) as exc:
            raise MediaError(f"{name}: not a readable audio file ({_reason(exc)})") from None

    def _open(self) -> str | IO[bytes]:
        import io

        return io.BytesIO(self._source) if isinstance(self._source, bytes) else self._source

    def chunks(self, chunk_ms: int) -> Iterator[npt.NDArray[np.int16]]:
        """Blocks of ``chunk_ms`` (the decoder's own frames are a few milliseconds long)."""
        import numpy as np

        size = self.rate_hz * chunk_ms // 1000
        held: list[npt.NDArray[np.int16]] = []
        count = 0
        try:
            for block in decode_pcm16(self._open(), self.rate_hz):
                held.append(block)
                count += len(block)
                if count >= size:
                    yield np.concatenate(held)
                    held, count = [], 0
        except MediaError as exc:
            raise MediaError(f"{self.name}: {exc}") from None
        if held:
            yield np.concatenate(held)
