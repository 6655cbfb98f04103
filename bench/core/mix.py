"""Sessions with a mix of features (bench/load.py): what each feature adds, and what went missing.

`extra_of` looks at what `live_figures.analyse` does not: translations, spoken
translations, speaker decisions and error codes of one session.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .live import ClientRun
from .live_figures import Figures, analyse
from .resources import Usage
from .wire import Event, speak_options, speakers_options, translate_options

FEATURES: dict[str, dict[str, Any]] = {
    "stt": {},
    "translate": {"translate": translate_options("es")},
    "speak": {"translate": translate_options("es"), "speak": speak_options(translations=True)},
    "speakers": {"speakers": speakers_options(identify=True, diarize=True)},
    "nopartials": {"partials": False},
}
TRANSLATING = ("translate", "speak")
TTS_SAMPLE_RATE_HZ = 22050  # until a tts.start names the rate


def merged(features: Sequence[str]) -> dict[str, Any]:
    """The start options of several features at once (the warm-up session's)."""
    out: dict[str, Any] = {}
    for name in features:
        for key, value in FEATURES[name].items():
            out[key] = {**out.get(key, {}), **value} if isinstance(value, dict) else value
    return out


def mix_label(features: Sequence[str]) -> str:
    counts = Counter(features)
    return " ".join(f"{counts[name]}×{name}" if counts[name] > 1 else name for name in dict.fromkeys(features))


@dataclass
class Extra:
    """What live_figures.analyse does not look at: translations, speech, speakers, error codes."""

    sessions: int = 0
    late_finals: int = 0
    translation_ms: list[float] = field(default_factory=list)
    translations_expected: int = 0
    translations_missing: int = 0
    spoken_ms: list[float] = field(default_factory=list)
    spoken_expected: int = 0
    spoken_missing: int = 0
    tts_started: int = 0
    tts_unended: int = 0
    tts_audio_s: float = 0.0
    speaker_on_final: int = 0
    speaker_too_short: int = 0
    speaker_late: int = 0
    speaker_failed: int = 0
    speaker_missing: int = 0
    error_codes: Counter[str] = field(default_factory=Counter)
    failed_sessions: int = 0

    def add(self, other: Extra) -> None:
        for name, value in vars(other).items():
            mine = getattr(self, name)
            if isinstance(mine, list):
                mine.extend(value)
            elif isinstance(mine, Counter):
                mine.update(value)
            else:
                setattr(self, name, mine + value)

    @property
    def bad(self) -> int:
        """Errors and drops of every kind but missing finals."""
        return (
            sum(self.error_codes.values())
            + self.failed_sessions
            + self.translations_missing
            + self.spoken_missing
            + self.tts_unended
        )


def extra_of(run: ClientRun, feature: str, silence_ms: int, bound_ms: int) -> Extra:
    x = Extra(sessions=1)
    finals: dict[int, tuple[float, Event]] = {}
    translations: dict[int, tuple[float, Event]] = {}
    tts_open: Any = None
    tts_started: dict[Any, float] = {}
    tts_ids: set[Any] = set()
    first_audio: dict[Any, float] = {}
    late_speaker: set[int] = set()
    pending_speaker: set[int] = set()
    sample_rate = TTS_SAMPLE_RATE_HZ
    for received, ev in run.events:
        kind = ev.get("type")
        utt = ev.get("utterance")
        if kind == "final" and isinstance(utt, int):
            finals[utt] = (received, ev)
            t1 = int(ev["t1_ms"])
            if (
                t1 + silence_ms <= run.audio_ms
                and (sent := run.sent_wall(t1)) is not None
                and 1000 * (received - sent) > bound_ms
            ):
                x.late_finals += 1
            if feature == "speakers":
                if "speaker" in ev:
                    x.speaker_on_final += 1
                elif ev.get("undecided") == "too_short":
                    x.speaker_too_short += 1
                elif "undecided" in ev:
                    x.speaker_failed += 1
                else:
                    pending_speaker.add(utt)
        elif kind == "speaker" and isinstance(utt, int):
            if utt in pending_speaker:
                pending_speaker.discard(utt)
                late_speaker.add(utt)
                if ev.get("undecided") == "failed":
                    x.speaker_failed += 1
        elif kind == "translation" and isinstance(utt, int) and not ev.get("provisional"):
            translations[utt] = (received, ev)
            if utt in finals:
                x.translation_ms.append(1000 * (received - finals[utt][0]))
        elif kind == "tts.start":
            tts_open = ev.get("id")
            tts_started[tts_open] = received
            tts_ids.add(tts_open)
            sample_rate = int(ev.get("sample_rate") or sample_rate)
            x.tts_started += 1
        elif kind == "tts.audio":
            first_audio.setdefault(ev.get("id", tts_open), received)
            x.tts_audio_s += len(ev.get("pcm") or b"") / 2 / sample_rate
        elif kind == "tts.end":
            tts_started.pop(ev.get("id"), None)
            tts_open = None
        elif kind == "error":
            x.error_codes[str(ev.get("code"))] += 1
    x.tts_unended = len(tts_started)
    x.speaker_late = len(late_speaker)
    x.speaker_missing = len(pending_speaker)
    if feature in TRANSLATING:
        expected = [u for u, (_, ev) in finals.items() if ev.get("text")]
        x.translations_expected = len(expected)
        x.translations_missing = sum(1 for u in expected if u not in translations)
    if feature == "speak":
        spoken = [u for u, (_, ev) in translations.items() if str(ev.get("text", "")).strip()]
        x.spoken_expected = len(spoken)
        x.spoken_missing = sum(1 for u in spoken if u not in tts_ids)
        x.spoken_ms.extend(1000 * (first_audio[u] - translations[u][0]) for u in spoken if u in first_audio)
    x.failed_sessions = int(run.failed)
    return x


@dataclass
class Resources:
    """CPU over the round (from cumulative CPU times) and the sampled RSS."""

    server_cpu: float | None = None
    host_cpu: float | None = None
    bench_cpu: float | None = None
    others_cpu: float | None = None
    usage: Usage = field(default_factory=Usage)


@dataclass
class Round:
    clients: int
    features: list[str]
    base: Figures
    extra: Extra
    per_feature: dict[str, tuple[Figures, Extra]]
    resources: Resources
    engines: dict[str, dict[str, float]] | None
    wall_s: float
    quiet: tuple[bool, float, float] | None = None


def analyse_round(
    n: int, runs: list[ClientRun], features: list[str], silence_ms: int, bound_ms: int, wall_s: float
) -> tuple[Figures, Extra, dict[str, tuple[Figures, Extra]]]:
    """The figures of the whole round, and of each feature's sessions apart."""
    base = analyse(n, runs, silence_ms, wall_s)
    extra = Extra()
    per_feature: dict[str, tuple[Figures, Extra]] = {}
    for name in dict.fromkeys(features):
        subset = [r for r, f in zip(runs, features, strict=True) if f == name]
        fx = Extra()
        for run in subset:
            fx.add(extra_of(run, name, silence_ms, bound_ms))
        per_feature[name] = (analyse(len(subset), subset, silence_ms, wall_s), fx)
        extra.add(fx)
    return base, extra, per_feature
