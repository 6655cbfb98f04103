"""The eSpeak NG engine, run for real on the system's espeak-ng.

Checks: voices are listed with the right ids and languages, speech comes out
non-silent and streamed, text is never read as command-line options, streaming
WAV headers with unknown sizes are read, and a request stopped early leaves no
process behind.
"""

from __future__ import annotations

import asyncio
import io
import shutil
import struct
import time
from collections.abc import Iterator

import numpy as np
import numpy.typing as npt
import psutil
import pytest

from hushgate.engines.base import EngineError, EngineOptions, Synthesizer
from hushgate.engines.espeak import SPEC, EspeakSynthesizer, create, parse_voice_list, read_wav_header

pytestmark = pytest.mark.skipif(
    shutil.which("espeak-ng") is None, reason="espeak-ng is not installed (apt-get install espeak-ng)"
)

RATE_HZ = 22050
MIN_RMS = 300.0
SPANISH = "espeak-es"
ENGLISH = "espeak-en-us"


@pytest.fixture(scope="module")
def synthesizer() -> Iterator[EspeakSynthesizer]:
    loaded = create(EngineOptions())
    yield loaded
    loaded.close()


def _rms(pcm: npt.NDArray[np.int16]) -> float:
    return float(np.sqrt(np.mean(pcm.astype(np.float64) ** 2)))


def _speak(synthesizer: EspeakSynthesizer, text: str, voice: str) -> npt.NDArray[np.int16]:
    chunks = list(synthesizer.synthesize(text, voice))
    assert chunks, "no audio"
    for chunk in chunks:
        assert chunk.dtype == np.int16
        assert chunk.ndim == 1
    return np.concatenate(chunks)


def _espeak_children() -> list[psutil.Process]:
    return [p for p in psutil.Process().children(recursive=True) if "espeak" in p.name()]


def test_spec_and_protocol(synthesizer: EspeakSynthesizer) -> None:
    assert SPEC.name == "espeak"
    assert SPEC.capability == "tts"
    assert isinstance(synthesizer, Synthesizer)


def test_spanish_voice_is_listed(synthesizer: EspeakSynthesizer) -> None:
    voices = {v.id: v for v in synthesizer.voices()}
    assert voices[SPANISH].language == "es"
    assert voices[SPANISH].sample_rate_hz == RATE_HZ
    assert voices[SPANISH].engine == "espeak"
    assert voices[ENGLISH].language == "en"
    assert len(voices) == len(synthesizer.voices()), "voice ids must be unique"


def test_spanish_speech_is_not_silent(synthesizer: EspeakSynthesizer) -> None:
    pcm = _speak(synthesizer, "hola, ¿cómo estás?", SPANISH)
    assert 0.5 <= pcm.size / RATE_HZ <= 4.0
    assert _rms(pcm) > MIN_RMS


@pytest.mark.parametrize(
    "text",
    [
        "--version",
        "-v en-us --help",
        "-w out.wav hello",
        "She said \"don't\" and 'why not'; $(echo hi) `ls` | cat > out",
    ],
)
def test_text_is_spoken_not_read_as_options(synthesizer: EspeakSynthesizer, text: str) -> None:
    # Read as options, these would print text, or write a file, and give no WAV
    # on stdout, which the engine reports as an error.
    assert text not in synthesizer.command("gmw/en-US")
    pcm = _speak(synthesizer, text, ENGLISH)
    assert pcm.size / RATE_HZ >= 0.5
    assert _rms(pcm) > MIN_RMS


def test_first_audio_comes_before_the_end(synthesizer: EspeakSynthesizer) -> None:
    text = "This is one sentence of a long text. " * 40
    started = time.perf_counter()
    chunks = synthesizer.synthesize(text, ENGLISH)
    first = next(chunks)
    first_chunk_s = time.perf_counter() - started
    rest = list(chunks)
    total_s = time.perf_counter() - started
    assert first.size > 0
    assert rest, "a long text should come in several chunks"
    assert first_chunk_s < total_s
    assert first_chunk_s < 0.5


def test_stopping_early_ends_the_process(synthesizer: EspeakSynthesizer) -> None:
    before = {p.pid for p in _espeak_children()}
    chunks = synthesizer.synthesize("A long text that nobody will listen to. " * 200, ENGLISH)
    next(chunks)
    chunks.close()  # type: ignore[attr-defined]  # a generator, as the gateway closes it
    assert {p.pid for p in _espeak_children()} <= before


def test_unknown_voice_is_refused(synthesizer: EspeakSynthesizer) -> None:
    with pytest.raises(EngineError, match=SPANISH):
        synthesizer.synthesize("hola", "espeak-xx-nowhere")


@pytest.mark.parametrize("text", ["", "  \n"])
def test_empty_text_is_refused(synthesizer: EspeakSynthesizer, text: str) -> None:
    with pytest.raises(EngineError):
        synthesizer.synthesize(text, SPANISH)


def test_rate_option() -> None:
    text = "The quick brown fox jumps over the lazy dog, and then it runs away."
    slow = create(EngineOptions(extra={"rate_wpm": 120}))
    fast = create(EngineOptions(extra={"rate_wpm": 300}))
    assert _speak(fast, text, ENGLISH).size < 0.7 * _speak(slow, text, ENGLISH).size
    for bad in (10, 1000, "fast", True):
        with pytest.raises(EngineError):
            create(EngineOptions(extra={"rate_wpm": bad}))


def _wav_header(data_bytes: int, riff_bytes: int, rate_hz: int = RATE_HZ) -> bytes:
    fmt = struct.pack("<HHIIHH", 1, 1, rate_hz, rate_hz * 2, 2, 16)
    return (
        b"RIFF"
        + struct.pack("<I", riff_bytes)
        + b"WAVE"
        + b"fmt "
        + struct.pack("<I", len(fmt))
        + fmt
        + b"data"
        + struct.pack("<I", data_bytes)
    )


@pytest.mark.parametrize("unknown_size", [0xFFFFFFFF, 0x7FFFF000, 0])
def test_streaming_wav_header_with_unknown_sizes(unknown_size: int) -> None:
    pcm = np.arange(-50, 50, dtype=np.int16)
    stream = io.BytesIO(_wav_header(unknown_size, unknown_size) + pcm.astype("<i2").tobytes())
    assert read_wav_header(stream) == RATE_HZ
    assert np.array_equal(np.frombuffer(stream.read(), dtype="<i2"), pcm)


def test_wav_header_with_an_extra_chunk() -> None:
    header = _wav_header(0xFFFFFFFF, 0xFFFFFFFF)
    data_at = header.index(b"data")
    stream = io.BytesIO(header[:data_at] + b"LIST" + struct.pack("<I", 3) + b"abc\0" + header[data_at:] + b"\1\0")
    assert read_wav_header(stream) == RATE_HZ
    assert stream.read() == b"\1\0"


@pytest.mark.parametrize("raw", [b"", b"Usage: espeak-ng [options]\n", _wav_header(0, 0)[:30]])
def test_not_a_wav_is_an_engine_error(raw: bytes) -> None:
    with pytest.raises(EngineError):
        read_wav_header(io.BytesIO(raw))


def test_voice_list_parsing() -> None:
    listing = (
        "Pty Language       Age/Gender VoiceName          File                 Other Languages\n"
        " 5  es              --/M      Spanish_(Spain)    roa/es               \n"
        " 5  es-419          --/M      Spanish_(Latin_America) roa/es-419           (es-mx 6)(es 6)\n"
        " 5  cmn             --/M      Chinese_(Mandarin,_latin_as_English) sit/cmn              (zh-cmn 5)(zh 5)\n"
        " 5  yue             --/M      Chinese_(Cantonese) sit/yue              (zh-yue 5)(zh 8)\n"
        " 5  yue             --/M      Chinese_(Cantonese,_latin_as_Jyutping) sit/yue-Latn-jyutping (zh-yue 5)(zh 8)\n"
    )
    voices = parse_voice_list(listing)
    assert [(v.voice.id, v.voice.language, v.espeak_name) for v in voices] == [
        ("espeak-es", "es", "roa/es"),
        ("espeak-es-419", "es", "roa/es-419"),
        ("espeak-cmn", "zh", "sit/cmn"),
        ("espeak-yue", "yue", "sit/yue"),
        ("espeak-yue-latn-jyutping", "yue", "sit/yue-Latn-jyutping"),
    ]
    assert voices[1].voice.description == "eSpeak NG Spanish (Latin America) (es-419)"


def _stalling_fake(tmp_path, *, header: bool) -> str:  # noqa: ANN001
    """A fake espeak-ng that stalls: it never answers, or stops after the WAV header. Named a fake: a real
    espeak-ng cannot be made to hang on purpose."""
    script = tmp_path / ("fake-espeak-stalls-after-header" if header else "fake-espeak-stalls")
    header_file = tmp_path / "header.bin"
    header_file.write_bytes(_wav_header(0x7FFFF000, 0x7FFFF024) + b"\0\0" * 512)
    body = f"cat {header_file}\n" if header else ""
    script.write_text(f"#!/bin/sh\n{body}exec sleep 60\n")
    script.chmod(0o755)
    return str(script)


def _children_gone(before: set[int], timeout_s: float = 5.0) -> list[psutil.Process]:
    """espeak children (zombies included) that were not there before, once they had timeout_s to go."""
    deadline = time.monotonic() + timeout_s
    while True:
        left = [p for p in psutil.Process().children(recursive=True) if p.pid not in before and _is_espeak(p)]
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.05)


def _is_espeak(process: psutil.Process) -> bool:
    try:
        return "espeak" in process.name() or any("espeak" in part for part in process.cmdline())
    except psutil.Error:
        return False


@pytest.mark.parametrize("header", [False, True], ids=["silent", "after-header"])
def test_a_stalled_process_is_killed_after_its_timeout(synthesizer: EspeakSynthesizer, tmp_path, header: bool) -> None:  # noqa: ANN001
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    voices = parse_voice_list(
        " Pty Language Age/Gender VoiceName File Other\n 5 en-us M english_us gmw/en-US\n", sample_rate_hz=RATE_HZ
    )
    stalled = EspeakSynthesizer(_stalling_fake(tmp_path, header=header), voices, sample_rate_hz=RATE_HZ, timeout_s=1.0)
    started = time.monotonic()
    with pytest.raises(EngineError, match="no audio for 1 s"):
        list(stalled.synthesize("hello", "espeak-en-us"))
    assert time.monotonic() - started < 5
    assert _children_gone(before) == []


def test_close_from_another_thread_kills_a_request_mid_read(tmp_path) -> None:  # noqa: ANN001
    """The gateway closes a synthesis when its session goes, while a worker thread may be blocked reading it."""
    import threading

    before = {p.pid for p in psutil.Process().children(recursive=True)}
    voices = parse_voice_list(
        " Pty Language Age/Gender VoiceName File Other\n 5 en-us M english_us gmw/en-US\n", sample_rate_hz=RATE_HZ
    )
    stalled = EspeakSynthesizer(_stalling_fake(tmp_path, header=True), voices, sample_rate_hz=RATE_HZ)
    chunks = stalled.synthesize("hello", "espeak-en-us")
    next(chunks)  # the header's first samples; the next read blocks
    outcome: list[object] = []
    reader = threading.Thread(target=lambda: outcome.append(next(chunks, "done")))
    reader.start()
    time.sleep(0.3)
    chunks.close()  # type: ignore[attr-defined]
    reader.join(timeout=5)
    assert not reader.is_alive() and outcome == ["done"]  # closed: the request just ends
    assert _children_gone(before) == []


async def test_an_abrupt_disconnect_leaves_no_espeak_process(tmp_path) -> None:  # noqa: ANN001
    """A client that asks for a long text, reads nothing and drops the connection: espeak-ng goes with it."""
    from hushgate.server.settings import Settings
    from tests.conftest import serve
    from tests.fakes import fake_spec
    from tests.wsclient import Client

    before = {p.pid for p in psutil.Process().children(recursive=True)}
    settings = Settings(
        stt=("en=fake",),
        translators=(),
        synthesizers=("espeak",),
        speaker_encoder="",
        max_text_chars=5_000,
        outbox_events=16,
    )
    with serve(settings, [fake_spec()]) as server:
        for attempt in range(8):
            client = await Client.connect(server.ws())
            await client.start()
            await client.send(
                {
                    "type": "speak",
                    "id": f"long-{attempt}",
                    "voice": ENGLISH,
                    "text": "A long text that nobody will listen to. " * 120,
                }
            )
            for _ in range(100):  # espeak-ng has started
                if any(p.pid not in before and _is_espeak(p) for p in psutil.Process().children(recursive=True)):
                    break
                time.sleep(0.02)
            await asyncio.sleep(0.015 * attempt)  # at different points of the synthesis
            client.ws.transport.abort()  # no close frame: the connection just drops
            await asyncio.sleep(0.05)  # the loop closes the socket itself (asyncio closes on its next turn)
        deadline = time.monotonic() + 10
        while _children_gone(before, timeout_s=0) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert _children_gone(before, timeout_s=0) == []
