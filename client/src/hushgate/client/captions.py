"""Subtitle cues (SRT and WebVTT), shared by the transcribe command and the server's HTTP API."""

from __future__ import annotations

from typing import Literal


def timestamp(ms: int, separator: str = ",") -> str:
    """``HH:MM:SS,mmm`` (SRT) or, with ``separator="."``, ``HH:MM:SS.mmm`` (WebVTT)."""
    ms = max(0, int(ms))
    hours, ms = divmod(ms, 3_600_000)
    minutes, ms = divmod(ms, 60_000)
    seconds, ms = divmod(ms, 1000)
    return f"{hours:02d}:{minutes:02d}:{seconds:02d}{separator}{ms:03d}"


def cue(number: int, t0_ms: int, t1_ms: int, text: str, fmt: Literal["srt", "vtt"]) -> str:
    """One subtitle cue with its trailing blank line."""
    separator = "," if fmt == "srt" else "."
    # A blank line would end the cue early, and `-->` is reserved in WebVTT cue text.
    body = " ".join(text.split()).replace("-->", "->")
    return f"{number}\n{timestamp(t0_ms, separator)} --> {timestamp(max(t0_ms, t1_ms), separator)}\n{body}\n\n"
