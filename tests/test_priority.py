"""Finals ahead of partials: slots kept for them and a model copy whose threads yield the CPU."""

from __future__ import annotations

import os
import sys
import threading

import numpy as np
import pytest

from hushgate.engines.base import EngineOptions
from hushgate.engines.low_priority import built_at_low_priority
from hushgate.server.settings import Settings
from tests.conftest import serve
from tests.fakes import FakeTranscriber, fake_spec

linux_only = pytest.mark.skipif(sys.platform != "linux", reason="per-thread nice values are Linux's")


def _own_nice() -> int:
    return os.getpriority(os.PRIO_PROCESS, 0)


def _task_nices() -> dict[str, int]:
    nices = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            nices[tid] = os.getpriority(os.PRIO_PROCESS, int(tid))
        except OSError:
            pass  # the thread ended meanwhile
    return nices


@linux_only
def test_threads_started_by_a_low_priority_build_inherit_its_nice_value() -> None:
    seen: list[int] = []

    def build() -> str:
        worker = threading.Thread(target=lambda: seen.append(_own_nice()))
        worker.start()
        worker.join()
        seen.append(_own_nice())
        return "built"

    before = _own_nice()
    assert built_at_low_priority(build, 5) == "built"
    assert seen == [before + 5, before + 5]
    assert _own_nice() == before  # the caller's thread is untouched


def test_a_failing_build_raises_in_the_caller() -> None:
    def build() -> None:
        raise ValueError("no model here")

    with pytest.raises(ValueError, match="no model here"):
        built_at_low_priority(build, 5)


@linux_only
def test_whisper_decodes_partials_on_a_low_priority_copy_of_the_model() -> None:
    from hushgate.engines.whisper import create

    before = _task_nices()
    engine = create(EngineOptions(extra={"workers": 2}))
    try:
        niced = [tid for tid, nice in _task_nices().items() if tid not in before and nice >= _own_nice() + 10]
        assert len(niced) >= 2, "the partial model's two decoding threads run at a lower priority"
        assert engine.urgent_workers == 2
        assert engine._partial_model is not engine._model.model
        silence = np.zeros(16_000, np.int16)  # the copy decodes: no words, but no error
        stream = engine.open_stream(language="en", words=False)
        stream.accept(silence)
        stream.partial()
        stream.close()
    finally:
        engine.close()
    shared = create(EngineOptions(extra={"workers": 1, "partial_nice": 0}))
    try:
        assert shared.urgent_workers == 0 and shared._partial_model is shared._model.model
    finally:
        shared.close()


class PrioritisedFake(FakeTranscriber):
    urgent_workers = 1


@pytest.mark.parametrize(("transcriber", "reserve"), [(PrioritisedFake(), 1), (FakeTranscriber(), 0)])
def test_a_prioritised_engine_gets_slots_kept_for_finals(transcriber: FakeTranscriber, reserve: int) -> None:
    settings = Settings(stt=("en=fake",), translators=(), synthesizers=(), speaker_encoder="")
    with serve(settings, [fake_spec(transcriber)]) as server:
        route = server.app.state.gateway.hub.stt("en")
        assert route is not None and route.runner.urgent_reserve == reserve
        assert route.runner.concurrency == settings.stt_concurrency
