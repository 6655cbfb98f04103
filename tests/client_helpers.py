"""What the SDK and command tests share: a server with fake engines, the JFK recording, event waits."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from hushgate.client import Session
from hushgate.engines.base import EngineSpec
from hushgate.server.settings import Settings
from tests.audio_helpers import read_wav
from tests.conftest import serve
from tests.fakes import FakeSynthesizer, FakeTranslator, fake_spec, fake_translate_spec, fake_tts_spec

JFK = Path(__file__).resolve().parents[1].parent / "shared" / "audio" / "misc" / "jfk.wav"
MAX_FRAME = 16_384  # small, so that send_audio has to split and oversized frames are cheap to make
SETTINGS = Settings(
    stt=("en=fake",),
    translators=("fake-translate",),
    synthesizers=("fake-tts",),
    speaker_encoder="fake-speaker",
    voiceprint_key="client-test-key",
    enroll_needed_ms=4_000,
    max_frame_bytes=MAX_FRAME,
)
FORMATS = ["json", "msgpack"]


class FakeEncoder:
    """Every voice is the same voice; slow enough that finals go out before the speaker is known."""

    name = "fake-speaker"
    model = "fake-ge2e"
    sample_rate_hz = 16_000
    dimensions = 4

    def embed(self, pcm: Any) -> np.ndarray:
        time.sleep(0.3)
        return np.full(4, 0.5, np.float32)  # a fresh array: the server wipes vectors it is done with

    def close(self) -> None:
        pass


@pytest.fixture(name="server", scope="module")
def server_fixture():  # noqa: ANN201
    specs = [
        fake_spec(),
        fake_translate_spec(FakeTranslator()),
        fake_tts_spec(FakeSynthesizer()),
        EngineSpec(name="fake-speaker", capability="speaker", factory=lambda options: FakeEncoder()),
    ]
    with serve(SETTINGS, specs) as running:
        yield running


@pytest.fixture(name="jfk", scope="module")
def jfk_fixture() -> np.ndarray:
    if not JFK.is_file():
        pytest.fail(f"shared test audio not found at {JFK}")
    return read_wav(JFK)[0]


def speech(jfk: np.ndarray) -> np.ndarray:
    """JFK and a second of silence, so the last utterance ends by itself."""
    return np.concatenate([jfk, np.zeros(16_000, np.int16)])


async def until(session: Session, kind: type, timeout_s: float = 30.0) -> tuple[Any, list[Any]]:
    """Events up to and including the first of ``kind``."""
    seen = []
    while True:
        event = await session.receive(timeout_s)
        assert event is not None, f"session ended before a {kind.__name__}: {seen}"
        seen.append(event)
        if isinstance(event, kind):
            return event, seen


# parse_event --------------------------------------------------------------------------
