"""Translation through a pivot language when no direct pair is installed.

Apertium's pairs are a sparse graph: Debian packages fr-es, es-pt, eng-spa,
eng-cat, … but no fr-en. French reaches English through Spanish (fr→es→en),
Portuguese reaches English the same way. This wrapper makes every two-step
direction through one of ``PIVOTS`` (English first, then Spanish: the
languages most pairs touch) look like an installed pair. Each step is one
batched call of the wrapped translator, so a pivoted batch costs two calls;
quality is that of two rule-based translations in a row.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from hushgate.engines.base import EngineError, Translator

PIVOTS: Final[tuple[str, ...]] = ("en", "es")


class PivotTranslator:
    """A `Translator` adding two-step directions to the one it wraps."""

    def __init__(self, inner: Translator, pivots: Sequence[str] = PIVOTS) -> None:
        self.inner = inner
        self.name = inner.name
        direct = set(inner.pairs())
        self._direct = direct
        # (source, target) → pivot, for every direction not installed directly.
        self._via: dict[tuple[str, str], str] = {}
        for pivot in pivots:
            for source, middle in sorted(direct):
                if middle != pivot:
                    continue
                for first, target in sorted(direct):
                    # en→es→en-US is no translation: the two ends must be different languages.
                    if first == pivot and _base(target) != _base(source) and (source, target) not in direct:
                        self._via.setdefault((source, target), pivot)

    def pairs(self) -> list[tuple[str, str]]:
        return sorted(self._direct | set(self._via))

    def pivots(self) -> dict[tuple[str, str], str]:
        """The directions reached through a pivot, and that pivot."""
        return dict(self._via)

    def translate(self, texts: Sequence[str], source: str, target: str) -> list[str]:
        if (source, target) in self._direct:
            return self.inner.translate(texts, source, target)
        pivot = self._via.get((source, target))
        if pivot is None:
            raise EngineError(f"{self.name} cannot translate {source}-{target}, not even through {', '.join(PIVOTS)}")
        return self.inner.translate(self.inner.translate(texts, source, pivot), pivot, target)

    def close(self) -> None:
        self.inner.close()


def _base(code: str) -> str:
    return code.split("-")[0]
