"""Voiceprints leave a session only sealed: encrypted and authenticated.

AES-256-GCM with a key derived from the operator's ``voiceprint_key`` setting:
only a server holding the same key can open a blob, and any changed byte makes
it fail to open. With no key configured, each process draws a random one, so
exported voiceprints do not survive a restart (``ready.limits`` says so).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from dataclasses import dataclass

import numpy as np
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from hushgate.engines.base import Embedding

PREFIX = "vp1."
NONCE_BYTES = 12
# Binds blobs to their purpose: a key shared with something else cannot be abused to forge them.
AAD = b"hushgate voiceprint v1"


class SealError(Exception):
    """The blob was tampered with, truncated, or sealed under another key."""


@dataclass(frozen=True, slots=True)
class SealedContent:
    voiceprint_id: str
    vector: Embedding
    count: int
    speech_ms: int
    label: str | None
    passphrase: str | None
    model: str


class Sealer:
    def __init__(self, key_material: str | None) -> None:
        # An empty setting is no key: say so rather than claim exports survive.
        self.persistent = bool(key_material)
        key = hashlib.sha256(key_material.encode()).digest() if key_material else os.urandom(32)
        self._aead = AESGCM(key)

    def seal(self, content: SealedContent) -> str:
        payload = json.dumps({
            "id": content.voiceprint_id,
            "v": base64.b64encode(content.vector.astype("<f4").tobytes()).decode(),
            "n": content.count,
            "ms": content.speech_ms,
            "label": content.label,
            "pass": content.passphrase,
            "model": content.model,
        }).encode()
        nonce = os.urandom(NONCE_BYTES)
        blob = nonce + self._aead.encrypt(nonce, payload, AAD)
        return PREFIX + base64.urlsafe_b64encode(blob).decode().rstrip("=")

    def open(self, sealed: str) -> SealedContent:
        if not sealed.startswith(PREFIX):
            raise SealError("not a voiceprint")
        try:
            raw = base64.urlsafe_b64decode(sealed[len(PREFIX):] + "=" * (-len(sealed) % 4))
            payload = json.loads(self._aead.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], AAD))
            vector = np.frombuffer(base64.b64decode(payload["v"]), dtype="<f4").astype(np.float32)
            return SealedContent(
                voiceprint_id=str(payload["id"]), vector=vector, count=int(payload["n"]),
                speech_ms=int(payload["ms"]), label=payload["label"], passphrase=payload["pass"],
                model=str(payload["model"]),
            )
        except (InvalidTag, ValueError, KeyError, TypeError) as exc:
            raise SealError("voiceprint could not be opened: tampered, truncated, or sealed by another server") from exc
