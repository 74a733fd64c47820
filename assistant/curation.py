"""Corrections by the rulebook's owners: curated (question → clauses | not covered) pairs.

An owner reviewing what staff asked can pick the clause(s) that answer a question, mark it "not
covered" with whom to ask, or confirm the answer given (its cited clauses become the curated
ones). Each correction is a row of `DATA_DIR/curated.sqlite`, outside the index generations, so a
re-ingest keeps it; clauses are kept by id *and* by (file, clause label), the key eval cases use,
so a correction survives a revision that renumbers nothing and is dropped, not misapplied, when
its clause is gone.

Corrections are used three ways:

- **At once, for close paraphrases.** A new question whose query vector is at least `SIMILAR`
  (cosine, e5) from a curated question's — and that names no subject of the rulebook the curated
  question did not (see `Curations.match`) — is answered from the curated clauses, or refused
  with the curated contact. The threshold is calibrated for precision: a correction must not
  capture a neighbouring question (see `eval/CORRECTIONS.md`).
- **As training pairs** for `rulebook learn` (they are read with the other pair files).
- **As a regression set**: `export_cases` writes them in the eval case format, and
  `rulebook eval --curated` runs them.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from assistant.records import open_shared
from assistant.schema import Clause

# Cosine of e5 query vectors at or above which a new question counts as a paraphrase of a curated
# one. e5 cosines are compressed (unrelated questions about the same rulebook meet at 0.80–0.90),
# so only the top of the scale is safe; eval/CORRECTIONS.md has the calibration.
SIMILAR = 0.94

KINDS = ("clauses", "not_covered", "confirmed")

SCHEMA = """
CREATE TABLE IF NOT EXISTS curated (
    curation_id TEXT PRIMARY KEY, created REAL NOT NULL, question TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('clauses', 'not_covered', 'confirmed')),
    clauses TEXT NOT NULL, contact TEXT, note TEXT, answer_id TEXT, author TEXT
);
"""


class CurationError(ValueError):
    """A correction that cannot be stored (no question, unknown clause, …); the message says why."""


@dataclass(frozen=True)
class Curation:
    curation_id: str
    created: float
    question: str
    kind: str
    clauses: tuple[dict[str, str], ...]  # clause_id, source, clause (label), document
    contact: str | None = None
    note: str | None = None
    answer_id: str | None = None
    author: str | None = None

    @property
    def covered(self) -> bool:
        return self.kind != "not_covered"

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.curation_id, "created_at": self.created, "question": self.question,
                "kind": self.kind, "clauses": list(self.clauses), "contact": self.contact,
                "note": self.note, "answer_id": self.answer_id, "author": self.author}

    def to_case(self) -> dict[str, Any]:
        """The correction as an eval case (the format of eval/cases/*.jsonl)."""
        case: dict[str, Any] = {
            "id": f"curated-{self.curation_id[:8]}", "question": self.question,
            "expected": [{"source": c["source"], "clause": c["clause"]} for c in self.clauses],
            "answerable": self.covered, "must_contain": [], "history": [],
            "lang": "zh" if any("\u4e00" <= ch <= "\u9fff" for ch in self.question) else "en",
            "kind": f"curated-{self.kind}",
        }
        if self.contact:
            case["contact"] = self.contact
        return case


@dataclass
class Match:
    curation: Curation
    similarity: float


@dataclass
class _Cache:
    stamp: tuple[Any, ...] = ()
    items: list[Curation] = field(default_factory=list)
    vectors: np.ndarray | None = None
    embedder: str = ""


class Curations:
    """The curated pairs of one data folder; thread-safe, shared by every worker process."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db = open_shared(path, SCHEMA)
        self._lock = threading.Lock()
        self._cache = _Cache()

    # -- writing -------------------------------------------------------------------------
    def add(self, question: str, kind: str, clauses: list[dict[str, str]] | tuple[dict[str, str], ...] = (),
            contact: str | None = None, note: str | None = None, answer_id: str | None = None,
            author: str | None = None) -> Curation:
        """Store a correction; the newest correction of the same question replaces older ones."""
        question = " ".join(question.split())
        if not question:
            raise CurationError("The question is empty.")
        if kind not in KINDS:
            raise CurationError(f"kind must be one of {', '.join(KINDS)}, not {kind!r}.")
        if kind != "not_covered" and not clauses:
            raise CurationError("Pick at least one clause that answers the question.")
        if kind == "not_covered":
            clauses = ()
        keep = ("clause_id", "source", "clause", "document")
        rows = tuple({k: str(c.get(k, "")) for k in keep} for c in clauses)
        item = Curation(uuid.uuid4().hex, time.time(), question, kind, rows, (contact or "").strip() or None,
                        (note or "").strip() or None, answer_id, author)
        with self._lock, self._db:
            self._db.execute("DELETE FROM curated WHERE question = ?", (question,))
            self._db.execute("INSERT INTO curated VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                             (item.curation_id, item.created, question, kind,
                              json.dumps(list(rows), ensure_ascii=False), item.contact, item.note, answer_id,
                              author))
        return item

    def delete(self, curation_id: str) -> bool:
        with self._lock, self._db:
            cur = self._db.execute("DELETE FROM curated WHERE curation_id = ?", (curation_id,))
        return cur.rowcount > 0

    # -- reading -------------------------------------------------------------------------
    def items(self) -> list[Curation]:
        """Every correction, newest first."""
        with self._lock:
            rows = self._db.execute("SELECT curation_id, created, question, kind, clauses, contact, note, "
                                    "answer_id, author FROM curated ORDER BY created DESC").fetchall()
        return [Curation(r[0], r[1], r[2], r[3], tuple(json.loads(r[4])), r[5], r[6], r[7], r[8]) for r in rows]

    def export_cases(self) -> list[dict[str, Any]]:
        return [c.to_case() for c in reversed(self.items())]

    def export_jsonl(self) -> str:
        """The corrections as an eval case file (one JSON object per line), oldest first."""
        return "".join(json.dumps(c, ensure_ascii=False) + "\n" for c in self.export_cases())

    def _stamp(self) -> tuple[Any, ...]:
        with self._lock:
            return tuple(self._db.execute("SELECT count(*), max(created), "
                                          "group_concat(curation_id) FROM curated").fetchone())

    def _current(self, vector_of: Any, embedder: str) -> _Cache:
        """The corrections and their question vectors, re-read when another process changed them."""
        stamp = self._stamp()
        cache = self._cache
        if cache.stamp == stamp and cache.embedder == embedder:
            return cache
        items = self.items()
        old = {c.question: i for i, c in enumerate(cache.items)} if cache.embedder == embedder else {}
        vectors = [cache.vectors[old[c.question]] if c.question in old and cache.vectors is not None
                   else np.asarray(vector_of(c.question), dtype=np.float32) for c in items]
        matrix = np.vstack(vectors) if vectors else None
        if matrix is not None:
            matrix = matrix / np.maximum(np.linalg.norm(matrix, axis=1, keepdims=True), 1e-9)
        self._cache = _Cache(stamp, items, matrix, embedder)
        return self._cache

    def match(self, qvec: np.ndarray, words: set[str], vector_of: Any, embedder: str,
              words_of: Any, similar: float = SIMILAR) -> Match | None:
        """The correction `qvec` (a question's query vector) paraphrases, if any.

        Two tests: the vectors are at least `similar` apart, and the new question names no
        subject the correction does not — `words` are the new question's words that the served
        rulebook uses; a word among them that is neither in the curated question nor in any curated
        clause (`words_of(curation)`) is a different subject ("病假" against a correction about
        "年假"), whatever the cosine says."""
        cache = self._current(vector_of, embedder)
        if cache.vectors is None or not len(cache.items):
            return None
        v = np.asarray(qvec, dtype=np.float32)
        v = v / max(float(np.linalg.norm(v)), 1e-9)
        sims = cache.vectors @ v
        for i in np.argsort(-sims):
            s = float(sims[i])
            if s < similar:
                return None
            item = cache.items[int(i)]
            if not words - words_of(item):
                return Match(item, s)
        return None

    def close(self) -> None:
        self._db.close()


def curations_path(data_dir: Path) -> Path:
    return Path(data_dir) / "curated.sqlite"


def open_curations(data_dir: Path, create: bool = False) -> Curations | None:
    """The data folder's corrections; None when there are none yet (unless `create`)."""
    path = curations_path(data_dir)
    if not create and not path.exists():
        return None
    try:
        return Curations(path)
    except sqlite3.Error:
        if create:
            raise
        return None


def find_clause(clauses: Sequence[Clause], ref: str) -> Clause | None:
    """A clause by id, or by "FILE LABEL" (the file as ingested, a space, the clause label, e.g.
    "考勤与休假制度.md 第十八条"); None when the served index has no such clause."""
    ref = ref.strip()
    by_id = next((c for c in clauses if c.clause_id == ref), None)
    if by_id is not None or " " not in ref:
        return by_id
    source, label = ref.rsplit(" ", 1)
    return next((c for c in clauses if c.source == source.strip() and c.label == label), None)


def clause_row(clause: Clause) -> dict[str, str]:
    """How a correction keeps a clause."""
    return {"clause_id": clause.clause_id, "source": clause.source, "clause": clause.label,
            "document": clause.document}
