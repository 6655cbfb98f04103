"""The markdown tables and numbers the benches print (docs/performance.md quotes them)."""

from __future__ import annotations

from collections.abc import Sequence


def fmt(value: float | None, digits: int = 0) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def table(header: Sequence[str], rows: Sequence[Sequence[str]], align: str = "") -> str:
    """A markdown table; ``align`` has one letter per column, ``r`` right-aligned, anything else plain.

    Without ``align`` every column is plain (``---``).
    """
    marks = ["---:" if align[i : i + 1] == "r" else "---" for i in range(len(header))]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(marks) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def print_sections(*parts: str | None) -> None:
    """Print each part that is there, a blank line between them."""
    print("\n\n".join(part for part in parts if part is not None))
