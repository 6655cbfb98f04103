"""Whisper speech-to-text on CPU through faster-whisper / CTranslate2.

Whisper is not a streaming model, and every faster-whisper decode pads its input
to a 30 s encoder window (≈0.5 s of compute however short the audio). Partials by
naive re-decoding would therefore allow about one live speaker per machine, and
a final decoded that way arrives half a second after the speaker stops. The
stream below therefore calls CTranslate2's Whisper directly with an encoder
window of the buffered audio plus ``PAD_S`` seconds of silence (shorter padding
raised the word error rate sharply):

* partials decode on a second copy of the model whose threads run at a lower
  priority (``partial_nice``; `hushgate.engines.low_priority`), so finals get
  the CPU first;
* partials are capped at ``TOKENS_PER_S`` tokens per second of audio, since an
  uncapped decode of a short window tends to loop, and skip timestamp tokens;
* words on which two successive partial decodes agree are committed and forced
  as the decoder prefix of the next one, so the text on screen stops flickering;
* ``text_so_far()`` is the final's decode on demand, kept: the gateway asks it
  at a pause (text endpointing judges the pause by Whisper's punctuation), and
  when no audio follows (the pause was the end) it is the final. When
  speech resumes after at least ``SETTLE_MIN_S`` of unsettled audio, that
  decode is settled instead (`hushgate.engines.whisper_context.Settled`): later
  partials and finals decode only the audio after it, with its end as left
  context, so a long utterance costs no more per decode than a short one. One
  without such a pause is settled inside its speech by a partial
  (`hushgate.engines.whisper_inside`);
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

from dataclasses import replace
from pathlib import Path

import numpy as np

from hushgate.engines.base import EngineOptions, EngineSpec, Pcm16, SpeechOptions, Transcript
from hushgate.engines.low_priority import built_at_low_priority
from hushgate.engines.options import catalogue_name
from hushgate.engines.whisper_context import (
    LeftContext,
    Settled,
    bare_word,
    ends_at_mark,
    joined,
    left_context,
)
from hushgate.engines.whisper_decode import SAMPLE_RATE_HZ, SHORT_FINAL_MAX_S, WhisperDecoder
from hushgate.engines.whisper_inside import SETTLE_INSIDE_S, InsideCuts
from hushgate.engines.whisper_language import SpeechStream

# Whisper's decoder context is 448 tokens; half of it may be prompt.
MAX_PROMPT_CHARS = 400
# A partial decode on less new audio than this is not worth its cost.
MIN_NEW_AUDIO_MS = 300
# Left context of a final: at most this much of the previous utterance's end.
CONTEXT_S = 3.0
# A probe's decode is settled only when it covers at least this much audio not
# settled before: a piece decoded without what follows loses words at its end.
# At 4 s, German, Spanish and French streamed WER rose 2.4–6.7 points at real-time
# pace (bench/accuracy.py); at 8 s it was the same as without settling.
SETTLE_MIN_S = 8.0
# Nice value added to the threads that decode partials.
PARTIAL_NICE = 10


class WhisperTranscriber(WhisperDecoder):
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
        partial_nice: int = PARTIAL_NICE,
        settle_inside_s: float = SETTLE_INSIDE_S,
    ) -> None:
        import ctranslate2
        from faster_whisper import WhisperModel

        # ``num_workers`` lets that many Python threads decode at once; each
        # decode gets ``cpu_threads`` (one: two threads per call under
        # contention were measured to be slower, not faster).
        model = WhisperModel(
            str(model_path),
            device=device,
            compute_type=compute_type,
            cpu_threads=threads,
            num_workers=workers,
        )
        partial_model = None
        if partial_nice > 0 and device == "cpu":
            # A second copy of the weights in memory buys finals the CPU first (docs/performance.md).
            partial_model = built_at_low_priority(
                lambda: ctranslate2.models.Whisper(
                    str(model_path),
                    device=device,
                    compute_type=compute_type,
                    intra_threads=threads,
                    inter_threads=workers,
                ),
                partial_nice,
            )
        super().__init__(model, beam_size=beam_size, final_window=final_window, partial_model=partial_model)
        self.urgent_workers = workers if partial_model is not None else 0
        """Slots the gateway keeps for finals: they decode on their own copy of the model."""
        self.model = model_name
        self.languages: tuple[str, ...] = tuple(model.supported_languages) if self._multilingual else ("en",)
        self.use_context = context
        self.left_context_s = left_context_s
        self.settle_inside_s = settle_inside_s
        """Unsettled audio after which a long utterance is settled inside its speech; 0: never."""
        self._switch_margin = switch_margin

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
        self._preview: tuple[tuple[int, str], Transcript] | None = None
        self._context = ""
        self._left: LeftContext | None = None
        self._left_language = language
        self._settled: Settled | None = None
        self._inside = InsideCuts(
            after_s=owner.settle_inside_s,
            context_s=owner.left_context_s,
            sample_rate_hz=SAMPLE_RATE_HZ,
            max_s=SHORT_FINAL_MAX_S,
        )

    def accept(self, pcm: Pcm16) -> None:
        self._settle()
        self._chunks.append(pcm.astype(np.float32) / 32768.0)
        self._samples += len(pcm)

    def _settle(self) -> None:
        """Speech resumed after a probe: keep the probe's decode if it covers enough new audio."""
        preview, self._preview = self._preview, None
        if preview is None or preview[0] != (self._samples, self.language):
            return
        settled = self._settled_now()
        start = settled.samples if settled is not None else 0
        context_s = self._owner.left_context_s
        transcript = preview[1]
        if context_s <= 0 or self._samples - start < SETTLE_MIN_S * SAMPLE_RATE_HZ or not transcript.words:
            return
        if not ends_at_mark(transcript.text):
            # Whisper put no mark at the pause: it heard the phrase go on (the pause may even
            # fall inside a word, "de l" for "de l'État"), and a piece cut there is decoded worse.
            return
        left = left_context(
            self._audio(), transcript.text, transcript.words, sample_rate_hz=SAMPLE_RATE_HZ, max_s=context_s
        )
        if left is not None:
            self._settled = Settled(transcript, self._samples, self.language, left)
            self._committed, self._previous = [], []
            self._inside.reset()

    def _settled_now(self) -> Settled | None:
        # A language-identifying wrapper may switch language mid-utterance: then nothing is settled.
        settled = self._settled
        return settled if settled is not None and settled.language == self.language else None

    def _audio(self) -> np.ndarray:
        if len(self._chunks) > 1:
            self._chunks = [np.concatenate(self._chunks)]
        return self._chunks[0] if self._chunks else np.zeros(0, np.float32)

    def partial(self) -> Transcript | None:
        new_ms = (self._samples - self._samples_at_last_partial) * 1000 // SAMPLE_RATE_HZ
        if new_ms < MIN_NEW_AUDIO_MS:
            return None
        settled = self._settled_now()
        if self._inside.due(self._samples, settled.samples if settled is not None else 0):
            text = self._settle_inside(settled)
        else:
            text = self._decode_partial(settled)
            if settled is not None:
                text = joined(settled.transcript, Transcript(text), 0).text
        if not text or text == self._last_text:
            return None
        self._last_text = text
        return Transcript(text)

    def text_so_far(self) -> Transcript:
        """The final this audio would get, decoded now and kept.

        The gateway asks this at a pause (text endpointing judges the pause
        by its punctuation; speculative finals only keep it). When the
        utterance then ends with no more audio (the usual case: the pause was
        the end), `finish` returns this decode instead of decoding the same
        audio again, so the final does not wait behind the probe: the probe
        was the final.
        """
        key = (self._samples, self.language)
        if self._preview is None or self._preview[0] != key:
            self._preview = (key, self._final_decode(self._audio()))
            if self._preview[1].text:
                self._last_text = self._preview[1].text  # shown as a partial: the next one must differ
        return self._preview[1]

    def _settle_inside(self, settled: Settled | None) -> str:
        """A partial that decodes the unsettled audio as a final would, and settles it where a cut fits."""
        self._samples_at_last_partial = self._samples
        start = settled.samples if settled is not None else 0
        left = settled.left if settled is not None else None
        audio = self._audio()[start:]
        if left is not None and len(left.audio) + len(audio) > SHORT_FINAL_MAX_S * SAMPLE_RATE_HZ:
            left = None
        decode = self._owner.decode_short(audio, self.language, self._context, True, left=left, urgent=False)
        start_ms = start * 1000 // SAMPLE_RATE_HZ
        cut = self._inside.cut(audio, decode, self._samples)
        if cut is not None:
            piece, cut_samples, cut_left = cut
            kept = joined(settled.transcript, piece, start_ms) if settled is not None else piece
            self._settled = Settled(kept, start + cut_samples, self.language, cut_left)
            self._committed, self._previous, self._preview = [], [], None
        return (joined(settled.transcript, decode, start_ms) if settled is not None else decode).text

    def _decode_partial(self, settled: Settled | None) -> str:
        """The text after ``settled`` (of all the audio without it), committing what two decodes agree on."""
        self._samples_at_last_partial = self._samples
        audio, left = self._audio(), None
        if settled is not None:
            audio, left = audio[settled.samples :], settled.left
        text = self._owner.decode_partial(audio, self.language, " ".join(self._committed), left)
        words = text.split()
        # Commit the words two decodes agree on, but never the newest word:
        # it may still be cut off mid-speech.
        agreed = 0
        for a, b in zip(words[:-1], self._previous[:-1], strict=False):
            if bare_word(a) != bare_word(b):
                break
            agreed += 1
        if agreed > len(self._committed):
            self._committed = words[:agreed]
        self._previous = words
        return text

    def _final_decode(self, audio: np.ndarray) -> Transcript:
        if not len(audio):
            return Transcript("")
        context_s = self._owner.left_context_s
        # The next final's left context needs this one's word times when only part of it fits.
        need_words = self._words or (context_s > 0 and len(audio) > context_s * SAMPLE_RATE_HZ)
        settled = self._settled_now()
        if settled is not None:
            rest = self._owner.decode_final(
                audio[settled.samples :], self.language, self._context, need_words, left=settled.left
            )
            return joined(settled.transcript, rest, settled.samples * 1000 // SAMPLE_RATE_HZ)
        # Words of another language are no context (a language-identifying wrapper may switch).
        left = self._left if self._left_language == self.language else None
        return self._owner.decode_final(audio, self.language, self._context, need_words, left=left)

    def finish(self) -> Transcript:
        audio = self._audio()
        preview, self._preview = self._preview, None
        if preview is not None and preview[0] == (self._samples, self.language):
            result = preview[1]
        else:
            result = self._final_decode(audio)
        context_s = self._owner.left_context_s
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
        self._settled = None
        self._inside.reset()
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
        partial_nice=int(options.extra.get("partial_nice", PARTIAL_NICE)),
        settle_inside_s=float(options.extra.get("settle_inside_s", SETTLE_INSIDE_S)),
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
