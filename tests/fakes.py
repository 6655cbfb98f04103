"""Fake engines for plumbing tests. They do no recognition at all: the fake
transcriber "hears" one word per 500 ms of audio, so tests can reason about
what comes back without loading a model."""

from __future__ import annotations

import threading
import time

from hushgate.engines.base import EngineOptions, EngineSpec, Pcm16, Transcript, Word

WORD_MS = 500


class FakeTranscriberStream:
    def __init__(self, owner: FakeTranscriber) -> None:
        self._owner = owner
        self._samples = 0
        self._partials = 0
        self.closed = False

    def _words(self) -> list[str]:
        return [f"word{i}" for i in range(self._samples * 1000 // 16_000 // WORD_MS)]

    def accept(self, pcm: Pcm16) -> None:
        if self._owner.delay_s:
            time.sleep(self._owner.delay_s)
        if self._owner.real_time_factor:
            time.sleep(len(pcm) / 16_000 * self._owner.real_time_factor)
        if self._owner.fail_on_accept:
            raise RuntimeError("fake engine failure")
        self._samples += len(pcm)

    def partial(self) -> Transcript | None:
        words = self._words()
        return Transcript(" ".join(words)) if words else None

    def finish(self) -> Transcript:
        if self._owner.final_delay_s:
            time.sleep(self._owner.final_delay_s)
        words = self._words() or ["empty"]
        duration_ms = self._samples * 1000 // 16_000
        timed = tuple(
            Word(w, min(i * WORD_MS, duration_ms), min((i + 1) * WORD_MS, duration_ms), 0.9)
            for i, w in enumerate(words)
        )
        self._samples = 0
        return Transcript(" ".join(words), timed)

    def close(self) -> None:
        self.closed = True
        with self._owner.lock:
            self._owner.open_streams -= 1


class FakePunctuatedStream(FakeTranscriberStream):
    """Text endpointing's side of the fake: the text so far, ended with the owner's ``punctuation``."""

    def text_so_far(self) -> Transcript:
        words = self._words()
        return Transcript(" ".join(words) + self._owner.punctuation if words else "")


class FakeTranscriber:
    name = "fake"
    model = "fake-model"
    languages = ("en", "xx")
    sample_rate_hz = 16_000
    partial_interval_ms = 200

    def __init__(
        self,
        delay_s: float = 0.0,
        final_delay_s: float = 0.0,
        fail_on_accept: bool = False,
        real_time_factor: float = 0.0,
        punctuation: str | None = None,
    ) -> None:
        self.delay_s = delay_s
        self.real_time_factor = real_time_factor
        self.final_delay_s = final_delay_s
        self.fail_on_accept = fail_on_accept
        self.punctuation = punctuation or ""
        self._punctuates = punctuation is not None
        self.open_streams = 0
        self.lock = threading.Lock()

    def open_stream(self, *, language: str, words: bool) -> FakeTranscriberStream:
        with self.lock:
            self.open_streams += 1
        return FakePunctuatedStream(self) if self._punctuates else FakeTranscriberStream(self)

    def close(self) -> None:
        pass


def fake_spec(transcriber: FakeTranscriber | None = None) -> EngineSpec:
    instance = transcriber or FakeTranscriber()

    def create(options: EngineOptions) -> FakeTranscriber:
        return instance

    return EngineSpec(name="fake", capability="stt", factory=create, description="fake engine for tests")


class FakeTranslator:
    """ "Translates" en→es by tagging words, and records each batch it is given."""

    name = "fake-translate"

    def __init__(self, delay_s: float = 0.0) -> None:
        self.batches: list[list[str]] = []
        self.delay_s = delay_s

    def pairs(self) -> list[tuple[str, str]]:
        return [("en", "es"), ("en", "fr")]

    def translate(self, texts, source: str, target: str) -> list[str]:  # noqa: ANN001
        if self.delay_s:
            time.sleep(self.delay_s)
        self.batches.append(list(texts))
        return [f"[{target}] {t}" for t in texts]

    def close(self) -> None:
        pass


class FakeSynthesizer:
    """A 440 Hz tone, 100 ms per character, yielded in one chunk per word."""

    name = "fake-tts"

    def __init__(self, delay_s: float = 0.0) -> None:
        self.delay_s = delay_s

    def voices(self):  # noqa: ANN201
        from hushgate.engines.base import Voice

        return [Voice("fake-en", "en", 16_000, "fake-tts"), Voice("fake-es", "es", 22_050, "fake-tts")]

    def synthesize(self, text: str, voice: str):  # noqa: ANN201
        import numpy as np

        from hushgate.engines.base import EngineError

        rate = {v.id: v.sample_rate_hz for v in self.voices()}.get(voice)
        if rate is None:
            raise EngineError(f"unknown voice {voice}")
        for word in text.split():
            if self.delay_s:
                time.sleep(self.delay_s)
            t = np.arange(rate * len(word) // 10) / rate
            yield (np.sin(2 * np.pi * 440 * t) * 8000).astype(np.int16)

    def close(self) -> None:
        pass


def fake_translate_spec(translator: FakeTranslator) -> EngineSpec:
    return EngineSpec(name="fake-translate", capability="translate", factory=lambda options: translator)


def fake_tts_spec(synthesizer: FakeSynthesizer) -> EngineSpec:
    return EngineSpec(name="fake-tts", capability="tts", factory=lambda options: synthesizer)
