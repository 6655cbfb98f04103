"""Plumbing of the multilingual features without the big model: the language decision,
pivot translation, and Whisper's device settings reaching the engine."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from hushgate.engines.base import EngineError, EngineOptions, EngineSpec
from hushgate.engines.pivot import PivotTranslator
from hushgate.engines.whisper_language import LOCK_MS, LanguageChooser
from hushgate.server.settings import Settings, SettingsError
from tests.conftest import serve
from tests.fakes import FakeTranscriber
from tests.wsclient import Client

GERMAN = [("de", 0.9), ("en", 0.05), ("nl", 0.05)]
UNSURE = [("de", 0.42), ("en", 0.24), ("ar", 0.08)]
FRENCH = [("fr", 0.95), ("de", 0.03), ("en", 0.02)]


def test_only_a_long_confident_final_fixes_the_language() -> None:
    chooser = LanguageChooser((), switching=False, switch_margin=0.4)
    assert chooser.choose(GERMAN, LOCK_MS * 2, final=False).language == "de"
    assert chooser.fixed() is None  # a partial never fixes it
    assert chooser.choose(GERMAN, LOCK_MS - 1, final=True).language == "de"
    assert chooser.fixed() is None  # too short
    chooser.choose(UNSURE, LOCK_MS, final=True)
    assert chooser.fixed() is None  # too unsure
    chooser.choose(GERMAN, LOCK_MS, final=True)
    locked = chooser.fixed()
    assert locked is not None and locked.language == "de"
    # Fixed: no more detection, whatever comes next.
    assert not chooser.wants_detection(LOCK_MS * 5, final=True)


def test_switching_needs_the_margin() -> None:
    chooser = LanguageChooser((), switching=True, switch_margin=0.4)
    chooser.choose(GERMAN, LOCK_MS, final=True)
    assert chooser.wants_detection(LOCK_MS, final=True) and not chooser.wants_detection(LOCK_MS, final=False)
    kept = chooser.choose([("fr", 0.5), ("de", 0.3)], LOCK_MS, final=True)
    assert kept.language == "de" and kept.probability == pytest.approx(0.3)
    switched = chooser.choose(FRENCH, LOCK_MS, final=True)
    assert switched.language == "fr" and chooser.fixed() == switched


def test_expected_languages_renormalise() -> None:
    chooser = LanguageChooser(("es", "pt"), switching=False, switch_margin=0.4)
    guess = chooser.choose([("en", 0.6), ("pt", 0.3), ("es", 0.1)], LOCK_MS, final=True)
    assert guess.language == "pt" and guess.probability == pytest.approx(0.75)


class _Pairs:
    """A fake translator knowing fr→es and es→en: it tags each text with the step."""

    name = "fake-mt"

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    def pairs(self) -> list[tuple[str, str]]:
        return [("es", "en"), ("es", "en-US"), ("fr", "es"), ("en", "es")]

    def translate(self, texts: Sequence[str], source: str, target: str) -> list[str]:
        self.calls.append((source, target))
        return [f"{t}>{target}" for t in texts]

    def close(self) -> None:
        pass


def test_pivot_goes_through_english_or_spanish() -> None:
    inner = _Pairs()
    pivot = PivotTranslator(inner)
    # en→es→en-US would be no translation at all
    assert pivot.pivots() == {("fr", "en"): "es", ("fr", "en-US"): "es"}
    assert ("fr", "en") in pivot.pairs() and ("es", "en") in pivot.pairs()
    assert pivot.translate(["bonjour", "merci"], "fr", "en") == ["bonjour>es>en", "merci>es>en"]
    assert inner.calls == [("fr", "es"), ("es", "en")]  # one batched call per step
    with pytest.raises(EngineError, match="en-fr"):
        pivot.translate(["x"], "en", "fr")


def test_whisper_device_settings_reach_the_engine() -> None:
    seen: list[EngineOptions] = []

    def factory(options: EngineOptions) -> FakeTranscriber:
        seen.append(options)
        return FakeTranscriber()

    spec = EngineSpec("capture", "stt", factory)
    settings = Settings(
        stt=("en=capture",),
        translators=(),
        synthesizers=(),
        speaker_encoder="",
        whisper_device="cuda",
        whisper_compute_type="float16",
        language_switch_margin=0.25,
    )
    with serve(settings, [spec]):
        pass
    [options] = seen
    assert options.extra["device"] == "cuda" and options.extra["compute_type"] == "float16"
    assert options.extra["switch_margin"] == 0.25


def test_whisper_compute_type_reaches_ctranslate2() -> None:
    from hushgate.engines.whisper import create

    engine = create(EngineOptions(extra={"compute_type": "float32", "device": "cpu"}))
    try:
        assert engine._model.model.compute_type == "float32"
        assert engine.languages == ("en",)  # tiny.en: English only, so no identification
    finally:
        engine.close()


def test_switch_margin_is_checked() -> None:
    with pytest.raises(SettingsError, match="language_switch_margin"):
        Settings(language_switch_margin=1.5).validated()


async def test_auto_needs_a_multilingual_model() -> None:
    spec = EngineSpec("fake", "stt", lambda _options: FakeTranscriber())
    settings = Settings(stt=("en=fake",), translators=(), synthesizers=(), speaker_encoder="")
    with serve(settings, [spec]) as running:
        client = await Client.connect(running.ws())
        event = await client.start(16_000, language="auto")
        received = await client.closed()
    assert event["type"] == "error" and event["code"] == "engine_unavailable", event
    assert "multilingual" in event["message"] and received.close_code == 1003
