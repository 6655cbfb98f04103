"""The segmenter on a scripted detector (exact timing) and on real speech."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from hushgate.engines.base import EngineOptions
from hushgate.engines.silero import create as silero_create
from hushgate.engines.webrtcvad import WebRtcDetector
from hushgate.server.segmenter import Segmenter, UtteranceAudio, UtteranceEnd, UtteranceStart
from tests.audio_helpers import read_wav

FRAME = 320  # 20 ms at 16 kHz


class ScriptedActivity:
    """Says "speech" for frames whose first sample is non-zero."""

    frame_samples = FRAME
    sample_rate_hz = 16_000

    def is_speech(self, frame: np.ndarray) -> bool:
        return bool(frame[0])


def frames(pattern: str) -> np.ndarray:
    """'.' = 20 ms of silence, '#' = 20 ms of "speech"."""
    return np.concatenate([np.full(FRAME, 1000 if c == "#" else 0, np.int16) for c in pattern])


def run(pcm: np.ndarray, chunk: int = 1000, **kw: int) -> list:
    options = {"silence_ms": 200, "max_utterance_ms": 10_000, "preroll_ms": 100, "hangover_ms": 40} | kw
    seg = Segmenter(ScriptedActivity(), **options)
    out = []
    for i in range(0, len(pcm), chunk):
        out += seg.push(pcm[i : i + chunk])
    return out + seg.flush()


def bounds(events: list) -> list[tuple]:
    return [
        (type(e).__name__, e.utterance, getattr(e, "t0_ms", None), getattr(e, "t1_ms", getattr(e, "onset_ms", None)))
        for e in events
        if not isinstance(e, UtteranceAudio)
    ]


def test_onset_preroll_hangover_and_silence_end() -> None:
    # 200 ms silence, 400 ms speech, 400 ms silence.
    events = run(frames("." * 10 + "#" * 20 + "." * 20))
    assert bounds(events) == [
        # Onset at 200 ms; the audio starts 100 ms (the pre-roll) earlier.
        ("UtteranceStart", 0, 100, 200),
        # 400 ms of speech + 40 ms hangover, ended by 200 ms of silence.
        ("UtteranceEnd", 0, 100, 640),
    ]
    audio = sum(len(e.pcm) for e in events if isinstance(e, UtteranceAudio))
    assert audio == (640 - 100) * 16


def test_short_pause_inside_speech_does_not_end_the_utterance() -> None:
    events = run(frames("#" * 10 + "." * 5 + "#" * 10 + "." * 15))
    ends = [e for e in events if isinstance(e, UtteranceEnd)]
    assert len(ends) == 1 and ends[0].reason == "silence"


def test_a_click_does_not_open_an_utterance() -> None:
    assert run(frames("." * 10 + "#" + "." * 20)) == []


def test_max_utterance_splits_and_keeps_every_sample() -> None:
    pcm = frames("#" * 100 + "." * 15)
    events = run(pcm, max_utterance_ms=1000)
    ends = [e for e in events if isinstance(e, UtteranceEnd)]
    assert [e.reason for e in ends] == ["max_length", "max_length", "silence"]
    assert all(a.t1_ms == b.t0_ms for a, b in zip(ends, ends[1:], strict=False))  # contiguous, nothing lost
    starts = [e for e in events if isinstance(e, UtteranceStart)]
    assert [s.utterance for s in starts] == [0, 1, 2]


def test_near_its_longest_an_utterance_ends_at_a_gap_between_words() -> None:
    # Limit 10 s: from 8 s on (the last fifth) a 60 ms gap ends it; the same gap earlier does not.
    events = run(frames("#" * 100 + "..." + "#" * 300 + "..." + "#" * 200 + "." * 20), max_utterance_ms=10_000)
    ends = [e for e in events if isinstance(e, UtteranceEnd)]
    assert (ends[0].reason, ends[0].t0_ms, ends[0].t1_ms) == ("max_length", 0, 8_100)  # gap at 8.06 s + hangover
    assert len(ends) == 2 and ends[1].reason == "silence"


def test_a_shorter_gap_near_the_limit_does_not_end_it() -> None:
    events = run(frames("#" * 450 + ".." + "#" * 200 + "." * 20), max_utterance_ms=10_000)
    ends = [e for e in events if isinstance(e, UtteranceEnd)]
    assert (ends[0].reason, ends[0].t1_ms) == ("max_length", 10_000)


def test_flush_ends_the_utterance_at_once() -> None:
    seg = Segmenter(ScriptedActivity(), silence_ms=500, max_utterance_ms=10_000, preroll_ms=100, hangover_ms=40)
    out = seg.push(frames("#" * 20))
    assert isinstance(out[0], UtteranceStart) and not any(isinstance(e, UtteranceEnd) for e in out)
    (end,) = [e for e in seg.flush() if isinstance(e, UtteranceEnd)]
    assert end.reason == "flush" and end.t1_ms == 400
    assert seg.flush() == []  # nothing open any more


def test_chunking_does_not_change_the_result() -> None:
    pcm = frames("." * 7 + "#" * 31 + "." * 13 + "#" * 9 + "." * 30)
    reference = bounds(run(pcm, chunk=len(pcm)))
    for chunk in (1, 37, 320, 999):
        assert bounds(run(pcm, chunk=chunk)) == reference


@pytest.mark.parametrize("detector", ["webrtc", "silero"])
def test_real_speech_turns_are_found(audio_dir: Path, detector: str) -> None:
    pcm, rate = read_wav(audio_dir / "long" / "long_2spk_concat.wav")
    assert rate == 16_000
    vad = WebRtcDetector() if detector == "webrtc" else silero_create(EngineOptions())
    seg = Segmenter(
        vad.open(aggressiveness=2), silence_ms=500, max_utterance_ms=15_000, preroll_ms=300, hangover_ms=200
    )
    events = []
    for i in range(0, len(pcm), 1600):
        events += seg.push(pcm[i : i + 1600])
    events += seg.flush()
    utterances = [(e.t0_ms, e.t1_ms) for e in events if isinstance(e, UtteranceEnd)]
    with open(audio_dir / "long" / "long_2spk_concat.segments.tsv") as f:
        turns = [(float(r["start_s"]) * 1000, float(r["end_s"]) * 1000) for r in csv.DictReader(f, delimiter="\t")]
    # Every speaker turn starts an utterance close to its start (the files
    # were joined with 1 s of silence), and no utterance crosses a turn change.
    for start_ms, _end_ms in turns:
        assert any(abs(t0 - start_ms) < 400 for t0, _ in utterances), (start_ms, utterances)
    for t0, t1 in utterances:
        assert any(start_ms - 400 <= t0 and t1 <= end_ms + 400 for start_ms, end_ms in turns), (t0, t1)


def test_flush_keeps_the_clock_exact() -> None:
    """A flush consumes the partial frame it holds; later times must not run early."""
    seg = Segmenter(ScriptedActivity(), silence_ms=200, max_utterance_ms=10_000, preroll_ms=0, hangover_ms=0)
    seg.push(frames("#" * 10)[:-160])  # 190 ms: the last 10 ms are a partial frame
    seg.flush()
    out = seg.push(frames("." * 10 + "#" * 10))
    (start,) = [e for e in out if isinstance(e, UtteranceStart)]
    # 190 ms before the flush + 200 ms of silence: speech starts at 390 ms.
    assert start.onset_ms == 390 and start.t0_ms == 390
