"""The transcribe / speak / translate commands against a real server on loopback.

Most tests use the fake engines (tests/client_helpers.py), so every expectation
is exact; the two slow tests at the end run Whisper and Piper for real.
"""

from __future__ import annotations

import asyncio
import json
import struct
import time
import wave
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from hushgate.client import Client, Final
from hushgate.client.commands import cue, speak_main, timestamp, transcribe_main, translate_main
from hushgate.server.auth import hash_key
from hushgate.server.settings import Settings
from tests.client_helpers import JFK, jfk_fixture, server_fixture  # noqa: F401 - fixtures
from tests.conftest import free_port, serve
from tests.fakes import fake_spec


def test_timestamps_and_cues_are_exact() -> None:
    assert timestamp(0) == "00:00:00,000"
    assert timestamp(3_723_004) == "01:02:03,004"
    assert timestamp(3_723_004, ".") == "01:02:03.004"
    assert timestamp(59_999) == "00:00:59,999"
    assert timestamp(100 * 3_600_000) == "100:00:00,000"
    assert cue(3, 720, 2660, "Hello  world.", "srt") == "3\n00:00:00,720 --> 00:00:02,660\nHello world.\n\n"
    assert cue(1, 61_000, 62_500, "a --> b\n\nc", "vtt") == "1\n00:01:01.000 --> 00:01:02.500\na -> b c\n\n"


def reference_finals(server, pcm: np.ndarray, **start: Any) -> list[Final]:  # noqa: ANN001
    async def run() -> list[Final]:
        return [e async for e in Client(server.ws()).stream([pcm], 16_000, **start) if isinstance(e, Final)]

    finals = asyncio.run(run())
    assert len(finals) >= 2
    return finals


def ts(ms: int, sep: str) -> str:
    return f"{ms // 3_600_000:02d}:{ms // 60_000 % 60:02d}:{ms // 1000 % 60:02d}{sep}{ms % 1000:03d}"


def test_transcribe_prints_text_json_srt_and_vtt(server, jfk: np.ndarray, capsys) -> None:  # noqa: ANN001
    finals = reference_finals(server, jfk)
    url = server.ws()
    assert transcribe_main([str(JFK), "--url", url]) == 0
    out, err = capsys.readouterr()
    assert out == "".join(f"{f.text}\n" for f in finals) and err == ""

    assert transcribe_main([str(JFK), "--url", url, "--format", "srt"]) == 0
    expected_srt = "".join(
        f"{i}\n{ts(f.t0_ms, ',')} --> {ts(f.t1_ms, ',')}\n{f.text}\n\n" for i, f in enumerate(finals, 1)
    )
    assert capsys.readouterr().out == expected_srt
    assert expected_srt.startswith("1\n00:00:00,")

    assert transcribe_main([str(JFK), "--url", url, "--format", "vtt", "--msgpack"]) == 0
    assert capsys.readouterr().out == "WEBVTT\n\n" + "".join(
        f"{i}\n{ts(f.t0_ms, '.')} --> {ts(f.t1_ms, '.')}\n{f.text}\n\n" for i, f in enumerate(finals, 1)
    )

    assert transcribe_main([str(JFK), "--url", url, "--format", "json", "--translate", "es"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    # A translation follows its final, though not always before the next final.
    wire_finals = [line for line in lines if line["type"] == "final"]
    wire_translations = [line for line in lines if line["type"] == "translation"]
    assert len(lines) == 2 * len(finals)
    for final, wire_final, wire_translation in zip(finals, wire_finals, wire_translations, strict=True):
        assert lines.index(wire_final) < lines.index(wire_translation)
        assert wire_final["text"] == final.text and wire_final["t0_ms"] == final.t0_ms
        assert [w["w"] for w in wire_final["words"]] == final.text.split()
        assert wire_translation == {
            "type": "translation",
            "utterance": final.utterance,
            "source": "en",
            "target": "es",
            "text": f"[es] {final.text}",
        }

    assert transcribe_main([str(JFK), "--url", url, "--format", "srt", "--translate", "es"]) == 0
    assert capsys.readouterr().out == "".join(
        f"{i}\n{ts(f.t0_ms, ',')} --> {ts(f.t1_ms, ',')}\n[es] {f.text}\n\n" for i, f in enumerate(finals, 1)
    )


def test_realtime_sends_at_the_pace_of_the_audio(server, jfk: np.ndarray, tmp_path: Path, capsys) -> None:  # noqa: ANN001
    path = tmp_path / "short.wav"
    write_wave(path, np.concatenate([jfk[: 16_000 * 3], np.zeros(8_000, np.int16)]), 16_000)
    started = time.monotonic()
    assert transcribe_main([str(path), "--url", server.ws(), "--realtime"]) == 0
    assert time.monotonic() - started >= 3.4
    assert capsys.readouterr().out.startswith("word0")


def test_transcribe_without_the_translation_pair_warns_and_keeps_the_original(server, capsys) -> None:  # noqa: ANN001
    assert transcribe_main([str(JFK), "--url", server.ws(), "--translate", "de"]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("word0") and "[" not in out
    assert "warning: engine_unavailable" in err


def write_riff(path: Path, pcm: np.ndarray, rate: int, *, channels: int, tag: int, bits: int) -> None:
    """A WAV written by hand, for the encodings Python's `wave` cannot write (float, EXTENSIBLE)."""
    frames = np.repeat(pcm[:, None], channels, axis=1)
    if tag == 3:
        data = (frames.astype(np.float32) / 32768.0).astype("<f4").tobytes()
    else:
        data = (frames.astype(np.int32) << (bits - 16)).astype("<i4").tobytes()
        if bits == 24:
            data = np.frombuffer(data, np.uint8).reshape(-1, 4)[:, :3].tobytes()
    block = channels * bits // 8
    fmt = struct.pack("<HHIIHH", 0xFFFE if tag == 0xFFFE else tag, channels, rate, rate * block, block, bits)
    if tag == 0xFFFE:
        guid = struct.pack("<H", 1) + b"\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"
        fmt += struct.pack("<HHI", 22, bits, 0) + guid
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"LIST" + struct.pack("<I", 3) + b"abc\x00"
    body += b"data" + struct.pack("<I", len(data)) + data
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)


def write_wave(path: Path, pcm: np.ndarray, rate: int, *, channels: int = 1, width: int = 2) -> None:
    frames = np.repeat(pcm[:, None], channels, axis=1).astype(np.int32)
    if width == 1:
        data = ((frames >> 8) + 128).astype(np.uint8).tobytes()
    elif width == 2:
        data = frames.astype("<i2").tobytes()
    else:
        data = np.frombuffer((frames << 8).astype("<i4").tobytes(), np.uint8).reshape(-1, 4)[:, :3].tobytes()
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(data)


def test_transcribe_reads_any_wav(server, jfk: np.ndarray, tmp_path: Path, capsys) -> None:  # noqa: ANN001
    url = server.ws()
    assert transcribe_main([str(JFK), "--url", url, "--format", "srt"]) == 0
    reference = capsys.readouterr().out
    # Lossless variants of the same audio give exactly the same captions.
    lossless = {
        "stereo24.wav": lambda p: write_wave(p, jfk, 16_000, channels=2, width=3),
        "ext24.wav": lambda p: write_riff(p, jfk, 16_000, channels=2, tag=0xFFFE, bits=24),
        "ext32.wav": lambda p: write_riff(p, jfk, 16_000, channels=3, tag=0xFFFE, bits=32),
        "pcm32.wav": lambda p: write_riff(p, jfk, 16_000, channels=1, tag=1, bits=32),
        "float.wav": lambda p: write_riff(p, jfk, 16_000, channels=2, tag=3, bits=32),
    }
    for name, write in lossless.items():
        write(tmp_path / name)
        assert transcribe_main([str(tmp_path / name), "--url", url, "--format", "srt"]) == 0, name
        assert capsys.readouterr().out == reference, name
    # Other rates: sent as they are inside 8–48 kHz, resampled to 16 kHz outside.
    import soxr

    for name, rate, width in [
        ("8bit8k.wav", 8_000, 1),
        ("44k.wav", 44_100, 2),
        ("96k.wav", 96_000, 2),
        ("4k.wav", 4_000, 2),
    ]:
        resampled = np.asarray(soxr.resample(jfk, 16_000, rate), dtype=np.int16)
        write_wave(tmp_path / name, resampled, rate, width=width)
        assert transcribe_main([str(tmp_path / name), "--url", url, "--format", "srt", "-q"]) == 0, name
        out = capsys.readouterr().out
        starts = [line.split(" --> ")[0] for line in out.splitlines() if " --> " in line]
        assert len(starts) >= 2 and starts[0].startswith("00:00:0"), (name, out)
        assert out.rstrip().splitlines()[-1].startswith("word"), (name, out)

    (tmp_path / "notes.txt").write_text("not audio")
    assert transcribe_main([str(tmp_path / "notes.txt"), "--url", url]) == 2
    assert transcribe_main([str(tmp_path / "missing.wav"), "--url", url]) == 2
    assert "missing.wav" in capsys.readouterr().err


def test_transcribe_reports_gateway_failures(server, capsys) -> None:  # noqa: ANN001
    assert transcribe_main([str(JFK), "--url", server.ws(), "--language", "zz"]) == 1
    assert "engine_unavailable" in capsys.readouterr().err
    assert transcribe_main([str(JFK), "--url", f"ws://127.0.0.1:{free_port()}/v1/stream"]) == 1
    assert "unreachable" in capsys.readouterr().err


def test_api_key_from_flag_or_environment(monkeypatch, capsys) -> None:  # noqa: ANN001
    key = "sgw_cli_test_key_0123456789"
    settings = Settings(
        stt=("en=fake",), translators=(), synthesizers=(), speaker_encoder="", api_keys=(hash_key(key),)
    )
    with serve(settings, [fake_spec()]) as running:
        monkeypatch.delenv("HUSHGATE_CLIENT_KEY", raising=False)
        assert transcribe_main([str(JFK), "--url", running.ws()]) == 1
        assert "unauthorized" in capsys.readouterr().err
        assert transcribe_main([str(JFK), "--url", running.ws(), "--api-key", key]) == 0
        assert capsys.readouterr().out.startswith("word0")
        monkeypatch.setenv("HUSHGATE_CLIENT_KEY", key)
        assert transcribe_main([str(JFK), "--url", running.ws()]) == 0
        assert capsys.readouterr().out.startswith("word0")


def test_speak_writes_a_wav(server, tmp_path: Path, capsys) -> None:  # noqa: ANN001
    out = tmp_path / "out.wav"
    for extra, rate, frames in [
        ([], 16_000, 16_000 * 2 // 10 + 16_000 * 5 // 10),
        (["--voice", "fake-es", "--msgpack"], 22_050, 22_050 * 2 // 10 + 22_050 * 5 // 10),
        (["--language", "es"], 22_050, 22_050 * 2 // 10 + 22_050 * 5 // 10),
    ]:
        assert speak_main(["hi there", "-o", str(out), "--url", server.ws(), *extra]) == 0
        with wave.open(str(out), "rb") as w:
            assert (w.getnchannels(), w.getsampwidth(), w.getframerate(), w.getnframes()) == (1, 2, rate, frames)
        assert f"{rate} Hz" in capsys.readouterr().err
    assert speak_main(["hi there", "-o", str(out), "--url", server.ws(), "--sample-rate", "8000", "-q"]) == 0
    with wave.open(str(out), "rb") as w:
        assert w.getframerate() == 8_000 and abs(w.getnframes() - 5_600) <= 16
    assert capsys.readouterr().err == ""
    assert speak_main(["hi", "-o", str(out), "--url", server.ws(), "--voice", "nobody"]) == 1
    assert "engine_unavailable" in capsys.readouterr().err


def test_translate_prints_the_translation(server, capsys) -> None:  # noqa: ANN001
    assert translate_main(["good morning", "--to", "es", "--url", server.ws()]) == 0
    assert capsys.readouterr().out == "[es] good morning\n"
    assert translate_main(["good morning", "--to", "fr", "--from", "en", "--url", server.ws(), "--msgpack"]) == 0
    assert capsys.readouterr().out == "[fr] good morning\n"
    assert translate_main(["good morning", "--to", "de", "--url", server.ws()]) == 1
    out, err = capsys.readouterr()
    assert out == "" and "engine_unavailable" in err


# Real engines -------------------------------------------------------------------------


@pytest.mark.slow
def test_transcribe_jfk_as_srt_with_whisper(capsys) -> None:  # noqa: ANN001
    settings = Settings(stt=("en=whisper",), translators=(), synthesizers=(), speaker_encoder="")
    with serve(settings) as running:
        assert transcribe_main([str(JFK), "--url", running.ws(), "--format", "srt"]) == 0
    out = capsys.readouterr().out
    blocks = [b for b in out.split("\n\n") if b.strip()]
    assert blocks and out.endswith("\n\n")
    times = []
    for number, block in enumerate(blocks, 1):
        index, span, *text = block.split("\n")
        assert index == str(number) and text and all(text)
        start, _, end = span.partition(" --> ")
        for t in (start, end):
            assert len(t) == 12 and t[2] == t[5] == ":" and t[8] == ","
        times += [start, end]
    assert blocks[0].split("\n")[1].startswith("00:00:00,")
    assert times == sorted(times) and times[0] < times[-1]
    assert "country" in out.lower()


@pytest.mark.slow
def test_speak_then_transcribe_round_trip_with_piper_and_whisper(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    settings = Settings(stt=("en=whisper",), translators=(), synthesizers=("piper",), speaker_encoder="")
    out = tmp_path / "out.wav"
    with serve(settings) as running:
        assert speak_main(["Ask not what your country can do for you.", "-o", str(out), "--url", running.ws()]) == 0
        capsys.readouterr()
        assert transcribe_main([str(out), "--url", running.ws()]) == 0
    assert "country" in capsys.readouterr().out.lower()
