"""A session's voiceprints and what it decides about who is speaking.

Pure bookkeeping over embeddings: no audio is kept here, only vectors, and they
live in this object, which dies with its session. Scores are calibrated so that
0.5 is the decision threshold; the threshold itself depends on how much speech
an utterance has, because short segments give noisier vectors (the figures are
in docs/speakers.md, measured with bench/speaker_open_set.py and bench/speakers.py).
"""

from __future__ import annotations

import math
import re
import uuid
from dataclasses import dataclass, field

import numpy as np

from hushgate.engines.base import Embedding

MIN_DECISION_MS = 1_000
MAX_VOICEPRINTS = 50
MIN_ENROLL_MS = 4_000
# Cosine threshold by counted speech: (speech ms, threshold there). `threshold_for` is linear
# between the points and flat beyond either end, because strangers' best cosines rise steadily
# with length: one threshold held across 2-4 s was set by 2 s strangers and too lenient at 3 s.
# Chosen with bench/speaker_open_set.py (docs/speakers.md) on 102 public voices: at each point,
# the lowest cosine at which at most 1.5 % (from 3 s on 1 %, a margin where false rejects
# allow it) of strangers' cuts of that length were named as one of 10 enrolled people.
# Cross-validated on voices left out of the calibration, that rule gave 0.8-1.7 % false
# accepts from 2 s on, at 4.8 % false rejects at 2 s and at most 2.1 % beyond; under 2 s it
# leaves about a third of genuine speech unnamed. Plain cosine beat adaptive S-norm, steps at
# 2 and 4 s, a 1 % target throughout and a best-vs-second margin.
THRESHOLDS: tuple[tuple[int, float], ...] = (
    (1_000, 0.77),
    (2_000, 0.785),
    (3_000, 0.805),
    (4_000, 0.815),
    (6_000, 0.825),
)
# Steepness of the logistic map from cosine to score.
SCORE_SLOPE = 20.0
# A new guest needs to be this far from every known one.
GUEST_THRESHOLD = 0.70
# Bounds on what a client can make a session hold. Overflow policy: once MAX_GUESTS voices
# are labelled, a further new voice is reported undecided (`no_match`) instead of
# becoming a guest; a verification beyond MAX_VERIFICATIONS waiting is refused (`overloaded`).
MAX_GUESTS = 32
MAX_VERIFICATIONS = 16


def threshold_for(speech_ms: int) -> float:
    """THRESHOLDS read as a curve: linear between its points, flat beyond the first and the last."""
    below_ms, below = THRESHOLDS[0]
    if speech_ms <= below_ms:
        return below
    for at_ms, threshold in THRESHOLDS[1:]:
        if speech_ms < at_ms:
            return below + (threshold - below) * (speech_ms - below_ms) / (at_ms - below_ms)
        below_ms, below = at_ms, threshold
    return below


def calibrated(cosine: float, speech_ms: int) -> float:
    """A monotone map from cosine to 0..1 with 0.5 at the length's threshold."""
    return round(1.0 / (1.0 + math.exp(-SCORE_SLOPE * (cosine - threshold_for(speech_ms)))), 4)


def normalise_words(text: str) -> list[str]:
    return re.sub(r"[^\w' ]+", " ", text.lower()).split()


def phrase_matches(heard: str, expected: str) -> bool:
    """Word-level edit distance within a fifth of the phrase (recognisers slip)."""
    a, b = normalise_words(heard), normalise_words(expected)
    if not b:
        return False
    row = list(range(len(b) + 1))
    for i, wa in enumerate(a, 1):
        prev, row[0] = row[0], i
        for j, wb in enumerate(b, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (wa != wb))
    return row[-1] <= len(b) // 5


def _unit(vector: np.ndarray) -> Embedding:
    norm = float(np.linalg.norm(vector))
    return (vector / norm).astype(np.float32) if norm > 0 else vector.astype(np.float32)


@dataclass(slots=True)
class Voiceprint:
    id: str
    vector: Embedding
    count: int
    speech_ms: int
    label: str | None
    passphrase: str | None

    def forget(self) -> None:
        # Overwrite in place so no copy of the vector outlives the delete.
        self.vector.fill(0.0)


@dataclass(slots=True)
class Enrollment:
    request_id: str | None
    label: str | None
    passphrase: str | None
    needed_ms: int
    first_utterance: int = 0
    speech_ms: int = 0
    vectors: list[Embedding] = field(default_factory=list)
    weights: list[int] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Identity:
    voiceprint_id: str | None
    label: str
    score: float


@dataclass(slots=True)
class _Guest:
    label: str
    centroid: np.ndarray
    count: int


class SpeakerBook:
    def __init__(self) -> None:
        self.voiceprints: dict[str, Voiceprint] = {}
        self.enrollment: Enrollment | None = None
        # (request id, voiceprint id, first utterance that may answer it)
        self.verifications: list[tuple[str | None, str, int]] = []
        self._guests: list[_Guest] = []

    # Enrollment ------------------------------------------------------------------

    def begin_enrollment(
        self, request_id: str | None, label: str | None, passphrase: str | None, needed_ms: int, first_utterance: int
    ) -> None:
        self.enrollment = Enrollment(
            request_id, label, passphrase, max(MIN_ENROLL_MS, needed_ms), first_utterance=first_utterance
        )

    def add_enrollment_speech(
        self, vector: Embedding, speech_ms: int, text: str
    ) -> tuple[bool | None, Voiceprint | None]:
        """Count one utterance; returns (passphrase matched or None, the voiceprint once complete)."""
        enrollment = self.enrollment
        if enrollment is None:
            return None, None
        matched = None
        if enrollment.passphrase is not None:
            matched = phrase_matches(text, enrollment.passphrase)
            if not matched:
                return False, None
        if len(self.voiceprints) >= MAX_VOICEPRINTS:
            raise OverflowError(f"a session holds at most {MAX_VOICEPRINTS} voiceprints")
        enrollment.vectors.append(vector)
        enrollment.weights.append(speech_ms)
        enrollment.speech_ms += speech_ms
        if enrollment.speech_ms < enrollment.needed_ms:
            return matched, None
        mean = np.average(np.stack(enrollment.vectors), axis=0, weights=enrollment.weights)
        voiceprint = Voiceprint(
            id=str(uuid.uuid4()),
            vector=_unit(mean),
            count=len(enrollment.vectors),
            speech_ms=enrollment.speech_ms,
            label=enrollment.label,
            passphrase=enrollment.passphrase,
        )
        for v in enrollment.vectors:
            v.fill(0.0)
        self.enrollment = None
        self.add(voiceprint)
        return matched, voiceprint

    # Voiceprints -----------------------------------------------------------------

    def add(self, voiceprint: Voiceprint) -> None:
        if voiceprint.id not in self.voiceprints and len(self.voiceprints) >= MAX_VOICEPRINTS:
            raise OverflowError(f"a session holds at most {MAX_VOICEPRINTS} voiceprints")
        self.voiceprints[voiceprint.id] = voiceprint

    def delete(self, voiceprint_id: str) -> bool:
        voiceprint = self.voiceprints.pop(voiceprint_id, None)
        if voiceprint is None:
            return False
        voiceprint.forget()
        self.verifications = [(r, v, u) for r, v, u in self.verifications if v != voiceprint_id]
        return True

    def forget_all(self) -> None:
        for voiceprint in self.voiceprints.values():
            voiceprint.forget()
        self.voiceprints.clear()
        for guest in self._guests:
            guest.centroid.fill(0.0)
        self._guests.clear()
        if self.enrollment is not None:
            for v in self.enrollment.vectors:
                v.fill(0.0)
        self.enrollment = None

    # Decisions -------------------------------------------------------------------

    def queue_verification(self, request_id: str | None, voiceprint_id: str, *, first_utterance: int) -> None:
        if len(self.verifications) >= MAX_VERIFICATIONS:
            raise OverflowError(f"{MAX_VERIFICATIONS} verifications are already waiting for speech")
        self.verifications.append((request_id, voiceprint_id, first_utterance))

    def score(self, voiceprint: Voiceprint, vector: Embedding, speech_ms: int) -> float:
        return calibrated(float(np.dot(voiceprint.vector, vector)), speech_ms)

    def identify(self, vector: Embedding, speech_ms: int, *, diarize: bool) -> Identity | None:
        best: tuple[float, Voiceprint] | None = None
        for voiceprint in self.voiceprints.values():
            s = self.score(voiceprint, vector, speech_ms)
            if best is None or s > best[0]:
                best = (s, voiceprint)
        if best is not None and best[0] >= 0.5:
            return Identity(best[1].id, best[1].label or best[1].id[:8], best[0])
        if not diarize:
            return None
        return self._guest(vector, best[0] if best else 0.0)

    def _guest(self, vector: Embedding, best_score: float) -> Identity | None:
        nearest: tuple[float, _Guest] | None = None
        for guest in self._guests:
            cosine = float(np.dot(_unit(guest.centroid), vector))
            if nearest is None or cosine > nearest[0]:
                nearest = (cosine, guest)
        if nearest is not None and nearest[0] >= GUEST_THRESHOLD:
            guest = nearest[1]
            guest.centroid = guest.centroid + vector
            guest.count += 1
            return Identity(None, guest.label, best_score)
        if len(self._guests) >= MAX_GUESTS:
            return None
        guest = _Guest(f"Guest-{len(self._guests) + 1}", vector.astype(np.float32).copy(), 1)
        self._guests.append(guest)
        return Identity(None, guest.label, best_score)
