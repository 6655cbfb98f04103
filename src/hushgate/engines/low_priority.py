"""Building an engine whose own threads yield the CPU to the rest of the process.

Whisper's partials are re-decodes that can always come a little later; a final
is what a person waits for. CTranslate2 decodes in worker threads it starts
when a model is built, and on Linux a thread starts with its creator's nice
value. So a copy of the model built from a thread that raised its own nice
value decodes at that lower priority: while a final decodes on the ordinary
copy, the scheduler gives it the CPU ahead of the partials, which is what a
slot reserved for finals cannot do on its own (a partial already running
would still share the core). Nowhere else in the process is the priority
changed: the building thread ends with the build.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def built_at_low_priority(build: Callable[[], T], nice: int) -> T:
    """``build()`` run in a fresh thread whose nice value is raised by ``nice`` (threads it starts inherit it)."""
    result: list[T] = []
    failure: list[BaseException] = []

    def run() -> None:
        try:
            # "Who" 0 is the calling thread on Linux; elsewhere it may be the whole process,
            # so only Linux gets the lower priority.
            if nice > 0 and sys.platform == "linux":
                os.setpriority(os.PRIO_PROCESS, 0, os.getpriority(os.PRIO_PROCESS, 0) + nice)
            result.append(build())
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            failure.append(exc)

    thread = threading.Thread(target=run, name="low-priority-build")
    thread.start()
    thread.join()
    if failure:
        raise failure[0]
    return result[0]
