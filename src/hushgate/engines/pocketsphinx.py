"""PocketSphinx speech-to-text engine: the low-resource option.

Use it where nothing heavier fits: it needs no neural network, runs in a few
tens of MB and decoded at about 0.5-0.6x real time on one core here.  Be
honest about the accuracy, though: the CMU en-us continuous model with its
generic language model gives roughly 60 % WER on LibriSpeech, so expect only
the gist of clear, close-talking speech.  Prefer Vosk or Whisper wherever they
fit.

Sharing: a pocketsphinx ``Decoder`` holds all its search state inside and cannot
be used by two sessions, so every stream gets its own.  The transcriber keeps one
``Config`` and builds each stream's decoder from it.  Creating a decoder for
the CMU en-us model measured 0.25-0.37 s on the development machine (about
0.09 s of it the acoustic model and dictionary, the rest the 27 MB trigram LM),
so ``open_stream`` belongs on a worker thread, never on the event loop.
"""

from __future__ import annotations

import re
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pocketsphinx

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
_CMN_WARMUP_MS = 1000

_ALTERNATE_PRONUNCIATION = re.compile(r"\(\d+\)$")
_SILENCE_WORDS = frozenset({"<s>", "</s>", "<sil>"})
_LM_SUFFIXES = (".lm.bin", ".lm", ".lm.dmp", ".dmp")


def _is_filler(word: str) -> bool:
    # Noise dictionaries mark fillers as [NOISE]/[SPEECH] (or ++NOISE++ in
    # older models); they are not words the speaker said.
    return word in _SILENCE_WORDS or (word.startswith("[") and word.endswith("]")) or word.startswith("++")


def clean_word(word: str) -> str | None:
    """The spoken word of a segment label, or None for silence and fillers."""
    if _is_filler(word):
        return None
    return _ALTERNATE_PRONUNCIATION.sub("", word) or None


def guess_languages(model_dir: Path, model_name: str | None = None) -> tuple[str, ...]:
    """Language code implied by a model name such as ``pocketsphinx-en-us``, ``en-us`` or ``cmusphinx-fr-5.2``."""
    for name in (model_name or "", model_dir.name):
        name = name.lower()
        for prefix in ("cmusphinx-", "pocketsphinx-"):
            name = name.removeprefix(prefix)
        match = re.match(r"([a-z]{2,3})(?=[-_.]|$)", name)
        if match:
            return (match.group(1),)
    return ()


def find_model_files(model_dir: Path) -> tuple[Path, Path, Path]:
    """(acoustic model dir, language model, dictionary) for a pocketsphinx model directory.

    Two layouts exist in the wild: the acoustic model directory itself with the
    LM and dictionary beside it (older packages), or a directory holding the LM
    and dictionary with the acoustic model one level down (pocketsphinx 5's
    ``model/en-us``).
    """
    if not model_dir.is_dir():
        raise ModelNotFound(f"pocketsphinx model directory not found: {model_dir}")
    if (model_dir / "mdef").is_file():
        acoustic_dir = model_dir
        search_dirs = [model_dir, model_dir.parent]
    else:
        candidates = sorted(child for child in model_dir.iterdir() if (child / "mdef").is_file())
        if not candidates:
            raise ModelNotFound(f"no pocketsphinx acoustic model (a directory with 'mdef') in {model_dir}")
        acoustic_dir = candidates[0]
        search_dirs = [model_dir]
    files = sorted(path for directory in search_dirs for path in directory.iterdir() if path.is_file())
    # The "-phone" LM is for phoneme recognition, not for words.
    language_models = [p for p in files if p.name.lower().endswith(_LM_SUFFIXES) and "phone" not in p.name.lower()]
    dictionaries = [p for p in files if p.suffix == ".dict"]
    if not language_models or not dictionaries:
        raise ModelNotFound(
            f"pocketsphinx model in {model_dir} needs a language model (*.lm.bin) and a dictionary (*.dict)"
        )
    return acoustic_dir, language_models[0], dictionaries[0]


def _pcm_bytes(pcm: Pcm16) -> bytes:
    # pocketsphinx reads the buffer as raw int16; anything else would decode as
    # noise without any error, so refuse it loudly instead.
    if pcm.dtype != np.int16 or pcm.ndim != 1:
        raise EngineError(f"expected mono int16 samples, got {pcm.dtype} with shape {pcm.shape}")
    return pcm.tobytes()


class PocketSphinxStream:
    """One session's decoder: feed an utterance, read partials, finish, repeat.

    Cepstral mean normalisation (CMN) matters a lot to this model: a decoder
    starts from a generic estimate, and streaming the first utterance with it
    turned JFK's "ask not what your country can do for you" into "why you are
    either in andover euro".  So while a stream has no estimate of its own, it
    holds back the first ``cmn_warmup_ms`` of audio, decodes that once as a
    whole utterance (which computes the mean over it and costs ~0.4 s), and
    only then streams the utterance from its start.  Later utterances reuse
    the estimate, which the decoder keeps updating.
    """

    def __init__(self, decoder: pocketsphinx.Decoder, *, words: bool, cmn_warmup_samples: int) -> None:
        self._decoder: pocketsphinx.Decoder | None = decoder
        self._words = words
        self._frames_per_s = int(decoder.config["frate"])
        self._cmn_warmup_samples = cmn_warmup_samples
        self._cmn_ready = cmn_warmup_samples <= 0
        self._held_back = bytearray()
        self._in_utterance = False
        self._last_partial_text = ""

    def accept(self, pcm: Pcm16) -> None:
        decoder = self._live_decoder()
        data = _pcm_bytes(pcm)
        if not data:
            return
        if not self._cmn_ready:
            self._held_back += data
            if len(self._held_back) // 2 < self._cmn_warmup_samples:
                return
            self._estimate_cmn(decoder, bytes(self._held_back))
            self._cmn_ready = True
            data = bytes(self._held_back)
            self._held_back.clear()
        if not self._in_utterance:
            decoder.start_utt()
            self._in_utterance = True
        decoder.process_raw(data, False, False)

    def partial(self) -> Transcript | None:
        decoder = self._live_decoder()
        if not self._in_utterance:
            return None
        hypothesis = decoder.hyp()
        text = hypothesis.hypstr.strip() if hypothesis is not None else ""
        if not text or text == self._last_partial_text:
            return None
        self._last_partial_text = text
        return Transcript(text=text)

    def finish(self) -> Transcript:
        decoder = self._live_decoder()
        if self._held_back:
            # The whole utterance was shorter than the warm-up: decoding it in
            # one go is both the best possible result and its own CMN estimate.
            # The estimate from so little audio is not trusted for the next one.
            decoder.start_utt()
            decoder.process_raw(bytes(self._held_back), False, True)
            self._held_back.clear()
            self._in_utterance = True
        if not self._in_utterance:
            return Transcript(text="")
        decoder.end_utt()
        self._in_utterance = False
        self._last_partial_text = ""
        hypothesis = decoder.hyp()
        text = hypothesis.hypstr.strip() if hypothesis is not None else ""
        return Transcript(text=text, words=self._segment_words(decoder) if self._words and text else ())

    def close(self) -> None:
        self._decoder = None

    def _live_decoder(self) -> pocketsphinx.Decoder:
        if self._decoder is None:
            raise EngineError("the pocketsphinx stream is closed")
        return self._decoder

    @staticmethod
    def _estimate_cmn(decoder: pocketsphinx.Decoder, data: bytes) -> None:
        # A throwaway full-utterance pass: batch CMN over the held-back audio
        # leaves its mean in the decoder for the streaming pass that follows.
        decoder.start_utt()
        decoder.process_raw(data, False, True)
        decoder.end_utt()

    def _segment_words(self, decoder: pocketsphinx.Decoder) -> tuple[Word, ...]:
        logmath = decoder.get_logmath()
        words: list[Word] = []
        # Frames count from the start_utt() of this utterance, so the times are
        # already relative to its first sample.
        for segment in decoder.seg() or ():
            word = clean_word(segment.word)
            if word is None:
                continue
            t0_ms = segment.start_frame * 1000 // self._frames_per_s
            t1_ms = (segment.end_frame + 1) * 1000 // self._frames_per_s
            words.append(Word(w=word, t0_ms=t0_ms, t1_ms=t1_ms, conf=_confidence(segment.prob, logmath)))
        return tuple(words)


def _confidence(prob: Any, logmath: Any) -> float:
    if prob is None:
        return 1.0
    if isinstance(prob, int) and logmath is not None:
        # Bindings before pocketsphinx 5 hand back the raw log-domain integer;
        # pocketsphinx 5 already converts the posterior to a probability.
        prob = logmath.exp(prob)
    return min(max(float(prob), 0.0), 1.0)


class PocketSphinxTranscriber:
    """A pocketsphinx model configuration shared by all sessions; each stream gets its own decoder."""

    def __init__(
        self,
        model_dir: Path,
        *,
        model_name: str | None = None,
        languages: tuple[str, ...] | None = None,
        cmn_warmup_ms: int = _CMN_WARMUP_MS,
        config_overrides: dict[str, Any] | None = None,
    ) -> None:
        acoustic_dir, language_model, dictionary = find_model_files(model_dir)
        self.name: str = "pocketsphinx"
        self.model: str = model_name or model_dir.name
        self.languages: tuple[str, ...] = languages if languages is not None else guess_languages(model_dir, model_name)
        self.sample_rate_hz: int = _SAMPLE_RATE_HZ
        self.partial_interval_ms: int = _PARTIAL_INTERVAL_MS
        self._cmn_warmup_samples = cmn_warmup_ms * self.sample_rate_hz // 1000
        try:
            self._config: pocketsphinx.Config | None = pocketsphinx.Config(
                hmm=str(acoustic_dir),
                lm=str(language_model),
                dict=str(dictionary),
                samprate=self.sample_rate_hz,
                # Otherwise every decoder prints its whole configuration to stderr.
                loglevel="FATAL",
                **(config_overrides or {}),
            )
        except (KeyError, ValueError) as exc:
            raise EngineError(f"invalid pocketsphinx configuration: {exc}") from exc
        # Building a decoder writes the acoustic model's feat.params into the
        # Config it was given, so two streams must not build from it at once.
        self._config_lock = threading.Lock()
        # Build one decoder now so that a broken model fails at load time rather
        # than in the first session.
        self._new_decoder()

    def open_stream(self, *, language: str, words: bool) -> PocketSphinxStream:
        primary = language.split("-")[0].split("_")[0].lower()
        if self.languages and primary and primary not in self.languages:
            raise EngineError(
                f"pocketsphinx model {self.model} does not speak {language!r} (it speaks {', '.join(self.languages)})"
            )
        return PocketSphinxStream(self._new_decoder(), words=words, cmn_warmup_samples=self._cmn_warmup_samples)

    def close(self) -> None:
        # Decoders already handed to streams keep their own references.
        self._config = None

    def _new_decoder(self) -> pocketsphinx.Decoder:
        with self._config_lock:
            if self._config is None:
                raise EngineError("the pocketsphinx model has been closed")
            try:
                return pocketsphinx.Decoder(self._config)
            except (RuntimeError, ValueError) as exc:
                raise EngineError(f"could not create a pocketsphinx decoder for {self.model}: {exc}") from exc


def create(options: EngineOptions) -> PocketSphinxTranscriber:
    """Load the pocketsphinx model named by ``options.model`` (a catalogue name or a path).

    ``options.extra`` may carry ``languages``, ``cmn_warmup_ms`` (0 turns the
    warm-up off) and ``config`` (extra pocketsphinx parameters, e.g. ``{"beam": 1e-60}``).
    """
    # Imported here so that the engine module loads without the catalogue.
    from hushgate.models.locate import locate_model

    model_dir = locate_model(options.model, engine="pocketsphinx", models_dir=options.models_dir)
    warmup_ms = options.extra.get("cmn_warmup_ms", _CMN_WARMUP_MS)
    if not isinstance(warmup_ms, int) or isinstance(warmup_ms, bool) or warmup_ms < 0:
        raise EngineError(f"pocketsphinx: 'cmn_warmup_ms' must be a non-negative integer, got {warmup_ms!r}")
    overrides = options.extra.get("config", {})
    if not isinstance(overrides, dict):
        raise EngineError(f"pocketsphinx: 'config' must be a mapping of decoder parameters, got {overrides!r}")
    # options.threads is not used: a pocketsphinx decoder runs on the calling thread.
    return PocketSphinxTranscriber(
        model_dir,
        model_name=catalogue_name(options.model),
        languages=languages_option(options.extra.get("languages"), "pocketsphinx"),
        cmn_warmup_ms=warmup_ms,
        config_overrides=overrides,
    )


SPEC = EngineSpec(
    name="pocketsphinx",
    capability="stt",
    factory=create,
    description="CMU PocketSphinx: tiny and CPU-cheap, but inaccurate (~60 % WER on LibriSpeech); the low-resource fallback.",
)
