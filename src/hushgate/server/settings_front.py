"""The server's front: where it listens, what it logs, who may connect and how many at once.

The first fields of `hushgate.server.settings.Settings`, which extends this
class; kept apart so that each module reads as one list of what can be set.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hushgate.server.settings_parse import doc as _doc


@dataclass(frozen=True, slots=True)
class FrontSettings:
    host: str = field(default="127.0.0.1", metadata=_doc("Address to listen on."))
    port: int = field(default=8000, metadata=_doc("TCP port to listen on."))
    log_level: str = field(default="info", metadata=_doc("debug, info, warning or error."))
    log_json: bool = field(default=False, metadata=_doc("Write logs as one JSON object per line."))
    log_content: bool = field(
        default=False,
        metadata=_doc("Log transcripts and other content. Off: logs carry ids, sizes and timings only."),
    )
    api_keys: tuple[str, ...] = field(
        default=(),
        metadata=_doc(
            "SHA-256 hashes (`sha256:HEX`) of the API keys clients may use; make one with "
            "`hushgate keys new`. None: only loopback clients are served.",
            repeat=True,
        ),
    )
    token_secret: str | None = field(
        default=None,
        metadata=_doc(
            "Secret that signs browser tokens; set the same one on every replica. "
            "Unset: random per process (tokens die with it)."
        ),
    )
    token_secrets_previous: tuple[str, ...] = field(
        default=(),
        metadata=_doc(
            "Token secrets being rotated out: tokens they signed still verify until they expire; new "
            "tokens are signed with `token_secret`.",
            repeat=True,
        ),
    )
    token_ttl_s: float = field(default=300.0, metadata=_doc("Default lifetime of a token from `POST /v1/tokens`."))
    allowed_origins: tuple[str, ...] = field(
        default=(),
        metadata=_doc(
            "Origins whose pages may connect (e.g. `https://app.example.com`); the gateway's own "
            "pages always may. `*` allows any.",
            repeat=True,
        ),
    )
    loopback_addresses: tuple[str, ...] = field(
        default=("127.0.0.1", "::1"),
        metadata=_doc(
            "Client addresses taken for this machine's own user when no API keys are configured "
            "(the `Host` must name one of them or `localhost` too). Not all of 127/8: a sidecar in "
            "the same pod connects from 127.0.0.6.",
            repeat=True,
        ),
    )
    no_auth: bool = field(
        default=False, metadata=_doc("Serve every address without credentials. Only behind your own auth proxy.")
    )
    max_sessions_per_key: int | None = field(
        default=None,
        metadata=_doc(
            "Sessions (and HTTP API requests) one API key may hold at once, its browser tokens included; "
            "unset: half of `max_sessions`; 0: only the global limit."
        ),
    )
    max_sessions_per_address: int | None = field(
        default=None,
        metadata=_doc(
            "Sessions one client address may hold at once (loopback is exempt: a local proxy makes "
            "every client look alike); unset: a quarter of `max_sessions`; 0: no cap."
        ),
    )
    max_sessions_per_token: int = field(
        default=1,
        metadata=_doc(
            "Sessions one browser token may hold at once (a token is reusable until it expires, "
            "but not in parallel); 0: no cap."
        ),
    )
    max_pending: int = field(
        default=32,
        metadata=_doc(
            "Connections that have not sent `start` yet (on `/vosk`: their first audio), server-wide; "
            "one more closes the oldest waiting one (1013), so idle connections cannot lock others out."
        ),
    )
    session_rate_per_min: float = field(
        default=60.0,
        metadata=_doc(
            "Sessions one client address, and separately one API key (its tokens included), may start per "
            "minute once its burst is spent; an OpenAI-API request counts as one. Loopback is exempt. Over it: "
            "`overloaded`, 1013 (HTTP: 429 with `Retry-After`); 0: no limit."
        ),
    )
    session_rate_burst: int = field(
        default=20,
        metadata=_doc("Sessions an address or key may start in a row before `session_rate_per_min` applies."),
    )
    drain_timeout_s: float = field(
        default=30.0,
        metadata=_doc("On SIGTERM: how long running sessions may go on before they are finished and closed (1001)."),
    )
