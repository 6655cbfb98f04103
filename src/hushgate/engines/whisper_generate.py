"""CTranslate2 calls of a Whisper final: greedy, then sampled if it loops; the tokens that are speech.

Kept apart from the engine module so that the decode's bookkeeping (which
tokens were forced, which segment a token belongs to) can be read on its own.
"""

from __future__ import annotations

from typing import Any


class FinalDecode:
    """One final's decoder call, repeatable at other temperatures on the same encoder output."""

    def __init__(self, model: Any, encoded: Any, prompt: list[int], max_length: int) -> None:
        self._model = model
        self._encoded = encoded
        self._prompt = prompt
        self._max_length = max_length
        self.no_speech_prob = 0.0
        self.avg_logprob = 0.0

    def greedy(self, beam_size: int) -> list[int]:
        result = self._model.generate(
            self._encoded,
            [self._prompt],
            beam_size=beam_size,
            max_length=self._max_length,
            return_scores=True,
            return_no_speech_prob=True,
            suppress_blank=True,
            suppress_tokens=[-1],
        )[0]
        self.no_speech_prob = float(result.no_speech_prob)
        self.avg_logprob = float(result.scores[0]) if result.scores else 0.0
        return list(result.sequences_ids[0])

    def sampled(self, temperature: float, best_of: int) -> list[list[int]]:
        """``best_of`` sampled decodes, the most probable first."""
        result = self._model.generate(
            self._encoded,
            [self._prompt],
            beam_size=1,
            num_hypotheses=best_of,
            max_length=self._max_length,
            return_scores=True,
            sampling_topk=0,
            sampling_temperature=temperature,
            suppress_blank=True,
            suppress_tokens=[-1],
        )[0]
        ranked = sorted(zip(result.scores, result.sequences_ids, strict=True), key=lambda pair: -pair[0])
        return [list(ids) for _, ids in ranked]


def speech_tokens(ids: list[int], tok: Any, forced: int, limit_s: float, time_step_s: float) -> list[int]:
    """The text tokens generated after the ``forced`` prefix whose segment starts before ``limit_s``.

    The result of a decode repeats the forced prefix; a forced prefix opens a
    segment at 0 s, so text continuing it belongs to that segment.
    """
    kept: list[int] = []
    start_s = 0.0
    for token in ids[forced:]:
        if token >= tok.timestamp_begin:
            start_s = (token - tok.timestamp_begin) * time_step_s
        elif token < tok.eot and start_s < limit_s:
            kept.append(token)
    return kept
