"""Text endpointing in the segmenter, on a scripted detector: what a verdict on a pause does."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from hushgate.engines.base import PunctuatedStream, Transcript
from hushgate.engines.whisper import WhisperStream
from hushgate.server.segmenter import (
    PauseSeen,
    Segment,
    Segmenter,
    TextEndpointing,
    UtteranceAudio,
    UtteranceEnd,
    Verdict,
    text_verdict,
)
from hushgate.server.settings import Settings
from tests.conftest import serve
from tests.fakes import FakeTranscriber, fake_spec
from tests.scripted_whisper import ScriptedDecoder, timed
from tests.server_helpers import jfk_fixture  # noqa: F401 - fixture
from tests.test_segmenter import FRAME, ScriptedActivity, bounds, frames
from tests.wsclient import Client

# Defaults of the server, on 20 ms frames: the probe comes at the 200 ms hangover.
OPTIONS = {"silence_ms": 500, "max_utterance_ms": 10_000, "preroll_ms": 100, "hangover_ms": 200}
TEXT = TextEndpointing(early_ms=300, hold_ms=700)


def segmenter(text: TextEndpointing | None = TEXT, probe_pauses: bool = False, **kw: int) -> Segmenter:
    return Segmenter(ScriptedActivity(), **(OPTIONS | kw), text=text, probe_pauses=probe_pauses)


def run(
    pattern: str, judge: Callable[[PauseSeen], Verdict | None], seg: Segmenter | None = None
) -> list[tuple[int, Segment]]:
    """Push ``pattern`` a frame at a time, judging each pause at once; (ms pushed so far, segment)."""
    seg = seg or segmenter()
    out: list[tuple[int, Segment]] = []
    pcm = frames(pattern)
    for i in range(0, len(pcm), FRAME):
        for segment in seg.push(pcm[i : i + FRAME]):
            out.append(((i + FRAME) // 16, segment))
            if isinstance(segment, PauseSeen) and (verdict := judge(segment)) is not None:
                seg.judge(segment.utterance, segment.pause, verdict)
    return out + [(len(pcm) // 16, s) for s in seg.flush()]


def ends(events: list[tuple[int, Segment]]) -> list[tuple[int, int, int, str]]:
    """(ms pushed when the end came out, t0_ms, t1_ms, reason) per utterance."""
    return [(at, e.t0_ms, e.t1_ms, e.reason) for at, e in events if isinstance(e, UtteranceEnd)]


def always(verdict: Verdict | None) -> Callable[[PauseSeen], Verdict | None]:
    return lambda _pause: verdict


SPEECH_THEN_SILENCE = "#" * 60 + "." * 100  # 1.2 s of speech, 2 s of silence
# JFK speaks all through this stretch ("And so my fellow Americans"), after 60 ms of quiet.
SPEECH_FROM_MS, SPEECH_TO_MS = 0, 2_000


def test_a_finished_sentence_ends_the_utterance_early() -> None:
    events = run(SPEECH_THEN_SILENCE, always("ends"))
    # The pause is probed once, at the hangover.
    assert [(at, e) for at, e in events if isinstance(e, PauseSeen)] == [(1400, PauseSeen(0, 1))]
    # Ended 300 ms into the pause instead of 500; t1 is still speech end + hangover.
    assert ends(events) == [(1500, 0, 1400, "silence")]


def test_without_a_verdict_the_pause_ends_it_as_before() -> None:
    vad = run(SPEECH_THEN_SILENCE, always(None), segmenter(text=None))
    assert ends(vad) == [(1700, 0, 1400, "silence")]
    assert ends(run(SPEECH_THEN_SILENCE, always(None))) == ends(vad)
    assert not any(isinstance(e, PauseSeen) for _, e in vad)  # only text endpointing probes


def test_text_that_goes_on_holds_the_utterance_open_across_a_longer_pause() -> None:
    def first_pause_goes_on(pause: PauseSeen) -> Verdict | None:
        return "continues" if pause.pause == 1 else None

    # A 1 s pause, then more speech: one utterance instead of two.
    pattern = "#" * 60 + "." * 50 + "#" * 20 + "." * 100
    assert ends(run(pattern, first_pause_goes_on)) == [(3100, 0, 2800, "silence")]
    assert [(t0, t1) for _, t0, t1, _ in ends(run(pattern, always(None)))] == [(0, 1400), (2100, 2800)]


def test_held_text_still_ends_after_silence_plus_hold() -> None:
    events = run(SPEECH_THEN_SILENCE, always("continues"))
    assert ends(events) == [(1200 + 500 + 700, 0, 1400, "silence")]
    audio_ms = sum(len(e.pcm) for _, e in events if isinstance(e, UtteranceAudio)) // 16
    assert audio_ms == 1400  # the held pause is not sent to the engine


def test_a_short_utterance_is_not_judged() -> None:
    # Under a second of audio (300 ms here with the pre-roll): Whisper's text of it is mostly invented.
    events = run("#" * 10 + "." * 100, always("ends"))
    assert not any(isinstance(e, PauseSeen) for _, e in events)
    assert ends(events) == [(700, 0, 400, "silence")]


def test_a_stale_verdict_is_ignored() -> None:
    seg = segmenter()
    pauses = [e for e in seg.push(frames("#" * 60 + "." * 12)) if isinstance(e, PauseSeen)]
    assert pauses == [PauseSeen(0, 1)] and seg.wants_verdict(0, 1)
    seg.push(frames("#" * 5))  # speech resumed: that pause is over
    assert not seg.wants_verdict(0, 1)
    seg.judge(0, 1, "ends")
    seg.judge(1, 2, "ends")  # no such utterance (yet)
    out = seg.push(frames("." * 24))
    assert not any(isinstance(e, UtteranceEnd) for e in out)  # 480 ms: "ends" would have ended it
    assert any(isinstance(e, UtteranceEnd) for e in seg.push(frames(".")))  # 500 ms, as without a verdict


def test_a_verdict_arriving_late_ends_the_utterance_on_the_next_frame() -> None:
    seg = segmenter()
    seg.push(frames("#" * 60 + "." * 20))  # 400 ms into the pause, past the early end
    seg.judge(0, 1, "ends")
    (end,) = [e for e in seg.push(frames(".")) if isinstance(e, UtteranceEnd)]
    assert (end.t1_ms, end.reason) == (1400, "silence")
    assert not seg.wants_verdict(0, 1)


@pytest.mark.parametrize(
    "pattern",
    [
        # As tests/test_segmenter.py: near the limit a 60 ms gap ends the utterance, verdict or not.
        "#" * 100 + "..." + "#" * 300 + "..." + "#" * 200 + "." * 100,
        # Speech longer than the limit is cut at it.
        "#" * 560 + "." * 100,
    ],
)
def test_the_max_length_cut_is_unaffected(pattern: str) -> None:
    def outline(text: TextEndpointing | None, verdict: Verdict | None) -> list[tuple]:
        seg = segmenter(text=text, hangover_ms=40)
        return [b for b in bounds([e for _, e in run(pattern, always(verdict), seg)]) if b[0] != "PauseSeen"]

    vad = outline(None, None)
    assert [b[0] for b in vad].count("UtteranceEnd") >= 2
    assert outline(TEXT, "continues") == vad
    assert outline(TEXT, "ends") == vad


@pytest.mark.parametrize(
    ("text", "verdict"),
    [
        ("And so, my fellow Americans.", "ends"),
        ("Ask not what your country can do for you?", "ends"),
        ('He said "stop!"', "ends"),
        ("我们走吧。", "ends"),
        ("And so, my fellow Americans,", "continues"),
        ("ask not what your country", "continues"),
        ("the list is: ", "continues"),
        ("and then —", "continues"),
        ("well...", None),
        ("", None),
        ("  ", None),
    ],
)
def test_text_verdicts(text: str, verdict: Verdict | None) -> None:
    assert text_verdict(text) == verdict


def test_the_probe_is_the_final_when_no_audio_follows() -> None:
    """The probe decodes as a final would, however little audio came since the last
    partial; the utterance ending with no more audio then reuses it, and a probe
    followed by more audio (speech resumed) is decoded again."""
    owner = ScriptedDecoder("And so my fellow", "And so my fellow Americans.", "Ask not", "Ask not what.")
    stream = WhisperStream(owner, language="en", words=False)  # type: ignore[arg-type]
    stream.accept(np.zeros(16_000, np.int16))
    assert stream.partial() == Transcript("And so my fellow")
    stream.accept(np.zeros(1_600, np.int16))  # 100 ms: too little for a partial
    assert stream.partial() is None
    assert stream.text_so_far() == Transcript("And so my fellow Americans.")
    assert stream.text_so_far() == Transcript("And so my fellow Americans.")  # nothing new: no decode
    assert stream.finish() == Transcript("And so my fellow Americans.")  # the probe's decode
    assert owner.calls == ["partial", "final 17600"] and isinstance(stream, PunctuatedStream)
    stream.accept(np.zeros(16_000, np.int16))
    assert stream.text_so_far() == Transcript("Ask not")
    stream.accept(np.zeros(8_000, np.int16))  # speech resumed after the probe
    assert stream.finish() == Transcript("Ask not what.")
    assert owner.calls[2:] == ["final 16000", "final 24000"]


def test_a_probe_followed_by_speech_is_settled_and_later_decodes_start_after_it() -> None:
    """Speech resuming after a probe of at least 8 s keeps that decode: the partial and the
    final that follow decode only the audio after it, with its last words as left context,
    and the final joins the two with word times on the utterance's clock."""
    said = "One two three four five six seven eight nine,"
    owner = ScriptedDecoder(
        timed(said, 0, 1_000),  # the probe, at 9 s
        "ten",  # the partial after it: the new words only
        timed("ten eleven.", 200, 800),  # the final of the audio after the probe
        left_context_s=3.0,
    )
    stream = WhisperStream(owner, language="en", words=True)  # type: ignore[arg-type]
    stream.accept(np.zeros(144_000, np.int16))
    assert stream.text_so_far().text == said
    stream.accept(np.zeros(32_000, np.int16))  # speech resumed
    assert stream.partial() == Transcript(f"{said} ten")
    final = stream.finish()
    assert final.text == f"{said} ten eleven."
    assert [(w.w, w.t0_ms) for w in final.words[-3:]] == [("nine,", 8_000), ("ten", 9_200), ("eleven.", 10_000)]
    assert owner.calls == ["final 144000", "partial", "final 32000"]
    assert owner.lefts == [None, "seven eight nine,", "seven eight nine,"]


def test_a_short_probe_is_not_settled() -> None:
    owner = ScriptedDecoder(timed("One two,", 0, 1_000), timed("One two, three.", 0, 1_000), left_context_s=3.0)
    stream = WhisperStream(owner, language="en", words=True)  # type: ignore[arg-type]
    stream.accept(np.zeros(32_000, np.int16))
    stream.text_so_far()
    stream.accept(np.zeros(16_000, np.int16))  # speech resumed, but after only 2 s of it
    assert stream.finish().text == "One two, three."
    assert owner.calls == ["final 32000", "final 48000"]


def test_a_probe_without_a_mark_at_its_end_is_not_settled() -> None:
    """Whisper wrote no punctuation at the pause (it heard the phrase go on, maybe inside a
    word): the decode is not kept, and the final decodes the whole utterance."""
    said = "One two three four five six seven eight nine de l"
    owner = ScriptedDecoder(timed(said, 0, 800), timed(f"{said}'État.", 0, 800), left_context_s=3.0)
    stream = WhisperStream(owner, language="fr", words=True)  # type: ignore[arg-type]
    stream.accept(np.zeros(144_000, np.int16))
    stream.text_so_far()
    stream.accept(np.zeros(32_000, np.int16))  # speech resumed after 9 s
    assert stream.finish().text == f"{said}'État."
    assert owner.calls == ["final 144000", "final 176000"]


@pytest.mark.parametrize("probe_pauses", [False, True])
def test_pauses_are_probed_with_the_detector_alone_and_change_nothing(probe_pauses: bool) -> None:
    """With ``vad`` endpointing the pause is still announced (the decode there can be the
    final), yet whatever its text says, the utterance ends after `silence_ms` as before."""
    for verdict in ("ends", "continues", None):
        seg = segmenter(text=None, probe_pauses=probe_pauses)
        events = run(SPEECH_THEN_SILENCE, always(verdict), seg)
        assert any(isinstance(e, PauseSeen) for _, e in events) == probe_pauses
        assert ends(events) == ends(run(SPEECH_THEN_SILENCE, always(None), segmenter(text=None)))


# Through the server ---------------------------------------------------------------


@pytest.mark.parametrize("endpointing", ["text", "vad"])
async def test_a_long_pause_inside_a_sentence_keeps_one_utterance(jfk: np.ndarray, endpointing: str) -> None:
    """The fake engine's text always goes on (it ends in a comma): with text endpointing a 1 s
    pause, twice `silence_ms`, does not end the utterance; with the VAD alone it does."""
    fake = FakeTranscriber(punctuation=",")
    settings = Settings(stt=("en=fake",), translators=(), synthesizers=(), speaker_encoder="", endpointing=endpointing)
    speech = jfk[SPEECH_FROM_MS * 16 : SPEECH_TO_MS * 16]
    with serve(settings, [fake_spec(fake)]) as server:
        client = await Client.connect(server.ws())
        await client.start(16_000)
        # (The detector takes about 100 ms to hear that speech stopped.)
        await client.stream(np.concatenate([speech, np.zeros(400 * 16, np.int16)]))
        if endpointing == "text":
            # The probe's text is shown as a partial once the verdict is in: no race with the audio below.
            await client.next_matching(
                lambda e: e["type"] == "partial" and e["text"].endswith(",") and e["t1_ms"] >= len(speech) // 16 - 500
            )
        await client.stream(np.concatenate([np.zeros(600 * 16, np.int16), speech, np.zeros(2_000 * 16, np.int16)]))
        received = await client.finish()
    finals = received.of("final")
    assert len(finals) == (1 if endpointing == "text" else 2), [(f["t0_ms"], f["t1_ms"]) for f in finals]


def audio_of(events: list[tuple[int, Segment]]) -> list[int]:
    """Samples sent per utterance, in order."""
    sent: dict[int, int] = {}
    for _at, e in events:
        if isinstance(e, UtteranceAudio):
            sent[e.utterance] = sent.get(e.utterance, 0) + len(e.pcm)
    return [sent[k] for k in sorted(sent)]


@pytest.mark.parametrize("verdict", ["ends", "continues", None])
def test_the_probe_sees_all_the_audio_the_final_will_have(verdict: Verdict | None) -> None:
    """The hangover goes out before the probe, so a pause that turns out to be the end adds no
    audio after it (the probe's decode can be the final), and utterances hold the same audio
    as with the detector alone."""
    events = run(SPEECH_THEN_SILENCE, always(verdict))
    probe = next(i for i, (_at, e) in enumerate(events) if isinstance(e, PauseSeen))
    assert not any(isinstance(e, UtteranceAudio) for _at, e in events[probe:])
    assert audio_of(events) == audio_of(run(SPEECH_THEN_SILENCE, always(None), segmenter(text=None)))
    resumed = "#" * 60 + "." * 15 + "#" * 60 + "." * 100  # a 300 ms pause inside the speech
    assert audio_of(run(resumed, always("continues"))) == [
        sum(audio_of(run(resumed, always(None), segmenter(text=None))))
    ]
