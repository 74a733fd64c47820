"""Split clauses into sentence-aligned chunks small enough to embed sharply.

A clause is scored by its best chunk, so a long article is not drowned by its own length, and a
short clause stays one chunk. Every chunk carries the document title and heading path.
"""

from __future__ import annotations

import hashlib

from assistant.schema import Chunk, Clause
from assistant.text import sentences

MAX_CHARS = 260


def clause_context(clause: Clause) -> str:
    return " › ".join((clause.document, *clause.path))


def chunk_clause(clause: Clause, max_chars: int = MAX_CHARS) -> list[Chunk]:
    text = clause.text
    pieces: list[str] = []
    start = end = None
    for s, e in sentences(text):
        if start is None:
            start, end = s, e
        elif e - start <= max_chars:
            end = e
        else:
            pieces.append(text[start:end])
            start, end = s, e
    if start is not None:
        pieces.append(text[start:end])
    # A sentence longer than a chunk (a run of text without sentence punctuation) is cut at a
    # comma or space near the limit, else hard: no chunk is ever longer than `max_chars`.
    pieces = [part for piece in pieces for part in _bounded(piece, max_chars)]
    context = clause_context(clause)
    return [
        Chunk(
            chunk_id=hashlib.sha1(f"{clause.clause_id}:{i}:{piece}".encode()).hexdigest()[:16],
            clause_id=clause.clause_id,
            text=piece,
            context=context,
        )
        for i, piece in enumerate(pieces or [text])
    ]


_SOFT_BREAKS = "，,；;：:、 \t\n"


def _bounded(piece: str, max_chars: int) -> list[str]:
    parts: list[str] = []
    while len(piece) > max_chars:
        window = piece[:max_chars]
        cut = max(window.rfind(ch) for ch in _SOFT_BREAKS) + 1
        if cut < max_chars // 2:
            cut = max_chars
        parts.append(piece[:cut])
        piece = piece[cut:]
    if piece.strip() or not parts:
        parts.append(piece)
    return parts
