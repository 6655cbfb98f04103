"""The import graph of the hushgate packages: every module imports, no cycles, no arrow upward.

Layers, lowest first: ``models`` (model store) ← ``engines`` ← ``server``; the
client distribution (``client``, ``wire``) stands beside them and never reaches
into the server. The graph is read from the source with ``ast``, so an import
inside a function or under ``TYPE_CHECKING`` counts as an arrow too.
"""

from __future__ import annotations

import ast
import importlib
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SOURCE_ROOTS = (ROOT / "src", ROOT / "client" / "src")
# A module of the first layer may not import any module of the second.
FORBIDDEN: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("hushgate.models", ("hushgate.engines", "hushgate.server")),
    ("hushgate.engines", ("hushgate.server",)),
    ("hushgate.client", ("hushgate.server", "hushgate.engines", "hushgate.models")),
    ("hushgate.wire", ("hushgate.server", "hushgate.engines", "hushgate.models")),
)


def _modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for root in SOURCE_ROOTS:
        for path in sorted((root / "hushgate").rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


MODULES = _modules()


def _imported(name: str, path: Path) -> Iterator[str]:
    """The hushgate modules ``name`` imports (a ``from p import m`` of a submodule counts as ``p.m``)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base for alias in node.names]
        else:
            continue
        for target in targets:
            # `import hushgate.server.app` names the module; the longest known prefix is the arrow's end.
            while target and target not in MODULES:
                target = target.rpartition(".")[0]
            if target and target != name:
                yield target


GRAPH: dict[str, set[str]] = {name: set(_imported(name, path)) for name, path in MODULES.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_graph_is_read() -> None:
    # Guards the reader itself: a graph with no arrows would pass every check below.
    assert "hushgate.server.session.connection" in GRAPH["hushgate.server.session"]
    assert "hushgate.models.locate" in GRAPH["hushgate.engines.vosk"]
    assert "hushgate.server.admission" in GRAPH["hushgate.server.vosk_compat"]


def test_no_import_cycles() -> None:
    assert _cycles(GRAPH) == []


def test_the_cycle_finder_finds_cycles() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


@pytest.mark.parametrize(("lower", "upper"), FORBIDDEN)
def test_no_arrow_runs_upward(lower: str, upper: tuple[str, ...]) -> None:
    upward = sorted(
        f"{source} -> {target}"
        for source, targets in GRAPH.items()
        if source == lower or source.startswith(lower + ".")
        for target in targets
        if any(target == u or target.startswith(u + ".") for u in upper)
    )
    assert upward == []


@pytest.mark.parametrize("name", sorted(MODULES))
def test_every_module_imports(name: str) -> None:
    importlib.import_module(name)
