"""The marks that end a sentence or break a clause, in the scripts Whisper writes.

Text endpointing judges a pause by them (`hushgate.server.segmenter`); Whisper's
stream settles a decode only after one and strips a sentence end from the words it
forces (`hushgate.engines.whisper_context`, `hushgate.engines.whisper_decode`).
"..." is not a sentence end: Whisper marks speech that trails off with it, a pause
inside a thought.
"""

from __future__ import annotations

SENTENCE_END = ".?!。？！؟।"
CLAUSE_BREAK = ",;:、，；："
DASHES = "-–—"
# Quotes and brackets that may follow the mark that counts.
CLOSERS = "\"'”’»)]」』"


def last_mark(text: str) -> str:
    """The last character of ``text`` once closing quotes, brackets and spaces are set aside."""
    stripped = text.rstrip().rstrip(CLOSERS).rstrip()
    return stripped[-1:] if not stripped.endswith(("...", "…")) else "…"
