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
  cross-attention alignment, as in faster-whisper;
* each final also decodes the end of the previous utterance in front of its
  own audio, with that audio's words forced as the decoder prefix, and keeps
  the words written after them (`hushgate.engines.whisper_context`): a
  fragment left by a mid-sentence pause is then decoded in its sentence, as
  offline decoding of the whole recording would. A looped final is decoded
  again by sampling, faster-whisper's temperature fallback.

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
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from hushgate.engines.base import EngineOptions, EngineSpec, Pcm16, SpeechOptions, Transcript, Word
from hushgate.engines.options import catalogue_name
from hushgate.engines.whisper_context import LeftContext, collapse_repeats, left_context, looks_looped
from hushgate.engines.whisper_generate import FinalDecode, speech_tokens
from hushgate.engines.whisper_language import SpeechStream

if TYPE_CHECKING:
    from faster_whisper.tokenizer import Tokenizer

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
FINAL_PAD_S = 5.0
SHORT_FINAL_MAX_S = 30.0 - max(PAD_S, FINAL_PAD_S)
SENTENCE_END = ".。!！?？"
SHORT_FINAL_EDGE_S = 0.1
FINAL_TOKENS_PER_S = 12.0
MAX_PROMPT_TOKENS = 223
# faster-whisper's rule for audio that is not speech: both must hold.
NO_SPEECH_PROB = 0.6
NO_SPEECH_LOGPROB = -1.0
# Re-decoding a looped final: faster-whisper's temperature fallback, shortened.
LOOP_TEMPERATURES = (0.4, 0.8)
LOOP_BEST_OF = 3
# Left context of a final: at most this much of the previous utterance's end.
CONTEXT_S = 3.0
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
        left_context_s: float = CONTEXT_S,
        device: str = "cpu",
        compute_type: str = "int8",
        switch_margin: float = 0.4,
    ) -> None:
        from faster_whisper import WhisperModel

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
        self.languages: tuple[str, ...] = tuple(self._model.supported_languages) if multilingual else ("en",)
        self._multilingual = multilingual
        self._beam_size = beam_size
        self.use_context = context
        if final_window not in ("short", "full"):
            raise ValueError(f"final_window must be 'short' or 'full', not {final_window!r}")
        self.final_window = final_window
        self.left_context_s = left_context_s
        self._switch_margin = switch_margin
        self._tokenizers: dict[tuple[str, str], Tokenizer] = {}
        self._tokenizer_lock = threading.Lock()

    def tokenizer(self, language: str, task: str = "transcribe") -> Tokenizer:
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
        self._model = None

    # The two decodes, used by the stream.

    def _padded_features(self, audio: np.ndarray, pad_s: float = PAD_S) -> np.ndarray:
        """Mel features of the audio plus ``pad_s`` of silence, shaped for the encoder."""
        padded = np.concatenate([audio, np.zeros(int(pad_s * SAMPLE_RATE_HZ), np.float32)])
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
        text: str = tok.decode(ids).strip()
        return text

    def decode_final(
        self,
        audio: np.ndarray,
        language: str,
        context: str,
        words: bool,
        task: str = "transcribe",
        left: LeftContext | None = None,
    ) -> Transcript:
        if self.final_window == "short" and len(audio) <= SHORT_FINAL_MAX_S * SAMPLE_RATE_HZ:
            if left is not None and len(left.audio) + len(audio) > SHORT_FINAL_MAX_S * SAMPLE_RATE_HZ:
                left = None
            return self.decode_short(audio, language, context, words, task, left)
        return self.decode_full(audio, language, context, words, task)

    def decode_short(
        self,
        audio: np.ndarray,
        language: str,
        context: str,
        words: bool,
        task: str = "transcribe",
        left: LeftContext | None = None,
    ) -> Transcript:
        """One greedy decode of the audio plus ``PAD_S`` of silence, with timestamp tokens.

        With ``left``, the window starts with the previous utterance's last
        audio and the decoder is forced to begin with its words; only what it
        writes after them is this utterance's text. Text whose timestamps start
        inside the silent padding is dropped: it is what Whisper invents over
        silence. So is all of it when Whisper itself rates the audio as
        probably not speech (its no-speech probability) and the text as a
        guess (low mean log-probability), faster-whisper's rule.
        """
        from faster_whisper.transcribe import merge_punctuations

        tok = self.tokenizer(language, task)
        window = np.concatenate([left.audio, audio]) if left is not None else audio
        offset_s = (len(window) - len(audio)) / SAMPLE_RATE_HZ
        window_s = len(window) / SAMPLE_RATE_HZ
        encoded = self._model.encode(self._padded_features(window, FINAL_PAD_S))
        prompt: list[int] = []
        if context:
            prompt = [tok.sot_prev] + tok.encode(" " + context.strip())[-(MAX_PROMPT_TOKENS):]
        prompt += list(tok.sot_sequence)
        # Without its final full stop: a forced "." invites the model to end there.
        forced = [tok.timestamp_begin, *tok.encode(" " + left.text.rstrip(SENTENCE_END))] if left is not None else []
        budget = math.ceil(FINAL_TOKENS_PER_S * len(audio) / SAMPLE_RATE_HZ) + 8
        decode = FinalDecode(
            self._model.model, encoded, [*prompt, *forced], min(len(prompt) + len(forced) + budget, 448)
        )
        kept = speech_tokens(
            decode.greedy(self._beam_size), tok, len(forced), window_s - SHORT_FINAL_EDGE_S, self._model.time_precision
        )
        if left is None and decode.no_speech_prob > NO_SPEECH_PROB and decode.avg_logprob < NO_SPEECH_LOGPROB:
            return Transcript("")
        text = tok.decode(kept).strip().lstrip(SENTENCE_END + ",;:").lstrip()
        if looks_looped(text):
            kept = self._unlooped(decode, tok, len(forced), window_s) or kept
            text = tok.decode(kept).strip()
            if looks_looped(text):
                text = collapse_repeats(text)
                kept = tok.encode(" " + text)
        if not any(ch.isalnum() for ch in text):
            return Transcript("")  # a lone "." or "..." over noise is not speech
        if not words:
            return Transcript(text)
        prefix = forced[1:]
        num_frames = len(window) // self._model.feature_extractor.hop_length
        alignment = self._model.find_alignment(tok, [[*prefix, *kept]], encoded, num_frames)[0]
        merge_punctuations(alignment, PREPEND_PUNCTUATION, APPEND_PUNCTUATION)
        duration_ms = int(len(audio) * 1000 / SAMPLE_RATE_HZ)
        out: list[Word] = []
        seen_tokens = 0
        for w in alignment:
            first_token = seen_tokens
            seen_tokens += len(w["tokens"])
            if first_token >= len(prefix) and w["word"].strip():
                out.append(_word(w["word"], w["start"] - offset_s, w["end"] - offset_s, w["probability"], duration_ms))
        return Transcript(text, tuple(out))

    def _unlooped(self, decode: FinalDecode, tok: Tokenizer, forced: int, window_s: float) -> list[int] | None:
        """Decode again with sampling (faster-whisper's temperature fallback); the best unlooped text."""
        for temperature in LOOP_TEMPERATURES:
            candidates = [
                speech_tokens(ids, tok, forced, window_s - SHORT_FINAL_EDGE_S, self._model.time_precision)
                for ids in decode.sampled(temperature, LOOP_BEST_OF)
            ]
            for kept in candidates:
                if not looks_looped(tok.decode(kept)):
                    return kept
        return None

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
        self._left: LeftContext | None = None
        self._left_language = language

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
        text = self._owner.decode_partial(self._audio(), self.language, " ".join(self._committed))
        words = text.split()
        # Commit the words two decodes agree on, but never the newest word:
        # it may still be cut off mid-speech.
        agreed = 0
        for a, b in zip(words[:-1], self._previous[:-1], strict=False):
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
        context_s = self._owner.left_context_s
        # The next final's left context needs this one's word times when only part of it fits.
        need_words = self._words or (context_s > 0 and len(audio) > context_s * SAMPLE_RATE_HZ)
        # Words of another language are no context (a language-identifying wrapper may switch).
        left = self._left if self._left_language == self.language else None
        result = (
            self._owner.decode_final(audio, self.language, self._context, need_words, left=left)
            if len(audio)
            else Transcript("")
        )
        if context_s > 0 and result.text:
            # An utterance of noise leaves the context of the speech before it.
            self._left = left_context(audio, result.text, result.words, sample_rate_hz=SAMPLE_RATE_HZ, max_s=context_s)
            self._left_language = self.language
        if not self._words and result.words:
            result = replace(result, words=())
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
    from hushgate.models.locate import locate_model

    path = locate_model(options.model, engine="whisper", models_dir=options.models_dir)
    return WhisperTranscriber(
        path,
        model_name=catalogue_name(options.model) or options.extra.get("model_name") or _guess_name(path),
        threads=options.threads,
        workers=int(options.extra.get("workers", 2)),
        beam_size=int(options.extra.get("beam_size", 1)),
        context=bool(options.extra.get("whisper_context", False)),
        final_window=str(options.extra.get("final_window", "short")),
        left_context_s=float(options.extra.get("left_context_s", CONTEXT_S)),
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
