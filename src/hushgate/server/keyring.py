"""Secrets that rotate: the current one signs or seals, previous ones still open.

An operator's secret is never used as a key directly. HKDF-SHA256 derives one
key per purpose from it (token signing and voiceprint sealing never share a
key, even when an operator sets the same secret for both), and a short key id,
also derived, travels in every token and sealed blob so the right key is found
without trying them all. The id says nothing about the secret (it comes out of
HKDF under its own label). An id the ring does not hold is refused: a retired
key opens nothing.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

KEY_BYTES = 32
_ID_BYTES = 6
_LABEL = b"hushgate "


def _hkdf(secret: bytes, info: bytes, length: int) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=None, info=_LABEL + info).derive(secret)


@dataclass(frozen=True, slots=True)
class DerivedKey:
    key_id: str
    """Eight URL-safe characters; never contains ``.``, so it can sit between dots."""
    key: bytes


def derive(secret: str | bytes, purpose: str) -> DerivedKey:
    raw = secret.encode() if isinstance(secret, str) else secret
    key = _hkdf(raw, f"{purpose} key".encode(), KEY_BYTES)
    key_id = base64.urlsafe_b64encode(_hkdf(raw, f"{purpose} key id".encode(), _ID_BYTES)).decode()
    return DerivedKey(key_id, key)


class KeyRing:
    """The current key of one purpose, and the previous ones that still verify."""

    def __init__(self, purpose: str, secret: str | bytes | None, previous: Sequence[str | bytes] = ()) -> None:
        # No secret configured: a random one, so nothing outlives the process.
        self.persistent = bool(secret)
        self.current = derive(secret or os.urandom(KEY_BYTES), purpose)
        self._by_id = {k.key_id: k for k in (self.current, *(derive(p, purpose) for p in previous if p))}

    def find(self, key_id: str) -> DerivedKey | None:
        return self._by_id.get(key_id)
