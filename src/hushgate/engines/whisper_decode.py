"""The decodes of one loaded Whisper model: partial, short-window final, full-window final.

`hushgate.engines.whisper` explains why partials and finals are decoded this
way; this module holds the decodes themselves, shared by every session's
stream, and the constants that tune them.
"""

from __future__ import annotations

import copy
import math
import threading
from typing import TYPE_CHECKING

import numpy as np

from hushgate.engines.base import Transcript, Word
from hushgate.engines.punctuation import CLAUSE_BREAK, SENTENCE_END
from hushgate.engines.whisper_context import LeftContext, collapse_repeats, looks_looped
from hushgate.engines.whisper_generate import FinalDecode, speech_tokens

if TYPE_CHECKING:
    import ctranslate2
    from faster_whisper import WhisperModel
    from faster_whisper.tokenizer import Tokenizer

SAMPLE_RATE_HZ = 16_000
PAD_S = 5.0
TOKENS_PER_S = 7.0
HALLUCINATION_SILENCE_S = 0.5
# Short-window finals: audio this long or shorter, leaving room for the padding
# inside Whisper's 30 s window; text starting this close to the padding is dropped.
FINAL_PAD_S = 5.0
SHORT_FINAL_MAX_S = 30.0 - max(PAD_S, FINAL_PAD_S)
SHORT_FINAL_EDGE_S = 0.1
FINAL_TOKENS_PER_S = 12.0
MAX_PROMPT_TOKENS = 223
# faster-whisper's rule for audio that is not speech: both must hold.
NO_SPEECH_PROB = 0.6
NO_SPEECH_LOGPROB = -1.0
# Re-decoding a looped final: faster-whisper's temperature fallback, shortened.
LOOP_TEMPERATURES = (0.4, 0.8)
LOOP_BEST_OF = 3
PREPEND_PUNCTUATION = "\"'“¿([{-"
APPEND_PUNCTUATION = "\"'.。,，!！?？:：”)]}、"


class WhisperDecoder:
    """The decodes of one loaded model, thread-safe; `WhisperTranscriber` adds the streams."""

    def __init__(
        self,
        model: WhisperModel,
        *,
        beam_size: int,
        final_window: str,
        partial_model: ctranslate2.models.Whisper | None = None,
    ) -> None:
        self._model = model
        # Partials may decode on a copy of the model whose threads run at a lower
        # priority (hushgate.engines.low_priority), so finals get the CPU first.
        self._partial_model = partial_model or model.model
        # The same decodes on that copy, for work no one waits for (settling inside speech).
        self._background = model
        if partial_model is not None:
            self._background = copy.copy(model)
            self._background.model = partial_model
        self._multilingual = model.model.is_multilingual
        self._beam_size = beam_size
        if final_window not in ("short", "full"):
            raise ValueError(f"final_window must be 'short' or 'full', not {final_window!r}")
        self.final_window = final_window
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

    def _padded_features(self, audio: np.ndarray, pad_s: float = PAD_S) -> np.ndarray:
        """Mel features of the audio plus ``pad_s`` of silence, shaped for the encoder."""
        padded = np.concatenate([audio, np.zeros(int(pad_s * SAMPLE_RATE_HZ), np.float32)])
        features = self._model.feature_extractor(padded, padding=0)
        # The encoder downsamples by two, so it needs an even frame count.
        return np.ascontiguousarray(features[None, :, : features.shape[1] // 2 * 2])

    def decode_partial(self, audio: np.ndarray, language: str, prefix: str, left: LeftContext | None = None) -> str:
        """The text of ``audio`` starting with ``prefix``; after ``left`` (audio and words forced first) if given."""
        import ctranslate2

        tok = self.tokenizer(language)
        features = self._padded_features(np.concatenate([left.audio, audio]) if left is not None else audio)
        forced = tok.encode(" " + left.text.rstrip(SENTENCE_END)) if left is not None else []
        prompt = [*tok.sot_sequence, tok.no_timestamps, *forced]
        if prefix:
            prompt += tok.encode(" " + prefix)
        audio_s = len(audio) / SAMPLE_RATE_HZ
        max_length = min(len(prompt) + math.ceil(TOKENS_PER_S * audio_s) + 3, 448)
        result = self._partial_model.generate(
            ctranslate2.StorageView.from_array(features),
            [prompt],
            beam_size=1,
            max_length=max_length,
            suppress_blank=True,
            suppress_tokens=[-1],
        )
        # The result carries the forced text followed by what was generated; the left words are not this audio's.
        ids = [i for i in result[0].sequences_ids[0] if i < tok.eot][len(forced) :]
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
        urgent: bool = True,
    ) -> Transcript:
        """One greedy decode of the audio plus ``PAD_S`` of silence, with timestamp tokens.

        With ``left``, the window starts with the previous utterance's last
        audio and the decoder is forced to begin with its words; only what it
        writes after them is this utterance's text. Text whose timestamps start
        inside the silent padding is dropped: it is what Whisper invents over
        silence. So is all of it when Whisper itself rates the audio as
        probably not speech (its no-speech probability) and the text as a
        guess (low mean log-probability), faster-whisper's rule. Not ``urgent``:
        decoded on the partials' low-priority copy of the model.
        """
        from faster_whisper.transcribe import merge_punctuations

        model = self._model if urgent else self._background
        tok = self.tokenizer(language, task)
        window = np.concatenate([left.audio, audio]) if left is not None else audio
        offset_s = (len(window) - len(audio)) / SAMPLE_RATE_HZ
        window_s = len(window) / SAMPLE_RATE_HZ
        encoded = model.encode(self._padded_features(window, FINAL_PAD_S))
        prompt: list[int] = []
        if context:
            prompt = [tok.sot_prev] + tok.encode(" " + context.strip())[-(MAX_PROMPT_TOKENS):]
        prompt += list(tok.sot_sequence)
        # Without its final full stop: a forced "." invites the model to end there.
        forced = [tok.timestamp_begin, *tok.encode(" " + left.text.rstrip(SENTENCE_END))] if left is not None else []
        # The budget covers the forced words' audio too: counted on this utterance's audio
        # alone, a final after a long forced prefix was cut off mid-word.
        budget = math.ceil(FINAL_TOKENS_PER_S * window_s) + len(forced) + 8
        decode = FinalDecode(model.model, encoded, [*prompt, *forced], min(len(prompt) + len(forced) + budget, 448))
        kept = speech_tokens(
            decode.greedy(self._beam_size), tok, len(forced), window_s - SHORT_FINAL_EDGE_S, self._model.time_precision
        )
        if left is None and decode.no_speech_prob > NO_SPEECH_PROB and decode.avg_logprob < NO_SPEECH_LOGPROB:
            return Transcript("")
        text = tok.decode(kept).strip().lstrip(SENTENCE_END + CLAUSE_BREAK).lstrip()
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
        alignment = model.find_alignment(tok, [[*prefix, *kept]], encoded, num_frames)[0]
        merge_punctuations(alignment, PREPEND_PUNCTUATION, APPEND_PUNCTUATION)
        duration_ms = int(len(audio) * 1000 / SAMPLE_RATE_HZ)
        out: list[Word] = []
        seen_tokens = 0
        for w in alignment:
            first_token = seen_tokens
            seen_tokens += len(w["tokens"])
            if first_token >= len(prefix) and w["word"].strip():
                out.append(
                    clamped_word(w["word"], w["start"] - offset_s, w["end"] - offset_s, w["probability"], duration_ms)
                )
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
            out_words.extend(
                clamped_word(w.word, w.start, w.end, w.probability, duration_ms) for w in segment.words or ()
            )
        return Transcript(" ".join(t for t in texts if t), tuple(out_words))


def clamped_word(text: str, start_s: float, end_s: float, probability: float, duration_ms: int) -> Word:
    """A word with its times kept inside the utterance (alignment may overshoot the audio)."""
    t0_ms = min(max(0, round(start_s * 1000)), duration_ms)
    t1_ms = min(max(t0_ms, round(end_s * 1000)), duration_ms)
    return Word(text.strip(), t0_ms, t1_ms, round(float(probability), 3))
