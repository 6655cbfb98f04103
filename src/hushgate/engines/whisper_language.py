"""Language identification and speech translation on top of a Whisper stream.

Whisper's decoder starts every transcript with a language token; the
probabilities it gives those tokens right after the start-of-transcript token
(CTranslate2's ``detect_language`` on the encoder output) identify the spoken
language. This module wraps a :class:`~hushgate.engines.whisper.WhisperStream`:

* **Identification.** The language is detected on an utterance's own audio in
  the same short encoder window the finals use (the audio plus 5 s of
  silence). Measured on the 16 shared FLEURS files (de, es, fr, pt) with
  Whisper base, cut at the first speech: 10/16 right on 1 s, 15/16 on 2 s,
  16/16 on 4 s or more; the full 30 s window was no better and several times
  slower. On 2 s the right language often wins with a probability under 0.5
  (de 0.42 against en 0.24), on 3-4 s with about 1.0. So partials are shown
  only from ``GUESS_MS`` of speech, each decoded in the language detected on
  the audio so far, and only a *final* can fix the session's language: the
  first final with at least ``LOCK_MS`` of speech whose language wins with at
  least ``LOCK_PROBABILITY``. After that the language stays put unless
  switching is allowed, in which case every final with ``LOCK_MS`` of speech
  is detected again and the language changes when another one beats the
  current one by ``switch_margin`` (probabilities in 0..1).
  Expected languages (``candidates``) restrict the choice: probabilities are
  renormalised over them.
* **Translation into English.** Whisper's own ``translate`` task decodes the
  same audio straight into English, one extra final decode per utterance.
  It runs only when the utterance is not English already.

Detection costs one encoder pass and one decoder step, so a session pays for
it only until its language is fixed (always, with switching on).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Protocol

import numpy as np

from hushgate.engines.base import Pcm16, SpeechOptions, Transcript


class _Detector(Protocol):
    """What a stream needs of its model (WhisperTranscriber): language odds and a translation decode."""

    def detect_language(self, audio: np.ndarray) -> list[tuple[str, float]]: ...

    def decode_final(
        self, audio: np.ndarray, language: str, context: str, words: bool, task: str = "transcribe"
    ) -> Transcript: ...


class _Inner(Protocol):
    """The plain stream being wrapped (WhisperStream), whose language may be set."""

    language: str

    def accept(self, pcm: Pcm16) -> None: ...

    def partial(self) -> Transcript | None: ...

    def text_so_far(self) -> Transcript: ...

    def finish(self) -> Transcript: ...

    def close(self) -> None: ...


SAMPLE_RATE_HZ = 16_000
# A partial guess needs this much speech (1 s: 10/16 FLEURS files right, 2 s: 15/16).
GUESS_MS = 2_000
# A final this long, this sure of its language, fixes the session's language.
LOCK_MS = 2_000
# 0.8: streamed FLEURS files gave their right language 0.80-1.0 on whole
# utterances, and a wrong one up to 0.55 on a short opening.
LOCK_PROBABILITY = 0.8
# A partial guess this sure is kept for the rest of the utterance's partials.
SURE_PROBABILITY = 0.9
# Whisper sees at most 30 s, less the 5 s of padding of the short window.
DETECT_MAX_S = 25.0


@dataclass(frozen=True, slots=True)
class LanguageGuess:
    language: str
    probability: float


class LanguageChooser:
    """The session's language decision: when to detect, and what to keep."""

    def __init__(self, candidates: tuple[str, ...], *, switching: bool, switch_margin: float) -> None:
        self._candidates = frozenset(candidates)
        self._switching = switching
        self._margin = switch_margin
        self.current: LanguageGuess | None = None

    def wants_detection(self, speech_ms: int, *, final: bool) -> bool:
        if self.current is None:
            return final or speech_ms >= GUESS_MS
        return final and self._switching and speech_ms >= LOCK_MS

    def choose(self, probabilities: list[tuple[str, float]], speech_ms: int, *, final: bool) -> LanguageGuess:
        """Pick a language from ``(code, probability)`` pairs, updating the session's choice."""
        scores = dict(probabilities)
        allowed = {c: p for c, p in scores.items() if c in self._candidates}
        if allowed:
            total = sum(allowed.values()) or 1.0
            scores = {c: p / total for c, p in allowed.items()}
        best = max(scores, key=scores.__getitem__)
        guess = LanguageGuess(best, round(scores[best], 3))
        if self.current is None:
            if final and speech_ms >= LOCK_MS and guess.probability >= LOCK_PROBABILITY:
                self.current = guess
            return guess
        current = self.current.language
        if best != current and scores[best] - scores.get(current, 0.0) >= self._margin:
            self.current = guess
            return guess
        # Staying: report how sure this utterance was of the kept language.
        return LanguageGuess(current, round(scores.get(current, 0.0), 3))

    def fixed(self) -> LanguageGuess | None:
        return self.current


class SpeechStream:
    """A Whisper stream that may identify its language and translate into English."""

    def __init__(self, owner: _Detector, inner: _Inner, options: SpeechOptions, *, switch_margin: float) -> None:
        self._owner = owner
        self._inner = inner
        self._options = options
        self._chooser: LanguageChooser | None = None
        if options.language is None:
            self._chooser = LanguageChooser(
                options.candidates, switching=options.switching, switch_margin=switch_margin
            )
        # The utterance's audio, kept beside the inner stream's for detection and translation.
        self._chunks: list[Pcm16] = []
        self._samples = 0
        self._guess: LanguageGuess | None = None

    def accept(self, pcm: Pcm16) -> None:
        self._inner.accept(pcm)
        self._chunks.append(pcm)
        self._samples += len(pcm)

    def _audio(self) -> np.ndarray:
        if not self._chunks:
            return np.zeros(0, np.float32)
        return np.concatenate(self._chunks).astype(np.float32) / 32768.0

    def _speech_ms(self) -> int:
        return self._samples * 1000 // SAMPLE_RATE_HZ

    def _detect(self, *, final: bool) -> LanguageGuess | None:
        chooser = self._chooser
        if chooser is None:
            return None
        if not final and self._guess is not None and self._guess.probability >= SURE_PROBABILITY:
            return self._guess
        if not chooser.wants_detection(self._speech_ms(), final=final) or not self._samples:
            return chooser.fixed() or self._guess
        audio = self._audio()[: int(DETECT_MAX_S * SAMPLE_RATE_HZ)]
        self._guess = chooser.choose(self._owner.detect_language(audio), self._speech_ms(), final=final)
        return self._guess

    def _steer(self) -> bool:
        """Decode in the language guessed so far; False while there is too little speech to know it."""
        guess = self._detect(final=False)
        if self._chooser is not None:
            if guess is None:
                return False
            self._inner.language = guess.language
        return True

    def partial(self) -> Transcript | None:
        return self._inner.partial() if self._steer() else None

    def text_so_far(self) -> Transcript:
        return self._inner.text_so_far() if self._steer() else Transcript("")

    def finish(self) -> Transcript:
        guess = self._detect(final=True)
        if guess is not None:
            self._inner.language = guess.language
        language = guess.language if guess is not None else self._inner.language
        audio = self._audio() if self._options.translate_to_english and language != "en" else None
        result = self._inner.finish()
        self._chunks, self._samples, self._guess = [], 0, None
        if guess is not None:
            result = replace(result, language=guess.language, language_probability=guess.probability)
        if audio is not None and len(audio) and result.text:
            english = self._owner.decode_final(audio, language, "", False, task="translate")
            result = replace(result, translation=english.text)
        return result

    def close(self) -> None:
        self._chunks = []
        self._inner.close()
