"""Voiceprints leave a session only sealed: encrypted and authenticated.

AES-256-GCM with a key derived (HKDF, see keyring.py) from the operator's
``voiceprint_key`` setting: only a server holding the same key can open a blob,
and any changed byte makes it fail to open. With no key configured, each
process draws a random one, so exported voiceprints do not survive a restart
(``ready.limits`` says so).

A blob is ``vp2.<key id>.<nonce + ciphertext>``. The key id picks the key, so
keys rotate: ``voiceprint_keys_previous`` still opens what they sealed, and a
blob under a key the server does not hold is refused. Each blob carries its
expiry and the deployment it was sealed for (``deployment_id``), inside the
ciphertext and bound into the authenticated data, so a voiceprint exported from
staging does not open in production and an old export stops working.
"""

from __future__ import annotations

import base64
import json
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from hushgate.engines.base import Embedding
from hushgate.server.keyring import KeyRing

PREFIX = "vp2."
PURPOSE = "voiceprint sealing"
NONCE_BYTES = 12
DEFAULT_TTL_S = 90 * 86_400.0
# Binds blobs to their purpose and deployment: a key shared with something else cannot forge them.
AAD = b"hushgate voiceprint v2"


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
    def __init__(
        self,
        key_material: str | None,
        *,
        previous_keys: Sequence[str] = (),
        deployment_id: str = "hushgate",
        ttl_s: float = DEFAULT_TTL_S,
    ) -> None:
        # An empty setting is no key: say so rather than claim exports survive.
        self._keys = KeyRing(PURPOSE, key_material or None, previous_keys)
        self.persistent = self._keys.persistent
        self._deployment = deployment_id
        self._ttl_s = ttl_s

    def _aad(self, key_id: str) -> bytes:
        return b"|".join((AAD, key_id.encode(), self._deployment.encode()))

    def seal(self, content: SealedContent, *, now: float | None = None) -> str:
        payload = json.dumps(
            {
                "id": content.voiceprint_id,
                "v": base64.b64encode(content.vector.astype("<f4").tobytes()).decode(),
                "n": content.count,
                "ms": content.speech_ms,
                "label": content.label,
                "pass": content.passphrase,
                "model": content.model,
                "exp": math.ceil((time.time() if now is None else now) + self._ttl_s),
                "dep": self._deployment,
            }
        ).encode()
        key = self._keys.current
        nonce = os.urandom(NONCE_BYTES)
        blob = nonce + AESGCM(key.key).encrypt(nonce, payload, self._aad(key.key_id))
        return f"{PREFIX}{key.key_id}.{base64.urlsafe_b64encode(blob).decode().rstrip('=')}"

    def open(self, sealed: str, *, now: float | None = None) -> SealedContent:
        if not sealed.startswith(PREFIX):
            raise SealError("not a voiceprint (or one sealed by an older version: enroll again)")
        key_id, _, body = sealed[len(PREFIX) :].partition(".")
        key = self._keys.find(key_id)
        if key is None:
            raise SealError("voiceprint was sealed under a key this server does not hold")
        try:
            raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
            payload = json.loads(AESGCM(key.key).decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], self._aad(key_id)))
            expires = float(payload["exp"])
            deployment = payload["dep"]
            vector = np.frombuffer(base64.b64decode(payload["v"]), dtype="<f4").astype(np.float32)
            content = SealedContent(
                voiceprint_id=str(payload["id"]),
                vector=vector,
                count=int(payload["n"]),
                speech_ms=int(payload["ms"]),
                label=payload["label"],
                passphrase=payload["pass"],
                model=str(payload["model"]),
            )
        except (InvalidTag, ValueError, KeyError, TypeError) as exc:
            raise SealError("voiceprint could not be opened: tampered, truncated, or sealed by another server") from exc
        if deployment != self._deployment:  # also bound into the AAD; checked again for a clear reason
            raise SealError("voiceprint belongs to another deployment")
        if (time.time() if now is None else now) > expires:
            raise SealError("voiceprint has expired: enroll again")
        return content
