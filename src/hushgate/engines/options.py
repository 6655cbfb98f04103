"""Reading `EngineOptions` the same way in every engine."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hushgate.engines.base import EngineError


def catalogue_name(configured: str | None) -> str | None:
    """The configured model's catalogue name, or None when it was given as a path.

    A catalogue name says more than the directory it resolves to; a configured
    path does not, so the engine then names the model after the directory.
    """
    if configured is None or Path(configured).expanduser().exists():
        return None
    return configured


def languages_option(value: Any, engine: str) -> tuple[str, ...] | None:
    """``extra["languages"]``: one language code or a list of them."""
    if value is None:
        return None
    if isinstance(value, str):
        return (value,)
    if isinstance(value, (list, tuple)) and all(isinstance(code, str) for code in value):
        return tuple(value)
    raise EngineError(f"{engine}: 'languages' must be a language code or a list of them, got {value!r}")
