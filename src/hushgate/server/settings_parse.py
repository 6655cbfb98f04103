"""Settings as text: a field's value parsed from a string, and the table of every field.

Kept apart from :mod:`hushgate.server.settings` so that the settings class
reads as the list of what can be set; everything here works on any frozen
dataclass whose fields carry a ``doc`` in their metadata.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any


class SettingsError(ValueError):
    """A setting has a value the gateway cannot use."""


def doc(text: str, **extra: Any) -> dict[str, Any]:
    """A field's metadata: its documentation, and ``repeat=True`` for a flag given once per value."""
    return {"doc": text, **extra}


def field_type(cls: type, f: dataclasses.Field[Any]) -> Any:
    """The field's type with ``None`` taken out of an optional."""
    hint = typing.get_type_hints(cls)[f.name]
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        return args[0]
    return hint


def parse_value(cls: type, f: dataclasses.Field[Any], raw: str, env_prefix: str) -> Any:
    kind = field_type(cls, f)
    try:
        if kind is bool:
            lowered = raw.strip().lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off", ""):
                return False
            raise ValueError(raw)
        if typing.get_origin(kind) is tuple:
            return tuple(part.strip() for part in raw.split(",") if part.strip())
        if kind is Path:
            return Path(raw).expanduser() if raw else None
        return kind(raw)
    except ValueError as exc:
        raise SettingsError(f"{env_prefix}{f.name.upper()}={raw!r} is not a valid {kind}") from exc


def markdown_table(cls: type, env_prefix: str) -> str:
    """Markdown table of every field: flag, environment variable, default, meaning."""
    rows = [
        "| flag | environment | default | meaning |",
        "|---|---|---|---|",
    ]
    for f in dataclasses.fields(cls):
        default = f.default
        shown = ",".join(default) if isinstance(default, tuple) else default
        rows.append(
            f"| `--{f.name.replace('_', '-')}` | `{env_prefix}{f.name.upper()}` | `{shown}` | {f.metadata['doc']} |"
        )
    return "\n".join(rows)
