"""One stream of :meth:`hushgate.client.Client.stream` per session: the audio source read across
sessions, the pump that sends it while yielding events, and the ``Resumed`` marker between sessions."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Any, ClassVar

from hushgate.client.resume import RESUMABLE_CLOSE_CODES, AudioTail
from hushgate.client.session import GatewayError, PcmChunk, Session, pcm_bytes
from hushgate.wire import Ended, Event, Final


@dataclass(frozen=True, slots=True)
class Resumed:
    """SDK event: the stream went on in a new session after its server went away.

    ``offset_ms`` is where the new session's audio starts in the stream;
    ``resent_ms`` how much audio no final had covered and was sent again.
    """

    type: ClassVar[str] = "resumed"
    offset_ms: int
    resent_ms: int


async def _aiter_chunks(pcm: Iterable[PcmChunk] | AsyncIterable[PcmChunk]) -> AsyncGenerator[bytes, None]:
    if isinstance(pcm, AsyncIterable):
        async for chunk in pcm:
            yield pcm_bytes(chunk)
    else:
        for chunk in pcm:
            yield pcm_bytes(chunk)


class Chunks:
    """The caller's audio source, read across sessions.

    A sender cancelled at a resume may be waiting for the next chunk; cancelling
    that wait inside the caller's generator would end the generator, so the wait
    runs as its own future that the next session's sender picks up.
    """

    def __init__(self, pcm: Iterable[PcmChunk] | AsyncIterable[PcmChunk]) -> None:
        self._chunks = _aiter_chunks(pcm)
        self._pending: asyncio.Future[bytes | None] | None = None

    async def next(self) -> bytes | None:
        """The next chunk; None at the end of the source."""
        if self._pending is None:
            self._pending = asyncio.ensure_future(anext(self._chunks, None))
        try:
            chunk = await asyncio.shield(self._pending)
        except asyncio.CancelledError:
            raise
        except BaseException:
            self._pending = None
            raise
        self._pending = None
        return chunk

    async def aclose(self) -> None:
        if self._pending is not None:
            self._pending.cancel()
            await asyncio.gather(self._pending, return_exceptions=True)
        await self._chunks.aclose()


class Pump:
    """One session of :meth:`Client.stream`: send the replay and the source, yield the events.

    Afterwards ``settled_ms`` is None when the stream is over, or the point of this
    session up to which finals settled the audio when it should go on elsewhere;
    ``replay`` is then the audio to send again.
    """

    def __init__(self, session: Session, source: Chunks, tail: AudioTail, replay: bytes, *, resume: bool) -> None:
        self._s = session
        self._source = source
        self._tail = tail
        self._replay = replay
        self._resume = resume
        self._source_done = False
        self.settled_ms: int | None = None
        self.utterances = 0
        self.replay = b""

    async def _send(self) -> None:
        if self._replay:
            self._tail.sent(self._replay)
            await self._s.send_audio(self._replay)
        while (chunk := await self._source.next()) is not None:
            # Kept before it is sent: a chunk lost with the connection is sent again.
            self._tail.sent(chunk)
            await self._s.send_audio(chunk)
        self._source_done = True
        await self._s.stop()

    async def events(self) -> AsyncIterator[Event]:
        sender = asyncio.create_task(self._send(), name="hushgate-sender")
        receiving: asyncio.Task[Event | None] = asyncio.ensure_future(self._s.receive())
        try:
            while True:
                watch: set[asyncio.Future[Any]] = {receiving}
                if not sender.done():
                    watch.add(sender)
                await asyncio.wait(watch, return_when=asyncio.FIRST_COMPLETED)
                if sender.done() and not sender.cancelled():
                    failure = sender.exception()
                    # A closed connection is reported by the receiving side, with its reason.
                    if failure is not None and not isinstance(failure, GatewayError):
                        raise failure
                if not receiving.done():
                    continue
                try:
                    event = receiving.result()
                except GatewayError as exc:
                    if self._resume and exc.close_code in RESUMABLE_CLOSE_CODES:
                        self._go_on_elsewhere(None)
                        return
                    raise
                if event is None:
                    return
                if isinstance(event, Final):
                    self._tail.settle(event.t1_ms)
                if (
                    isinstance(event, Ended)
                    and event.reason == "shutdown"
                    and self._resume
                    and (not self._source_done or event.audio_ms < self._tail.sent_ms)
                ):
                    self._go_on_elsewhere(event)
                    return
                yield event
                receiving = asyncio.ensure_future(self._s.receive())
        finally:
            for task in (sender, receiving):
                task.cancel()
            await asyncio.gather(sender, receiving, return_exceptions=True)

    def _go_on_elsewhere(self, ended: Ended | None) -> None:
        if ended is not None:
            # Everything the server took went into finals before `ended`.
            self._tail.settle(ended.audio_ms)
            self.utterances = ended.utterances
        self.settled_ms, self.replay = self._tail.restart()
