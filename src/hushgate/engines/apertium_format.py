"""Plain text ↔ Apertium's stream format, as ``apertium-destxt`` and ``apertium-retxt`` do it.

The text has to be *deformatted* on its way into a pipeline (characters that
mean something in Apertium's stream escaped, line breaks and tabs kept aside in
"superblanks") and reformatted on its way out. ``apertium`` does that with
``apertium-destxt`` and ``apertium-retxt``, but those two programs (Apertium
3.8) drop NUL bytes and do not flush on them, so they cannot sit in a
long-running null-flush pipeline. The same, small, transformation is done here
in Python (`deformat_txt`, `reformat_txt`); the tests check it against the two
programs.
"""

from __future__ import annotations

import re
from typing import Final

# Characters that mean something in Apertium's stream format: apertium-destxt
# escapes exactly these and apertium-retxt unescapes exactly these.
_RESERVED: Final = frozenset("[]\\^$/<>@{}")
# Runs of these are blanks; apertium-destxt treats "~" as one too.
_BLANK_RUN = re.compile(r"[ \t\n\r~]+")
_PARAGRAPH_BREAK = re.compile(r"\n\n|\r\n\r\n")
# Inserted by the deformatter so the tagger and transfer see a sentence end.
_SENTENCE_END: Final = ".[]"


def _escape(text: str) -> str:
    return "".join("\\" + ch if ch in _RESERVED else ch for ch in text)


def deformat_txt(text: str) -> str:
    """Plain text → Apertium stream, as ``apertium-destxt`` (Apertium 3.8) does it.

    Reserved characters are escaped; a blank other than one space is kept in a
    superblank ``[...]``; a sentence end ``.[]`` goes before every paragraph
    break and before the trailing blank. NUL bytes are dropped (they are the
    pipeline's flush signal, and apertium-destxt drops them too).
    """
    text = text.replace("\0", "")
    parts: list[str] = []
    position = 0
    ended = False
    for blank in _BLANK_RUN.finditer(text):
        parts.append(_escape(text[position : blank.start()]))
        run = blank.group()
        at_end = blank.end() == len(text)
        ended = False
        if _PARAGRAPH_BREAK.search(run) or at_end:
            parts.append(_SENTENCE_END)
            ended = True
        # A lone trailing space stays bare after the sentence end (destxt does
        # the same); any other blank but one space is a superblank.
        parts.append(run if run == " " else f"[{run}]")
        position = blank.end()
    if position < len(text) or not ended:
        parts.append(_escape(text[position:]))
        parts.append(_SENTENCE_END)
    return "".join(parts)


def reformat_txt(stream: str) -> str:
    """Apertium stream → plain text, as ``apertium-retxt`` does it."""
    out: list[str] = []
    i = 0
    length = len(stream)
    while i < length:
        ch = stream[i]
        if ch == "\\" and i + 1 < length and stream[i + 1] in _RESERVED:
            out.append(stream[i + 1])
            i += 2
        elif stream.startswith(_SENTENCE_END, i):
            i += len(_SENTENCE_END)
        elif ch in "[]":
            i += 1
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def edges_like(source: str, translated: str) -> str:
    """Drop blanks at the ends of a translation that its source did not have.

    A dropped subject pronoun leaves its space behind ("She bought" →
    " Compró"); a subtitle should not start with it.
    """
    if not source[:1].isspace():
        translated = translated.lstrip()
    if not source[-1:].isspace():
        translated = translated.rstrip()
    return translated
