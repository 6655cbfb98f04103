"""Batches translation requests from every session into one engine call.

Machine translation costs far less per sentence in a batch than one sentence at
a time, and utterances from several sessions often end within milliseconds of
each other. Requests wait in a bounded queue (overflow policy: refuse at once
with :class:`Overloaded`); the batcher takes everything waiting, groups it by
language pair, and translates each group in a single call on the translator's
runner. A batch that fails is retried one request at a time, so a bad text fails
only its own request.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from dataclasses import dataclass

from hushgate.engines.base import Translator
from hushgate.server.runtime import EngineRunner, Overloaded


@dataclass(slots=True)
class _Request:
    text: str
    source: str
    target: str
    result: asyncio.Future[str]


class TranslationBatcher:
    def __init__(
        self, translator: Translator, runner: EngineRunner, *, max_batch: int = 32, max_waiting: int = 256
    ) -> None:
        self.translator = translator
        self.runner = runner
        self.max_batch = max_batch
        self._queue: asyncio.Queue[_Request] | None = None
        self._max_waiting = max_waiting
        self._task: asyncio.Task[None] | None = None
        self.batches = 0

    async def translate(self, text: str, source: str, target: str) -> str:
        if self._queue is None:
            self._queue = asyncio.Queue(maxsize=self._max_waiting)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._serve(), name=f"batcher-{self.translator.name}")
        request = _Request(text, source, target, asyncio.get_running_loop().create_future())
        try:
            self._queue.put_nowait(request)
        except asyncio.QueueFull:
            raise Overloaded(f"{self._max_waiting} translations are waiting") from None
        return await request.result

    async def _serve(self) -> None:
        queue = self._queue
        if queue is None:
            return
        while True:
            batch = [await queue.get()]
            while len(batch) < self.max_batch and not queue.empty():
                batch.append(queue.get_nowait())
            groups: dict[tuple[str, str], list[_Request]] = defaultdict(list)
            for request in batch:
                if not request.result.done():  # its session may have gone
                    groups[(request.source, request.target)].append(request)
            for (source, target), requests in groups.items():
                await self._translate_group(requests, source, target)

    async def _translate_group(self, requests: list[_Request], source: str, target: str) -> None:
        self.batches += 1
        try:
            texts = await self.runner.run(self.translator.translate, [r.text for r in requests], source, target)
        except Exception as exc:  # noqa: BLE001 - handed to the waiting session(s)
            if len(requests) == 1:
                if not requests[0].result.done():
                    requests[0].result.set_exception(exc)
                return
            # One request's bad text must not fail its neighbours from other
            # sessions: each is tried again alone, so only the culprit fails.
            for r in requests:
                if not r.result.done():
                    await self._translate_group([r], source, target)
            return
        for r, text in zip(requests, texts, strict=True):
            if not r.result.done():
                r.result.set_result(text)

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
