"""What the socket-level server tests share: a server with the fake transcriber, the JFK recording."""

from __future__ import annotations

import numpy as np
import pytest

from hushgate.server.settings import Settings
from tests.audio_helpers import read_wav
from tests.conftest import serve
from tests.fakes import FakeTranscriber, fake_spec

SETTINGS = Settings(
    stt=("en=fake", "xx=fake"), translators=(), synthesizers=(), speaker_encoder="", max_sessions=4, start_timeout_s=2.0
)


@pytest.fixture(name="fake")
def fake_fixture() -> FakeTranscriber:
    return FakeTranscriber()


@pytest.fixture(name="server")
def server_fixture(fake: FakeTranscriber):  # noqa: ANN201
    with serve(SETTINGS, [fake_spec(fake)]) as running:
        yield running


@pytest.fixture(name="jfk", scope="module")
def jfk_fixture(audio_dir) -> np.ndarray:  # noqa: ANN001
    pcm, rate = read_wav(audio_dir / "misc" / "jfk.wav")
    assert rate == 16_000
    return pcm
