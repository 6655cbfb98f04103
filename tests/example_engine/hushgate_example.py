"""A complete third-party engine, as small as one can be.

It "transcribes" by measuring: each utterance becomes the text
"N seconds of sound". A real engine has the same shape: an object loaded once
(the model) that opens a light stream per session.

A package makes such an engine available to the gateway by declaring the spec in
the ``hushgate.engines`` entry-point group::

    [project.entry-points."hushgate.engines"]
    example = "hushgate_example:SPEC"

and an operator selects it with ``--stt xx=example``.
"""

from __future__ import annotations

import numpy as np

from hushgate.engines.base import EngineOptions, EngineSpec, Pcm16, Transcript, Word


class MeasuringStream:
    def __init__(self) -> None:
        self._samples = 0

    def accept(self, pcm: Pcm16) -> None:
        self._samples += len(pcm)

    def partial(self) -> Transcript | None:
        return Transcript(self._text())

    def finish(self) -> Transcript:
        text, duration_ms = self._text(), self._samples // 16
        self._samples = 0
        return Transcript(text, (Word(text, 0, duration_ms, 1.0),))

    def _text(self) -> str:
        return f"{np.round(self._samples / 16_000, 1)} seconds of sound"

    def close(self) -> None:
        pass


class MeasuringTranscriber:
    name = "example"
    model = "ruler"
    languages = ("xx",)
    sample_rate_hz = 16_000
    partial_interval_ms = 500

    def open_stream(self, *, language: str, words: bool) -> MeasuringStream:
        return MeasuringStream()

    def close(self) -> None:
        pass


def create(options: EngineOptions) -> MeasuringTranscriber:
    return MeasuringTranscriber()


SPEC = EngineSpec(name="example", capability="stt", factory=create, description="measures instead of listening")
