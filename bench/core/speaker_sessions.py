"""The speaker bench (bench/speakers.py) through the WebSocket: sessions, enrollment, scoring a cut."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from websockets.exceptions import ConnectionClosed

from hushgate.server.speakers import MIN_DECISION_MS, MIN_ENROLL_MS

from . import wire as w
from .audio import SAMPLE_RATE_HZ, Pcm
from .speaker_eval import Test, Trial, cosine_of
from .speaker_material import BenchError, Recording, Speaker
from .wire import Event, Wire

CHUNK_SAMPLES = SAMPLE_RATE_HZ // 10  # 100 ms per binary frame
SILENCE_MS = 5_000  # start.vad.silence_ms: a cut or a recording stays one utterance
EVENT_TIMEOUT_S = 300.0  # only so that a broken server cannot hang the bench
READY_TIMEOUT_S = 180.0


class Client:
    """One session: a reader task collects every JSON event; ``wait`` blocks on a condition."""

    def __init__(self, ws: Any, wire: Wire) -> None:
        self.ws = ws
        self.wire = wire
        self.events: list[Event] = []
        self.closed = False
        self._changed = asyncio.Event()
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            async for frame in self.ws:
                event = self.wire.decode(frame)
                if event.get("type") != "tts.audio":
                    self.events.append(event)
                    self._changed.set()
        except ConnectionClosed:
            pass
        finally:
            self.closed = True
            self._changed.set()

    async def send(self, message: Event) -> None:
        await self.ws.send(self.wire.encode(message))

    async def stream(self, pcm: Pcm) -> None:
        data = pcm.astype("<i2").tobytes()
        step = CHUNK_SAMPLES * 2
        for i in range(0, len(data), step):
            await self.ws.send(self.wire.audio(data[i : i + step]))

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
        await self.send(w.plain("stop"))
        await self.wait(lambda: bool(self.of("ended")), "`ended`")
        await self.ws.close()
        await self._reader

    def errors(self) -> list[Event]:
        return self.of("error")


def start_message(*, identify: bool = False, voiceprints: Sequence[str] = ()) -> w.Message:
    return w.start(
        partials=False,
        words=False,
        vad=w.vad_options(silence_ms=SILENCE_MS),
        speakers=w.speakers_options(identify=identify, diarize=False, voiceprints=voiceprints),
    )


class Gateway:
    def __init__(self, url: str, token: str | None, concurrency: int) -> None:
        self.url = url
        self.headers = {"Authorization": f"Bearer {token}"} if token else None
        self.slots = asyncio.Semaphore(concurrency)
        self.wire = Wire("json")

    async def session(self, start: w.Message) -> Client:
        ws = await w.connect(self.url, headers=self.headers, open_timeout_s=READY_TIMEOUT_S)
        client = Client(ws, self.wire)
        await client.send(start)
        await client.wait(lambda: bool(client.of("ready")), "`ready`")
        return client


async def counted_speech_ms(gateway: Gateway, recordings: Sequence[Recording]) -> int:
    """The speech an enrollment from ``recordings`` would count, streamed exactly as `enroll` streams them."""
    async with gateway.slots:
        client = await gateway.session(start_message())
        for recording in recordings:
            await client.stream(recording.pcm)
            await client.send(w.plain("flush"))
        await client.finish()
    spans = [f["t1_ms"] - f["t0_ms"] for f in client.of("final")]
    return sum(s for s in spans if s >= MIN_DECISION_MS)


async def enroll(gateway: Gateway, speaker: Speaker, needed_ms: int) -> None:
    async with gateway.slots:
        client = await gateway.session(start_message())
        request = f"enroll-{uuid.uuid4()}"
        await client.send(w.enroll(request, speaker.name, needed_ms))
        for recording in speaker.enrolled_from:
            await client.stream(recording.pcm)
            await client.send(w.plain("flush"))

        def settled() -> bool:
            if client.of("enrolled") or any(e.get("id") == request for e in client.errors()):
                return True
            # Every utterance heard and counted, still short of the goal: no voiceprint will come.
            finals, progress = client.of("final"), client.of("enroll.progress")
            counted = [f for f in finals if f["t1_ms"] - f["t0_ms"] >= MIN_DECISION_MS]
            return (
                len(finals) == len(client.of("speech.started")) > 0
                and len(progress) > len(counted)  # the first answers the request itself
                and progress[-1]["speech_ms"] < progress[-1]["needed_ms"]
            )

        await client.wait(settled, "`enrolled`")
        refused = [e for e in client.errors() if e.get("id") == request]
        if refused:
            raise BenchError(f"enrollment of {speaker.name} refused: {refused[0]['code']}: {refused[0]['message']}")
        if not client.of("enrolled"):
            progress = client.of("enroll.progress")[-1]
            raise BenchError(
                f"enrollment of {speaker.name} stopped at {progress['speech_ms']} of {progress['needed_ms']} ms"
            )
        enrolled = client.of("enrolled")[0]
        speaker.voiceprint_id, speaker.enroll_speech_ms = enrolled["voiceprint_id"], enrolled["speech_ms"]
        await client.send(w.export_voiceprint("export", enrolled["voiceprint_id"]))
        await client.wait(
            lambda: bool(client.of("voiceprint.exported")) or any(e.get("id") == "export" for e in client.errors()),
            "`voiceprint.exported`",
        )
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


async def score(gateway: Gateway, test: Test, pcm: Pcm, enrolled: Sequence[Speaker]) -> None:
    by_id = {s.voiceprint_id: s for s in enrolled}
    async with gateway.slots:
        client = await gateway.session(start_message(identify=True, voiceprints=[s.sealed or "" for s in enrolled]))
        for s in enrolled:
            await client.send(w.verify(f"verify:{s.voiceprint_id}", s.voiceprint_id or ""))
        await client.stream(pcm)
        await client.send(w.plain("flush"))
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
        test.trials.append(
            Trial(
                by_id[v["voiceprint_id"]], v["score"], cosine_of(v["score"], v["speech_ms"]), v["decision"] == "accept"
            )
        )
