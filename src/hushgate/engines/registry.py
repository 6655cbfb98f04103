"""Engines register by name; third-party ones plug in through entry points.

A package adds an engine by exposing an :class:`hushgate.engines.base.EngineSpec` in the
``hushgate.engines`` entry-point group, for example in its pyproject::

    [project.entry-points."hushgate.engines"]
    myasr = "my_package.engine:SPEC"

Built-in engines are imported only when used, so a missing optional dependency
breaks only the engine that needs it.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from importlib.metadata import entry_points

from hushgate.engines.base import Capability, EngineError, EngineSpec

ENTRY_POINT_GROUP = "hushgate.engines"

BUILTIN: dict[str, str] = {
    "whisper": "hushgate.engines.whisper:SPEC",
    "vosk": "hushgate.engines.vosk:SPEC",
    "pocketsphinx": "hushgate.engines.pocketsphinx:SPEC",
    "webrtc": "hushgate.engines.webrtcvad:SPEC",
    "silero": "hushgate.engines.silero:SPEC",
    "apertium": "hushgate.engines.apertium:SPEC",
    "argos": "hushgate.engines.argos:SPEC",
    "piper": "hushgate.engines.piper:SPEC",
    "espeak": "hushgate.engines.espeak:SPEC",
    "resemblyzer": "hushgate.engines.resemblyzer:SPEC",
}


class UnknownEngine(EngineError):
    pass


def _load(target: str) -> EngineSpec:
    module, _, attr = target.partition(":")
    spec = getattr(importlib.import_module(module), attr)
    if not isinstance(spec, EngineSpec):
        raise EngineError(f"{target} is not an EngineSpec")
    return spec


class EngineRegistry:
    """Names → engine specs: the built-ins, entry points, and any given directly."""

    def __init__(self, specs: Iterable[EngineSpec] = (), *, discover: bool = True) -> None:
        self._targets: dict[str, str] = dict(BUILTIN) if discover else {}
        if discover:
            for ep in entry_points(group=ENTRY_POINT_GROUP):
                self._targets[ep.name] = ep.value
        self._specs: dict[str, EngineSpec] = {s.name: s for s in specs}

    def names(self) -> list[str]:
        return sorted(set(self._targets) | set(self._specs))

    def get(self, name: str, capability: Capability) -> EngineSpec:
        spec = self._specs.get(name)
        if spec is None:
            target = self._targets.get(name)
            if target is None:
                raise UnknownEngine(f"no engine named {name!r}; known: {', '.join(self.names())}")
            spec = _load(target)
            self._specs[name] = spec
        if spec.capability != capability:
            raise UnknownEngine(f"engine {name!r} provides {spec.capability}, not {capability}")
        return spec
