"""eSpeak NG text-to-speech: robotic but tiny, instant, and in over a hundred languages.

The ``espeak-ng`` program (Debian package ``espeak-ng``) runs once per request.
The text goes in on stdin, never on the command line, so a text that starts
with "-" or holds quotes is spoken rather than read as options, and no shell is
involved. The WAV comes back on stdout and stays in memory: nothing is written
to disk.

espeak-ng writes its WAV as it synthesises, clause by clause, with the RIFF and
data sizes as placeholders (0x7FFFF000-ish here, 0 or 0xFFFFFFFF elsewhere), so
the header is parsed with `wave` and everything after it is treated as PCM until
the stream ends, whatever the header claims. The first block is yielded the
moment it arrives: on the development machine first audio came 6-12 ms after
the call, and 12 s of speech was complete after 24 ms (90 s after 85 ms), so
one process for the whole text gives first audio as early as one process per
sentence would, without a process start per sentence.

There is no shared state: each request owns its own process, so any number of
threads may synthesise at once.

A request's process never outlives it: one that writes nothing for
``timeout_s`` (10 s unless ``extra["timeout_s"]`` says otherwise; espeak-ng
normally answers within milliseconds) is killed and the request fails, and
``close()`` on a request's iterator kills and reaps its process from any
thread, even while another thread is blocked reading it (the gateway closes a
synthesis when its session goes; a generator could not be closed then).
"""

from __future__ import annotations

import io
import os
import selectors
import shutil
import struct
import subprocess
import wave
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import IO, Any, cast

import numpy as np

from hushgate.engines.base import EngineError, EngineOptions, EngineSpec, ModelNotFound, Pcm16, Voice
from hushgate.engines.child_audio import ClosableChunks, Stalled, TimedPipe

SAMPLE_RATE_HZ = 22_050
"""espeak-ng's own output rate for its built-in (non-MBROLA) voices; checked at load."""
DEFAULT_RATE_WPM = 175
MIN_RATE_WPM = 80
MAX_RATE_WPM = 450
VOICE_PREFIX = "espeak-"
READ_BYTES = 64 * 1024
BYTES_PER_SAMPLE = 2
CHUNK_MS = 500
"""Size of every chunk after the first, which is yielded as soon as espeak-ng writes it."""
LIST_TIMEOUT_S = 10.0
EXIT_TIMEOUT_S = 1.0
DEFAULT_TIMEOUT_S = 10.0
"""Longest espeak-ng may go without taking input or writing output before it is killed."""
_RIFF_HEADER_BYTES = 12
_CHUNK_HEADER_BYTES = 8
# No real header comes near this; a stream without a data chunk by then is not a WAV.
_MAX_HEADER_BYTES = 4096
# ISO 639-3 codes espeak-ng uses where clients ask for ISO 639-1 ones.
_LANGUAGE_ALIASES = {"cmn": "zh"}


@dataclass(frozen=True, slots=True)
class EspeakVoice:
    voice: Voice
    espeak_name: str
    """What ``-v`` gets: the voice file, which (unlike the language) is unique."""


def parse_voice_list(listing: str, *, sample_rate_hz: int = SAMPLE_RATE_HZ) -> list[EspeakVoice]:
    """Voices from ``espeak-ng --voices`` output.

    Columns: priority, language, age/gender, voice name (spaces written as
    underscores), file, other languages. The id is ``espeak-<language>``; when
    two voices share a language (Cantonese has two), the later one is named
    after its file instead.
    """
    voices: list[EspeakVoice] = []
    seen_ids: set[str] = set()
    for line in listing.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 5:
            continue
        language_tag, name, file_name = fields[1].lower(), fields[3].replace("_", " "), fields[4]
        voice_id = VOICE_PREFIX + language_tag
        if voice_id in seen_ids:
            voice_id = VOICE_PREFIX + file_name.rsplit("/", 1)[-1].lower()
        if voice_id in seen_ids:
            continue
        seen_ids.add(voice_id)
        primary = language_tag.split("-")[0]
        voices.append(
            EspeakVoice(
                voice=Voice(
                    id=voice_id,
                    language=_LANGUAGE_ALIASES.get(primary, primary),
                    sample_rate_hz=sample_rate_hz,
                    engine="espeak",
                    description=f"eSpeak NG {name} ({language_tag})",
                ),
                espeak_name=file_name,
            )
        )
    return voices


def _read_exactly(stream: IO[bytes], size: int) -> bytes:
    data = b""
    while len(data) < size:
        block = stream.read(size - len(data))
        if not block:
            break
        data += block
    return data


def read_wav_header(stream: IO[bytes]) -> int:
    """Read a streaming WAV's header from ``stream``, leaving it at the first PCM byte; returns the rate.

    The chunk walk finds where the header ends (a stream cannot be rewound);
    `wave` then checks the format. Sizes in the header are ignored.
    """
    header = _read_exactly(stream, _RIFF_HEADER_BYTES)
    if len(header) < _RIFF_HEADER_BYTES or header[:4] != b"RIFF" or header[8:12] != b"WAVE":
        raise EngineError("espeak-ng did not produce a WAV stream")
    while True:
        chunk_header = _read_exactly(stream, _CHUNK_HEADER_BYTES)
        if len(chunk_header) < _CHUNK_HEADER_BYTES:
            raise EngineError("espeak-ng's WAV stream ended inside its header")
        header += chunk_header
        if chunk_header[:4] == b"data":
            break
        body_bytes = int.from_bytes(chunk_header[4:8], "little")
        body_bytes += body_bytes % 2  # RIFF pads chunks to even sizes
        if len(header) + body_bytes > _MAX_HEADER_BYTES:
            raise EngineError("espeak-ng's WAV header is implausibly long")
        body = _read_exactly(stream, body_bytes)
        if len(body) < body_bytes:
            raise EngineError("espeak-ng's WAV stream ended inside its header")
        header += body
    # The sizes are placeholders in a stream (0, 0xFFFFFFFF or near 2**31);
    # wave trusts them, so it is shown a header that describes no data at all.
    header = header[:4] + struct.pack("<I", len(header) - 8) + header[8:-4] + struct.pack("<I", 0)
    try:
        with wave.open(io.BytesIO(header), "rb") as parsed:
            channels, sample_width_bytes, rate_hz = parsed.getnchannels(), parsed.getsampwidth(), parsed.getframerate()
    except (wave.Error, EOFError) as exc:
        raise EngineError(f"espeak-ng produced an unreadable WAV header: {exc}") from exc
    if channels != 1 or sample_width_bytes != BYTES_PER_SAMPLE:
        raise EngineError(f"espeak-ng produced {channels}-channel {8 * sample_width_bytes}-bit audio, not mono 16-bit")
    return rate_hz


class EspeakSynthesizer:
    """Runs ``espeak-ng`` per request; holds no shared state, so it is thread-safe."""

    def __init__(
        self,
        executable: str,
        voices: Sequence[EspeakVoice],
        *,
        rate_wpm: int = DEFAULT_RATE_WPM,
        sample_rate_hz: int = SAMPLE_RATE_HZ,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        if not voices:
            raise ModelNotFound("espeak-ng lists no voices")
        self.name: str = "espeak"
        self._executable = executable
        self._voices: dict[str, EspeakVoice] = {v.voice.id: v for v in voices}
        self._rate_wpm = rate_wpm
        self._sample_rate_hz = sample_rate_hz
        self._timeout_s = timeout_s
        self._closed = False

    def voices(self) -> list[Voice]:
        return [v.voice for v in self._voices.values()]

    def synthesize(self, text: str, voice: str) -> Iterator[Pcm16]:
        """Mono int16 blocks as espeak-ng writes them. Checks run before the first ``next()``."""
        if self._closed:
            raise EngineError("the espeak engine has been closed")
        entry = self._voices.get(voice)
        if entry is None:
            raise EngineError(f"unknown espeak voice {voice!r}; available: {', '.join(self._voices) or 'none'}")
        if not text.strip():
            raise EngineError("nothing to say: the text is empty")
        synthesis: ClosableChunks
        synthesis = ClosableChunks(self._stream(text, entry.espeak_name, lambda p: synthesis.started(p)))
        return synthesis

    def command(self, espeak_name: str) -> list[str]:
        """The argv for one request: text on stdin (read whole, as UTF-8), WAV on stdout."""
        return [self._executable, "-v", espeak_name, "-s", str(self._rate_wpm), "-b", "1", "--stdin", "--stdout"]

    def _stream(
        self, text: str, espeak_name: str, started: Callable[[subprocess.Popen[bytes]], None]
    ) -> Generator[Pcm16, None, None]:
        # stderr is dropped: an unread stderr pipe that filled up would stall
        # espeak-ng while this waits on stdout. Voices are checked before the
        # call, so a failure here is rare and its exit status is reported.
        # Unbuffered: the pipes are read and written with deadlines (TimedPipe).
        process = subprocess.Popen(
            self.command(espeak_name),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=_quiet_audio_env(),
            bufsize=0,
        )
        started(process)
        # Popen with both pipes always sets these; the check is for the type checker.
        if process.stdin is None or process.stdout is None:
            raise EngineError("could not open pipes to espeak-ng")
        stdin = TimedPipe(process.stdin, self._timeout_s, selectors.EVENT_WRITE, program="espeak-ng")
        stdout = TimedPipe(process.stdout, self._timeout_s, selectors.EVENT_READ, program="espeak-ng")
        try:
            # With --stdin espeak-ng reads all of its input before it writes any
            # audio, so writing everything first cannot deadlock on a full pipe.
            try:
                stdin.write_all(text.encode("utf-8"))
                process.stdin.close()
            except BrokenPipeError:
                pass  # it died at once; the header read below reports its exit status
            try:
                rate_hz = read_wav_header(cast(IO[bytes], stdout))
            except Stalled:
                raise
            except EngineError as exc:
                raise EngineError(f"{exc} ({_exit_description(process)})") from exc
            if rate_hz != self._sample_rate_hz:
                raise EngineError(
                    f"espeak-ng switched to {rate_hz} Hz; its voices were listed at {self._sample_rate_hz} Hz"
                )
            pending = b""
            # The first block goes out at once; later ones are gathered into
            # bigger chunks (espeak-ng writes 4 KB at a time, ~1000x faster
            # than real time) to save the caller hundreds of tiny hand-offs.
            min_chunk_bytes = 2
            while block := stdout.read(READ_BYTES):
                pending += block
                if len(pending) >= min_chunk_bytes:
                    # A read can end mid-sample; the odd byte waits for the next one.
                    usable_bytes = len(pending) - len(pending) % 2
                    yield np.frombuffer(pending[:usable_bytes], dtype="<i2").astype(np.int16)
                    pending = pending[usable_bytes:]
                    min_chunk_bytes = rate_hz * BYTES_PER_SAMPLE * CHUNK_MS // 1000
            if len(pending) >= BYTES_PER_SAMPLE:
                usable_bytes = len(pending) - len(pending) % 2
                yield np.frombuffer(pending[:usable_bytes], dtype="<i2").astype(np.int16)
            if _wait_exit(process) != 0:
                raise EngineError(f"espeak-ng failed: {_exit_description(process)}")
        finally:
            # Also reached when the caller stops early (close): the process must
            # not outlive the request, nor stay a zombie.
            if process.poll() is None:
                process.kill()
            process.wait()
            stdin.close()
            stdout.close()
            process.stdin.close()
            process.stdout.close()

    def close(self) -> None:
        self._closed = True


def _quiet_audio_env() -> dict[str, str]:
    """The environment for espeak-ng, minus its urge to talk to a sound server.

    Even with ``--stdout`` espeak-ng's audio library starts a PulseAudio client,
    which writes runtime state under $HOME/.config/pulse and $TMPDIR (found by
    tests/test_privacy.py). A server address that can never exist (nothing lives
    below /dev/null) makes the client give up before it writes anything; the
    audio on stdout is unchanged.
    """
    return {**os.environ, "PULSE_SERVER": "unix:/dev/null/no-sound-server"}


def _wait_exit(process: subprocess.Popen[bytes]) -> int:
    """Its exit status; one that closed its output but will not exit is killed (the caller reports it)."""
    try:
        return process.wait(timeout=EXIT_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.wait()


def _exit_description(process: subprocess.Popen[bytes]) -> str:
    try:
        return f"espeak-ng exit status {process.wait(timeout=EXIT_TIMEOUT_S)}"
    except subprocess.TimeoutExpired:
        return "espeak-ng still running"


def _list_voices(executable: str) -> str:
    try:
        result = subprocess.run(
            [executable, "--voices"],
            capture_output=True,
            check=True,
            timeout=LIST_TIMEOUT_S,
            env=_quiet_audio_env(),
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise EngineError(f"could not list espeak-ng voices: {exc}") from exc
    return result.stdout.decode("utf-8", "replace")


def _probe_rate_hz(executable: str) -> int:
    """Speak one letter in the default voice, checking that espeak-ng works and learning its output rate."""
    try:
        result = subprocess.run(
            [executable, "-b", "1", "--stdin", "--stdout"],
            input=b"a",
            capture_output=True,
            check=True,
            timeout=LIST_TIMEOUT_S,
            env=_quiet_audio_env(),
        )
    except subprocess.CalledProcessError as exc:
        message = exc.stderr.decode("utf-8", "replace").strip() if exc.stderr else ""
        raise EngineError(f"espeak-ng does not run: {exc} {message}".strip()) from exc
    except (OSError, subprocess.SubprocessError) as exc:
        raise EngineError(f"espeak-ng does not run: {exc}") from exc
    return read_wav_header(io.BytesIO(result.stdout))


def _rate_wpm(extra: Mapping[str, Any]) -> int:
    value = extra.get("rate_wpm", DEFAULT_RATE_WPM)
    if isinstance(value, bool) or not isinstance(value, int) or not MIN_RATE_WPM <= value <= MAX_RATE_WPM:
        raise EngineError(
            f"espeak: 'rate_wpm' must be a whole number from {MIN_RATE_WPM} to {MAX_RATE_WPM}, got {value!r}"
        )
    return value


def create(options: EngineOptions) -> EspeakSynthesizer:
    """Find ``espeak-ng`` (or ``options.extra["executable"]``) and list its voices.

    ``options.extra["rate_wpm"]`` sets the speaking rate (default 175 words a minute);
    ``options.extra["timeout_s"]`` how long a silent espeak-ng lives (default 10 s).
    ``options.model`` and ``options.threads`` are not used: voices come with
    the program, and each request is one single-threaded process.
    """
    rate_wpm = _rate_wpm(options.extra)
    timeout_s = options.extra.get("timeout_s", DEFAULT_TIMEOUT_S)
    if isinstance(timeout_s, bool) or not isinstance(timeout_s, (int, float)) or not 0 < timeout_s < float("inf"):
        raise EngineError(f"espeak: 'timeout_s' must be a positive number of seconds, got {timeout_s!r}")
    wanted = options.extra.get("executable", "espeak-ng")
    if not isinstance(wanted, str) or not wanted:
        raise EngineError(f"espeak: 'executable' must be a program name or path, got {wanted!r}")
    executable = shutil.which(wanted)
    if executable is None:
        raise ModelNotFound(f"{wanted} is not installed; install it with: apt-get install espeak-ng")
    rate_hz = _probe_rate_hz(executable)
    listing = parse_voice_list(_list_voices(executable), sample_rate_hz=rate_hz)
    return EspeakSynthesizer(executable, listing, rate_wpm=rate_wpm, sample_rate_hz=rate_hz, timeout_s=float(timeout_s))


SPEC = EngineSpec(
    name="espeak",
    capability="tts",
    factory=create,
    description="eSpeak NG formant synthesis: robotic but instant, 100+ languages, no model files.",
)
