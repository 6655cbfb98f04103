"""Other languages through the OpenAI-compatible API: Whisper's own translation, and language identification.

The real server with its default speech-to-text table (tiny.en for English,
Whisper base for the rest) and no text translator at all, so German reaches
English only through Whisper's translate task. FLEURS files, encoded in memory.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from hushgate.models.locate import locate_model
from hushgate.server.settings import Settings
from tests.conftest import Running, serve
from tests.media_helpers import encode, words

pytestmark = pytest.mark.slow

ENGLISH = {"the", "of", "and", "to", "is", "was", "were", "in", "that", "it", "after", "for", "with", "on", "by"}
# German-only words ("war" and "in" are English too).
GERMAN = {
    "der",
    "die",
    "das",
    "und",
    "ist",
    "nicht",
    "von",
    "zu",
    "den",
    "mit",
    "dem",
    "wurde",
    "nachdem",
    "kamen",
    "im",
    "zum",
}


@pytest.fixture(scope="module")
def server() -> Iterator[Running]:
    try:
        locate_model("whisper-base", engine="whisper", models_dir=None)
    except Exception as exc:  # noqa: BLE001 - the message says what to run
        pytest.fail(f"Whisper base is not installed (scripts/install.sh pulls it): {exc}")
    with serve(Settings(translators=(), synthesizers=(), speaker_encoder="")) as running:
        yield running


@pytest.fixture()
def client(server: Running) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=server.http + "/v1", api_key="sk-anything", max_retries=0, timeout=300) as c:
        yield c


def _english(text: str) -> None:
    got = words(text)
    english = sum(w in ENGLISH for w in got)
    german = sum(w in GERMAN for w in got)
    assert english >= 3 and german <= 1, text


def test_german_speech_is_translated_by_whisper(client: openai.OpenAI, audio_dir: Path) -> None:
    mp3 = encode(audio_dir / "fleurs" / "fleurs-de-007.wav", "mp3", "libmp3lame")
    identified = client.audio.translations.create(
        model="whisper-1", file=("de.mp3", mp3), response_format="verbose_json"
    )
    assert identified.language == "german" and identified.task == "translate", identified  # type: ignore[attr-defined]
    _english(identified.text)
    named = client.audio.translations.create(model="whisper-1", file=("de.mp3", mp3), extra_body={"language": "de"})
    _english(named.text)
    assert re.search(r"\b(dam|1963)\b", named.text.lower()), named.text


def test_spanish_is_identified_without_a_language(client: openai.OpenAI, audio_dir: Path) -> None:
    flac = encode(audio_dir / "fleurs" / "fleurs-es-006.wav", "flac", "flac")
    result = client.audio.transcriptions.create(
        model="whisper-1", file=("es.flac", flac), response_format="verbose_json"
    )
    assert result.language == "spanish", result
    got = set(words(result.text))
    assert len(got & {"luchadores", "compañeros", "luna", "también", "homenaje", "rindieron"}) >= 3, result.text
