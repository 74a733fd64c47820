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
