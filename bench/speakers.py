"""Speaker verification and identification benchmark, run through the real WebSocket.

Everything goes through ``/v1/stream`` exactly as a client would use it; the
bench never calls the encoder itself. It works in three steps:

1. **Enrollment.** For every speaker with more than ``--enroll-utterances`` (N)
   recordings, the N longest are enrolled in a session of their own: ``enroll``
   with ``consent: true`` and ``needed_ms`` set to the speech those recordings
   hold, then the recordings, each followed by ``flush``; once ``enrolled``
   arrives the voiceprint is exported (sealed). ``needed_ms`` is the total the
   server itself counts (``final.t1_ms - final.t0_ms`` of every utterance of at
   least 1 s), measured beforehand in a probe session that streams the same
   recordings the same way: the server counts speech from the detected onset
   minus the pre-roll, so a recording's file length can overstate it and an
   enrollment asking for the file length would then never complete. If the N
   recordings hold less than the 4 s an enrollment needs, the next longest are
   added while at least one recording is left for testing; a speaker for whom
   that is not enough is not enrolled and counts as unseen.
2. **Scoring.** Every recording that was not used for enrollment is a test
   utterance; speakers with too few recordings (and those named in
   ``--holdout``) are *unseen*: never enrolled, only tested. For each test
   utterance and each ``--lengths`` entry L the bench cuts the first L seconds
   from the speech onset (found with a simple energy detector; ``full`` streams
   the whole file, and an utterance with less than L seconds after its onset is
   skipped for that length). Each cut runs in a fresh session that imports every
   sealed voiceprint in ``start.speakers.voiceprints`` with ``identify`` on,
   sends one ``verify`` per voiceprint before any audio (all pending
   verifications are answered by the next utterance), streams the cut, sends
   ``flush`` and ``stop``. That yields one ``verified`` score per (utterance,
   voiceprint) pair — target trials when the voiceprint is the speaker's own,
   impostor trials otherwise — and the server's open-set identification in
   ``final.speaker`` (or the follow-up ``speaker`` event). ``vad.silence_ms``
   is 5000 so that a cut stays one utterance.
3. **Figures**, per cut length, and again per shipped threshold band of the
   speech the server counted (the band decides which threshold applied):

   * EER, computed on cosines: ``verified.score`` is the shipped logistic map of
     the cosine, ``1 / (1 + exp(-SCORE_SLOPE * (cos - threshold(speech_ms))))``,
     so the bench inverts it with the constants of ``src/hushgate/server/speakers.py`` (the
     score is rounded to 4 decimals, so cosines more than ~0.45 below the
     threshold come out as a bound). Cosines are comparable across speech
     lengths; calibrated scores are not, since the threshold depends on the band.
     The EER cosine is the threshold at which the false-accept and false-reject
     rates cross; when the two sets do not overlap it is the midpoint of the gap
     between the highest impostor and the lowest target cosine;
   * closed-set top-1 identification accuracy: the enrolled voiceprint with
     the highest cosine is the speaker's own (test utterances of enrolled
     speakers only);
   * open-set false-accept and false-reject rates at the shipped threshold: the
     share of impostor trials the server answered ``accept`` (score >= 0.5) and
     of target trials it answered ``reject``;
   * unseen FA: test utterances of never-enrolled speakers that were accepted
     as any enrolled voiceprint (what ``identify`` would name them);
   * "no decision": cuts the server gave no decision for (``undecided``, e.g.
     ``too_short`` under 1 s of counted speech).

   The tables are printed for all speakers and, when synthetic ones are present,
   for real-only and synthetic-only trials as well, plus one of synthetic cuts
   against real voiceprints (how often a TTS voice passes as an enrolled person).

Synthetic speakers (``--synth-piper N``, ``--synth-espeak N``): N voices each
read ``--synth-utterances`` different English passages, synthesised into a
temporary directory (``--synth-dir`` keeps them) at 16 kHz. Piper has one voice
installed here (``en_US-joe-medium``), so it gives at most one speaker; espeak-ng
gives one per voice in ``ESPEAK_VOICES`` (accents and variants). They are
labelled ``synthetic`` in the output.

``--what-if 2000:0.67,4000:0.70,inf:0.78`` also counts, per band, the false
accepts and rejects the same trials would give at other cosine thresholds
(written like ``THRESHOLDS`` in ``src/hushgate/server/speakers.py``), from the recovered
cosines; ``--json FILE`` keeps every trial.

Usage::

    python bench/speakers.py --spawn --tsv /work/shared/audio/transcripts.tsv --enroll-utterances 1
    python bench/speakers.py --spawn --audio /work/shared/audio --synth-piper 1 --synth-espeak 6
    python bench/speakers.py --url ws://127.0.0.1:8000/v1/stream --audio my-recordings/

``--spawn`` starts ``hushgate serve`` on a free loopback port with
``HUSHGATE_MODELS_DIR`` pointing at ``--models-dir`` (the GE2E weights are
pulled there if missing) and no translators or synthesizers, and stops it at the
end. This is a measuring tool, not a test: it asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import math
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
import wave
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import soxr
import websockets
from websockets.exceptions import ConnectionClosed

from hushgate.server.speakers import MIN_DECISION_MS, MIN_ENROLL_MS, SCORE_SLOPE, THRESHOLDS, threshold_for

SAMPLE_RATE_HZ = 16_000
CHUNK_SAMPLES = SAMPLE_RATE_HZ // 10  # 100 ms per binary frame
SILENCE_MS = 5_000  # start.vad.silence_ms: a cut or a recording stays one utterance
EVENT_TIMEOUT_S = 300.0  # only so that a broken server cannot hang the bench
READY_TIMEOUT_S = 180.0
SCORE_ROUNDING = 5e-5  # verified.score has 4 decimals
REPO_ROOT = Path(__file__).resolve().parent.parent
ENCODER_MODEL = "resemblyzer-ge2e"
PIPER_MODEL = "piper-en_US-joe-medium"

# espeak-ng voices used as synthetic speakers, in order: accents crossed with
# variants (f = female, m = male, klatt = another synthesis model). Checked
# against `espeak-ng --voices` at run time; missing ones are skipped.
ESPEAK_VOICES: tuple[str, ...] = (
    "en-us", "en-gb-scotland+m3", "en+f3", "en-us+m7", "en-gb-x-rp+f4", "en-029+m5",
    "en-us-nyc+f2", "en-gb+klatt", "en-gb-x-gbclan+f5", "en-us+m2", "en-gb-x-gbcwmd+f1", "en+m6",
)

# Passages for synthetic speakers: each utterance reads two of them, and no two
# utterances of a speaker, nor the same utterance of two speakers, share a passage.
SENTENCES: tuple[str, ...] = (
    "The morning train was late again, so the whole office started the meeting without us.",
    "She kept a small notebook in her coat pocket and wrote down every bird she saw.",
    "If you turn left at the bakery, the library is the third building on the right.",
    "Our neighbours painted their fence bright yellow, and nobody on the street has stopped talking about it.",
    "The recipe asks for two cups of flour, a pinch of salt and a little patience.",
    "After the storm passed, the children ran outside to count the fallen branches.",
    "Please remember to switch off the lights and lock the back door before you leave.",
    "The museum opens at ten on weekdays, but the garden stays open until sunset.",
    "He tuned the old guitar for an hour before he was happy with the sound.",
    "A cold wind came down from the hills and rattled every window in the village.",
    "We compared three maps of the coast and none of them agreed about the lighthouse.",
    "The bus driver waited patiently while an elderly man searched for his ticket.",
    "Fresh tomatoes from the market taste nothing like the ones sold in winter.",
    "They built a raft from empty barrels and floated it slowly down the river.",
    "The quarterly report is due on Friday, and the figures still need checking.",
    "My grandmother could tell the time of day from the colour of the sky.",
    "A thin layer of snow covered the parked cars when we woke up this morning.",
    "The new bridge will shorten the drive to the airport by almost twenty minutes.",
    "Nobody expected the quiet student in the back row to win the debate.",
    "The cat watched the goldfish for hours, pretending not to be interested.",
    "Every summer the town holds a festival with music, food and a boat race.",
    "Before planting the seeds, loosen the soil and water it well.",
    "The lecture on ancient trade routes was longer than anyone had planned.",
    "Two hikers lost the trail in the fog and waited by a large rock until it cleared.",
)

Event = dict[str, Any]


class BenchError(Exception):
    pass


# Material -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Recording:
    name: str
    speaker: str
    pcm: np.ndarray
    synthetic: str | None = None  # the TTS engine that made it

    @property
    def duration_ms(self) -> int:
        return len(self.pcm) * 1000 // SAMPLE_RATE_HZ


@dataclass(slots=True)
class Speaker:
    name: str
    recordings: list[Recording]
    synthetic: str | None = None
    enrolled_from: list[Recording] = field(default_factory=list)
    enroll_speech_ms: int = 0
    voiceprint_id: str | None = None
    sealed: str | None = None
    note: str = ""

    @property
    def kind(self) -> str:
        return f"synthetic ({self.synthetic})" if self.synthetic else "real"

    @property
    def enrolled(self) -> bool:
        return self.sealed is not None


def load_wav(path: Path) -> np.ndarray:
    """Mono int16 at 16 kHz (other rates are resampled, several channels averaged)."""
    with wave.open(str(path), "rb") as wav:
        rate, channels, width = wav.getframerate(), wav.getnchannels(), wav.getsampwidth()
        if width != 2:
            raise BenchError(f"{path}: need 16-bit PCM, got {8 * width} bit")
        pcm = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
    if channels > 1:
        pcm = pcm.reshape(-1, channels).mean(axis=1).astype(np.int16)
    if rate != SAMPLE_RATE_HZ:
        pcm = soxr.resample(pcm, rate, SAMPLE_RATE_HZ)
    return np.ascontiguousarray(pcm, dtype=np.int16)


def from_dir(root: Path) -> list[Recording]:
    """Every ``<speaker>-*.wav`` below ``root``; names without a dash are skipped."""
    recordings, skipped = [], []
    for path in sorted(root.rglob("*.wav")):
        if "-" not in path.stem:
            skipped.append(str(path.relative_to(root)))
            continue
        recordings.append(Recording(str(path.relative_to(root)), path.stem.split("-", 1)[0], load_wav(path)))
    if skipped:
        note(f"skipped (not named <speaker>-*.wav): {', '.join(skipped)}")
    return recordings


def from_tsv(tsv: Path) -> list[Recording]:
    """Rows of ``file<TAB>speaker`` (more columns ignored, a ``file`` header skipped); paths relative to the TSV."""
    recordings = []
    with tsv.open(newline="", encoding="utf-8") as handle:
        for row in csv.reader(handle, delimiter="\t"):
            if len(row) < 2 or not row[0].strip() or row[0].startswith("#") or row[0] == "file":
                continue
            path = Path(row[0])
            path = path if path.is_absolute() else tsv.parent / path
            recordings.append(Recording(row[0], row[1].strip(), load_wav(path)))
    return recordings


def group_speakers(recordings: Iterable[Recording]) -> list[Speaker]:
    speakers: dict[str, Speaker] = {}
    for recording in recordings:
        speaker = speakers.setdefault(recording.speaker, Speaker(recording.speaker, [], recording.synthetic))
        speaker.recordings.append(recording)
    return list(speakers.values())


# Synthetic speakers -----------------------------------------------------------------


def passages(speaker_index: int, count: int) -> list[str]:
    """``count`` texts of two sentences each, different for every utterance of a speaker."""
    n = len(SENTENCES)
    return [
        " ".join(SENTENCES[(speaker_index * 3 + 2 * u + k) % n] for k in range(2))
        for u in range(count)
    ]


def _to_16k(pcm: np.ndarray, rate: int) -> np.ndarray:
    pcm = pcm.astype(np.int16)
    return pcm if rate == SAMPLE_RATE_HZ else np.ascontiguousarray(soxr.resample(pcm, rate, SAMPLE_RATE_HZ))


def _write_wav(path: Path, pcm: np.ndarray) -> None:
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(SAMPLE_RATE_HZ)
        wav.writeframes(pcm.astype("<i2").tobytes())


def synth_piper(voices: int, utterances: int, out_dir: Path, models_dir: Path | None) -> list[Recording]:
    from piper import PiperVoice, SynthesisConfig

    from hushgate.models.store import locate_model

    model_path = locate_model(PIPER_MODEL, engine="piper", models_dir=models_dir)
    if voices > 1:
        note(f"--synth-piper {voices}: only one Piper voice is installed ({model_path.stem}); using 1")
    voice = PiperVoice.load(model_path)
    label = f"piper_{model_path.stem}"
    config = SynthesisConfig(normalize_audio=False)  # the gateway's Piper engine keeps the model's level too
    recordings = []
    for u, text in enumerate(passages(0, utterances)):
        chunks = [c.audio_int16_array.reshape(-1) for c in voice.synthesize(text, config)]
        pcm = _to_16k(np.concatenate(chunks), voice.config.sample_rate)
        path = out_dir / f"{label}-{u}.wav"
        _write_wav(path, pcm)
        recordings.append(Recording(path.name, label, pcm, synthetic="piper"))
    return recordings


def espeak_voices(executable: str) -> list[str]:
    """``ESPEAK_VOICES`` whose language and variant this espeak-ng has."""
    def listing(what: str) -> str:
        return subprocess.run([executable, f"--voices={what}"], capture_output=True, text=True, check=True).stdout

    languages = {line.split()[1] for line in listing("en").splitlines()[1:] if len(line.split()) > 1}
    variants = {line.split()[4].rsplit("/", 1)[-1] for line in listing("variant").splitlines()[1:]
                if len(line.split()) > 4}
    usable = []
    for name in ESPEAK_VOICES:
        language, _, variant = name.partition("+")
        if (language in languages or language == "en") and (not variant or variant in variants):
            usable.append(name)
    return usable


def synth_espeak(voices: int, utterances: int, out_dir: Path) -> list[Recording]:
    executable = shutil.which("espeak-ng")
    if executable is None:
        raise BenchError("--synth-espeak needs espeak-ng on PATH")
    names = espeak_voices(executable)
    if voices > len(names):
        note(f"--synth-espeak {voices}: {len(names)} voices available; using {len(names)}")
    recordings = []
    for index, name in enumerate(names[:voices]):
        label = "espeak_" + re.sub(r"[^A-Za-z0-9+]", "_", name)
        for u, text in enumerate(passages(index + 1, utterances)):
            path = out_dir / f"{label}-{u}.wav"
            subprocess.run([executable, "-v", name, "-w", str(path), text], check=True, capture_output=True)
            pcm = load_wav(path)
            _write_wav(path, pcm)
            recordings.append(Recording(path.name, label, pcm, synthetic="espeak-ng"))
    return recordings


# Cutting ------------------------------------------------------------------------------


def speech_onset(pcm: np.ndarray) -> int:
    """First sample of the first 100 ms of continuous energy within 35 dB of the loudest 20 ms frame."""
    frame = SAMPLE_RATE_HZ // 50
    n = len(pcm) // frame
    if n == 0:
        return 0
    frames = pcm[: n * frame].astype(np.float64).reshape(n, frame)
    level = 10 * np.log10(np.mean(frames**2, axis=1) + 1.0)
    voiced = level >= max(float(level.max()) - 35.0, 20 * math.log10(32768) - 50.0)
    run = 0
    for i, v in enumerate(voiced):
        run = run + 1 if v else 0
        if run == 5:
            return (i - 4) * frame
    return 0


def cut(pcm: np.ndarray, length_s: float | None) -> np.ndarray | None:
    """The first ``length_s`` seconds from the speech onset; None when there is less than that."""
    if length_s is None:
        return pcm
    start = speech_onset(pcm)
    end = start + round(length_s * SAMPLE_RATE_HZ)
    return pcm[start:end] if end <= len(pcm) else None


# Client ---------------------------------------------------------------------------------


class Client:
    """One session: a reader task collects every JSON event; ``wait`` blocks on a condition."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.events: list[Event] = []
        self.closed = False
        self._changed = asyncio.Event()
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            async for frame in self.ws:
                if isinstance(frame, str):
                    self.events.append(json.loads(frame))
                    self._changed.set()
        except ConnectionClosed:
            pass
        finally:
            self.closed = True
            self._changed.set()

    async def send(self, message: Event) -> None:
        await self.ws.send(json.dumps(message))

    async def stream(self, pcm: np.ndarray) -> None:
        data = pcm.astype("<i2").tobytes()
        step = CHUNK_SAMPLES * 2
        for i in range(0, len(data), step):
            await self.ws.send(data[i : i + step])

    def of(self, kind: str) -> list[Event]:
        return [e for e in self.events if e.get("type") == kind]

    async def wait(self, done: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + EVENT_TIMEOUT_S
        while not done():
            fatal = [e for e in self.of("error") if e.get("fatal")]
            if fatal:
                raise BenchError(f"waiting for {what}: server error {fatal[0].get('code')}: {fatal[0].get('message')}")
            if self.closed:
                raise BenchError(f"connection closed while waiting for {what}")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise BenchError(f"no {what} within {EVENT_TIMEOUT_S:.0f} s")
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), remaining)
            except TimeoutError:
                pass

    async def finish(self) -> None:
        """``stop``, then read until ``ended``."""
        await self.send({"type": "stop"})
        await self.wait(lambda: bool(self.of("ended")), "`ended`")
        await self.ws.close()
        await self._reader

    def errors(self) -> list[Event]:
        return self.of("error")


def start_message(*, identify: bool = False, voiceprints: Sequence[str] = ()) -> Event:
    return {
        "type": "start",
        "audio": {"encoding": "pcm_s16le", "sample_rate": SAMPLE_RATE_HZ, "channels": 1},
        "partials": False,
        "words": False,
        "vad": {"silence_ms": SILENCE_MS},
        "speakers": {"identify": identify, "diarize": False, "voiceprints": list(voiceprints)},
    }


class Gateway:
    def __init__(self, url: str, token: str | None, concurrency: int) -> None:
        self.url = url
        self.headers = {"Authorization": f"Bearer {token}"} if token else None
        self.slots = asyncio.Semaphore(concurrency)

    async def session(self, start: Event) -> Client:
        ws = await websockets.connect(self.url, max_size=None, additional_headers=self.headers,
                                      open_timeout=READY_TIMEOUT_S)
        client = Client(ws)
        await client.send(start)
        await client.wait(lambda: bool(client.of("ready")), "`ready`")
        return client


async def counted_speech_ms(gateway: Gateway, recordings: Sequence[Recording]) -> int:
    """The speech an enrollment from ``recordings`` would count, streamed exactly as `enroll` streams them."""
    async with gateway.slots:
        client = await gateway.session(start_message())
        for recording in recordings:
            await client.stream(recording.pcm)
            await client.send({"type": "flush"})
        await client.finish()
    spans = [f["t1_ms"] - f["t0_ms"] for f in client.of("final")]
    return sum(s for s in spans if s >= MIN_DECISION_MS)


async def enroll(gateway: Gateway, speaker: Speaker, needed_ms: int) -> None:
    async with gateway.slots:
        client = await gateway.session(start_message())
        request = f"enroll-{uuid.uuid4()}"
        await client.send({"type": "enroll", "id": request, "consent": True, "label": speaker.name,
                           "needed_ms": needed_ms})
        for recording in speaker.enrolled_from:
            await client.stream(recording.pcm)
            await client.send({"type": "flush"})

        def settled() -> bool:
            if client.of("enrolled") or any(e.get("id") == request for e in client.errors()):
                return True
            # Every utterance heard and counted, still short of the goal: no voiceprint will come.
            finals, progress = client.of("final"), client.of("enroll.progress")
            counted = [f for f in finals if f["t1_ms"] - f["t0_ms"] >= MIN_DECISION_MS]
            return (len(finals) == len(client.of("speech.started")) > 0
                    and len(progress) > len(counted)  # the first answers the request itself
                    and progress[-1]["speech_ms"] < progress[-1]["needed_ms"])

        await client.wait(settled, "`enrolled`")
        refused = [e for e in client.errors() if e.get("id") == request]
        if refused:
            raise BenchError(f"enrollment of {speaker.name} refused: {refused[0]['code']}: {refused[0]['message']}")
        if not client.of("enrolled"):
            progress = client.of("enroll.progress")[-1]
            raise BenchError(f"enrollment of {speaker.name} stopped at {progress['speech_ms']} of "
                             f"{progress['needed_ms']} ms")
        enrolled = client.of("enrolled")[0]
        speaker.voiceprint_id, speaker.enroll_speech_ms = enrolled["voiceprint_id"], enrolled["speech_ms"]
        await client.send({"type": "voiceprint.export", "id": "export", "voiceprint_id": speaker.voiceprint_id})
        await client.wait(lambda: bool(client.of("voiceprint.exported")) or any(
            e.get("id") == "export" for e in client.errors()), "`voiceprint.exported`")
        exported = client.of("voiceprint.exported")
        if not exported:
            raise BenchError(f"export of {speaker.name}'s voiceprint failed: {client.errors()[-1]}")
        speaker.sealed = exported[0]["voiceprint"]
        await client.finish()


async def prepare(gateway: Gateway, speaker: Speaker, n: int, holdout: set[str]) -> None:
    """Choose the enrollment recordings, measure them, enroll; or leave the speaker unseen."""
    if speaker.name in holdout:
        speaker.note = "held out (--holdout)"
        return
    if len(speaker.recordings) <= n:
        speaker.note = f"{len(speaker.recordings)} recording(s), {n} needed for enrollment + 1 to test"
        return
    ranked = sorted(speaker.recordings, key=lambda r: (-r.duration_ms, r.name))
    chosen = ranked[:n]
    speech_ms = await counted_speech_ms(gateway, chosen)
    while speech_ms < MIN_ENROLL_MS and len(chosen) < len(ranked) - 1:
        chosen = ranked[: len(chosen) + 1]
        speech_ms = await counted_speech_ms(gateway, chosen)
    if speech_ms < MIN_ENROLL_MS:
        speaker.note = f"{speech_ms} ms of counted speech is under the {MIN_ENROLL_MS} ms an enrollment needs"
        return
    speaker.enrolled_from = chosen
    if len(chosen) > n:
        speaker.note = f"{n} recording(s) held {speech_ms} ms < {MIN_ENROLL_MS}: enrolled from {len(chosen)}"
    await enroll(gateway, speaker, speech_ms)


# Scoring ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Trial:
    voiceprint: Speaker
    score: float
    cosine: float
    accepted: bool


@dataclass(slots=True)
class Test:
    recording: Recording
    speaker: Speaker
    length: str
    speech_ms: int = 0
    trials: list[Trial] = field(default_factory=list)
    identified: str | None = None  # the enrolled speaker the server named, if any
    undecided: str | None = None

    @property
    def unseen(self) -> bool:
        return not self.speaker.enrolled


def cosine_of(score: float, speech_ms: int) -> float:
    """Invert the shipped calibration: score = 1 / (1 + exp(-SLOPE * (cos - threshold)))."""
    s = min(max(score, SCORE_ROUNDING), 1.0 - SCORE_ROUNDING)
    return threshold_for(speech_ms) + math.log(s / (1.0 - s)) / SCORE_SLOPE


async def score(gateway: Gateway, test: Test, pcm: np.ndarray, enrolled: Sequence[Speaker]) -> None:
    by_id = {s.voiceprint_id: s for s in enrolled}
    async with gateway.slots:
        client = await gateway.session(start_message(identify=True, voiceprints=[s.sealed or "" for s in enrolled]))
        for s in enrolled:
            await client.send({"type": "verify", "id": f"verify:{s.voiceprint_id}", "voiceprint_id": s.voiceprint_id})
        await client.stream(pcm)
        await client.send({"type": "flush"})
        await client.finish()
    if client.errors():
        e = client.errors()[0]
        raise BenchError(f"{test.recording.name} ({test.length}): server error {e['code']}: {e['message']}")
    finals = client.of("final")
    if not finals:
        test.undecided = "no_final"
        return
    first = finals[0]
    test.speech_ms = first["t1_ms"] - first["t0_ms"]
    speaker = first.get("speaker")
    undecided = first.get("undecided")
    follow_up = [e for e in client.of("speaker") if e.get("utterance") == first["utterance"]]
    if speaker is None and undecided is None and follow_up:
        speaker, undecided = follow_up[0].get("speaker"), follow_up[0].get("undecided")
    if speaker is not None and speaker.get("voiceprint_id") in by_id:
        test.identified = by_id[speaker["voiceprint_id"]].name
    verified = client.of("verified")
    if not verified:
        test.undecided = undecided or "no_verified"
        return
    test.speech_ms = verified[0]["speech_ms"]
    for v in verified:
        test.trials.append(Trial(by_id[v["voiceprint_id"]], v["score"],
                                 cosine_of(v["score"], v["speech_ms"]), v["decision"] == "accept"))


# Figures --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Eer:
    rate: float
    cosine: float
    gap: tuple[float, float] | None  # (highest impostor, lowest target) when they do not overlap


def equal_error(targets: Sequence[float], impostors: Sequence[float]) -> Eer | None:
    """EER over thresholds between observed cosines (accept when cosine >= threshold)."""
    if not targets or not impostors:
        return None
    t, i = np.sort(np.asarray(targets)), np.sort(np.asarray(impostors))
    if i[-1] < t[0]:
        return Eer(0.0, float((i[-1] + t[0]) / 2), (float(i[-1]), float(t[0])))
    values = np.unique(np.concatenate([t, i]))
    candidates = np.concatenate([[values[0] - 1e-3], (values[:-1] + values[1:]) / 2, [values[-1] + 1e-3]])
    frr = np.searchsorted(t, candidates, side="left") / len(t)
    far = 1.0 - np.searchsorted(i, candidates, side="left") / len(i)
    diff = far - frr  # falls from +1 towards -1 as the threshold rises
    k = int(np.argmax(diff <= 0))  # the first threshold at which FAR no longer exceeds FRR (never the lowest)
    if diff[k] == 0:
        ties = np.flatnonzero(diff == 0)
        j = int(ties[len(ties) // 2])
        return Eer(float((far[j] + frr[j]) / 2), float(candidates[j]), None)
    # interpolate the crossing between candidates k-1 (FAR > FRR) and k (FAR <= FRR)
    w = diff[k - 1] / (diff[k - 1] - diff[k])
    rate = float((1 - w) * (far[k - 1] + frr[k - 1]) / 2 + w * (far[k] + frr[k]) / 2)
    return Eer(rate, float((1 - w) * candidates[k - 1] + w * candidates[k]), None)


@dataclass(frozen=True, slots=True)
class Group:
    """Which cuts and which voiceprints a table is about."""

    title: str
    cuts: Callable[[Speaker], bool]
    voiceprints: Callable[[Speaker], bool]


def everyone(_: Speaker) -> bool:
    return True


def is_real(speaker: Speaker) -> bool:
    return speaker.synthetic is None


def is_synthetic(speaker: Speaker) -> bool:
    return speaker.synthetic is not None


@dataclass(slots=True)
class Row:
    key: str
    tests: int = 0
    unseen_tests: int = 0
    undecided: int = 0
    skipped: int = 0
    speech_ms: list[int] = field(default_factory=list)
    targets: list[float] = field(default_factory=list)
    impostors: list[float] = field(default_factory=list)
    false_rejects: int = 0
    false_accepts: int = 0
    top1: list[bool] = field(default_factory=list)
    unseen_accepted: list[bool] = field(default_factory=list)
    thresholds: set[float] = field(default_factory=set)

    @property
    def eer(self) -> Eer | None:
        return equal_error(self.targets, self.impostors)


Bands = tuple[tuple[int, float], ...]  # (upper bound of the band in ms, cosine threshold), as THRESHOLDS


def band_of(speech_ms: int, bands: Bands = THRESHOLDS) -> str:
    """The threshold band a speech length falls in, e.g. ``2–4 s``."""
    lower = 0
    for upper, _ in bands[:-1]:
        if speech_ms < upper:
            return f"< {upper / 1000:g} s" if lower == 0 else f"{lower / 1000:g}–{upper / 1000:g} s"
        lower = upper
    return f"≥ {lower / 1000:g} s"


def band_labels(bands: Bands) -> tuple[str, ...]:
    return tuple(band_of(lower, bands) for lower in (0, *(upper for upper, _ in bands[:-1])))


def threshold_in(bands: Bands, speech_ms: int) -> float:
    return next((cosine for upper, cosine in bands if speech_ms < upper), bands[-1][1])


BANDS = band_labels(THRESHOLDS)


def figures(tests: Sequence[Test], keys: Sequence[str], key_of: Callable[[Test], str], group: Group,
            skipped: Sequence[tuple[Speaker, str]] = ()) -> list[Row]:
    """One row per key (a cut length, or a threshold band), over the cuts and voiceprints of ``group``."""
    rows = {key: Row(key) for key in keys}
    for speaker, key in skipped:
        if group.cuts(speaker) and key in rows:
            rows[key].skipped += 1
    for test in tests:
        row = rows.get(key_of(test))
        if row is None or not group.cuts(test.speaker):
            continue
        row.tests += 1
        row.unseen_tests += test.unseen
        if test.undecided is not None:
            row.undecided += 1
            continue
        row.speech_ms.append(test.speech_ms)
        row.thresholds.add(threshold_for(test.speech_ms))
        trials = [t for t in test.trials if group.voiceprints(t.voiceprint)]
        for trial in trials:
            if trial.voiceprint is test.speaker:
                row.targets.append(trial.cosine)
                row.false_rejects += not trial.accepted
            else:
                row.impostors.append(trial.cosine)
                row.false_accepts += trial.accepted
        if not trials:
            continue
        if test.unseen:
            row.unseen_accepted.append(any(t.accepted for t in trials))
        elif group.voiceprints(test.speaker):
            best = max(trials, key=lambda t: t.cosine)
            row.top1.append(best.voiceprint is test.speaker)
    return list(rows.values())


def _pct(rate: float) -> str:
    return f"{100 * rate:.1f} %"


def _ratio(hits: int, total: int) -> str:
    return "–" if total == 0 else f"{hits}/{total} ({100 * hits / total:.0f} %)"


def _cos(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def _thresholds(row: Row) -> str:
    return " / ".join(f"{t:.2f}" for t in sorted(row.thresholds)) or "–"


def _gap(row: Row) -> str:
    eer = row.eer
    if eer is None:
        return "–"
    return f"{eer.gap[0]:.3f} – {eer.gap[1]:.3f}" if eer.gap else "overlap"


def main_table(rows: Sequence[Row]) -> str:
    header = ("| length | test cuts (unseen) | no decision | mean speech ms | shipped cos threshold | target trials "
              "| impostor trials | EER | EER cosine | top-1 id (closed set) | FA @ 0.5 | FR @ 0.5 | unseen FA |")
    lines = [header, "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        eer = r.eer
        mean_ms = f"{sum(r.speech_ms) / len(r.speech_ms):.0f}" if r.speech_ms else "–"
        skipped = f" +{r.skipped} too short" if r.skipped else ""
        lines.append(
            f"| {r.key} | {r.tests} ({r.unseen_tests}){skipped} | {r.undecided} | {mean_ms} | {_thresholds(r)} "
            f"| {len(r.targets)} | {len(r.impostors)} | {_pct(eer.rate) if eer else '–'} "
            f"| {_cos(eer.cosine if eer else None)} | {_ratio(sum(r.top1), len(r.top1))} "
            f"| {_ratio(r.false_accepts, len(r.impostors))} | {_ratio(r.false_rejects, len(r.targets))} "
            f"| {_ratio(sum(r.unseen_accepted), len(r.unseen_accepted))} |"
        )
    return "\n".join(lines)


def cosine_table(rows: Sequence[Row], what: str = "length") -> str:
    header = (f"| {what} | shipped cos threshold | target trials | impostor trials | target cos: min / mean "
              "| impostor cos: mean / max | EER | EER cosine | separation gap | FA @ 0.5 | FR @ 0.5 |")
    lines = [header, "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        eer = r.eer
        target = f"{min(r.targets):.3f} / {np.mean(r.targets):.3f}" if r.targets else "–"
        impostor = f"{np.mean(r.impostors):.3f} / {max(r.impostors):.3f}" if r.impostors else "–"
        lines.append(
            f"| {r.key} | {_thresholds(r)} | {len(r.targets)} | {len(r.impostors)} | {target} | {impostor} "
            f"| {_pct(eer.rate) if eer else '–'} | {_cos(eer.cosine if eer else None)} | {_gap(r)} "
            f"| {_ratio(r.false_accepts, len(r.impostors))} | {_ratio(r.false_rejects, len(r.targets))} |"
        )
    return "\n".join(lines)


def what_if_table(tests: Sequence[Test], group: Group, bands: Bands) -> str:
    """False accepts and rejects of the same trials at the shipped thresholds and at ``bands``."""
    header = ("| speech band | what-if cos threshold | target trials | impostor trials | FA: shipped → what-if "
              "| FR: shipped → what-if |")
    lines = [header, "|---|---|---|---|---|---|"]
    # per band: targets, impostors, FA shipped, FA what-if, FR shipped, FR what-if
    counts = {label: [0] * 6 for label in band_labels(bands)}
    for test in tests:
        if test.undecided is not None or not group.cuts(test.speaker):
            continue
        c, threshold = counts[band_of(test.speech_ms, bands)], threshold_in(bands, test.speech_ms)
        for trial in (t for t in test.trials if group.voiceprints(t.voiceprint)):
            if trial.voiceprint is test.speaker:
                c[0], c[4], c[5] = c[0] + 1, c[4] + (not trial.accepted), c[5] + (trial.cosine < threshold)
            else:
                c[1], c[2], c[3] = c[1] + 1, c[2] + trial.accepted, c[3] + (trial.cosine >= threshold)
    for (label, c), (_, threshold) in zip(counts.items(), bands, strict=True):
        lines.append(_what_if_row(label, f"{threshold:.2f}", c))
    lines.append(_what_if_row("all", "", [sum(column) for column in zip(*counts.values(), strict=True)]))
    return "\n".join(lines)


def _what_if_row(label: str, threshold: str, c: Sequence[int]) -> str:
    return (f"| {label} | {threshold} | {c[0]} | {c[1]} | {_ratio(c[2], c[1])} → {_ratio(c[3], c[1])} "
            f"| {_ratio(c[4], c[0])} → {_ratio(c[5], c[0])} |")


def speakers_table(speakers: Sequence[Speaker], tests: Sequence[Test]) -> str:
    lines = ["| speaker | kind | role | enrolled from | counted enrollment speech ms | test recordings | note |",
             "|---|---|---|---|---|---|---|"]
    for s in speakers:
        recordings = {t.recording.name for t in tests if t.speaker is s}
        lines.append(
            f"| {s.name} | {s.kind} | {'enrolled' if s.enrolled else 'unseen'} "
            f"| {', '.join(Path(r.name).name for r in s.enrolled_from) or '–'} "
            f"| {s.enroll_speech_ms or '–'} | {len(recordings)} | {s.note} |"
        )
    return "\n".join(lines)


# Server ---------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class SpawnedServer:
    """``hushgate serve`` on a free loopback port, owned by this bench."""

    def __init__(self, models_dir: Path, extra_args: list[str], log_path: Path) -> None:
        self.port = free_port()
        self.log_path = log_path
        exe = Path(sys.executable).parent / "hushgate"
        command = [str(exe)] if exe.exists() else [shutil.which("hushgate") or "hushgate"]
        self.command = [*command, "serve", "--host", "127.0.0.1", "--port", str(self.port), *extra_args]
        self.env = {
            **os.environ,
            "HUSHGATE_MODELS_DIR": str(models_dir),
            "HUSHGATE_TRANSLATORS": "",
            "HUSHGATE_SYNTHESIZERS": "",
        }
        self._log: TextIO | None = None
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/v1/stream"

    def start(self) -> None:
        self._log = open(self.log_path, "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(self.command, stdout=self._log, stderr=subprocess.STDOUT, cwd=REPO_ROOT,
                                     env=self.env)
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BenchError(f"server exited with {self.proc.returncode}; log: {self.log_path}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/readyz", timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.25)
        self.stop()
        raise BenchError(f"server not ready within {READY_TIMEOUT_S:.0f} s; log: {self.log_path}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._log is not None:
            self._log.close()
            self._log = None


def ensure_encoder(models_dir: Path) -> None:
    from hushgate.models.store import pull_model

    path = pull_model(ENCODER_MODEL, models_dir=models_dir, progress=False)
    note(f"speaker encoder weights: {path}")


# Driver ---------------------------------------------------------------------------------


def note(message: str) -> None:
    print(f"# {message}", file=sys.stderr, flush=True)


def parse_lengths(text: str) -> list[str]:
    lengths = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        if part != "full":
            value = float(part)
            if value <= 0:
                raise ValueError(part)
            part = f"{value:g}"
        lengths.append(part)
    if not lengths:
        raise ValueError(text)
    return lengths


def parse_bands(text: str) -> Bands:
    bands = []
    for part in text.split(","):
        upper, _, cosine = part.strip().partition(":")
        bands.append((10**9 if upper.strip() == "inf" else int(upper), float(cosine)))
    uppers = [u for u, _ in bands]
    if not bands or uppers != sorted(set(uppers)) or uppers[-1] != 10**9:
        raise ValueError(text)
    return tuple(bands)


def length_seconds(length: str) -> float | None:
    return None if length == "full" else float(length)


async def run(args: argparse.Namespace, url: str,
              recordings: list[Recording]) -> tuple[list[Speaker], list[Test], list[tuple[Speaker, str]]]:
    gateway = Gateway(url, args.token, args.concurrency)
    speakers = group_speakers(recordings)
    note(f"{len(recordings)} recordings of {len(speakers)} speakers; enrolling ...")
    await asyncio.gather(*(prepare(gateway, s, args.enroll_utterances, set(args.holdout)) for s in speakers))
    enrolled = [s for s in speakers if s.enrolled]
    if not enrolled:
        raise BenchError("no speaker could be enrolled")
    note(f"enrolled {len(enrolled)}: {', '.join(s.name for s in enrolled)}; scoring ...")
    tests: list[Test] = []
    jobs = []
    skipped: list[tuple[Speaker, str]] = []  # (speaker, length) of recordings too short for a length
    for s in speakers:
        used = {r.name for r in s.enrolled_from}
        for recording in s.recordings:
            if recording.name in used:
                continue
            for length in args.lengths:
                pcm = cut(recording.pcm, length_seconds(length))
                if pcm is None:
                    skipped.append((s, length))
                    continue
                test = Test(recording, s, length)
                tests.append(test)
                jobs.append(score(gateway, test, pcm, enrolled))
    await asyncio.gather(*jobs)
    return speakers, tests, skipped


def report(args: argparse.Namespace, url: str, speakers: list[Speaker], tests: list[Test],
           skipped: list[tuple[Speaker, str]]) -> None:
    groups = [Group("all speakers", everyone, everyone)]
    if any(s.synthetic for s in speakers):
        groups += [Group("real speakers only", is_real, is_real),
                   Group("synthetic speakers only", is_synthetic, is_synthetic)]
    source = f"--tsv {args.tsv}" if args.tsv else f"--audio {args.audio}"
    print(f"\nspeaker bench: {url} {source} enroll_utterances={args.enroll_utterances} "
          f"lengths={','.join(args.lengths)}\n")
    print(speakers_table(speakers, tests))
    for group in groups:
        print(f"\n### {group.title}: by cut length\n")
        rows = figures(tests, args.lengths, lambda t: t.length, group, skipped)
        print(main_table(rows))
        print()
        print(cosine_table(rows))
        print(f"\n### {group.title}: by the shipped threshold band of the counted speech\n")
        print(cosine_table(figures(tests, BANDS, lambda t: band_of(t.speech_ms), group), "speech band"))
    cross = Group("synthetic cuts against real voiceprints", is_synthetic, is_real)
    if any(s.synthetic for s in speakers) and any(not s.synthetic and s.enrolled for s in speakers):
        groups.append(cross)
        print(f"\n### {cross.title} (all impostor trials)\n")
        print(cosine_table(figures(tests, args.lengths, lambda t: t.length, cross)))
    if args.what_if:
        bands = ", ".join(f"< {u} ms: {c:.2f}" if u < 10**9 else f"above: {c:.2f}" for u, c in args.what_if)
        for group in groups:
            print(f"\n### {group.title}: what if the thresholds were {bands}\n")
            print(what_if_table(tests, group, args.what_if))
    print("\nTrials: one per (test cut, enrolled voiceprint). EER, EER cosine and the cosine columns come from "
          "cosines recovered from `verified.score`; FA/FR are the server's own accept/reject (score >= 0.5); top-1 "
          "is closed-set identification of enrolled speakers' cuts; unseen FA counts never-enrolled speakers' cuts "
          "accepted as someone; 'too short': recordings with less speech after their onset than the length; "
          "separation gap: highest impostor – lowest target cosine when they do not overlap.")
    mismatched = [t for t in tests if t.undecided is None and t.trials
                  and (t.identified is not None) != any(tr.accepted for tr in t.trials)]
    if mismatched:
        note(f"{len(mismatched)} cut(s) where `identify` and `verify` disagreed about any match")


def dump(path: Path, speakers: list[Speaker], tests: list[Test]) -> None:
    payload = {
        "speakers": [{"name": s.name, "kind": s.kind, "enrolled": s.enrolled,
                      "enrolled_from": [r.name for r in s.enrolled_from], "enroll_speech_ms": s.enroll_speech_ms,
                      "note": s.note} for s in speakers],
        "tests": [{"recording": t.recording.name, "speaker": t.speaker.name, "length": t.length,
                   "speech_ms": t.speech_ms, "undecided": t.undecided, "identified": t.identified,
                   "trials": [{"voiceprint": tr.voiceprint.name, "score": tr.score,
                               "cosine": round(tr.cosine, 4), "accepted": tr.accepted} for tr in t.trials]}
                  for t in tests],
    }
    path.write_text(json.dumps(payload, indent=1))


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    from hushgate.models.store import default_models_dir

    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    target = parser.add_mutually_exclusive_group()
    target.add_argument("--url", default="ws://127.0.0.1:8000/v1/stream", help="running server's stream URL")
    target.add_argument("--spawn", action="store_true", help="start `hushgate serve` on a free port")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--audio", type=Path, help="folder of <speaker>-*.wav files (searched recursively)")
    source.add_argument("--tsv", type=Path, help="TSV of file<TAB>speaker rows, paths relative to the TSV")
    parser.add_argument("--enroll-utterances", type=int, default=1, help="recordings per enrollment (N)")
    parser.add_argument("--lengths", default="1,2,4,full", help="test cut lengths in seconds, or `full`")
    parser.add_argument("--holdout", default="", help="comma-separated speakers never to enroll (tested as unseen)")
    parser.add_argument("--synth-piper", type=int, default=0, metavar="N", help="synthetic speakers from Piper")
    parser.add_argument("--synth-espeak", type=int, default=0, metavar="N", help="synthetic speakers from espeak-ng")
    parser.add_argument("--synth-utterances", type=int, default=4, help="utterances per synthetic speaker")
    parser.add_argument("--synth-dir", type=Path, help="keep the synthetic WAVs here (default: a temp dir)")
    parser.add_argument("--models-dir", type=Path, default=default_models_dir(),
                        help="with --spawn: models directory holding the GE2E weights (pulled if missing)")
    parser.add_argument("--token", help="API key or token for a server that wants one (with --url)")
    parser.add_argument("--concurrency", type=int, default=4, help="sessions at once")
    parser.add_argument("--serve-args", default="", help="extra `hushgate serve` flags with --spawn")
    parser.add_argument("--server-log", type=Path, help="with --spawn: server output (default: a temp file)")
    parser.add_argument("--json", type=Path, help="write every trial here")
    parser.add_argument("--what-if", metavar="BANDS",
                        help="also count FA/FR at other cosine thresholds, given like THRESHOLDS as "
                             "UPPER_MS:COSINE,...,inf:COSINE, e.g. 2000:0.67,4000:0.70,inf:0.78")
    args = parser.parse_args(argv)
    if args.audio is None and args.tsv is None:
        args.audio = (REPO_ROOT / ".." / "shared" / "audio").resolve()
    try:
        args.lengths = parse_lengths(args.lengths)
    except ValueError:
        parser.error("--lengths takes positive seconds or `full`, comma-separated, e.g. 1,2,4,full")
    args.holdout = [h.strip() for h in args.holdout.split(",") if h.strip()]
    if args.what_if:
        try:
            args.what_if = parse_bands(args.what_if)
        except ValueError:
            parser.error("--what-if takes UPPER_MS:COSINE pairs with rising bounds, the last `inf`, "
                         "e.g. 2000:0.67,4000:0.70,inf:0.78")
    if args.enroll_utterances < 1 or args.concurrency < 1:
        parser.error("--enroll-utterances and --concurrency must be at least 1")
    if (args.synth_piper or args.synth_espeak) and args.synth_utterances <= args.enroll_utterances:
        parser.error("--synth-utterances must exceed --enroll-utterances (some must be left to test)")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    recordings = from_tsv(args.tsv) if args.tsv else from_dir(args.audio)
    server: SpawnedServer | None = None
    with tempfile.TemporaryDirectory(prefix="speaker-bench-") as tmp:
        synth_dir = args.synth_dir or Path(tmp)
        synth_dir.mkdir(parents=True, exist_ok=True)
        if args.synth_piper:
            recordings += synth_piper(args.synth_piper, args.synth_utterances, synth_dir, args.models_dir)
        if args.synth_espeak:
            recordings += synth_espeak(args.synth_espeak, args.synth_utterances, synth_dir)
        url = args.url
        try:
            if args.spawn:
                ensure_encoder(args.models_dir)
                log_path = args.server_log or Path(tmp) / "server.log"
                server = SpawnedServer(args.models_dir, shlex.split(args.serve_args), log_path)
                note(f"spawning: {shlex.join(server.command)} (models {args.models_dir}, log {log_path})")
                server.start()
                url = server.url
            speakers, tests, skipped = asyncio.run(run(args, url, recordings))
        except BenchError as exc:
            print(f"speaker bench failed: {exc}", file=sys.stderr)
            if server is not None:
                log = server.log_path.read_text(errors="replace")[-3000:] if server.log_path.exists() else ""
                print(log, file=sys.stderr)
            return 1
        finally:
            if server is not None:
                server.stop()
    report(args, url, speakers, tests, skipped)
    if args.json:
        dump(args.json, speakers, tests)
    return 0


if __name__ == "__main__":
    sys.exit(main())
