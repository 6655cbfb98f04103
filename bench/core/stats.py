"""Percentiles, means and word error rate, as every bench reports them."""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np


def pct(values: Sequence[float], q: float) -> float | None:
    """The ``q``-th percentile (numpy's linear interpolation), None for no values."""
    return float(np.percentile(values, q)) if len(values) else None


def mean(values: Sequence[float]) -> float | None:
    return float(np.mean(values)) if len(values) else None


def normalise(text: str) -> str:
    """Lower case, letters, digits and apostrophes only, single spaces: how references are compared."""
    text = re.sub(r"[^a-z0-9' ]+", " ", text.lower().replace("-", " "))
    return " ".join(text.split())


def wer_percent(references: Sequence[str], hypotheses: Sequence[str]) -> float:
    """Corpus word error rate in % of the normalised texts (jiwer, imported only by benches that score text)."""
    import jiwer

    return 100 * float(jiwer.wer([normalise(t) for t in references], [normalise(t) for t in hypotheses]))
