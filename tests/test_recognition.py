"""When a session asks for partials: the engine's cadence, stretched after a slow one."""

from __future__ import annotations

import numpy as np

from hushgate.server.hub import SttRoute
from hushgate.server.runtime import EngineRunner
from hushgate.server.session.calls import EngineCalls
from hushgate.server.session.recognition import PARTIAL_DUTY, Recognition, Step, Utterance
from hushgate.server.settings import Settings
from tests.fakes import FakeTranscriber


def _ms(duration_ms: int) -> np.ndarray:
    return np.zeros(16 * duration_ms, np.int16)


async def test_a_slow_partial_makes_the_next_one_wait_for_more_audio() -> None:
    transcriber = FakeTranscriber()
    runner = EngineRunner("stt", concurrency=1, max_waiting=10)
    recognition = Recognition(SttRoute("en", transcriber, runner), Settings(), EngineCalls(), lambda *_: None)
    await recognition.open("en", False)
    try:
        utt = Utterance(0, 0)
        recognition.hear(utt, _ms(150))
        assert not recognition.partial_due(utt)  # the fake engine's cadence is 200 ms
        recognition.hear(utt, _ms(100))
        assert recognition.partial_due(utt)
        steps: list[Step] = []
        recognition.ask_partial(utt, steps)
        transcriber.delay_s = 0.1  # the fake takes this long to accept audio: a slow partial
        await recognition.run(steps)
        assert utt.partial_ms >= 100
        needed_ms = PARTIAL_DUTY * utt.partial_ms
        recognition.hear(utt, _ms(needed_ms - 20))
        assert not recognition.partial_due(utt)
        recognition.hear(utt, _ms(20))
        assert recognition.partial_due(utt)
        # A probe is not a partial: it leaves the measure alone.
        probe: list[Step] = []
        recognition.ask_partial(utt, probe, probe=True)
        transcriber.delay_s = 0.0
        await recognition.run(probe)
        assert PARTIAL_DUTY * utt.partial_ms == needed_ms
    finally:
        await recognition.close()
        runner.shutdown()
