"""The SDK's bookkeeping for carrying a stream over to another replica (hushgate.client.resume)."""

from __future__ import annotations

from hushgate.client import Final, Word
from hushgate.client.resume import AudioTail, Timeline


def test_the_tail_keeps_only_audio_no_final_settled() -> None:
    tail = AudioTail(16_000)
    for _ in range(10):
        tail.sent(b"\x01\x00" * 1_600)  # 100 ms each
    tail.settle(250)
    settled_ms, unsettled = tail.restart()
    assert settled_ms == 250
    assert len(unsettled) == 750 * 32  # 750 ms of 16 kHz s16le
    assert tail.restart() == (0, b"")


def test_the_tail_is_bounded_and_drops_the_oldest_audio() -> None:
    tail = AudioTail(16_000, max_s=0.5)
    for _ in range(10):
        tail.sent(b"\x00\x00" * 1_600)
    settled_ms, unsettled = tail.restart()
    assert settled_ms == 500 and len(unsettled) == 500 * 32


def test_later_sessions_read_as_one_stream() -> None:
    timeline = Timeline()
    first = Final(utterance=2, text="a b", t0_ms=100, t1_ms=900, words=(Word("a", 100, 400, 1.0),))
    timeline.seen(first)
    assert timeline.shift(first) is first
    timeline.advance(1_000)
    later = timeline.shift(Final(utterance=0, text="c", t0_ms=50, t1_ms=300, words=(Word("c", 50, 300, 1.0),)))
    assert (later.utterance, later.t0_ms, later.t1_ms) == (3, 1_050, 1_300)
    assert later.words is not None and (later.words[0].t0_ms, later.words[0].t1_ms) == (1_050, 1_300)
