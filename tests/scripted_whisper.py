"""Whisper's decodes, scripted, for tests of `WhisperStream`'s bookkeeping without a model."""

from __future__ import annotations

import numpy as np

from hushgate.engines.base import Transcript, Word
from hushgate.engines.whisper_context import LeftContext


class ScriptedDecoder:
    """Whisper's partial and final decodes, scripted: the next text each time one is called."""

    def __init__(self, *texts: str | Transcript, left_context_s: float = 0.0, settle_inside_s: float = 0.0) -> None:
        self.texts = iter(texts)
        self.calls: list[str] = []
        self.lefts: list[str | None] = []
        self.left_context_s = left_context_s
        self.settle_inside_s = settle_inside_s
        self.use_context = False

    def _next(self) -> Transcript:
        text = next(self.texts)
        return text if isinstance(text, Transcript) else Transcript(text)

    def decode_partial(self, audio: np.ndarray, language: str, prefix: str, left: LeftContext | None = None) -> str:
        self.calls.append("partial")
        self.lefts.append(left.text if left is not None else None)
        return self._next().text

    def decode_final(
        self, audio: np.ndarray, language: str, context: str, words: bool, left: LeftContext | None = None
    ) -> Transcript:
        self.calls.append(f"final {len(audio)}")
        self.lefts.append(left.text if left is not None else None)
        return self._next()

    def decode_short(
        self, audio: np.ndarray, *_: object, left: LeftContext | None = None, urgent: bool = True
    ) -> Transcript:
        self.calls.append(f"short {len(audio)}" + ("" if urgent else " background"))
        self.lefts.append(left.text if left is not None else None)
        return self._next()


def timed(text: str, from_ms: int, step_ms: int) -> Transcript:
    """``text`` with a word every ``step_ms`` from ``from_ms``."""
    words = tuple(
        Word(w=w, t0_ms=from_ms + i * step_ms, t1_ms=from_ms + i * step_ms + step_ms - 100, conf=0.9)
        for i, w in enumerate(text.split())
    )
    return Transcript(text, words)
