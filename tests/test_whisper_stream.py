"""Whisper tiny.en through the real server, on real recorded speech."""

from __future__ import annotations

import asyncio
import csv
import re
import statistics
import threading
import time
from contextlib import closing
from pathlib import Path

import jiwer
import numpy as np
import pytest

from hushgate.server.settings import Settings
from tests.audio_helpers import assert_word_times, pcm_duration_ms, read_wav, resample
from tests.conftest import serve
from tests.test_server import check_utterance_events
from tests.wsclient import Client

pytestmark = pytest.mark.slow


def normalise(text: str) -> str:
    text = text.lower().replace("-", " ")
    text = re.sub(r"[^a-z0-9' ]+", " ", text)
    return " ".join(text.split())


@pytest.fixture(scope="module")
def server():  # noqa: ANN201
    with serve(
        Settings(stt=("en=whisper",), translators=(), synthesizers=(), speaker_encoder="", max_sessions=8)
    ) as running:
        yield running


@pytest.fixture(scope="module")
def corpus(audio_dir: Path) -> list[tuple[str, np.ndarray, str]]:
    with open(audio_dir / "transcripts.tsv") as f:
        rows = [r for r in csv.DictReader(f, delimiter="\t") if r["transcript"]]
    # vosk_test.wav's reference is only approximate (see the audio README).
    return [
        (r["file"], read_wav(audio_dir / r["file"])[0], r["transcript"])
        for r in rows
        if r["file"] != "misc/vosk_test.wav"
    ]


async def transcribe(server, pcm: np.ndarray, *, rate_hz: int, fmt: str, realtime: bool):  # noqa: ANN001, ANN201
    client = await Client.connect(server.ws(), fmt)
    ready = await client.start(rate_hz)
    assert ready["type"] == "ready"
    client.read_in_background()
    audio = resample(pcm, 16_000, rate_hz) if rate_hz != 16_000 else pcm
    tail = np.zeros(rate_hz, np.int16)  # a second of silence, as after a spoken sentence
    await client.stream(np.concatenate([audio, tail]), rate_hz=rate_hz, realtime=realtime)
    received = await client.finish()
    assert received.close_code == 1000, received.events[-3:]
    check_utterance_events(received)
    return received


async def test_streamed_finals_are_as_accurate_as_offline_decoding(server, corpus) -> None:  # noqa: ANN001
    """WER of the finals within 1 point of the same model decoding each whole file."""
    transcriber = server.app.state.gateway.hub.stt("en").transcriber
    refs, streamed, offline = [], [], []
    for i, (_name, pcm, reference) in enumerate(corpus):
        # Alternate encodings and input rates so both codecs and the resampler carry real speech.
        fmt = ("json", "msgpack")[i % 2]
        rate_hz = (16_000, 48_000)[(i // 2) % 2]
        received = await transcribe(server, pcm, rate_hz=rate_hz, fmt=fmt, realtime=False)
        text = " ".join(f["text"] for f in received.of("final"))
        whole = await asyncio.to_thread(transcriber.decode_full, pcm.astype(np.float32) / 32768, "en", "", False)
        refs.append(normalise(reference))
        streamed.append(normalise(text))
        offline.append(normalise(whole.text))
    wer_streamed = jiwer.wer(refs, streamed)
    wer_offline = jiwer.wer(refs, offline)
    print(f"\nWER streamed {wer_streamed:.3f} offline {wer_offline:.3f} over {len(refs)} files")
    assert wer_streamed <= wer_offline + 0.01
    assert wer_offline < 0.15  # sanity: the model really recognises this speech


@pytest.mark.parametrize("fmt,rate_hz", [("json", 48_000), ("msgpack", 16_000)])
async def test_realtime_stream_gets_partials_before_each_final(server, corpus, fmt: str, rate_hz: int) -> None:  # noqa: ANN001
    _, pcm, reference = next(c for c in corpus if c[0] == "misc/jfk.wav")
    received = await transcribe(server, pcm, rate_hz=rate_hz, fmt=fmt, realtime=True)
    finals = received.of("final")
    assert finals
    for final in finals:
        if final["t1_ms"] - final["t0_ms"] < 1_500:
            continue  # too short for a partial at a 1 s interval
        index = received.events.index(final)
        earlier = [
            e for e in received.events[:index] if e["type"] == "partial" and e["utterance"] == final["utterance"]
        ]
        assert earlier, f"no partial before final {final['utterance']}"
        for partial in earlier:
            assert partial["t0_ms"] == final["t0_ms"] and partial["t1_ms"] <= final["t1_ms"]
    text = normalise(" ".join(f["text"] for f in finals))
    assert jiwer.wer(normalise(reference), text) < 0.1, text
    assert all(len(f["words"]) > 0 for f in finals)


async def test_the_event_loop_stays_responsive_while_sessions_decode(server, corpus, monkeypatch) -> None:  # noqa: ANN001
    """No decode runs on the server's event loop while four sessions decode at full speed.

    Checked where it is decided (the thread of every decode), not by a latency bound
    that a busy machine would break; the ping round trips are printed, and only a
    decode-sized stall (hundreds of ms at the median) fails the test.
    """
    transcriber = server.app.state.gateway.hub.stt("en").transcriber
    threads: set[str] = set()
    for name in [n for n in dir(transcriber) if n.startswith("decode")]:
        original = getattr(transcriber, name)

        def recorded(*args, _original=original, **kwargs):  # noqa: ANN002, ANN003, ANN202
            threads.add(threading.current_thread().name)
            return _original(*args, **kwargs)

        monkeypatch.setattr(transcriber, name, recorded)
    # Three recordings per loader, so that the decoding outlasts the probes.
    clips = [pcm for _, pcm, _ in corpus]
    loaders = [
        transcribe(
            server,
            np.concatenate([clips[(i + k) % len(clips)] for k in range(3)]),
            rate_hz=16_000,
            fmt="json",
            realtime=False,
        )
        for i in range(4)
    ]
    prober = await Client.connect(server.ws())
    await prober.start()
    work = asyncio.gather(*loaders)
    rtts_ms: list[float] = []
    await asyncio.sleep(0.5)  # let the decoders get going
    while not work.done() and len(rtts_ms) < 400:
        sent = time.perf_counter()
        await prober.send({"type": "ping"})
        event = await prober.next_event()
        assert event["type"] == "pong"
        rtts_ms.append((time.perf_counter() - sent) * 1000)
        await asyncio.sleep(0.02)
    await work
    await prober.finish()
    rtts_ms.sort()
    p99 = rtts_ms[int(len(rtts_ms) * 0.99) - 1]
    print(f"\nping rtt over {len(rtts_ms)} probes: p50 {statistics.median(rtts_ms):.1f} ms, p99 {p99:.1f} ms")
    assert threads and "uvicorn" not in threads, threads  # conftest runs the server's loop in "uvicorn"
    assert len(rtts_ms) >= 30
    assert statistics.median(rtts_ms) < 250


@pytest.mark.parametrize("window", ["short", "full"])
def test_both_final_windows_give_the_words_with_their_times(server, corpus, window: str) -> None:  # noqa: ANN001
    transcriber = server.app.state.gateway.hub.stt("en").transcriber
    pcm, reference = next((pcm, reference) for name, pcm, reference in corpus if name == "misc/jfk.wav")
    decode = transcriber.decode_short if window == "short" else transcriber.decode_full
    result = decode(pcm.astype(np.float32) / 32768, "en", "", True)
    assert jiwer.wer(normalise(reference), normalise(result.text)) < 0.1, result.text
    assert normalise(" ".join(w.w for w in result.words)) == normalise(result.text)
    assert_word_times(result, pcm_duration_ms(pcm))
    country = [w for w in result.words if normalise(w.w) == "country"]
    assert len(country) == 2 and 5_600 < country[0].t0_ms < 6_400 and 9_800 < country[1].t0_ms < 10_600, country


def test_the_short_window_invents_nothing_over_silence_and_noise(server) -> None:  # noqa: ANN001
    """Whisper writes "Thank you." over silence; text inside the padding is dropped."""
    transcriber = server.app.state.gateway.hub.stt("en").transcriber
    quiet = np.random.default_rng(7).normal(0, 0.001, 3 * 16_000).astype(np.float32)
    assert transcriber.decode_short(quiet, "en", "", True).text == ""
    assert transcriber.decode_short(np.zeros(16_000, np.float32), "en", "", False).text == ""


def _jfk_halves(corpus) -> tuple[np.ndarray, np.ndarray, str]:  # noqa: ANN001
    """JFK's sentence cut in the pause after "Americans,": the two halves and the first half's words."""
    pcm = next(pcm for name, pcm, _ in corpus if name == "misc/jfk.wav").astype(np.float32) / 32768
    cut = int(3.4 * 16_000)  # inside the pause between "Americans," (ends ≈3.1 s) and "ask" (≈3.8 s)
    return pcm[:cut], pcm[cut:], "And so my fellow Americans,"


def test_a_final_with_left_context_gives_only_the_new_words(server, corpus) -> None:  # noqa: ANN001
    from hushgate.engines.whisper_context import LeftContext

    transcriber = server.app.state.gateway.hub.stt("en").transcriber
    first, second, said = _jfk_halves(corpus)
    result = transcriber.decode_short(second, "en", "", True, left=LeftContext(first, said))
    text = normalise(result.text)
    assert text.startswith("ask not what your country") and "americans" not in text, result.text
    assert normalise(" ".join(w.w for w in result.words)) == text
    # Word times are relative to this utterance's audio, not to the context before it.
    assert_word_times(result, len(second) * 1000 // 16_000)
    assert result.words[0].t0_ms < 800, result.words[:2]


def _pcm16(audio: np.ndarray) -> np.ndarray:
    return (audio * 32768).astype(np.int16)


def _finished(stream, audio: np.ndarray):  # noqa: ANN001, ANN202
    stream.accept(_pcm16(audio))
    return stream.finish()


def test_each_final_of_a_stream_decodes_with_the_end_of_the_one_before(server, corpus) -> None:  # noqa: ANN001
    transcriber = server.app.state.gateway.hub.stt("en").transcriber
    first, second, _said = _jfk_halves(corpus)
    with closing(transcriber.open_stream(language="en", words=False)) as stream:
        before, after = [_finished(stream, half) for half in (first, second)]
    assert normalise(before.text).endswith("fellow americans"), before.text
    assert normalise(after.text).startswith("ask not what your country"), after.text
    assert "americans" not in normalise(after.text)
    assert before.words == () and after.words == ()  # not asked for, though the context needed them


def test_a_final_that_loops_is_decoded_again_by_sampling(server, corpus, monkeypatch) -> None:  # noqa: ANN001
    from hushgate.engines import whisper_decode

    transcriber = server.app.state.gateway.hub.stt("en").transcriber
    pcm, reference = next((pcm, ref) for name, pcm, ref in corpus if name == "misc/jfk.wav")
    checked: list[str] = []

    def first_one_loops(text: str) -> bool:  # the greedy text is taken for a loop, nothing after it
        checked.append(text)
        return len(checked) == 1

    monkeypatch.setattr(whisper_decode, "looks_looped", first_one_loops)
    result = transcriber.decode_short(pcm.astype(np.float32) / 32768, "en", "", True)
    assert len(checked) >= 3  # greedy, a sampled candidate, the text kept
    assert jiwer.wer(normalise(reference), normalise(result.text)) < 0.2, result.text
    assert normalise(" ".join(w.w for w in result.words)) == normalise(result.text)


def test_a_probe_followed_by_speech_is_settled_on_the_real_model(server, corpus, monkeypatch) -> None:  # noqa: ANN001
    """Text endpointing's decode at a pause, then more speech: the final decodes only the
    audio after the pause (with the words before it as left context) and reads as one sentence."""
    from hushgate.engines import whisper

    monkeypatch.setattr(whisper, "SETTLE_MIN_S", 3.0)  # JFK's pause after "Americans," comes at 3.4 s
    transcriber = server.app.state.gateway.hub.stt("en").transcriber
    first, second, _said = _jfk_halves(corpus)
    reference = next(ref for name, _, ref in corpus if name == "misc/jfk.wav")
    given: list[int] = []
    decode_final = transcriber.decode_final

    def recorded(audio: np.ndarray, *args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        given.append(len(audio))
        return decode_final(audio, *args, **kwargs)

    monkeypatch.setattr(transcriber, "decode_final", recorded)
    with closing(transcriber.open_stream(language="en", words=True)) as stream:
        stream.accept(_pcm16(first))
        probe = stream.text_so_far()
        stream.accept(_pcm16(second))
        partial = stream.partial()
        final = stream.finish()
    assert normalise(probe.text) == "and so my fellow americans", probe.text
    assert given == [len(first), len(second)]
    assert partial is not None and normalise(partial.text).startswith("and so my fellow americans ask not"), partial
    assert jiwer.wer(normalise(reference), normalise(final.text)) < 0.1, final.text
    assert normalise(" ".join(w.w for w in final.words)) == normalise(final.text)
    assert_word_times(final, (len(first) + len(second)) * 1000 // 16_000)
    ask = next(w for w in final.words if normalise(w.w) == "ask")
    assert 3_400 <= ask.t0_ms < 4_400, ask


def test_a_long_utterance_is_settled_inside_its_speech_on_the_real_model(server, corpus, monkeypatch) -> None:  # noqa: ANN001
    """JFK's 11 s in one utterance, a partial after every second: partials decode it as a
    final would on the low-priority copy, and the second such try settles it where both
    wrote the same words; the final then decodes only the audio after that cut, yet reads
    as the sentence."""
    from hushgate.engines import whisper_inside

    transcriber = server.app.state.gateway.hub.stt("en").transcriber
    pcm, reference = next((pcm, ref) for name, pcm, ref in corpus if name == "misc/jfk.wav")
    calls: list[tuple[str, int]] = []
    decode_short, decode_final = transcriber.decode_short, transcriber.decode_final

    def short(audio: np.ndarray, *args, urgent: bool = True, **kwargs):  # noqa: ANN002, ANN003, ANN202
        calls.append(("short" if urgent else "settling", len(audio)))
        return decode_short(audio, *args, urgent=urgent, **kwargs)

    def final(audio: np.ndarray, *args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        calls.append(("final", len(audio)))
        return decode_final(audio, *args, **kwargs)

    monkeypatch.setattr(transcriber, "decode_short", short)
    monkeypatch.setattr(transcriber, "decode_final", final)
    # Which gaps count as marks is the scripted tests' business (tests/test_settle_inside.py):
    # here any gap may be cut, and the pause after "Americans" (3.4 s) is the widest.
    monkeypatch.setattr(whisper_inside, "ends_at_mark", lambda text: True)
    monkeypatch.setattr(whisper_inside, "PIECE_S", 3.0)
    assert transcriber.settle_inside_s == 6.0
    with closing(transcriber.open_stream(language="en", words=False)) as stream:
        for start in range(0, len(pcm), 16_000):
            stream.accept(pcm[start : start + 16_000])
            stream.partial()
        result = stream.finish()
    assert ("settling", 6 * 16_000) in calls, calls
    final_audio = next(n for kind, n in calls if kind == "final")
    assert final_audio <= len(pcm) - 3 * 16_000, calls  # the cut leaves at least 3 s before it
    assert jiwer.wer(normalise(reference), normalise(result.text)) < 0.1, result.text
