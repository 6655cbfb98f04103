"""``hushgate``: serve, and manage models."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

from hushgate.server.settings import ENV_PREFIX, Settings
from hushgate.server.settings_parse import SettingsError, field_type, parse_value


def _add_settings_flags(parser: argparse.ArgumentParser) -> None:
    for f in dataclasses.fields(Settings):
        flag = "--" + f.name.replace("_", "-")
        help_text = f"{f.metadata['doc']} [env {ENV_PREFIX}{f.name.upper()}]"
        if field_type(Settings, f) is bool:
            parser.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=None, help=help_text)
        elif f.metadata.get("repeat"):
            parser.add_argument(flag, dest=f.name, action="append", default=None, metavar="VALUE", help=help_text)
        else:
            parser.add_argument(flag, dest=f.name, default=None, metavar=f.name.upper(), help=help_text)


def settings_from_args(args: argparse.Namespace) -> Settings:
    overrides: dict[str, Any] = {}
    fields = {f.name: f for f in dataclasses.fields(Settings)}
    for name, f in fields.items():
        value = getattr(args, name, None)
        if value is None:
            continue
        if isinstance(value, list):
            overrides[name] = tuple(part.strip() for v in value for part in v.split(",") if part.strip())
        elif isinstance(value, str):
            overrides[name] = parse_value(Settings, f, value, ENV_PREFIX)
        else:
            overrides[name] = value
    return Settings.from_env(**overrides)


class JsonFormatter(logging.Formatter):
    """One JSON object per line, for log shippers. Content rules are the same as
    for text logs: records carry ids, sizes and timings, never audio or text."""

    def format(self, record: logging.LogRecord) -> str:
        import json

        entry = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def serve(settings: Settings) -> None:
    from hushgate.server.app import create_app
    from hushgate.server.server import DrainingServer, install_log_filters, uvicorn_config

    handler = logging.StreamHandler()
    handler.setFormatter(
        JsonFormatter() if settings.log_json else logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    )
    logging.basicConfig(level=settings.log_level.upper(), handlers=[handler])
    install_log_filters(handler, log_content=settings.log_content)
    app = create_app(settings)
    gateway = app.state.gateway
    DrainingServer(uvicorn_config(app, settings), gateway).run()
    if gateway.stuck_engines:
        # Their threads cannot be interrupted, and the interpreter would join them
        # forever on exit: leave without them (sessions are already closed).
        logging.shutdown()
        os._exit(0)


def keys(argv: list[str]) -> int:
    from hushgate.server.auth import hash_key, new_key

    parser = argparse.ArgumentParser(prog="hushgate keys", description="API keys for clients")
    sub = parser.add_subparsers(dest="action", required=True)
    sub.add_parser("new", help="make a key; give the key to the client and the hash to the server")
    hash_parser = sub.add_parser("hash", help="the hash to configure for an existing key (read from stdin)")
    hash_parser.add_argument("--key", help="the key (prefer stdin: command lines are visible to other users)")
    args = parser.parse_args(argv)
    if args.action == "new":
        key = new_key()
        print(f"key:  {key}\nhash: {hash_key(key)}")
        print(f"serve with: --api-keys {hash_key(key)}  (or {ENV_PREFIX}API_KEYS)")
        return 0
    key = args.key or sys.stdin.readline().strip()
    print(hash_key(key))
    return 0


def _version() -> str:
    from hushgate.client.commands import package_version

    return package_version("hushgate")


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="hushgate", description="Self-hosted real-time speech gateway")
    parser.add_argument("--version", action="version", version=f"hushgate {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)
    serve_parser = sub.add_parser("serve", help="run the server")
    _add_settings_flags(serve_parser)
    sub.add_parser("models", help="list, locate and install models (hushgate models --help)", add_help=False)
    sub.add_parser("keys", help="make API keys and their hashes (hushgate keys --help)", add_help=False)
    sub.add_parser(
        "transcribe", help="transcribe an audio file (or - for stdin) through a running gateway", add_help=False
    )
    sub.add_parser("speak", help="synthesize text to a WAV file through a running gateway", add_help=False)
    sub.add_parser("translate", help="translate text through a running gateway", add_help=False)
    if argv[:1] == ["keys"]:
        return keys(argv[1:])
    if argv[:1] and argv[0] in ("transcribe", "speak", "translate"):
        from hushgate.client import commands

        return commands.COMMANDS[argv[0]](argv[1:])
    if argv[:1] == ["models"]:
        from hushgate.models.commands import main as models_main

        return models_main(argv[1:], models_dir=Settings.from_env().models_dir)
    args = parser.parse_args(argv)
    try:
        settings = settings_from_args(args)
    except SettingsError as exc:
        parser.error(str(exc))
    serve(settings)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
