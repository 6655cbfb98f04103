"""Real engines end to end: English speech → Spanish text → Spanish speech,
and Piper's English fed back through the gateway's own speech-to-text."""

from __future__ import annotations

import re
from pathlib import Path

import jiwer
import numpy as np
import pytest

from hushgate.server.settings import Settings
from tests.audio_helpers import read_wav
from tests.conftest import serve
from tests.wsclient import Client

pytestmark = pytest.mark.slow

# Words Apertium should produce for the recordings' content (any of them per utterance).
SPANISH_HINTS = re.compile(
    r"\b(el|la|los|las|de|que|y|en|un|una|no|su|sus|para|por|con|lo|le|se|me|él|a)\b", re.IGNORECASE
)


@pytest.fixture(scope="module")
def server():  # noqa: ANN201
    settings = Settings(stt=("en=whisper",), translators=("apertium",), synthesizers=("piper", "espeak"))
    with serve(settings) as running:
        hub = running.app.state.gateway.hub
        if hub.translator("en", "es") is None:
            pytest.fail(f"Apertium en→es is not installed: {hub.unavailable}")
        yield running


async def stream_file(server, path: Path, **start) -> object:  # noqa: ANN001, ANN003
    pcm, _ = read_wav(path)
    client = await Client.connect(server.ws())
    await client.start(16_000, **start)
    client.read_in_background()
    await client.stream(np.concatenate([pcm, np.zeros(16_000, np.int16)]))
    return await client.finish(timeout_s=300)


async def test_english_speech_gets_spanish_translations(server, audio_dir: Path) -> None:  # noqa: ANN001
    received = await stream_file(server, audio_dir / "misc" / "jfk.wav", translate={"targets": ["es"]})
    finals = received.of("final")
    translations = received.of("translation")
    assert finals and len(translations) == len([f for f in finals if f["text"]])
    text = " ".join(t["text"] for t in translations).lower()
    # "ask not what your country can do for you" → país, puede, hacer / pedir...
    assert "país" in text or "pais" in text, text
    assert any(w in text for w in ("puede", "hacer", "pregunta", "preguntar", "pedir")), text
    for t in translations:
        assert t["source"] == "en" and t["target"] == "es" and SPANISH_HINTS.search(t["text"])


async def test_spoken_translations_are_audible_and_plausibly_long(server, audio_dir: Path) -> None:  # noqa: ANN001
    received = await stream_file(
        server,
        audio_dir / "librispeech" / "1089-134686-0000.wav",
        translate={"targets": ["es"]},
        speak={"translations": True},
    )
    translations = received.of("translation")
    starts, ends = received.of("tts.start"), received.of("tts.end")
    assert translations and len(starts) == len(ends) == len(translations)
    pcm = np.frombuffer(b"".join(received.audio), dtype="<i2").astype(np.float64)
    assert np.sqrt(np.mean(pcm**2)) > 300  # not silence
    for t, start, end in zip(translations, starts, ends, strict=True):
        assert start["id"] == end["id"] == t["utterance"]
        words = len(t["text"].split())
        seconds = end["duration_ms"] / 1000
        # Speech runs at roughly 1.5–5 words per second.
        assert words / 5 <= seconds <= words / 1.5 + 1, (words, seconds)
    assert sum(len(a) for a in received.audio) // 2 == pytest.approx(
        sum(e["duration_ms"] for e in ends) * starts[0]["sample_rate"] / 1000, rel=0.01
    )


SENTENCES = [
    "The weather is lovely today, so we will walk to the market.",
    "Please send the report to the office before noon.",
    "My brother bought a new bicycle last summer.",
    "The children are reading books in the library.",
    "We should leave early to catch the morning train.",
]


async def test_piper_speech_is_understood_by_the_gateways_own_recognizer(server) -> None:  # noqa: ANN001
    """Intelligibility: synthesize with Piper, transcribe with Whisper, WER ≤ 15 %."""
    client = await Client.connect(server.ws())
    await client.start(16_000, speak={"sample_rate": 16_000})
    audio: list[np.ndarray] = []
    for i, sentence in enumerate(SENTENCES):
        await client.send({"type": "speak", "id": f"s{i}", "text": sentence, "voice": "en_US-joe-medium"})
        start = await client.next_event()
        assert start["type"] == "tts.start" and start["sample_rate"] == 16_000
        chunks = []
        while True:
            frame = await client.ws.recv()
            if isinstance(frame, bytes):
                chunks.append(frame)
                continue
            event = client._decode(frame)
            if event and event["type"] == "tts.end":
                break
        audio.append(np.frombuffer(b"".join(chunks), dtype="<i2"))
    await client.finish()
    hypotheses = []
    for pcm in audio:
        listener = await Client.connect(server.ws())
        await listener.start(16_000)
        listener.read_in_background()
        await listener.stream(np.concatenate([pcm, np.zeros(16_000, np.int16)]))
        received = await listener.finish()
        hypotheses.append(" ".join(f["text"] for f in received.of("final")))

    def norm(s: str) -> str:
        return " ".join(re.sub(r"[^a-z' ]+", " ", s.lower()).split())

    wer = jiwer.wer([norm(s) for s in SENTENCES], [norm(h) for h in hypotheses])
    print(f"\nPiper → Whisper WER {wer:.3f}: {hypotheses}")
    assert wer <= 0.15
