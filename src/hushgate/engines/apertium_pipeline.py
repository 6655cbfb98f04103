"""One running Apertium mode: a chain of processes fed and read through NUL-delimited frames.

A batch is written in one go, each text followed by its own NUL, and read back
as one NUL-terminated translation per text: the programs of the pipeline then
work on different texts at the same time. The write and the read are
interleaved through a selector, so a batch larger than the pipes' buffers
cannot deadlock. A pipeline whose process died is restarted and the batch
retried once; one that stops answering for ``timeout_s`` is killed and
restarted, and the call fails.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import subprocess
import threading
import time
from pathlib import Path
from typing import Final

from hushgate.engines.apertium_format import deformat_txt, edges_like, reformat_txt
from hushgate.engines.base import EngineError

_READ_BYTES: Final = 1 << 16
# Pipes hold 64 KiB on Linux; writing less at a time keeps a write from
# blocking for long even on systems with smaller pipes.
_WRITE_BYTES: Final = 1 << 14
_STOP_WAIT_S: Final = 1.0


class _PipelineDied(Exception):
    """A process of the pipeline exited, or its pipe broke."""


class _PipelineStalled(Exception):
    """The pipeline neither took input nor gave output for ``timeout_s``."""


class Pipeline:
    """One running mode: a chain of processes fed and read through NUL-delimited frames."""

    def __init__(self, mode_file: Path, commands: list[list[str]], *, timeout_s: float) -> None:
        self.mode_file = mode_file
        self.lock = threading.Lock()
        self._commands = commands
        self._timeout_s = timeout_s
        self._processes: list[subprocess.Popen[bytes]] = []

    # Every method below is called with ``self.lock`` held.

    def pids(self) -> tuple[int, ...]:
        return tuple(p.pid for p in self._processes)

    def translate(self, texts: list[str]) -> list[str]:
        try:
            payload = b"".join(deformat_txt(text).encode("utf-8") + b"\0" for text in texts)
        except UnicodeEncodeError as exc:
            # Checked before anything is written, so the shared pipeline stays in step.
            raise EngineError(f"a text is not valid Unicode (lone surrogate: {exc.reason})") from None
        try:
            frames = self._attempt(payload, len(texts))
        except _PipelineDied:
            # Died before or during this call (killed, crashed, broken pipe):
            # a fresh pipeline gets one more try.
            self.stop()
            try:
                frames = self._attempt(payload, len(texts))
            except _PipelineDied as exc:
                self.stop()
                # Its programs' stderr is not kept (it may quote the text), so say how to see it.
                raise EngineError(
                    f"the Apertium pipeline {self.mode_file.stem} died twice ({exc}); to see why, run "
                    f"`echo test | apertium -d {self.mode_file.parent.parent} {self.mode_file.stem}`"
                ) from exc
        return [
            edges_like(text, reformat_txt(frame.decode("utf-8", errors="replace")))
            for text, frame in zip(texts, frames, strict=True)
        ]

    def _attempt(self, payload: bytes, count: int) -> list[bytes]:
        if not self._alive():
            self.stop()
            self._start()
        try:
            return self._exchange(payload, count)
        except _PipelineDied:
            raise
        except _PipelineStalled as exc:
            self.stop()
            # If it cannot start now, the next call tries again.
            with contextlib.suppress(EngineError):
                self._start()
            raise EngineError(
                f"the Apertium pipeline {self.mode_file.stem} gave no answer in {self._timeout_s:g} s"
            ) from exc
        except BaseException:
            # Half a batch may still be in the pipes; it must not answer the next call.
            self.stop()
            raise

    def stop(self) -> None:
        processes, self._processes = self._processes, []
        for process in processes:
            for stream in (process.stdin, process.stdout):
                if stream is not None:
                    with contextlib.suppress(OSError):
                        stream.close()
        for process in processes:
            if process.poll() is None:
                process.terminate()
        deadline = time.monotonic() + _STOP_WAIT_S
        for process in processes:
            try:
                process.wait(timeout=max(deadline - time.monotonic(), 0.0))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def _alive(self) -> bool:
        return bool(self._processes) and all(p.poll() is None for p in self._processes)

    def _start(self) -> None:
        processes: list[subprocess.Popen[bytes]] = []
        upstream: int | None = subprocess.PIPE
        try:
            for command in self._commands:
                process = subprocess.Popen(command, stdin=upstream, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
                if processes and processes[-1].stdout is not None:
                    # The child holds its own copy; ours would keep the pipe open
                    # after the child died and hide the breakage.
                    processes[-1].stdout.close()
                processes.append(process)
                upstream = process.stdout.fileno() if process.stdout is not None else None
        except OSError as exc:
            self._processes = processes
            self.stop()
            raise EngineError(f"cannot start the Apertium pipeline {self.mode_file.stem}: {exc}") from exc
        self._processes = processes
        first, last = processes[0].stdin, processes[-1].stdout
        if first is None or last is None:  # pragma: no cover - both were asked for
            raise EngineError("the Apertium pipeline has no pipes")
        os.set_blocking(first.fileno(), False)
        os.set_blocking(last.fileno(), False)

    def _exchange(self, payload: bytes, count: int) -> list[bytes]:
        first, last = self._processes[0].stdin, self._processes[-1].stdout
        if first is None or last is None:  # pragma: no cover - _start checked
            raise _PipelineDied("no pipes")
        in_fd, out_fd = first.fileno(), last.fileno()
        self._check_idle(out_fd)
        frames: list[bytes] = []
        pending = bytearray()
        unsent = memoryview(payload)
        with selectors.DefaultSelector() as selector:
            selector.register(in_fd, selectors.EVENT_WRITE)
            selector.register(out_fd, selectors.EVENT_READ)
            deadline = time.monotonic() + self._timeout_s
            while len(frames) < count:
                left_s = deadline - time.monotonic()
                if left_s <= 0:
                    raise _PipelineStalled()
                for key, _events in selector.select(left_s):
                    if key.fd == in_fd:
                        try:
                            unsent = unsent[os.write(in_fd, unsent[:_WRITE_BYTES]) :]
                        except BlockingIOError:
                            continue
                        except (BrokenPipeError, ConnectionResetError) as exc:
                            raise _PipelineDied("broken pipe") from exc
                        if not unsent:
                            selector.unregister(in_fd)
                    else:
                        try:
                            data = os.read(out_fd, _READ_BYTES)
                        except BlockingIOError:
                            continue
                        if not data:
                            raise _PipelineDied("end of output")
                        pending += data
                        *done, rest = pending.split(b"\0")
                        frames.extend(bytes(frame) for frame in done)
                        pending = bytearray(rest)
                    # Progress either way: a long batch is not a stall.
                    deadline = time.monotonic() + self._timeout_s
        if pending or len(frames) != count:
            # More answers than questions: the stream is out of step; start afresh.
            raise _PipelineDied("unexpected output after the last translation")
        if not self._alive():
            # Programs flush a NUL when their input closes, so a pipeline dying
            # mid-call can pass an empty frame off as a translation.
            raise _PipelineDied("a process exited during the call")
        return frames

    @staticmethod
    def _check_idle(out_fd: int) -> None:
        # An idle pipeline has nothing to say; output now is left over from a
        # dying process (its closing flush) and would answer the wrong text.
        try:
            data = os.read(out_fd, _READ_BYTES)
        except BlockingIOError:
            return
        raise _PipelineDied("output before any input" if data else "end of output")
