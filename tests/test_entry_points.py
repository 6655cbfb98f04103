"""A third-party engine installed as a distribution is found through its entry point."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from hushgate.engines.registry import ENTRY_POINT_GROUP, EngineRegistry
from hushgate.server.settings import Settings
from tests.audio_helpers import read_wav
from tests.conftest import serve
from tests.wsclient import Client

EXAMPLE = Path(__file__).parent / "example_engine" / "hushgate_example.py"


@pytest.fixture
def installed_example(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What `pip install hushgate-example` would leave on sys.path."""
    shutil.copy(EXAMPLE, tmp_path / EXAMPLE.name)
    dist = tmp_path / "hushgate_example-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: hushgate-example\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\nexample = hushgate_example:SPEC\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield
    sys.modules.pop("hushgate_example", None)


def test_registry_discovers_the_entry_point(installed_example: None) -> None:
    registry = EngineRegistry()
    assert "example" in registry.names()
    assert registry.get("example", "stt").description == "measures instead of listening"
    with pytest.raises(Exception, match="provides stt, not vad"):
        registry.get("example", "vad")


async def test_the_gateway_serves_a_language_with_the_plugged_in_engine(
    installed_example: None, audio_dir: Path
) -> None:
    pcm, _ = read_wav(audio_dir / "librispeech" / "1089-134686-0001.wav")
    with serve(
        Settings(
            stt=("en=example", "xx=example"), translators=(), synthesizers=(), speaker_encoder="", default_language="xx"
        )
    ) as server:
        client = await Client.connect(server.ws())
        ready = await client.start(language="xx")
        assert ready["engines"]["stt"] == {"name": "example", "model": "ruler", "language": "xx"}
        client.read_in_background()
        await client.stream(np.concatenate([pcm, np.zeros(16_000, np.int16)]))
        received = await client.finish()
    finals = received.of("final")
    assert finals and all(f["text"].endswith("seconds of sound") for f in finals)
