"""Voiceprints: enroll, verify, identify, export, import and delete, inside one session.

The vectors live in the session's :class:`SpeakerBook` and die with it; they leave
only sealed (``voiceprint.export``). Listening hands each utterance's embedding
here once its final is out: enrollment and verification count only utterances
that began after the request, identification answers for the utterance itself.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TypeAlias

import numpy as np

from hushgate.engines.base import Embedding, Pcm16
from hushgate.server.errors import BadRequest, Busy, ConsentRequired, EngineUnavailable, UnknownVoiceprint
from hushgate.server.sealing import SealedContent, SealError
from hushgate.server.session.context import SessionContext
from hushgate.server.speakers import MIN_DECISION_MS, SpeakerBook, Voiceprint, phrase_matches
from hushgate.wire import (
    Enroll,
    Enrolled,
    EnrollProgress,
    ProtocolError,
    Speaker,
    SpeakerEvent,
    SpeakerOptions,
    Verified,
    Verify,
    VoiceprintDelete,
    VoiceprintDeleted,
    VoiceprintExport,
    VoiceprintExported,
    VoiceprintImport,
    VoiceprintImported,
)

log = logging.getLogger("hushgate.session")
VoiceprintRequest: TypeAlias = Enroll | Verify | VoiceprintExport | VoiceprintImport | VoiceprintDelete
Decision: TypeAlias = tuple[Speaker | None, str | None]
"""Who spoke an utterance, or why that is undecided (``too_short``, ``no_match``, ``failed``)."""


class Voiceprints:
    def __init__(self, context: SessionContext, options: SpeakerOptions) -> None:
        self._hub = context.hub
        self._settings = context.settings
        self._outbox = context.outbox
        self._calls = context.calls
        self._options = options
        self._session_id = context.id
        self.book = SpeakerBook()

    @property
    def identifying(self) -> bool:
        """Each final says who spoke (``speakers.identify`` or ``diarize``)."""
        return (self._options.identify or self._options.diarize) and self._hub.encoder is not None

    def wants_audio(self) -> bool:
        """Whether an utterance starting now must keep its audio for an embedding."""
        return self._hub.encoder is not None and (
            self._options.identify
            or self._options.diarize
            or self.book.enrollment is not None
            or bool(self.book.verifications)
        )

    def open(self) -> None:
        """Act on `start`'s speaker options: report a missing encoder, import the voiceprints given."""
        options = self._options
        if (options.identify or options.diarize or options.voiceprints) and self._hub.encoder is None:
            self._outbox.put(self._no_encoder(None).event())
            return
        for sealed in options.voiceprints:
            try:
                self._import(sealed, None)
            except ProtocolError as exc:
                self._outbox.put(exc.event())

    def forget(self) -> None:
        self.book.forget_all()

    # Requests ----------------------------------------------------------------

    def handle(self, message: VoiceprintRequest, *, next_utterance: int) -> None:
        """Answer one request; ``next_utterance`` is the first utterance that may count for it."""
        match message:
            case Enroll():
                self._enroll(message, next_utterance)
            case Verify(voiceprint_id=vid, id=rid):
                if self._hub.encoder is None:
                    raise self._no_encoder(rid)
                self._voiceprint(vid, rid)
                try:
                    self.book.queue_verification(rid, vid, first_utterance=next_utterance)
                except OverflowError as exc:
                    raise Busy(str(exc), request_id=rid) from None
            case VoiceprintExport(voiceprint_id=vid, id=rid):
                voiceprint = self._voiceprint(vid, rid)
                encoder = self._hub.encoder
                sealed = self._hub.sealer.seal(
                    SealedContent(
                        voiceprint.id,
                        voiceprint.vector,
                        voiceprint.count,
                        voiceprint.speech_ms,
                        voiceprint.label,
                        voiceprint.passphrase,
                        encoder.model if encoder else "",
                    )
                )
                self._outbox.put(VoiceprintExported(voiceprint_id=vid, voiceprint=sealed, id=rid))
            case VoiceprintImport(voiceprint=sealed, id=rid):
                self._import(sealed, rid)
            case VoiceprintDelete(voiceprint_id=vid, id=rid):
                if not self.book.delete(vid):
                    raise _unknown(vid, rid)
                self._outbox.put(VoiceprintDeleted(voiceprint_id=vid, id=rid))

    def _enroll(self, message: Enroll, next_utterance: int) -> None:
        # Consent comes first: without it nothing else about the request matters.
        if not message.consent:
            raise ConsentRequired("enrollment needs `consent: true` from the speaker", request_id=message.id)
        if self._hub.encoder is None:
            raise self._no_encoder(message.id)
        if self.book.enrollment is not None:
            raise BadRequest("an enrollment is already running in this session", request_id=message.id)
        if message.passphrase is not None and not message.passphrase.strip():
            raise BadRequest("`passphrase` is empty", request_id=message.id)
        needed_ms = message.needed_ms or self._settings.enroll_needed_ms
        # Only utterances that begin after the request count: the speaker of
        # one already under way may be someone else.
        self.book.begin_enrollment(message.id, message.label, message.passphrase, needed_ms, next_utterance)
        enrollment = self.book.enrollment
        self._outbox.put(
            EnrollProgress(id=message.id, speech_ms=0, needed_ms=enrollment.needed_ms if enrollment else needed_ms)
        )

    def _no_encoder(self, request_id: str | None) -> EngineUnavailable:
        reason = self._hub.unavailable.get(self._settings.speaker_encoder, "no speaker encoder is configured")
        return EngineUnavailable(f"speaker recognition is not available: {reason}", request_id=request_id)

    def _voiceprint(self, voiceprint_id: str, request_id: str | None) -> Voiceprint:
        voiceprint = self.book.voiceprints.get(voiceprint_id)
        if voiceprint is None:
            raise _unknown(voiceprint_id, request_id)
        return voiceprint

    def _import(self, sealed: str, request_id: str | None) -> Voiceprint:
        encoder = self._hub.encoder
        if encoder is None:
            raise self._no_encoder(request_id)
        try:
            content = self._hub.sealer.open(sealed)
        except SealError as exc:
            raise UnknownVoiceprint(str(exc), request_id=request_id) from None
        if content.model != encoder.model or len(content.vector) != encoder.dimensions:
            raise UnknownVoiceprint(
                f"voiceprint was made by speaker model {content.model!r}, this server uses {encoder.model!r}",
                request_id=request_id,
            )
        voiceprint = Voiceprint(
            content.voiceprint_id,
            content.vector.copy(),
            content.count,
            content.speech_ms,
            content.label,
            content.passphrase,
        )
        try:
            self.book.add(voiceprint)
        except OverflowError as exc:
            raise Busy(str(exc), request_id=request_id) from None
        self._outbox.put(VoiceprintImported(voiceprint_id=voiceprint.id, label=voiceprint.label, id=request_id))
        return voiceprint

    # Decisions on heard speech -------------------------------------------------

    def embed(self, audio: list[Pcm16] | None) -> asyncio.Future[Embedding] | None:
        """Start the embedding of an utterance's audio beside its final decode; None when too short."""
        encoder, runner = self._hub.encoder, self._hub.encoder_runner
        if encoder is None or runner is None or not audio:
            return None
        pcm = np.concatenate(audio)
        if len(pcm) * 1000 // encoder.sample_rate_hz < MIN_DECISION_MS:
            return None
        return self._calls.start(runner, encoder.embed, pcm)

    def decide(self, embedding: asyncio.Future[Embedding] | None, speech_ms: int) -> Decision:
        """Who spoke, for the final itself: decided only if the embedding is already there."""
        if not self.identifying:
            return None, None
        if embedding is None:
            return None, "too_short"
        if not embedding.done():
            return None, None  # a `speaker` event follows (see after_final)
        if embedding.exception() is not None:
            return None, "failed"
        return self._identity(embedding.result(), speech_ms)

    def _identity(self, vector: Embedding, speech_ms: int) -> Decision:
        identity = self.book.identify(vector, speech_ms, diarize=self._options.diarize)
        if identity is None:
            return None, "no_match"
        return Speaker(voiceprint_id=identity.voiceprint_id, label=identity.label, score=identity.score), None

    async def after_final(
        self, utterance: int, speech_ms: int, text: str, embedding: asyncio.Future[Embedding], *, follow_up: bool
    ) -> None:
        """Use an utterance's embedding once its final is out; ``follow_up``: the final left its speaker open."""
        try:
            vector = await embedding
        except Exception:
            log.exception("session %s: speaker embedding failed", self._session_id)
            if follow_up:
                self._outbox.put(SpeakerEvent(utterance=utterance, speaker=None, undecided="failed"))
            return
        if follow_up:
            speaker, undecided = self._identity(vector, speech_ms)
            self._outbox.put(SpeakerEvent(utterance=utterance, speaker=speaker, undecided=undecided))
        self._count_for_enrollment(utterance, vector, speech_ms, text)
        self._answer_verifications(utterance, vector, speech_ms, text)

    def _count_for_enrollment(self, utterance: int, vector: Embedding, speech_ms: int, text: str) -> None:
        enrollment = self.book.enrollment
        if enrollment is None or utterance < enrollment.first_utterance:
            return
        try:
            matched, voiceprint = self.book.add_enrollment_speech(vector, speech_ms, text)
        except OverflowError as exc:
            self.book.enrollment = None
            self._outbox.put(Busy(f"enrollment stopped: {exc}", request_id=enrollment.request_id).event())
            return
        self._outbox.put(
            EnrollProgress(
                id=enrollment.request_id,
                speech_ms=enrollment.speech_ms,
                needed_ms=enrollment.needed_ms,
                passphrase_match=matched,
            )
        )
        if voiceprint is not None:
            self._outbox.put(
                Enrolled(
                    id=enrollment.request_id,
                    voiceprint_id=voiceprint.id,
                    label=voiceprint.label,
                    speech_ms=voiceprint.speech_ms,
                )
            )

    def _answer_verifications(self, utterance: int, vector: Embedding, speech_ms: int, text: str) -> None:
        answering = [v for v in self.book.verifications if utterance >= v[2]]
        self.book.verifications = [v for v in self.book.verifications if utterance < v[2]]
        for request_id, voiceprint_id, _ in answering:
            voiceprint = self.book.voiceprints.get(voiceprint_id)
            if voiceprint is None:
                continue  # deleted while waiting
            score = self.book.score(voiceprint, vector, speech_ms)
            phrase = None if voiceprint.passphrase is None else phrase_matches(text, voiceprint.passphrase)
            accept = score >= 0.5 and phrase is not False
            self._outbox.put(
                Verified(
                    id=request_id,
                    voiceprint_id=voiceprint_id,
                    decision="accept" if accept else "reject",
                    score=score,
                    passphrase_match=phrase,
                    speech_ms=speech_ms,
                )
            )


def _unknown(voiceprint_id: str, request_id: str | None) -> UnknownVoiceprint:
    return UnknownVoiceprint(f"no voiceprint {voiceprint_id[:64]!r} in this session", request_id=request_id)
