"""Speaking: a session's translations and speech synthesis.

Two lanes, each drained by its own task: translations (of what was heard and
of `translate` requests) and syntheses (of `speak` requests and, with
``speak.translations``, of each final translation). Synthesized audio is paced
by the outbox, so a long text never floods it.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import soxr

from hushgate.engines.base import Pcm16
from hushgate.server.errors import BadRequest, Busy, EngineUnavailable, TooLarge, to_wire
from hushgate.server.lane import Lane, LaneFull
from hushgate.server.languages import AUTO, SpeechPlan
from hushgate.server.session.context import SessionContext
from hushgate.wire import ProtocolError, Speak, Start, Translate, Translation, TtsAudio, TtsEnd, TtsStart

TRANSLATION_LANE = 64
TTS_FRAME_MS = 500


@dataclass(frozen=True, slots=True)
class TranslateJob:
    text: str
    source: str
    target: str
    utterance: int | None = None
    request_id: str | None = None
    provisional: bool = False


@dataclass(frozen=True, slots=True)
class SpeakJob:
    id: str | int
    text: str
    voice: str | None
    language: str | None


class Speaking:
    def __init__(
        self,
        context: SessionContext,
        start: Start,
        language: str,
        plan: SpeechPlan,
        complaints: Sequence[ProtocolError] = (),
    ) -> None:
        self._start = start
        self._language = language  # "auto" until a final names the language
        self._plan = plan
        self._complaints = tuple(complaints)
        self._hub = context.hub
        self._settings = context.settings
        self._outbox = context.outbox
        self._calls = context.calls
        self._session_id = context.id
        self._translations: Lane[TranslateJob] = Lane(TRANSLATION_LANE)
        self._speech: Lane[SpeakJob] = Lane(context.settings.speak_queue)
        self.targets: tuple[str, ...] = ()
        # (utterance, where its last provisional translation ended): partials are translated at a cadence.
        self._partial_translated: tuple[int, int] = (-1, 0)

    def open(self) -> None:
        """Act on `start`: keep the translation targets there are, report the ones there are not."""
        for complaint in self._complaints:
            self._outbox.put(complaint.event())
        # Targets the speech engine translates itself arrive with the final (heard_speech_translation).
        self.targets = self._plan.text_targets
        voice = self._start.speak.voice
        if voice is not None and self._hub.voice(voice, None) is None:
            self._outbox.put(self.no_voice(voice, None).event())

    def no_pair(self, source: str, target: str, request_id: str | None) -> EngineUnavailable:
        pairs = ", ".join(f"{a}-{b}" for a, b in self._hub.pairs()) or "none"
        return EngineUnavailable(
            f"no translation from {source!r} to {target!r}; installed pairs: {pairs}", request_id=request_id
        )

    def no_voice(self, voice: str | None, request_id: str | None, language: str | None = None) -> EngineUnavailable:
        voices = ", ".join(v.id for v in self._hub.voices()) or "none"
        what = f"voice {voice!r}" if voice else f"voice for language {language!r}"
        return EngineUnavailable(f"no {what}; installed voices: {voices}", request_id=request_id)

    # What was heard ------------------------------------------------------------

    def heard_partial(self, utterance: int, text: str, t1_ms: int) -> None:
        """Translate a partial too, when asked to, no more often than ``translate_partials_ms``."""
        if not (self._start.translate.partials and self.targets) or self._language == AUTO:
            return
        last_utterance, last_ms = self._partial_translated
        if last_utterance == utterance and t1_ms - last_ms < self._settings.translate_partials_ms:
            return
        self._partial_translated = (utterance, t1_ms)
        for target in self.targets:
            self._queue(TranslateJob(text, self._language, target, utterance=utterance, provisional=True))

    def heard_final(self, utterance: int, text: str) -> None:
        if self._language == AUTO:
            return  # no language named yet: nothing to translate from
        for target in self.targets:
            if target != self._language:
                self._queue(TranslateJob(text, self._language, target, utterance=utterance))

    def heard_language(self, language: str) -> None:
        """A final named the language spoken (identification): translate from it from now on."""
        self._language = language

    async def heard_speech_translation(self, utterance: int, text: str) -> None:
        """The speech engine's own translation of a final (Whisper's X→English task)."""
        for target in self._plan.speech_targets:
            self._outbox.put(Translation(source=self._language, target=target, text=text, utterance=utterance))
            speak = self._start.speak
            if speak.translations and text.strip():
                await self._speech.put_when_room(SpeakJob(utterance, text, speak.voice, target))

    def _queue(self, job: TranslateJob) -> None:
        def stale(queued: TranslateJob) -> bool:
            # A newer guess (or the final) makes a queued provisional translation pointless.
            return queued.provisional and queued.utterance == job.utterance and queued.target == job.target

        try:
            self._translations.put(job, supersedes=stale)
        except LaneFull:
            if not job.provisional:
                self._outbox.put(
                    Busy(
                        f"translation of utterance {job.utterance} dropped: too many waiting", utterance=job.utterance
                    ).event()
                )

    def end_of_speech(self) -> None:
        """Nothing more will be heard: the tasks finish what is queued, then end."""
        self._translations.close()

    # Requests -----------------------------------------------------------------

    def _checked_text(self, text: str, request_id: str | None) -> str:
        if not text.strip():
            raise BadRequest("`text` is empty", request_id=request_id)
        limit = self._settings.max_text_chars
        if len(text) > limit:
            raise TooLarge(f"`text` has {len(text)} characters; the limit is {limit}", request_id=request_id)
        return text

    def request_translation(self, message: Translate) -> None:
        text = self._checked_text(message.text, message.id)
        source = message.source or self._language
        if self._hub.translator(source, message.target) is None:
            raise self.no_pair(source, message.target, message.id)
        try:
            self._translations.put(TranslateJob(text, source, message.target, request_id=message.id))
        except LaneFull:
            raise Busy("too many translations waiting", request_id=message.id) from None

    def request_speech(self, message: Speak) -> None:
        text = self._checked_text(message.text, message.id)
        voice = message.voice or self._start.speak.voice
        language = message.language or (None if voice else self._language)
        if self._hub.voice(voice, language) is None:
            raise self.no_voice(voice, message.id, language)
        try:
            self._speech.put(SpeakJob(message.id or str(uuid.uuid4()), text, voice, language))
        except LaneFull:
            raise Busy(f"{self._settings.speak_queue} syntheses already waiting", request_id=message.id) from None

    # Tasks ---------------------------------------------------------------------

    async def translate(self) -> None:
        """Translate until the lane is closed and drained; then close the speech lane."""
        while (job := await self._translations.get()) is not None:
            batcher = self._hub.translator(job.source, job.target)
            if batcher is None:
                self._outbox.put(self.no_pair(job.source, job.target, job.request_id).event())
                continue
            try:
                text = await batcher.translate(job.text, job.source, job.target)
            except Exception as exc:  # noqa: BLE001 - reported to the client
                self._outbox.put(
                    to_wire(exc, "translation failed", request_id=job.request_id, session=self._session_id).event()
                )
                continue
            self._outbox.put(
                Translation(
                    source=job.source,
                    target=job.target,
                    text=text,
                    utterance=job.utterance,
                    id=job.request_id,
                    provisional=True if job.provisional else None,
                )
            )
            speak = self._start.speak
            if speak.translations and job.utterance is not None and not job.provisional and text.strip():
                await self._speech.put_when_room(SpeakJob(job.utterance, text, speak.voice, job.target))
        self._speech.close()

    async def speak(self) -> None:
        """Synthesize until the speech lane is closed and drained."""
        while (job := await self._speech.get()) is not None:
            await self._synthesize(job)

    async def _synthesize(self, job: SpeakJob) -> None:
        request_id = job.id if isinstance(job.id, str) else None
        route = self._hub.voice(job.voice, job.language)
        if route is None:
            self._outbox.put(self.no_voice(job.voice, request_id, job.language).event())
            return
        voice_rate = route.voice.sample_rate_hz
        out_rate = self._start.speak.sample_rate_hz or voice_rate
        resampler = (
            None
            if out_rate == voice_rate
            else soxr.ResampleStream(voice_rate, out_rate, 1, dtype="int16", quality="HQ")
        )
        self._outbox.put(TtsStart(id=job.id, sample_rate=out_rate, voice=route.voice.id))
        chunks = route.synthesizer.synthesize(job.text, route.voice.id)
        samples = 0
        frame = out_rate * TTS_FRAME_MS // 1000
        first = True
        try:
            while True:
                # The first chunk is urgent: a listener is waiting in silence, while
                # other sessions' later chunks have audio queued ahead of them.
                chunk: Pcm16 | None = await self._calls.run(route.runner, next, chunks, None, urgent=first)
                first = False
                last = chunk is None
                pcm = np.zeros(0, np.int16) if chunk is None else chunk
                if resampler is not None:
                    pcm = resampler.resample_chunk(pcm, last=last)
                for i in range(0, len(pcm), frame):
                    # Bulk audio waits for room rather than overflowing the outbox.
                    await self._outbox.below(self._outbox.limit // 2)
                    self._outbox.put(TtsAudio(id=job.id, pcm=pcm[i : i + frame].astype("<i2").tobytes()))
                samples += len(pcm)
                if last:
                    break
        except ProtocolError:
            raise  # the outbox is full: the session ends, there is no one to tell
        except Exception as exc:  # noqa: BLE001 - reported to the client
            self._outbox.put(to_wire(exc, "synthesis failed", request_id=request_id, session=self._session_id).event())
        finally:
            chunks_close = getattr(chunks, "close", None)
            if chunks_close is not None:
                chunks_close()
        self._outbox.put(TtsEnd(id=job.id, duration_ms=samples * 1000 // out_rate))
