"""Whether a child process still runs, for tests that kill or stop engine processes."""

from __future__ import annotations

import time

import psutil


def running(pid: int) -> bool:
    """True while ``pid`` runs; a zombie (exited, not yet reaped) counts as gone."""
    try:
        return psutil.Process(pid).status() not in (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD)
    except psutil.NoSuchProcess:
        return False


def wait_dead(pid: int, timeout_s: float = 5.0) -> None:
    # The killed program stays a zombie until the engine reaps it; either way it is gone.
    deadline = time.monotonic() + timeout_s
    while running(pid):
        if time.monotonic() > deadline:
            raise AssertionError(f"process {pid} did not die")
        time.sleep(0.01)
