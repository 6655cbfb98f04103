"""Audio from a child process, with deadlines and a close that works from any thread.

A synthesis that runs a program per request (espeak-ng) must not let that
program outlive the request: one that goes silent is killed after a deadline
(`TimedPipe`), and the caller's ``close()`` kills it even while a worker thread
is blocked reading its output (`ClosableChunks`; a plain generator cannot be
closed while it runs, so the process would be left behind).
"""

from __future__ import annotations

import os
import selectors
import subprocess
import threading
from collections.abc import Generator
from typing import IO

from hushgate.engines.base import EngineError, Pcm16

WRITE_BYTES = 64 * 1024


class Stalled(EngineError):
    """The process went ``timeout_s`` without taking input or giving output."""


class TimedPipe:
    """A raw pipe end read or written with a deadline per call, so a stalled process cannot block forever."""

    def __init__(self, stream: IO[bytes], timeout_s: float, events: int, *, program: str) -> None:
        self._fd = stream.fileno()
        self._program = program
        self._timeout_s = timeout_s
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._fd, events)
        os.set_blocking(self._fd, False)

    def _wait(self) -> None:
        if not self._selector.select(self._timeout_s):
            raise Stalled(f"{self._program} gave no audio for {self._timeout_s:g} s")

    def read(self, size: int) -> bytes:
        while True:
            self._wait()
            try:
                return os.read(self._fd, size)
            except BlockingIOError:
                continue

    def write_all(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            self._wait()
            try:
                view = view[os.write(self._fd, view[:WRITE_BYTES]) :]
            except BlockingIOError:
                continue

    def close(self) -> None:
        self._selector.close()


class ClosableChunks:
    """One request's chunks; ``close()`` may come from any thread, at any time."""

    def __init__(self, chunks: Generator[Pcm16, None, None]) -> None:
        self._chunks = chunks
        self._lock = threading.Lock()
        self._process: subprocess.Popen[bytes] | None = None
        self._reading = False
        self._closed = False

    def started(self, process: subprocess.Popen[bytes]) -> None:
        with self._lock:
            self._process = process
            if self._closed:
                process.kill()

    def __iter__(self) -> ClosableChunks:
        return self

    def __next__(self) -> Pcm16:
        with self._lock:
            closed = self._closed  # a copy: the attribute is read again below, after another thread may set it
            if closed:
                raise StopIteration
            self._reading = True
        try:
            return next(self._chunks)
        except EngineError:
            if self._closed:  # it was killed because the caller closed it: that is an end, not a failure
                raise StopIteration from None
            raise
        finally:
            with self._lock:
                self._reading = False
                finish = self._closed
            if finish:  # closed while this thread read: the generator's cleanup reaps the process
                self._chunks.close()

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            reading = self._reading
            if self._process is not None and self._process.poll() is None:
                # Unblocks a reader in another thread at once: the pipe reaches its end.
                self._process.kill()
        if not reading:
            self._chunks.close()
