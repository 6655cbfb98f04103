"""Cut text into chunks a VITS voice can start speaking quickly.

A VITS model renders a whole utterance in one run, so the time to the first
sample grows with the length of the first piece of text: a 40-word sentence
took 1.3 s before its first sample, while its first clause alone took 0.06 s.
`split_text` therefore cuts the text at sentence boundaries, then long
sentences at clause boundaries (``,;:`` and dashes), and lets each chunk be at
most twice as long as all the text before it (between ``first_chunk_chars``
and ``max_chunk_chars``). Synthesis runs at about a tenth of real time on one
core, so each chunk is ready long before the audio ahead of it has played out,
even at half of real time under load. Cuts are never made inside a clause
unless the clause alone is longer than ``max_chunk_chars``, because a cut
mid-phrase makes the voice drop its pitch as if the sentence had ended.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from hushgate.engines.base import EngineError

FIRST_CHUNK_CHARS = 40
"""Longest first chunk, about two seconds of speech and 0.1-0.2 s of compute."""
MAX_CHUNK_CHARS = 160
"""Longest chunk, so one request never holds a worker for much over a second."""
CHUNK_GROWTH = 2
"""A chunk may be this many times as long as all the text yielded before it."""

# A sentence ends at . ! ? or an ellipsis (with any closing quotes or brackets)
# followed by white space, at CJK full stops, or at a blank line.
_SENTENCE_END = re.compile(r"[.!?…]+[\"'”’»)\]]*\s+|[。！？]+[」』”’）]*\s*|\n\s*\n\s*")
# Clauses end at , ; : followed by a space (so "3,5" and "10:30" stay whole), at
# CJK commas, at an em dash, and at a spaced en dash or hyphen ("1990–2000" and
# "well-known" stay whole).
_CLAUSE_END = re.compile(r"[,;:]\s+|[，、；：]\s*|\s*—\s*|\s+(?:[–-]|--)\s+")


def split_text(
    text: str,
    *,
    first_chunk_chars: int = FIRST_CHUNK_CHARS,
    max_chunk_chars: int = MAX_CHUNK_CHARS,
) -> list[str]:
    """Cut ``text`` into chunks to synthesise one after another; [] when it is blank.

    Every sentence starts a new chunk. A sentence longer than the current limit
    is cut into clauses, which are packed back together up to the limit. The
    limit is ``CHUNK_GROWTH`` times the text already chunked, kept between
    ``first_chunk_chars`` and ``max_chunk_chars``.
    """
    check_chunk_sizes(first_chunk_chars, max_chunk_chars)
    chunks: list[str] = []
    chunked_chars = 0
    for sentence in _sentences(text):
        limit_chars = _limit_chars(chunked_chars, first_chunk_chars, max_chunk_chars)
        if len(sentence) <= limit_chars:
            pieces = [sentence]
        else:
            pieces = [
                piece
                for clause in _clauses(sentence)
                for piece in (_words(clause, max_chunk_chars) if len(clause) > max_chunk_chars else [clause])
            ]
        current = ""
        for piece in pieces:
            limit_chars = _limit_chars(chunked_chars, first_chunk_chars, max_chunk_chars)
            if current and len(current) + 1 + len(piece) > limit_chars:
                chunks.append(current)
                chunked_chars += len(current)
                current = ""
            current = f"{current} {piece}" if current else piece
        if current:
            chunks.append(current)
            chunked_chars += len(current)
    return chunks


def check_chunk_sizes(first_chunk_chars: int, max_chunk_chars: int) -> None:
    if first_chunk_chars < 1 or max_chunk_chars < first_chunk_chars:
        raise EngineError(
            f"piper: need 1 <= first_chunk_chars <= max_chunk_chars, got {first_chunk_chars} and {max_chunk_chars}"
        )


def _limit_chars(chunked_chars: int, first_chunk_chars: int, max_chunk_chars: int) -> int:
    return min(max_chunk_chars, max(first_chunk_chars, CHUNK_GROWTH * chunked_chars))


def _sentences(text: str) -> Iterator[str]:
    start = 0
    for match in _SENTENCE_END.finditer(text):
        end = match.end()
        # "e.g. this" or "approx. ten": a full stop before a lower-case word is
        # far more often an abbreviation than the end of a sentence.
        if match.group()[0] in ".…" and end < len(text) and text[end].islower():
            continue
        sentence = text[start:end].strip()
        if sentence:
            yield sentence
        start = end
    tail = text[start:].strip()
    if tail:
        yield tail


def _clauses(sentence: str) -> Iterator[str]:
    start = 0
    for match in _CLAUSE_END.finditer(sentence):
        clause = sentence[start : match.end()].strip()
        if clause:
            yield clause
        start = match.end()
    tail = sentence[start:].strip()
    if tail:
        yield tail


def _words(clause: str, limit_chars: int) -> Iterator[str]:
    """A clause with no punctuation to cut at, cut between words (or inside one that is too long)."""
    current = ""
    for word in clause.split():
        while len(word) > limit_chars:
            if current:
                yield current
                current = ""
            yield word[:limit_chars]
            word = word[limit_chars:]
        if current and len(current) + 1 + len(word) > limit_chars:
            yield current
            current = ""
        current = f"{current} {word}" if current else word
    if current:
        yield current
