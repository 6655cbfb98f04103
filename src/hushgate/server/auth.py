"""Who may open a session.

* API keys: settings hold only their SHA-256 (``sha256:<hex>``), so a leaked
  configuration leaks no key; keys are compared in constant time and never logged.
  SDKs send ``Authorization: Bearer KEY``. A key may do everything.
* Browsers cannot set headers on a WebSocket, so an operator's backend trades
  its API key for a short-lived signed token (``POST /v1/tokens``) that the
  page passes as ``?token=``. A token names the key it came from (by hash
  prefix) and the signing key that made it (by key id, see keyring.py),
  expires, may cap the session's length, and is scoped: it opens sessions and
  speech synthesis, never ``/metrics`` and never another token.
* With no key configured the gateway still works for a person on their own
  machine: clients at a loopback address (127.0.0.1 and ::1 unless configured)
  are let in, but only when the ``Host`` they asked for names this machine
  too, so a page from another site whose name was rebound to 127.0.0.1 (DNS
  rebinding) is refused. Every other address is refused, unless the operator
  explicitly serves without auth (``--no-auth``).
* Origins are compared as browsers send them: scheme and host in any case,
  default ports (80, 443) written or not.
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
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import urlsplit

from hushgate.server.keyring import KeyRing

KEY_PREFIX = "sha256:"
TOKEN_VERSION = "v2"
TOKEN_PURPOSE = "token signing"
DEFAULT_LOOPBACK = ("127.0.0.1", "::1")
_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}

Outcome = Literal["ok", "unauthorized", "forbidden"]
Scope = Literal["stream", "tts", "metrics"]
EVERY_SCOPE: frozenset[Scope] = frozenset({"stream", "tts", "metrics"})
BROWSER_SCOPES: frozenset[Scope] = frozenset({"stream", "tts"})


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
    scopes: frozenset[Scope] = field(default=EVERY_SCOPE)
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
        token_secret: str | bytes | None,
        allowed_origins: tuple[str, ...],
        no_auth: bool,
        token_ttl_max_s: float = 3600.0,
        previous_token_secrets: Sequence[str | bytes] = (),
        loopback_addresses: Sequence[str] = DEFAULT_LOOPBACK,
    ) -> None:
        self._digests = {h.removeprefix(KEY_PREFIX) for h in key_hashes}
        self._keys = KeyRing(TOKEN_PURPOSE, token_secret, previous_token_secrets)
        self._any_origin = "*" in allowed_origins
        self._origins = frozenset(filter(None, (normalise_origin(o) for o in allowed_origins if o != "*")))
        self._loopback = frozenset(filter(None, (_ip(a) for a in loopback_addresses)))
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

    def issue_token(
        self, principal: Principal, *, ttl_s: float, max_session_s: float | None, now: float | None = None
    ) -> str:
        payload = {
            "kid": principal.key_id,
            # Rounded up: truncating let a 1 s token expire before its first use.
            "exp": math.ceil((now or time.time()) + min(ttl_s, self.token_ttl_max_s)),
            "max_session_s": max_session_s,
            "scope": sorted(BROWSER_SCOPES & principal.scopes),
            "n": secrets.token_urlsafe(8),
        }
        body = _b64(json.dumps(payload, separators=(",", ":"), allow_nan=False).encode())
        key = self._keys.current
        signed = f"{TOKEN_VERSION}.{key.key_id}.{body}"
        return f"{signed}.{_b64(hmac.new(key.key, signed.encode(), hashlib.sha256).digest())}"

    def check_token(self, token: str, *, now: float | None = None) -> Principal | None:
        parts = token.split(".")
        if len(parts) != 4 or parts[0] != TOKEN_VERSION:
            return None
        key = self._keys.find(parts[1])
        if key is None:
            return None  # signed by a key this deployment never had, or has retired
        expected = hmac.new(key.key, ".".join(parts[:3]).encode(), hashlib.sha256).digest()
        try:
            if not hmac.compare_digest(expected, _unb64(parts[3])):
                return None
            payload = json.loads(_unb64(parts[2]))
        except (ValueError, TypeError):
            return None
        if not isinstance(payload, dict) or not isinstance(payload.get("exp"), int):
            return None
        if payload["exp"] < (now or time.time()):
            return None
        cap = payload.get("max_session_s")
        scope = payload.get("scope")
        scopes = frozenset(s for s in scope if s in BROWSER_SCOPES) if isinstance(scope, list) else frozenset()
        nonce = payload.get("n")
        return Principal(
            key_id=str(payload.get("kid")),
            max_session_s=float(cap) if cap else None,
            scopes=scopes,
            token_id=nonce if isinstance(nonce, str) else None,
        )

    def origin_allowed(self, origin: str | None, host: str | None) -> bool:
        """Browsers always send Origin; other clients usually do not."""
        if origin is None:
            return True
        if self._any_origin:
            return True
        normalised = normalise_origin(origin)
        if normalised is None:
            return False  # "null" (sandboxed frames, file://) or garbage
        if normalised in self._origins:
            return True
        # The gateway's own pages (demo, overlay) are same-origin.
        scheme = normalised.split("://", 1)[0]
        return host is not None and normalise_origin(f"{scheme}://{host}") == normalised

    def host_is_loopback(self, host: str | None) -> bool:
        """Whether the ``Host`` a client asked for names this machine (not a rebound public name)."""
        name = _hostname(host)
        if name is None:
            return False
        return name == "localhost" or _ip(name) in self._loopback

    def is_loopback(self, client_host: str | None) -> bool:
        """A client on this machine: 127.0.0.1 and ::1 unless ``loopback_addresses`` says otherwise."""
        address = _ip(client_host) if client_host else None
        return address is not None and address in self._loopback

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
            return (
                Decision("ok", "token", principal)
                if principal
                else Decision("unauthorized", "invalid or expired token")
            )
        if self.no_auth:
            return Decision("ok", "auth disabled", Principal("anonymous"))
        if not self.keys_configured and self.is_loopback(client_host):
            if not self.host_is_loopback(host):
                return Decision("forbidden", "no API keys configured: only a Host naming this machine is served")
            return Decision("ok", "loopback", Principal("loopback"))
        if not self.keys_configured:
            return Decision("forbidden", "no API keys configured: only loopback clients are served")
        return Decision("unauthorized", "credentials required: Authorization: Bearer KEY or ?token=")


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text.strip().strip("[]"))
    except ValueError:
        return None


def _hostname(host: str | None) -> str | None:
    """The name in a ``Host`` header, lower-cased and without port or IPv6 brackets."""
    if not host:
        return None
    try:
        name = urlsplit(f"http://{host.strip()}").hostname
    except ValueError:
        return None
    return name or None


def normalise_origin(origin: str) -> str | None:
    """``scheme://host[:port]`` as browsers compare it: lower case, default ports dropped."""
    try:
        parts = urlsplit(origin.strip())
        port = parts.port
    except ValueError:
        return None
    scheme, name = parts.scheme.lower(), parts.hostname
    if not scheme or not name or parts.path not in ("", "/") or parts.query or parts.username:
        return None
    if ":" in name:
        name = f"[{name}]"
    if port is None or port == _DEFAULT_PORTS.get(scheme):
        return f"{scheme}://{name}"
    return f"{scheme}://{name}:{port}"
