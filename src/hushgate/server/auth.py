"""Who may open a session.

* API keys: settings hold only their SHA-256 (``sha256:<hex>``), so a leaked
  configuration leaks no key; keys are compared in constant time and never logged.
  SDKs send ``Authorization: Bearer KEY``.
* Browsers cannot set headers on a WebSocket, so an operator's backend trades
  its API key for a short-lived signed token (``POST /v1/tokens``) that the
  page passes as ``?token=``. A token names the key it came from (by hash
  prefix), expires, and may cap the session's length.
* With no key configured the gateway still works for a person on their own
  machine: loopback clients are let in, every other address is refused,
  unless the operator explicitly serves without auth (``--no-auth``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import json
import math
import secrets
import time
from dataclasses import dataclass
from typing import Literal

KEY_PREFIX = "sha256:"
TOKEN_VERSION = "v1"

Outcome = Literal["ok", "unauthorized", "forbidden"]


def hash_key(key: str) -> str:
    return KEY_PREFIX + hashlib.sha256(key.encode()).hexdigest()


def new_key() -> str:
    return "sgw_" + secrets.token_urlsafe(32)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a connection is, as far as limits are concerned."""

    key_id: str  # hash prefix of the API key, or "loopback" / "anonymous"
    max_session_s: float | None = None
    token_id: str | None = None  # a browser token's nonce: tokens are capped one session at a time


@dataclass(frozen=True, slots=True)
class Decision:
    outcome: Outcome
    reason: str
    principal: Principal | None = None


class Authenticator:
    def __init__(
        self,
        *,
        key_hashes: tuple[str, ...],
        token_secret: bytes,
        allowed_origins: tuple[str, ...],
        no_auth: bool,
        token_ttl_max_s: float = 3600.0,
    ) -> None:
        self._digests = {h.removeprefix(KEY_PREFIX) for h in key_hashes}
        self._secret = token_secret
        self._origins = frozenset(o.rstrip("/") for o in allowed_origins)
        self.no_auth = no_auth
        self.token_ttl_max_s = token_ttl_max_s

    @property
    def keys_configured(self) -> bool:
        return bool(self._digests)

    def check_key(self, key: str) -> Principal | None:
        digest = hashlib.sha256(key.encode()).hexdigest()
        for known in self._digests:
            if hmac.compare_digest(digest, known):
                return Principal(key_id=known[:12])
        return None

    def issue_token(self, principal: Principal, *, ttl_s: float, max_session_s: float | None,
                    now: float | None = None) -> str:
        payload = {
            "kid": principal.key_id,
            # Rounded up: truncating let a 1 s token expire before its first use.
            "exp": math.ceil((now or time.time()) + min(ttl_s, self.token_ttl_max_s)),
            "max_session_s": max_session_s,
            "n": secrets.token_urlsafe(8),
        }
        body = _b64(json.dumps(payload, separators=(",", ":")).encode())
        mac = _b64(hmac.new(self._secret, f"{TOKEN_VERSION}.{body}".encode(), hashlib.sha256).digest())
        return f"{TOKEN_VERSION}.{body}.{mac}"

    def check_token(self, token: str, *, now: float | None = None) -> Principal | None:
        parts = token.split(".")
        if len(parts) != 3 or parts[0] != TOKEN_VERSION:
            return None
        expected = hmac.new(self._secret, f"{parts[0]}.{parts[1]}".encode(), hashlib.sha256).digest()
        try:
            if not hmac.compare_digest(expected, _unb64(parts[2])):
                return None
            payload = json.loads(_unb64(parts[1]))
        except (ValueError, TypeError):
            return None
        if not isinstance(payload, dict) or not isinstance(payload.get("exp"), int):
            return None
        if payload["exp"] < (now or time.time()):
            return None
        cap = payload.get("max_session_s")
        nonce = payload.get("n")
        return Principal(key_id=str(payload.get("kid")), max_session_s=float(cap) if cap else None,
                         token_id=nonce if isinstance(nonce, str) else None)

    def origin_allowed(self, origin: str | None, host: str | None) -> bool:
        """Browsers always send Origin; other clients usually do not."""
        if origin is None:
            return True
        origin = origin.rstrip("/")
        if origin in self._origins or "*" in self._origins:
            return True
        # The gateway's own pages (demo, overlay) are same-origin.
        return host is not None and origin.split("://", 1)[-1] == host

    def decide(
        self,
        *,
        client_host: str | None,
        authorization: str | None,
        token: str | None,
        origin: str | None,
        host: str | None,
    ) -> Decision:
        if not self.origin_allowed(origin, host):
            return Decision("forbidden", f"origin {origin} is not allowed")
        bearer = None
        if authorization and authorization.lower().startswith("bearer "):
            bearer = authorization[7:].strip()
        if bearer is not None:
            principal = self.check_key(bearer)
            if principal is None:
                principal = self.check_token(bearer)
            return Decision("ok", "api key", principal) if principal else Decision("unauthorized", "invalid key")
        if token is not None:
            principal = self.check_token(token)
            return Decision("ok", "token", principal) if principal else Decision(
                "unauthorized", "invalid or expired token")
        if self.no_auth:
            return Decision("ok", "auth disabled", Principal("anonymous"))
        if not self.keys_configured and _is_loopback(client_host):
            return Decision("ok", "loopback", Principal("loopback"))
        if not self.keys_configured:
            return Decision("forbidden", "no API keys configured: only loopback clients are served")
        return Decision("unauthorized", "credentials required: Authorization: Bearer KEY or ?token=")


def _is_loopback(host: str | None) -> bool:
    if host is None:
        return False
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"
