"""Whisper speech-to-text on CPU through faster-whisper / CTranslate2.

Whisper is not a streaming model, and every faster-whisper decode pads its input
to a 30 s encoder window (≈0.5 s of compute however short the audio). Partials by
naive re-decoding would therefore allow about one live speaker per machine, and
a final decoded that way arrives half a second after the speaker stops. The
stream below therefore calls CTranslate2's Whisper directly with an encoder
window of the buffered audio plus ``PAD_S`` seconds of silence (shorter padding
raised the word error rate sharply):

* partials are capped at ``TOKENS_PER_S`` tokens per second of audio, since an
  uncapped decode of a short window tends to loop, and skip timestamp tokens;
* words on which two successive partial decodes agree are committed and forced
  as the decoder prefix of the next one, so the text on screen stops flickering;
* the final is one decode of the same kind with Whisper's timestamp tokens that
  does *not* force the committed words (forcing them locks in early mistakes).
  Text whose timestamps start inside the silent padding is dropped: that is
  where Whisper invents "Thank you." Word times come from CTranslate2's
  cross-attention alignment, as in faster-whisper.

Measured with ``bench/whisper_final.py`` on the VAD-cut utterances of the
shared corpus, the short-window final took under a third of the time of
faster-whisper's full-window decode (p50 145 vs 508 ms) at a lower word error
rate (4.9 vs 7.1 %). ``final_window="full"``
keeps faster-whisper's decode (with ``hallucination_silence_threshold``), and
utterances too long for the padding always use it.

The session's earlier text as a prompt made the tiny model append invented
phrases ("Thank you.", "off.") on the shared two-speaker recording, so it is
opt-in (``context=True``) and never includes the current audio's own text.
"""

from __future__ import annotations

import math
import re
import threading
from pathlib import Path

import numpy as np

from hushgate.engines.base import EngineOptions, EngineSpec, Pcm16, SpeechOptions, Transcript, Word
from hushgate.engines.options import catalogue_name
from hushgate.engines.whisper_language import SpeechStream

SAMPLE_RATE_HZ = 16_000
PAD_S = 5.0
TOKENS_PER_S = 7.0
# Whisper's decoder context is 448 tokens; half of it may be prompt.
MAX_PROMPT_CHARS = 400
# A partial decode on less new audio than this is not worth its cost.
MIN_NEW_AUDIO_MS = 300
HALLUCINATION_SILENCE_S = 0.5
# Short-window finals: audio this long or shorter, leaving room for the padding
# inside Whisper's 30 s window; text starting this close to the padding is dropped.
SHORT_FINAL_MAX_S = 30.0 - PAD_S
SHORT_FINAL_EDGE_S = 0.1
FINAL_TOKENS_PER_S = 12.0
MAX_PROMPT_TOKENS = 223
PREPEND_PUNCTUATION = "\"'“¿([{-"
APPEND_PUNCTUATION = "\"'.。,，!！?？:：”)]}、"
_WORD_RE = re.compile(r"[^\w']+")


def _normalise(word: str) -> str:
    return _WORD_RE.sub("", word.lower())


class WhisperTranscriber:
    """One loaded Whisper model shared by every session (thread-safe)."""

    name = "whisper"
    sample_rate_hz = SAMPLE_RATE_HZ
    partial_interval_ms = 1000

    def __init__(
        self,
        model_path: Path,
        *,
        model_name: str,
        threads: int = 1,
        workers: int = 2,
        beam_size: int = 1,
        context: bool = False,
        final_window: str = "short",
        device: str = "cpu",
        compute_type: str = "int8",
        switch_margin: float = 0.4,
    ) -> None:
        from faster_whisper import WhisperModel
        from faster_whisper.tokenizer import Tokenizer

        # ``num_workers`` lets that many Python threads decode at once; each
        # decode gets ``cpu_threads`` (one: two threads per call under
        # contention were measured to be slower, not faster).
        self._model = WhisperModel(
            str(model_path),
            device=device,
            compute_type=compute_type,
            cpu_threads=threads,
            num_workers=workers,
        )
        self.model = model_name
        multilingual = self._model.model.is_multilingual
        self.languages: tuple[str, ...] = (
            tuple(self._model.supported_languages) if multilingual else ("en",)
        )
        self._multilingual = multilingual
        self._beam_size = beam_size
        self.use_context = context
        if final_window not in ("short", "full"):
            raise ValueError(f"final_window must be 'short' or 'full', not {final_window!r}")
        self.final_window = final_window
        self._switch_margin = switch_margin
        self._tokenizers: dict[tuple[str, str], Tokenizer] = {}
        self._tokenizer_lock = threading.Lock()

    def tokenizer(self, language: str, task: str = "transcribe") -> Tokenizer:  # noqa: F821 - lazy import
        from faster_whisper.tokenizer import Tokenizer

        with self._tokenizer_lock:
            tok = self._tokenizers.get((language, task))
            if tok is None:
                tok = Tokenizer(
                    self._model.hf_tokenizer,
                    self._multilingual,
                    task=task if self._multilingual else "transcribe",
                    language=language if self._multilingual else "en",
                )
                self._tokenizers[(language, task)] = tok
            return tok

    def open_stream(self, *, language: str, words: bool) -> WhisperStream:
        return WhisperStream(self, language=language, words=words)

    def open_speech_stream(self, *, options: SpeechOptions, words: bool) -> SpeechStream:
        """A stream that identifies its language and/or adds English translations."""
        inner = WhisperStream(self, language=options.language or "en", words=words)
        return SpeechStream(self, inner, options, switch_margin=self._switch_margin)

    def detect_language(self, audio: np.ndarray) -> list[tuple[str, float]]:
        """``(language, probability)`` for every language, most likely first."""
        encoded = self._model.encode(self._padded_features(audio))
        ranked = self._model.model.detect_language(encoded)[0]
        return [(token[2:-2], float(p)) for token, p in ranked if token[2:-2] in self.languages]

    def close(self) -> None:
        # CTranslate2 frees the model when the last reference goes.
        self._model = None  # type: ignore[assignment]

    # The two decodes, used by the stream.

    def _padded_features(self, audio: np.ndarray) -> np.ndarray:
        """Mel features of the audio plus ``PAD_S`` of silence, shaped for the encoder."""
        padded = np.concatenate([audio, np.zeros(int(PAD_S * SAMPLE_RATE_HZ), np.float32)])
        features = self._model.feature_extractor(padded, padding=0)
        # The encoder downsamples by two, so it needs an even frame count.
        return np.ascontiguousarray(features[None, :, : features.shape[1] // 2 * 2])

    def decode_partial(self, audio: np.ndarray, language: str, prefix: str) -> str:
        import ctranslate2

        tok = self.tokenizer(language)
        features = self._padded_features(audio)
        prompt = list(tok.sot_sequence) + [tok.no_timestamps]
        if prefix:
            prompt += tok.encode(" " + prefix)
        audio_s = len(audio) / SAMPLE_RATE_HZ
        max_length = len(prompt) + math.ceil(TOKENS_PER_S * audio_s) + 3
        result = self._model.model.generate(
            ctranslate2.StorageView.from_array(features),
            [prompt],
            beam_size=1,
            max_length=max_length,
            suppress_blank=True,
            suppress_tokens=[-1],
        )
        # The result carries the forced prefix followed by what was generated.
        ids = [i for i in result[0].sequences_ids[0] if i < tok.eot]
        return tok.decode(ids).strip()

    def decode_final(
        self, audio: np.ndarray, language: str, context: str, words: bool, task: str = "transcribe"
    ) -> Transcript:
        if self.final_window == "short" and len(audio) <= SHORT_FINAL_MAX_S * SAMPLE_RATE_HZ:
            return self.decode_short(audio, language, context, words, task)
        return self.decode_full(audio, language, context, words, task)

    def decode_short(
        self, audio: np.ndarray, language: str, context: str, words: bool, task: str = "transcribe"
    ) -> Transcript:
        """One greedy decode of the audio plus ``PAD_S`` of silence, with timestamp tokens.

        Text whose timestamps start inside the padding is dropped: it is what
        Whisper invents over silence.
        """
        from faster_whisper.transcribe import merge_punctuations

        tok = self.tokenizer(language, task)
        audio_s = len(audio) / SAMPLE_RATE_HZ
        encoded = self._model.encode(self._padded_features(audio))
        prompt: list[int] = []
        if context:
            prompt = [tok.sot_prev] + tok.encode(" " + context.strip())[-(MAX_PROMPT_TOKENS):]
        prompt += list(tok.sot_sequence)
        max_length = len(prompt) + math.ceil(FINAL_TOKENS_PER_S * audio_s) + 8
        result = self._model.model.generate(
            encoded,
            [prompt],
            beam_size=self._beam_size,
            max_length=min(max_length, 448),
            suppress_blank=True,
            suppress_tokens=[-1],
        )
        kept: list[int] = []
        start_s = 0.0
        for token in result[0].sequences_ids[0]:
            if token >= tok.timestamp_begin:
                start_s = (token - tok.timestamp_begin) * self._model.time_precision
            elif token < tok.eot and start_s < audio_s - SHORT_FINAL_EDGE_S:
                kept.append(token)
        text = tok.decode(kept).strip()
        if not any(ch.isalnum() for ch in text):
            return Transcript("")  # a lone "." or "..." over noise is not speech
        if not words:
            return Transcript(text)
        num_frames = len(audio) // self._model.feature_extractor.hop_length
        alignment = self._model.find_alignment(tok, [kept], encoded, num_frames)[0]
        merge_punctuations(alignment, PREPEND_PUNCTUATION, APPEND_PUNCTUATION)
        duration_ms = int(audio_s * 1000)
        return Transcript(text, tuple(
            _word(w["word"], w["start"], w["end"], w["probability"], duration_ms) for w in alignment if w["word"].strip()
        ))

    def decode_full(
        self, audio: np.ndarray, language: str, context: str, words: bool, task: str = "transcribe"
    ) -> Transcript:
        """faster-whisper's own decode: a full 30 s window, as offline transcription does."""
        segments, _info = self._model.transcribe(
            audio,
            language=language if self._multilingual else "en",
            task=task if self._multilingual else "transcribe",
            beam_size=self._beam_size,
            word_timestamps=words,
            initial_prompt=context or None,
            condition_on_previous_text=False,
            without_timestamps=False,
            hallucination_silence_threshold=HALLUCINATION_SILENCE_S,
            vad_filter=False,
        )
        texts: list[str] = []
        out_words: list[Word] = []
        duration_ms = int(len(audio) * 1000 / SAMPLE_RATE_HZ)
        for segment in segments:
            texts.append(segment.text.strip())
            out_words.extend(_word(w.word, w.start, w.end, w.probability, duration_ms) for w in segment.words or ())
        return Transcript(" ".join(t for t in texts if t), tuple(out_words))


def _word(text: str, start_s: float, end_s: float, probability: float, duration_ms: int) -> Word:
    """A word with its times kept inside the utterance (alignment may overshoot the audio)."""
    t0_ms = min(max(0, round(start_s * 1000)), duration_ms)
    t1_ms = min(max(t0_ms, round(end_s * 1000)), duration_ms)
    return Word(text.strip(), t0_ms, t1_ms, round(float(probability), 3))


class WhisperStream:
    """Audio and agreement state of one session; cheap to open."""

    def __init__(self, owner: WhisperTranscriber, *, language: str, words: bool) -> None:
        self._owner = owner
        self.language = language
        """Settable between utterances: a language-identifying wrapper steers it."""
        self._words = words
        self._chunks: list[np.ndarray] = []
        self._samples = 0
        self._samples_at_last_partial = 0
        self._committed: list[str] = []
        self._previous: list[str] = []
        self._last_text = ""
        self._context = ""

    def accept(self, pcm: Pcm16) -> None:
        self._chunks.append(pcm.astype(np.float32) / 32768.0)
        self._samples += len(pcm)

    def _audio(self) -> np.ndarray:
        if len(self._chunks) > 1:
            self._chunks = [np.concatenate(self._chunks)]
        return self._chunks[0] if self._chunks else np.zeros(0, np.float32)

    def partial(self) -> Transcript | None:
        new_ms = (self._samples - self._samples_at_last_partial) * 1000 // SAMPLE_RATE_HZ
        if new_ms < MIN_NEW_AUDIO_MS:
            return None
        self._samples_at_last_partial = self._samples
        text = self._owner.decode_partial(
            self._audio(), self.language, " ".join(self._committed)
        )
        words = text.split()
        # Commit the words two decodes agree on, but never the newest word:
        # it may still be cut off mid-speech.
        agreed = 0
        for a, b in zip(words[:-1], self._previous[:-1]):
            if _normalise(a) != _normalise(b):
                break
            agreed += 1
        if agreed > len(self._committed):
            self._committed = words[:agreed]
        self._previous = words
        if not text or text == self._last_text:
            return None
        self._last_text = text
        return Transcript(text)

    def finish(self) -> Transcript:
        audio = self._audio()
        result = (
            self._owner.decode_final(audio, self.language, self._context, self._words)
            if len(audio)
            else Transcript("")
        )
        if result.text and self._owner.use_context:
            self._context = (self._context + " " + result.text).strip()[-MAX_PROMPT_CHARS:]
        self._chunks = []
        self._samples = 0
        self._samples_at_last_partial = 0
        self._committed = []
        self._previous = []
        self._last_text = ""
        return result

    def close(self) -> None:
        self._chunks = []


def create(options: EngineOptions) -> WhisperTranscriber:
    from hushgate.models.store import locate_model

    path = locate_model(options.model, engine="whisper", models_dir=options.models_dir)
    return WhisperTranscriber(
        path,
        model_name=catalogue_name(options.model) or options.extra.get("model_name") or _guess_name(path),
        threads=options.threads,
        workers=int(options.extra.get("workers", 2)),
        beam_size=int(options.extra.get("beam_size", 1)),
        context=bool(options.extra.get("whisper_context", False)),
        final_window=str(options.extra.get("final_window", "short")),
        device=str(options.extra.get("device", "cpu")),
        compute_type=str(options.extra.get("compute_type", "int8")),
        switch_margin=float(options.extra.get("switch_margin", 0.4)),
    )


def _guess_name(path: Path) -> str:
    # The built-in model lives in a package directory called "model".
    return "whisper-tiny.en" if path.name == "model" else path.name


SPEC = EngineSpec(
    name="whisper",
    capability="stt",
    factory=create,
    description="faster-whisper / CTranslate2 Whisper (int8 on CPU by default), partials by short-window re-decode",
)
