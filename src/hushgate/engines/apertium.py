"""Apertium rule-based translation through long-running null-flush pipelines.

An Apertium language pair is a *mode*: a shell pipeline of a dozen small
programs (lt-proc, apertium-tagger, apertium-transfer, ...) written in
``<modes dir>/<pair>.mode``. The ``apertium`` command starts that pipeline anew
for every call, and each start reloads every transducer, so this engine keeps
one pipeline per direction running and talks to it in *null-flush* mode: every
program is given ``-z``, the text goes in followed by a NUL byte, and each
program flushes what it has when the NUL reaches it, so the translation comes
back followed by a NUL. ``apertium-wblank-mode -z`` rewrites a mode file into
that form (adding ``-z`` where it belongs and the word-bound-blank helpers that
``apertium`` itself inserts), so the pipeline is exactly what ``apertium``
would run.

The text has to be *deformatted* on its way in (characters that mean something
in Apertium's stream escaped, line breaks and tabs kept aside in "superblanks")
and reformatted on its way out. ``apertium`` does that with ``apertium-destxt``
and ``apertium-retxt``, but those two programs (Apertium 3.8) drop NUL bytes
and do not flush on them, so they cannot sit in a long-running pipeline. The
same, small, transformation is done here in Python (`deformat_txt`,
`reformat_txt`); the tests check it against the two programs.

A batch is written in one go, each text followed by its own NUL, and read back
as one NUL-terminated translation per text: the programs of the pipeline then
work on different texts at the same time. The write and the read are
interleaved through a selector, so a batch larger than the pipes' buffers
cannot deadlock. One batch at a time goes through a direction (a lock guards
each pipeline). A pipeline whose process died is restarted and the batch
retried once; one that stops answering for ``timeout_s`` is killed and
restarted, and the call fails.

Unknown words come back marked (``*word`` unknown to the analyser, ``@word``
missing from the bilingual dictionary, ``#word`` not generated) only with
``extra["mark_unknown"] = True``; otherwise the generator runs as
``apertium -u`` runs it (``lt-proc -n``), which drops the marks and keeps the
words, and so never touches a ``#`` or ``@`` that was in the source text.

Measured for English→Spanish (apertium-eng-spa 0.8.1, Apertium 3.8.3, 2-core
development machine, 20 sentences of 6-12 words, output identical to the
``apertium`` command's but for the blank a dropped pronoun leaves at the start):

* one ``apertium eng-spa`` process per sentence: about 130 ms a sentence;
* this engine, one sentence per call: about 1.5 ms a sentence (the first
  call of a direction also starts its pipeline: 90-100 ms);
* this engine, the 20 sentences in one call: 12-14 ms in all (0.6-0.7 ms a
  sentence, about 1,500 sentences per second), against 30 ms for the same
  sentences one call each. A NUL after every text keeps them apart exactly,
  so no joining separator (which the tagger or transfer could move or eat)
  is needed.
"""

from __future__ import annotations

import contextlib
import os
import re
import selectors
import shlex
import shutil
import subprocess
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from hushgate.engines.base import EngineError, EngineOptions, EngineSpec, ModelNotFound

DEFAULT_MODES_DIR: Final = Path("/usr/share/apertium/modes")
DEFAULT_TIMEOUT_S: Final = 10.0
INSTALL_HINT: Final = "apt-get install apertium apertium-eng-spa"
_READ_BYTES: Final = 1 << 16
# Pipes hold 64 KiB on Linux; writing less at a time keeps a write from
# blocking for long even on systems with smaller pipes.
_WRITE_BYTES: Final = 1 << 14
_STOP_WAIT_S: Final = 1.0

# Apertium names languages with ISO 639-3 codes; clients use ISO 639-1.
ISO639_3_TO_1: Final[dict[str, str]] = {
    "afr": "af", "ara": "ar", "arg": "an", "bel": "be", "bos": "bs", "bre": "br",
    "bul": "bg", "cat": "ca", "ces": "cs", "cym": "cy", "dan": "da", "deu": "de",
    "ell": "el", "eng": "en", "epo": "eo", "est": "et", "eus": "eu", "fin": "fi",
    "fra": "fr", "gle": "ga", "glg": "gl", "heb": "he", "hin": "hi", "hrv": "hr",
    "hun": "hu", "ind": "id", "isl": "is", "ita": "it", "kaz": "kk", "lav": "lv",
    "lit": "lt", "mkd": "mk", "mlt": "mt", "msa": "ms", "nld": "nl", "nno": "nn",
    "nob": "nb", "oci": "oc", "pol": "pl", "por": "pt", "ron": "ro", "rus": "ru",
    "slk": "sk", "slv": "sl", "sme": "se", "spa": "es", "sqi": "sq", "srp": "sr",
    "swe": "sv", "tat": "tt", "tur": "tr", "ukr": "uk", "urd": "ur",
}

# A translation mode is LANG[_VARIANT]-LANG[_VARIANT]; source builds also
# install debugging modes (eng-spa-tagger, eng-spa-biltrans, ...), which have
# a third part and are not translations.
_MODE_NAME = re.compile(r"^([a-z]{2,3}(?:_[A-Za-z0-9]+)?)-([a-z]{2,3}(?:_[A-Za-z0-9]+)?)$")

# Characters that mean something in Apertium's stream format: apertium-destxt
# escapes exactly these and apertium-retxt unescapes exactly these.
_RESERVED: Final = frozenset("[]\\^$/<>@{}")
# Runs of these are blanks; apertium-destxt treats "~" as one too.
_BLANK_RUN = re.compile(r"[ \t\n\r~]+")
_PARAGRAPH_BREAK = re.compile(r"\n\n|\r\n\r\n")
# Inserted by the deformatter so the tagger and transfer see a sentence end.
_SENTENCE_END: Final = ".[]"

# Programs that understand -z, for Apertium installs without apertium-wblank-mode.
_NULL_FLUSH_PROGRAMS: Final = frozenset({
    "lt-proc", "hfst-proc", "cg-proc", "lrx-proc", "lsx-proc", "rtx-proc",
    "apertium-tagger", "apertium-pretransfer", "apertium-posttransfer",
    "apertium-transfer", "apertium-interchunk", "apertium-postchunk",
    "apertium-anaphora",
})


def _escape(text: str) -> str:
    return "".join("\\" + ch if ch in _RESERVED else ch for ch in text)


def deformat_txt(text: str) -> str:
    """Plain text → Apertium stream, as ``apertium-destxt`` (Apertium 3.8) does it.

    Reserved characters are escaped; a blank other than one space is kept in a
    superblank ``[...]``; a sentence end ``.[]`` goes before every paragraph
    break and before the trailing blank. NUL bytes are dropped (they are the
    pipeline's flush signal, and apertium-destxt drops them too).
    """
    text = text.replace("\0", "")
    parts: list[str] = []
    position = 0
    ended = False
    for blank in _BLANK_RUN.finditer(text):
        parts.append(_escape(text[position : blank.start()]))
        run = blank.group()
        at_end = blank.end() == len(text)
        ended = False
        if _PARAGRAPH_BREAK.search(run) or at_end:
            parts.append(_SENTENCE_END)
            ended = True
        # A lone trailing space stays bare after the sentence end (destxt does
        # the same); any other blank but one space is a superblank.
        parts.append(run if run == " " else f"[{run}]")
        position = blank.end()
    if position < len(text) or not ended:
        parts.append(_escape(text[position:]))
        parts.append(_SENTENCE_END)
    return "".join(parts)


def reformat_txt(stream: str) -> str:
    """Apertium stream → plain text, as ``apertium-retxt`` does it."""
    out: list[str] = []
    i = 0
    length = len(stream)
    while i < length:
        ch = stream[i]
        if ch == "\\" and i + 1 < length and stream[i + 1] in _RESERVED:
            out.append(stream[i + 1])
            i += 2
        elif stream.startswith(_SENTENCE_END, i):
            i += len(_SENTENCE_END)
        elif ch in "[]":
            i += 1
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def _edges_like(source: str, translated: str) -> str:
    """Drop blanks at the ends of a translation that its source did not have.

    A dropped subject pronoun leaves its space behind ("She bought" →
    " Compró"); a subtitle should not start with it.
    """
    if not source[:1].isspace():
        translated = translated.lstrip()
    if not source[-1:].isspace():
        translated = translated.rstrip()
    return translated


def language_code(apertium: str) -> str:
    """An Apertium language name as a client would say it: ``eng`` → ``en``, ``eng_US`` → ``en-US``."""
    base, _, variant = apertium.partition("_")
    code = ISO639_3_TO_1.get(base, base)
    return f"{code}-{variant}" if variant else code


def _request_key(code: str) -> str:
    """A requested language, matched case-insensitively, with 639-3 codes accepted too."""
    base, _, variant = code.strip().replace("_", "-").partition("-")
    base = ISO639_3_TO_1.get(base.lower(), base.lower())
    return f"{base}-{variant.lower()}" if variant else base


def find_modes(modes_dir: Path) -> dict[tuple[str, str], Path]:
    """(source, target) → mode file for every translation mode in ``modes_dir``."""
    modes: dict[tuple[str, str], Path] = {}
    if not modes_dir.is_dir():
        return modes
    for mode_file in sorted(modes_dir.glob("*.mode")):
        match = _MODE_NAME.match(mode_file.stem)
        if match is None:
            continue
        pair = (language_code(match.group(1)), language_code(match.group(2)))
        # Old two-letter packages (en-es.mode) and new ones (eng-spa.mode) can
        # both be installed; the first in name order wins, as a stable choice.
        modes.setdefault(pair, mode_file)
    return modes


def _null_flush_pipeline(mode_file: Path) -> tuple[str, bool]:
    """The mode's shell pipeline, and whether it already has every program in null-flush mode."""
    if shutil.which("apertium-wblank-mode") is None:
        return mode_file.read_text(encoding="utf-8"), False
    done = subprocess.run(
        ["apertium-wblank-mode", "-z", str(mode_file)],
        capture_output=True, text=True, timeout=DEFAULT_TIMEOUT_S, check=False,
    )
    if done.returncode != 0:
        raise EngineError(f"apertium-wblank-mode could not read {mode_file}: {done.stderr.strip()}")
    return done.stdout, True


def pipeline_commands(mode_file: Path, *, mark_unknown: bool) -> list[list[str]]:
    """The mode's programs as argument lists, ready to be chained without a shell.

    ``$1`` is the generator's option and ``$2`` the tagger's, as in ``apertium``.
    """
    try:
        script, null_flush = _null_flush_pipeline(mode_file)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise EngineError(f"cannot read Apertium mode {mode_file}: {exc}") from exc
    lexer = shlex.shlex(script, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    lexer.commenters = ""
    try:
        tokens = list(lexer)
    except ValueError as exc:
        raise EngineError(f"cannot parse Apertium mode {mode_file}: {exc}") from exc
    commands: list[list[str]] = [[]]
    for token in tokens:
        if token == "|":
            commands.append([])
        elif token == "$1":
            commands[-1].append("-g" if mark_unknown else "-n")
        elif token == "$2":
            continue  # the tagger's option; empty unless ambiguity is shown
        elif token and (set(token) <= set("();<>|&") or token.startswith("$")):
            # Redirections, other variables, lists: no shell runs this pipeline.
            raise EngineError(f"Apertium mode {mode_file} uses shell syntax this engine does not run: {token!r}")
        else:
            commands[-1].append(token)
    if any(not command for command in commands):
        raise EngineError(f"Apertium mode {mode_file} has an empty command")
    if not null_flush:
        for command in commands:
            if Path(command[0]).name in _NULL_FLUSH_PROGRAMS and "-z" not in command:
                command.insert(1, "-z")
    return commands


class _PipelineDied(Exception):
    """A process of the pipeline exited, or its pipe broke."""


class _PipelineStalled(Exception):
    """The pipeline neither took input nor gave output for ``timeout_s``."""


class _Pipeline:
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
            _edges_like(text, reformat_txt(frame.decode("utf-8", errors="replace")))
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
                process = subprocess.Popen(
                    command, stdin=upstream, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
                )
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


class ApertiumTranslator:
    """Every Apertium mode in one directory; one running pipeline per direction used.

    Thread-safe: a lock per direction lets one batch at a time through it, and
    different directions run in parallel.
    """

    name = "apertium"

    def __init__(
        self,
        modes_dir: Path = DEFAULT_MODES_DIR,
        *,
        mark_unknown: bool = False,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        if timeout_s <= 0:
            raise EngineError(f"apertium: timeout_s must be positive, got {timeout_s!r}")
        self._modes = find_modes(modes_dir)
        if not self._modes:
            raise ModelNotFound(f"no Apertium language pair is installed in {modes_dir} (try: {INSTALL_HINT})")
        self.modes_dir = modes_dir
        self.mark_unknown = mark_unknown
        self._timeout_s = timeout_s
        self._pairs = sorted(self._modes)
        self._by_key = {(_request_key(s), _request_key(t)): (s, t) for s, t in self._pairs}
        self._pipelines: dict[tuple[str, str], _Pipeline] = {}
        self._pipelines_lock = threading.Lock()
        self._closed = False

    def pairs(self) -> list[tuple[str, str]]:
        return list(self._pairs)

    def translate(self, texts: Sequence[str], source: str, target: str) -> list[str]:
        pipeline = self._pipeline(source, target)
        results = list(texts)
        # Blank texts translate to themselves; skipping them saves a round trip.
        todo = [i for i, text in enumerate(texts) if text.strip()]
        if not todo:
            return results
        with pipeline.lock:
            if self._closed:
                raise EngineError("the Apertium translator has been closed")
            translated = pipeline.translate([texts[i] for i in todo])
        for i, text in zip(todo, translated, strict=True):
            results[i] = text
        return results

    def pipeline_pids(self, source: str, target: str) -> tuple[int, ...]:
        """Process ids of the direction's running pipeline, first program first; () if not started."""
        pipeline = self._pipeline(source, target)
        with pipeline.lock:
            return pipeline.pids()

    def close(self) -> None:
        with self._pipelines_lock:
            self._closed = True
            pipelines = list(self._pipelines.values())
            self._pipelines.clear()
        for pipeline in pipelines:
            with pipeline.lock:
                pipeline.stop()

    def _pipeline(self, source: str, target: str) -> _Pipeline:
        pair = self._by_key.get((_request_key(source), _request_key(target)))
        if pair is None:
            installed = ", ".join(f"{s}-{t}" for s, t in self._pairs)
            raise EngineError(f"Apertium cannot translate {source}-{target}; installed pairs: {installed}")
        with self._pipelines_lock:
            if self._closed:
                raise EngineError("the Apertium translator has been closed")
            pipeline = self._pipelines.get(pair)
            if pipeline is None:
                mode_file = self._modes[pair]
                commands = pipeline_commands(mode_file, mark_unknown=self.mark_unknown)
                pipeline = _Pipeline(mode_file, commands, timeout_s=self._timeout_s)
                self._pipelines[pair] = pipeline
            return pipeline


def _modes_dir(options: EngineOptions) -> Path:
    configured = options.extra.get("modes_dir")
    if configured is not None:
        if not isinstance(configured, (str, os.PathLike)):
            raise EngineError(f"apertium: 'modes_dir' must be a path, got {configured!r}")
        return Path(configured).expanduser()
    if options.model is None:
        return DEFAULT_MODES_DIR
    # A catalogue name (apertium-eng-spa) or a path: a mode file stands for
    # its whole directory, since a Debian pair package installs both directions.
    from hushgate.models.store import locate_model

    located = locate_model(options.model, engine="apertium", models_dir=options.models_dir)
    if located.is_file():
        return located.parent
    return located / "modes" if (located / "modes").is_dir() else located


def create(options: EngineOptions) -> ApertiumTranslator:
    """Every Apertium pair installed in the modes directory (Debian's unless configured)."""
    if shutil.which("lt-proc") is None:
        raise ModelNotFound(f"Apertium is not installed (try: {INSTALL_HINT})")
    mark_unknown = options.extra.get("mark_unknown", False)
    if not isinstance(mark_unknown, bool):
        raise EngineError(f"apertium: 'mark_unknown' must be true or false, got {mark_unknown!r}")
    timeout_s = options.extra.get("timeout_s", DEFAULT_TIMEOUT_S)
    if isinstance(timeout_s, bool) or not isinstance(timeout_s, (int, float)):
        raise EngineError(f"apertium: 'timeout_s' must be a number of seconds, got {timeout_s!r}")
    # options.threads is not used: every program of a pipeline is single-threaded.
    return ApertiumTranslator(_modes_dir(options), mark_unknown=mark_unknown, timeout_s=float(timeout_s))


SPEC = EngineSpec(
    name="apertium",
    capability="translate",
    factory=create,
    description="Apertium rule-based translation (Debian packages): fast, CPU-light, pairs as installed.",
)
