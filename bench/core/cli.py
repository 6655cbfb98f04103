"""Command-line pieces every bench shares: which server, its spawn options, the live-streaming options."""

from __future__ import annotations

import argparse
import asyncio
import shlex
from collections.abc import Callable, Coroutine, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from .audio import AUDIO_DIR
from .server import SpawnedServer

T = TypeVar("T")
DEFAULT_URL = "ws://127.0.0.1:8000/v1/stream"


def add_server_options(parser: argparse.ArgumentParser, *, required: bool = False, spawn_help: str = "") -> None:
    """``--url`` or ``--spawn`` (one of them), ``--serve-args`` and ``--server-log``."""
    target = parser.add_mutually_exclusive_group(required=required)
    if required:
        target.add_argument("--url", help="ws://HOST:PORT/v1/stream of a running server")
    else:
        target.add_argument("--url", default=DEFAULT_URL, help="running server's stream URL")
    target.add_argument(
        "--spawn", action="store_true", help=spawn_help or "start `hushgate serve` on a free port and measure it"
    )
    parser.add_argument("--serve-args", default="", help="extra `hushgate serve` flags with --spawn")
    parser.add_argument("--server-log", type=Path, help="with --spawn: server output (default: a temp file)")


def live_parser(doc: str | None, *, clients: str, what: str) -> argparse.ArgumentParser:
    """The parser of a real-time streaming bench (stream.py, load.py): server and live options."""
    parser = argparse.ArgumentParser(description=(doc or "").split("\n\n")[0])
    add_server_options(parser)
    add_live_options(parser, clients=clients, what=what)
    return parser


def add_live_options(parser: argparse.ArgumentParser, *, clients: str, what: str) -> None:
    """The options of the real-time streaming benches (stream.py, load.py)."""
    parser.add_argument("--clients", default=clients, help=f"comma-separated {what} counts, run in order")
    parser.add_argument("--audio-dir", type=Path, default=AUDIO_DIR)
    parser.add_argument("--seconds", type=float, default=60.0, help=f"audio per {what.split()[0]}")
    parser.add_argument("--silence-ms", type=int, default=500, help="vad.silence_ms sent in `start`")
    parser.add_argument("--chunk-ms", type=int, default=100)
    parser.add_argument("--format", choices=("json", "msgpack"), default="json")


def add_live_tail(parser: argparse.ArgumentParser, *, json_help: str) -> None:
    parser.add_argument("--json", type=Path, help=json_help)
    parser.add_argument(
        "--ping-every-s", type=float, default=2.0, help="audio seconds between diagnostic pings (0: none)"
    )
    parser.add_argument("--no-warmup", action="store_true", help="skip the unmeasured warm-up session")


def live_settings(args: argparse.Namespace, url: str, slack_ms: int) -> dict[str, Any]:
    """What a live-streaming run was asked to do, for the head of its ``--json`` file."""
    return {
        "url": url,
        "format": args.format,
        "seconds": args.seconds,
        "chunk_ms": args.chunk_ms,
        "silence_ms": args.silence_ms,
        "bound_ms": args.silence_ms + slack_ms,
    }


def check_live_options(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Turn ``--clients`` into a list of ints; refuse what cannot be measured."""
    example = parser.get_default("clients")
    try:
        args.clients = [int(part) for part in args.clients.split(",") if part.strip()]
    except ValueError:
        parser.error(f"--clients takes comma-separated integers, e.g. {example}")
    if not args.clients or min(args.clients) < 1:
        parser.error("--clients needs positive integers")
    if args.chunk_ms < 10 or args.seconds <= 0:
        parser.error("--chunk-ms must be >= 10 and --seconds > 0")


def run_bench(
    args: argparse.Namespace,
    bench: Callable[[str, int | None], Coroutine[Any, Any, T]],
    *,
    serve_args: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    fmt: str | None = None,
) -> tuple[T, str, SpawnedServer | None]:
    """Run ``bench(url, server pid)`` against ``--url``, or a server spawned for it (stopped after).

    With ``fmt`` = ``msgpack`` the URL asks for that encoding. Returns what the
    bench returned, the URL it ran against and the spawned server (for its log).
    """
    server: SpawnedServer | None = None
    url = args.url
    if args.spawn:
        server = SpawnedServer([*serve_args, *shlex.split(args.serve_args)], env, args.server_log)
        server.start()
        url = server.url
    if fmt == "msgpack" and "format=" not in url:
        url += ("&" if "?" in url else "?") + "format=msgpack"
    try:
        result = asyncio.run(bench(url, server.pid if server else None))
    finally:
        if server is not None:
            server.stop()
    return result, url, server
