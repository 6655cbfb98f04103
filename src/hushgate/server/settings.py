"""One frozen settings object; the CLI, the environment and code all map onto it.

Every field can be set three ways, in rising precedence: its default here, the
environment variable ``HUSHGATE_<FIELD>``, and the ``serve`` flag
``--<field-with-dashes>``. ``docs/settings.md`` is generated from this module
(``python -m hushgate.server.settings``) so the table cannot drift from the code.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hushgate.server.settings_front import FrontSettings
from hushgate.server.settings_parse import SettingsError, markdown_table, parse_value
from hushgate.server.settings_parse import doc as _doc

ENV_PREFIX = "HUSHGATE_"
# Shortest token secret or voiceprint key accepted (`hushgate keys new` makes 47 characters).
MIN_SECRET_CHARS = 32


@dataclass(frozen=True, slots=True)
class Settings(FrontSettings):
    models_dir: Path | None = field(
        default=None,
        metadata=_doc("Where downloaded models live (default: $XDG_DATA_HOME/hushgate/models)."),
    )
    stt: tuple[str, ...] = field(
        default=("en=whisper", "*=whisper:whisper-base"),
        metadata=_doc(
            "Language → speech-to-text engine table: `LANG=ENGINE[:MODEL]`, comma-separated in the "
            "environment, repeated as a flag. MODEL is a catalogue name or a path. `*=ENGINE[:MODEL]` serves "
            'every other language that model knows, and `language: "auto"` (skipped with a warning when '
            "not installed, if other entries exist).",
            repeat=True,
        ),
    )
    default_language: str = field(default="en", metadata=_doc("Language of a session whose `start` names none."))
    translators: tuple[str, ...] = field(
        default=("apertium", "argos"),
        metadata=_doc(
            "Translation engines to load, in order of preference; one that is not installed is skipped.", repeat=True
        ),
    )
    synthesizers: tuple[str, ...] = field(
        default=("piper", "espeak"),
        metadata=_doc(
            "Text-to-speech engines to load, in order of preference (a language's first voice wins).", repeat=True
        ),
    )
    speaker_encoder: str = field(
        default="resemblyzer",
        metadata=_doc("Speaker encoder for enrollment, verification and identification; empty: none."),
    )
    voiceprint_key: str | None = field(
        default=None,
        metadata=_doc(
            "Secret that seals exported voiceprints; set the same one on every replica. "
            "Unset: random per process, so exports do not survive a restart."
        ),
    )
    voiceprint_keys_previous: tuple[str, ...] = field(
        default=(),
        metadata=_doc(
            "Voiceprint keys being rotated out: blobs they sealed still open; new exports are sealed "
            "with `voiceprint_key`.",
            repeat=True,
        ),
    )
    voiceprint_ttl_s: float = field(
        default=90 * 86_400.0,
        metadata=_doc("How long an exported voiceprint may be imported again (it carries its expiry)."),
    )
    deployment_id: str = field(
        default="hushgate",
        metadata=_doc(
            "Names this deployment; sealed voiceprints carry it and open only where it matches. "
            "Give staging and production different ones."
        ),
    )
    enroll_needed_ms: int = field(
        default=15_000, metadata=_doc("Speech an enrollment collects unless the request asks otherwise (floor 4000).")
    )
    vad: str = field(default="webrtc", metadata=_doc("Voice activity detector: `webrtc` or `silero`."))
    engine_threads: int = field(default=1, metadata=_doc("CPU threads inside one engine call."))
    stt_concurrency: int = field(
        default=2, metadata=_doc("Speech-to-text calls running at once (per engine); more wait in a queue.")
    )
    translate_concurrency: int = field(default=1, metadata=_doc("Translation calls running at once, per engine."))
    tts_concurrency: int = field(default=1, metadata=_doc("Synthesis calls running at once, per engine."))
    max_text_chars: int = field(
        default=5_000, metadata=_doc("Longest text a `speak` or `translate` request may carry.")
    )
    speak_queue: int = field(
        default=4, metadata=_doc("Syntheses waiting per session; one more is refused as `overloaded`.")
    )
    translate_partials_ms: int = field(
        default=1_000, metadata=_doc("Least time between provisional translations of one utterance's partials.")
    )
    engine_queue: int = field(
        default=64,
        metadata=_doc("Calls that may wait for one engine; beyond that a request is refused as `overloaded`."),
    )
    whisper_beam_size: int = field(default=1, metadata=_doc("Beam size of Whisper's final decode."))
    whisper_device: str = field(
        default="cpu", metadata=_doc("Where Whisper runs: `cpu`, `cuda` or `auto` (CTranslate2 device).")
    )
    whisper_compute_type: str = field(
        default="int8",
        metadata=_doc("Whisper's CTranslate2 compute type: `int8`, `int8_float16`, `float16`, `float32`, `default`…"),
    )
    whisper_partial_nice: int = field(
        default=10,
        metadata=_doc(
            "Nice value added to the threads of a second copy of the Whisper model that decodes partials, so "
            "finals get the CPU first (CPU only; 0: one copy, partials and finals share it)."
        ),
    )
    language_switching: bool = field(
        default=False,
        metadata=_doc(
            'Sessions with `language: "auto"` may change language between utterances (off: the first '
            "confident detection holds for the session)."
        ),
    )
    language_switch_margin: float = field(
        default=0.4,
        metadata=_doc("With switching on: how much more probable (0–1) another language must be to take over."),
    )
    whisper_final_window: str = field(
        default="short",
        metadata=_doc(
            "Window of Whisper's final decode: `short` (the utterance plus 5 s; p50 145 ms against 508 ms "
            "on the shared corpus) or `full` (faster-whisper's 30 s window)."
        ),
    )
    whisper_context: bool = field(
        default=False,
        metadata=_doc(
            "Give Whisper the session's earlier text as a prompt (off: it made the tiny model invent endings)."
        ),
    )
    whisper_left_context_s: float = field(
        default=3.0,
        metadata=_doc(
            "Seconds of the previous utterance's end that Whisper's short-window final decodes before the new "
            "audio, its words forced as prefix (0: each utterance alone)."
        ),
    )
    whisper_settle_inside_s: float = field(
        default=6.0,
        metadata=_doc(
            "Audio of one utterance after which Whisper cuts it between two words at least 3 s back, so later "
            "partials and the final decode only what follows, with left context (0: never)."
        ),
    )
    partial_interval_ms: int = field(
        default=0,
        metadata=_doc("Audio between two partials; 0 uses each engine's own (Whisper 1000, Vosk 200)."),
    )
    vad_aggressiveness: int = field(default=2, metadata=_doc("Default VAD aggressiveness, 0–3."))
    silence_ms: int = field(default=500, metadata=_doc("Default silence that ends an utterance."))
    max_utterance_ms: int = field(default=15_000, metadata=_doc("Default longest utterance before a forced cut."))
    preroll_ms: int = field(default=300, metadata=_doc("Audio kept before speech onset so first syllables survive."))
    hangover_ms: int = field(default=200, metadata=_doc("Silence kept after the last speech frame of an utterance."))
    endpointing: str = field(
        default="vad",
        metadata=_doc(
            "How a pause ends an utterance: `vad`, after `silence_ms`; `text`, also by what was said, for "
            "engines that punctuate (Whisper): see `endpoint_early_ms` and `endpoint_hold_ms`."
        ),
    )
    endpoint_early_ms: int = field(
        default=300,
        metadata=_doc("With `endpointing` text: pause that ends an utterance whose text ends a sentence."),
    )
    endpoint_hold_ms: int = field(
        default=700,
        metadata=_doc("With `endpointing` text: pause beyond `silence_ms` that text going on waits for more speech."),
    )
    speculative_finals: bool = field(
        default=True,
        metadata=_doc(
            "With `endpointing` vad: decode at each pause that reaches `hangover_ms`, so the final is ready "
            "sooner when the pause is the end (engines that punctuate; text endpointing always does)."
        ),
    )
    max_sessions: int = field(default=16, metadata=_doc("Concurrent sessions; one more is closed with 1013."))
    max_frame_bytes: int = field(
        default=1 << 20, metadata=_doc("Largest WebSocket frame accepted; larger closes with 1009.")
    )
    start_timeout_s: float = field(
        default=5.0,
        metadata=_doc(
            "Time a client has to send `start` (on `/vosk`: its first audio); it is closed after that "
            "(1008), whatever else it sent."
        ),
    )
    header_timeout_s: float = field(
        default=10.0,
        metadata=_doc("Time a connection has to finish its request headers; slower ones are closed (slowloris)."),
    )
    max_connections: int = field(
        default=256,
        metadata=_doc("Open connections and requests the HTTP server serves at once; past it, HTTP 503."),
    )
    idle_timeout_s: float = field(default=120.0, metadata=_doc("A session that sends nothing this long is ended."))
    max_session_s: float = field(default=4 * 3600.0, metadata=_doc("Longest session."))
    control_rate_per_s: float = field(
        default=50.0,
        metadata=_doc(
            "Control messages (everything but audio) one session may send per second, with bursts "
            "of twice that; a message costs 1 plus 1 per KiB and is charged before it is decoded. "
            "The excess is refused as `overloaded`; a client that keeps going after another burst's "
            "worth of refusals is closed (1008)."
        ),
    )
    lag_warning_ms: int = field(
        default=10_000,
        metadata=_doc(
            "When audio waits longer than this for speech-to-text, the client is told (`overloaded`, "
            "not fatal) instead of silently lagging."
        ),
    )
    outbox_events: int = field(
        default=256,
        metadata=_doc("Events waiting to be sent to one client; a client that lets more pile up is closed (1013)."),
    )
    backlog_ms: int = field(
        default=30_000,
        metadata=_doc("Audio waiting for the engine per session before the server stops reading from that client."),
    )
    max_upload_bytes: int = field(
        default=25 * 1024 * 1024,
        metadata=_doc(
            "Largest request body of the OpenAI-compatible HTTP API (an audio file upload); larger is "
            "refused (413) before it is read."
        ),
    )
    max_file_s: float = field(
        default=3 * 3600.0,
        metadata=_doc(
            "Longest audio file the HTTP API transcribes, after decoding (a small compressed file can hold hours)."
        ),
    )
    wyoming_uri: str = field(
        default="",
        metadata=_doc("Also serve the Wyoming protocol (Home Assistant) here, e.g. `tcp://0.0.0.0:10300`; empty: off."),
    )

    # Mapping from the outside world.

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            raw = environ.get(ENV_PREFIX + f.name.upper())
            if raw is not None:
                values[f.name] = parse_value(cls, f, raw, ENV_PREFIX)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values).validated()

    def validated(self) -> Settings:
        if not 1 <= self.port <= 65535 and self.port != 0:
            raise SettingsError(f"port must be 0–65535, not {self.port}")
        if not 0 <= self.vad_aggressiveness <= 3:
            raise SettingsError("vad_aggressiveness must be 0–3")
        if self.vad not in ("webrtc", "silero"):
            raise SettingsError(f"vad must be webrtc or silero, not {self.vad!r}")
        for name in ("max_sessions", "stt_concurrency", "engine_threads", "outbox_events", "max_frame_bytes"):
            if getattr(self, name) < 1:
                raise SettingsError(f"{name} must be at least 1")
        if not 0 <= self.whisper_left_context_s <= 10:
            raise SettingsError("whisper_left_context_s must be 0–10")
        if not 0 <= self.whisper_settle_inside_s <= 30:
            raise SettingsError("whisper_settle_inside_s must be 0–30")
        if not 0 <= self.whisper_partial_nice <= 19:
            raise SettingsError("whisper_partial_nice must be 0–19")
        if not 0.0 <= self.language_switch_margin <= 1.0:
            raise SettingsError("language_switch_margin must be 0–1")
        if self.whisper_final_window not in ("short", "full"):
            raise SettingsError(f"whisper_final_window must be short or full, not {self.whisper_final_window!r}")
        if not 100 <= self.silence_ms <= 5000:
            raise SettingsError("silence_ms must be 100–5000")
        if self.endpointing not in ("vad", "text"):
            raise SettingsError(f"endpointing must be vad or text, not {self.endpointing!r}")
        if not (0 <= self.endpoint_early_ms <= 5000 and 0 <= self.endpoint_hold_ms <= 5000):
            raise SettingsError("endpoint_early_ms and endpoint_hold_ms must be 0–5000")
        if not 1000 <= self.max_utterance_ms <= 30_000:
            raise SettingsError("max_utterance_ms must be 1000–30000 (Whisper sees at most 30 s)")
        for name in ("token_secret", "voiceprint_key", "token_secrets_previous", "voiceprint_keys_previous"):
            value = getattr(self, name)
            if any(
                0 < len(secret) < MIN_SECRET_CHARS for secret in ((value,) if isinstance(value, str) else value or ())
            ):
                raise SettingsError(
                    f"{name} must be at least {MIN_SECRET_CHARS} characters (`hushgate keys new` makes one)"
                )
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, float) and not math.isfinite(value):
                raise SettingsError(f"{f.name} must be a finite number, not {value}")
        for address in self.loopback_addresses:
            try:
                ipaddress.ip_address(address)
            except ValueError:
                raise SettingsError(f"loopback_addresses holds IP addresses, not {address!r}") from None
        if not self.deployment_id.strip():
            raise SettingsError("deployment_id must not be empty")
        for key in self.api_keys:
            if not key.startswith("sha256:") or len(key) != 71:
                raise SettingsError("api_keys holds hashes (sha256:HEX), not keys: see `hushgate keys new`")
        for name in ("max_sessions_per_key", "max_sessions_per_address", "max_sessions_per_token"):
            if (getattr(self, name) or 0) < 0:
                raise SettingsError(f"{name} must not be negative")
        if not 0 <= self.session_rate_per_min <= 60_000 or not 1 <= self.session_rate_burst <= 10_000:
            raise SettingsError("session_rate_per_min must be 0–60000 and session_rate_burst 1–10000")
        if self.max_pending < 1 or self.start_timeout_s <= 0:
            raise SettingsError("max_pending must be at least 1 and start_timeout_s positive")
        if self.max_upload_bytes < 1024 or self.max_file_s <= 0:
            raise SettingsError("max_upload_bytes must be at least 1024 and max_file_s positive")
        if self.wyoming_uri and not self.wyoming_uri.startswith(("tcp://", "unix://")):
            raise SettingsError(f"wyoming_uri must be tcp://HOST:PORT or unix://PATH, not {self.wyoming_uri!r}")
        self.stt_table()
        return self

    def session_caps(self) -> tuple[int, int, int]:
        """(per key, per address, per token); 0 means no cap of that kind."""
        per_key = self.max_sessions_per_key
        per_address = self.max_sessions_per_address
        return (
            max(1, self.max_sessions // 2) if per_key is None else per_key,
            max(1, self.max_sessions // 4) if per_address is None else per_address,
            self.max_sessions_per_token,
        )

    def stt_table(self) -> dict[str, tuple[str, str | None]]:
        """``{language: (engine, model or None)}``."""
        table: dict[str, tuple[str, str | None]] = {}
        for item in self.stt:
            lang, sep, target = item.partition("=")
            engine, _, model = target.partition(":")
            if not sep or not lang.strip() or not engine.strip():
                raise SettingsError(f"stt entry {item!r} is not LANG=ENGINE[:MODEL]")
            table[lang.strip()] = (engine.strip(), model.strip() or None)
        if self.default_language not in table and "*" not in table:
            raise SettingsError(f"default_language {self.default_language!r} has no stt entry")
        return table


def settings_table() -> str:
    """Markdown table of every setting, for docs/settings.md."""
    return markdown_table(Settings, ENV_PREFIX)


if __name__ == "__main__":
    print(settings_table())
