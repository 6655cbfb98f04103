"""Find and load Piper voices: a ``.onnx`` VITS model with its ``.onnx.json`` configuration.

piper's ``PiperVoice.load`` takes no session options, so voices are built here
from the same public pieces (``PiperConfig`` and an onnxruntime session) with a
given number of intra-op threads: the gateway gets its parallelism from
concurrent requests, not from one request's threads.

Voices whose phonemes come from anything but espeak-ng or plain text (Chinese,
Japanese, Thai, Hebrew) are refused: their phonemisers are created lazily
without a lock, need extra packages, and the Chinese one downloads a model to
the working directory on first use, which would write to disk at run time.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import onnxruntime
from piper import PhonemeType, PiperConfig, PiperVoice, SynthesisConfig

from hushgate.engines.base import EngineError, ModelNotFound, Voice

_SUPPORTED_PHONEMES = frozenset({PhonemeType.ESPEAK, PhonemeType.TEXT})
_CONFIG_SUFFIX = ".json"
# ISO 639-3 codes espeak-ng uses where clients ask for ISO 639-1 ones.
_LANGUAGE_ALIASES = {"cmn": "zh"}


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


def warm_up(loaded: LoadedVoice) -> None:
    """Run one tiny synthesis so the first real request does not pay for
    espeak-ng's data loading and onnxruntime's first allocations."""
    for _ in loaded.model.synthesize("Hi.", SynthesisConfig(normalize_audio=False)):
        pass
