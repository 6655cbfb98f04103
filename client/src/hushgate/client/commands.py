"""``hushgate transcribe | speak | translate``: the SDK from a shell.

Each command is ``NAME_main(argv) -> exit status`` so that ``hushgate.server.cli`` can
dispatch to it and tests can call it directly. Results go to stdout, progress
and warnings to stderr, so the output can be piped into a file as it is.
Exit status: 0 done, 1 the gateway refused or failed (the message says why),
2 bad arguments or an unreadable input file, 130 interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any, Literal

from hushgate.client import Client, Ended, Final, GatewayError, Ready, ServerError, Translation
from hushgate.client.captions import cue, timestamp
from hushgate.client.media import MediaError, MediaSource, pyav_available
from hushgate.client.session import PcmChunk
from hushgate.client.wavfile import InputError, WavSource, wav_bytes
from hushgate.wire import to_wire

DEFAULT_URL = "ws://127.0.0.1:8000/v1/stream"
KEY_ENV = "HUSHGATE_CLIENT_KEY"
PROGRESS_MIN_S = 5.0
FAST_CHUNK_MS = 500  # as fast as the server takes it: fewer, larger frames
REALTIME_CHUNK_MS = 100  # paced: small frames, like a live microphone

OutputFormat = Literal["text", "json", "srt", "vtt"]
__all__ = ["COMMANDS", "InputError", "TranscriptWriter", "WavSource", "cue", "main", "timestamp"]


class TranscriptWriter:
    """Turns finals (and their translations) into lines of text, JSON, SRT or WebVTT, in order.

    With a translation target, each caption waits for its translation. Translations
    of finals come in the order of the finals, so when one arrives every earlier
    caption still waiting has lost its own (an error was reported instead) and goes
    out in the original language; the same happens to what is left at the end.
    """

    def __init__(self, fmt: OutputFormat, target: str | None, write: Callable[[str], None]) -> None:
        self.fmt = fmt
        self.target = target
        self._write = write
        self._waiting: deque[tuple[Final, str | None]] = deque()
        self._cues = 0
        if fmt == "vtt":
            write("WEBVTT\n\n")

    def ready(self, ready: Ready) -> None:
        if self.target is not None and self.target not in ready.translate:
            self.target = None  # the server's notice says why; captions stay in the original language

    def event(self, event: Any) -> None:
        if isinstance(event, Final):
            if self.fmt == "json":
                self._json(to_wire(event))
            if event.text.strip():
                self._waiting.append((event, None))
                if self.target is None:
                    self._release(all_=True)
        elif (
            isinstance(event, Translation)
            and event.utterance is not None
            and not event.provisional
            and event.target == self.target
        ):
            if self.fmt == "json":
                self._json(to_wire(event))
            for i, (final, _) in enumerate(self._waiting):
                if final.utterance == event.utterance:
                    self._waiting[i] = (final, event.text)
                    # Every earlier caption's translation would have come before this one.
                    self._release(upto=i)
                    break

    def finish(self) -> None:
        self._release(all_=True)

    def _release(self, *, upto: int = -1, all_: bool = False) -> None:
        count = len(self._waiting) if all_ else upto + 1
        for _ in range(count):
            final, translated = self._waiting.popleft()
            self._caption(final, translated if translated is not None else final.text)

    def _caption(self, final: Final, text: str) -> None:
        if self.fmt == "text":
            self._write(" ".join(text.split()) + "\n")
        elif self.fmt in ("srt", "vtt"):
            self._cues += 1
            self._write(cue(self._cues, final.t0_ms, final.t1_ms, text, "srt" if self.fmt == "srt" else "vtt"))

    def _json(self, raw: Any) -> None:
        self._write(json.dumps(dict(raw), ensure_ascii=False) + "\n")


# Shared pieces --------------------------------------------------------------------


def _add_connection_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", default=DEFAULT_URL, help=f"the gateway's stream URL (default {DEFAULT_URL})")
    parser.add_argument(
        "--api-key",
        default=None,
        help=f"API key, sent as Authorization: Bearer (default: ${KEY_ENV}; prefer the environment, "
        "command lines are visible to other users)",
    )
    parser.add_argument("--msgpack", action="store_true", help="use the msgpack encoding instead of JSON")


def _client(args: argparse.Namespace) -> Client:
    key = args.api_key or os.environ.get(KEY_ENV) or None
    return Client(args.url, api_key=key, format="msgpack" if args.msgpack else "json")


def _run(prog: str, work: Callable[[], Any]) -> int:
    """Run one command's coroutine; failures become a one-line message and an exit status."""
    try:
        result = asyncio.run(work())
    except GatewayError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 1
    except (InputError, MediaError) as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return int(result or 0)


def _warn(prog: str, event: ServerError) -> None:
    print(f"{prog}: warning: {event.code}: {event.message}", file=sys.stderr)


# transcribe -----------------------------------------------------------------------


def transcribe_main(argv: list[str]) -> int:
    """``hushgate transcribe FILE``: captions for an audio file (or ``-``, stdin), on stdout."""
    prog = "hushgate transcribe"
    parser = argparse.ArgumentParser(prog=prog, description="Transcribe an audio file through the gateway.")
    parser.add_argument(
        "file",
        help="an audio file: WAV, or with PyAV installed MP3, Ogg/Opus, FLAC, M4A, WebM …; '-' reads it from stdin",
    )
    parser.add_argument(
        "--format",
        dest="fmt",
        choices=("text", "json", "srt", "vtt"),
        default="text",
        help="text: one line per utterance; json: one final/translation event per line; "
        "srt / vtt: subtitles (default text)",
    )
    parser.add_argument(
        "--translate",
        metavar="LANG",
        default=None,
        help="translate each utterance into LANG; text, srt and vtt then show the translation",
    )
    parser.add_argument("--language", default=None, help="language spoken in the file (default: the server's)")
    parser.add_argument(
        "--realtime",
        action="store_true",
        help="send the audio at its own pace, as a live source would (default: as fast as the server takes it)",
    )
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress bar and no warnings")
    _add_connection_flags(parser)
    args = parser.parse_args(argv)
    try:
        source = open_source(args.file)
    except (OSError, InputError, MediaError) as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 2
    return _run(prog, lambda: _transcribe(prog, args, source))


def open_source(name: str) -> WavSource | MediaSource:
    """WAV files are read here without extra packages; stdin and every other format go through PyAV."""
    if name == "-":
        return MediaSource(sys.stdin.buffer.read(), "stdin")
    try:
        return WavSource(Path(name))
    except InputError:
        if not pyav_available():
            raise
    return MediaSource(name, name)


async def _paced(chunks: Iterator[PcmChunk], rate_hz: int, realtime: bool) -> AsyncIterator[PcmChunk]:
    """The chunks, at the audio's own pace when ``realtime`` (as a live source would send them)."""
    started = time.monotonic()
    sent_s = 0.0
    for chunk in chunks:
        yield chunk
        # s16le bytes (WAV files) or int16 arrays (PyAV): two bytes or one item a sample.
        sent_s += (len(chunk) // 2 if isinstance(chunk, bytes) else len(chunk)) / rate_hz
        if realtime:
            delay = started + sent_s - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)


def _progress_bar(total_s: float) -> Any:
    """A tqdm bar on stderr, or None: tqdm is not a dependency of the client, only used when there."""
    try:
        from tqdm import tqdm  # type: ignore[import-untyped,unused-ignore]
    except ImportError:
        return None
    return tqdm(
        total=total_s,
        unit="s",
        file=sys.stderr,
        leave=False,
        bar_format="{l_bar}{bar}| {n:.1f}/{total:.1f} s [{elapsed}<{remaining}]",
    )


async def _transcribe(prog: str, args: argparse.Namespace, source: WavSource | MediaSource) -> int:
    progress = None
    if not args.quiet and source.duration_s > PROGRESS_MIN_S and sys.stderr.isatty():
        progress = _progress_bar(source.duration_s)

    def write(text: str) -> None:
        if progress is not None:
            progress.clear()
        sys.stdout.write(text)
        sys.stdout.flush()
        if progress is not None:
            progress.refresh()

    writer = TranscriptWriter(args.fmt, args.translate, write)
    chunk_ms = REALTIME_CHUNK_MS if args.realtime else FAST_CHUNK_MS
    chunks = _paced(source.chunks(chunk_ms), source.rate_hz, args.realtime)
    try:
        async for event in _client(args).stream(
            chunks,
            source.rate_hz,
            language=args.language,
            partials=False,
            words=args.fmt == "json",
            translate=[args.translate] if args.translate else None,
        ):
            if progress is not None and isinstance(event, (Final, Ended)):
                # Progress is what has been transcribed: sending runs up to 30 s of audio ahead.
                done_s = source.duration_s if isinstance(event, Ended) else event.t1_ms / 1000
                progress.update(max(0.0, min(done_s, source.duration_s) - progress.n))
            if isinstance(event, Ready):
                writer.ready(event)
            elif isinstance(event, ServerError):
                if not args.quiet:
                    _warn(prog, event)
            else:
                writer.event(event)
    finally:
        if progress is not None:
            progress.close()
    writer.finish()
    return 0


# speak ----------------------------------------------------------------------------


def speak_main(argv: list[str]) -> int:
    """``hushgate speak TEXT -o OUT.wav``: synthesized speech into a WAV file."""
    prog = "hushgate speak"
    parser = argparse.ArgumentParser(prog=prog, description="Synthesize speech through the gateway into a WAV file.")
    parser.add_argument("text", help="what to say ('-' reads it from stdin)")
    parser.add_argument("-o", "--output", required=True, help="the WAV file to write ('-' for stdout)")
    parser.add_argument("--voice", default=None, help="a voice id (GET /v1/engines lists them)")
    parser.add_argument("--language", default=None, help="pick the first voice of this language")
    parser.add_argument("--sample-rate", type=int, default=None, help="resample to this rate (default: the voice's)")
    parser.add_argument("--quiet", "-q", action="store_true", help="no summary on stderr")
    _add_connection_flags(parser)
    args = parser.parse_args(argv)
    text = sys.stdin.read() if args.text == "-" else args.text

    async def work() -> int:
        pcm, rate = await _client(args).speak_pcm(
            text, voice=args.voice, sample_rate=args.sample_rate, language=args.language
        )
        data = wav_bytes(pcm, rate)
        if args.output == "-":
            sys.stdout.buffer.write(data)
            sys.stdout.buffer.flush()
        else:
            try:
                Path(args.output).write_bytes(data)
            except OSError as exc:
                raise InputError(f"cannot write {args.output}: {exc.strerror or exc}") from None
        if not args.quiet:
            print(f"{prog}: wrote {args.output}: {len(pcm) / 2 / rate:.2f} s at {rate} Hz", file=sys.stderr)
        return 0

    return _run(prog, work)


# translate ------------------------------------------------------------------------


def translate_main(argv: list[str]) -> int:
    """``hushgate translate TEXT --to LANG``: the translation on stdout."""
    prog = "hushgate translate"
    parser = argparse.ArgumentParser(prog=prog, description="Translate text through the gateway.")
    parser.add_argument("text", help="the text ('-' reads it from stdin)")
    parser.add_argument("--to", dest="target", required=True, help="target language, e.g. es")
    parser.add_argument("--from", dest="source", default=None, help="source language (default: the server's)")
    _add_connection_flags(parser)
    args = parser.parse_args(argv)
    text = sys.stdin.read() if args.text == "-" else args.text

    async def work() -> int:
        print(await _client(args).translate(text, args.target, source=args.source), flush=True)
        return 0

    return _run(prog, work)


def package_version(distribution: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(distribution)
    except PackageNotFoundError:
        return "unknown (not installed)"


COMMANDS: dict[str, Callable[[list[str]], int]] = {
    "transcribe": transcribe_main,
    "speak": speak_main,
    "translate": translate_main,
}


def main(argv: list[str] | None = None) -> int:
    """``hushgate-client transcribe|speak|translate ...``: the client's own console script."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["--version"]:
        print(f"hushgate-client {package_version('hushgate-client')}")
        return 0
    if not args or args[0] not in COMMANDS:
        print(f"usage: hushgate-client {{{','.join(COMMANDS)}}} ...", file=sys.stderr)
        return 2
    return COMMANDS[args[0]](args[1:])


if __name__ == "__main__":
    raise SystemExit(main())
