"""Typed records passed between the ingest pipeline, the index, retrieval and answering."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class SourceDocument:
    """A file read from disk and decoded to text."""

    source: str  # path relative to the ingested directory, with forward slashes
    title: str
    text: str
    sha256: str  # of the raw file bytes
    encoding: str
    kind: str  # md | txt | docx | pdf | html
    notes: tuple[str, ...] = ()  # what was cut or mended to read it (reported by ingest)


@dataclass(frozen=True)
class Clause:
    """The smallest numbered unit of a document that owns text (a 条, a （一）, a headed section)."""

    clause_id: str
    source: str
    document: str  # document title
    label: str  # as written: 第十九条, 一、流程标准化, 应急预案
    path: tuple[str, ...]  # heading path below the document title, ending with the label
    text: str  # body as written, including the label line for 条-style clauses
    ordinal: int  # position within the document
    content_hash: str


@dataclass(frozen=True)
class Chunk:
    """A piece of a clause that is embedded and indexed on its own."""

    chunk_id: str
    clause_id: str
    text: str  # the piece of the clause text, as written
    context: str  # document title and heading path, prepended when embedding/indexing


@dataclass(frozen=True)
class Hit:
    """A clause found for a query, with the scores that ranked it."""

    clause: Clause
    score: float  # fused rank score (higher is better)
    lexical: float = 0.0  # best BM25 score of the clause, normalised to the query
    semantic: float = 0.0  # best cosine similarity of any chunk of the clause
    coverage: float = 0.0  # IDF-weighted share of query terms found in the clause
    best_chunk: str = ""


@dataclass(frozen=True)
class Citation:
    n: int
    clause_id: str
    document: str
    source: str
    clause: str
    path: tuple[str, ...]
    quote: str
    content_hash: str = ""  # of the clause text quoted: `rulebook audit` finds that version later
    effective: str | None = None  # YYYY-MM-DD the clause (or its document) takes effect, when stated
    updated: str | None = None  # YYYY-MM-DD this version was first served, when that is recent

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["path"] = list(self.path)
        return d


@dataclass(frozen=True)
class Turn:
    """One earlier exchange of a conversation."""

    question: str
    answer: str = ""


@dataclass(frozen=True)
class Answer:
    """What the assistant returns; it carries the evidence it was built from."""

    question: str
    grounded: bool
    answer: str
    citations: tuple[Citation, ...]
    retrieved: tuple[Hit, ...]
    timings_ms: dict[str, float] = field(default_factory=dict)
    standalone_question: str = ""  # the question actually searched (after follow-up rewriting)
    composer: str = "extractive"
    confidence: float = 0.0  # the evidence gate's confidence (0–1)
    generation: str = ""  # the index generation that answered
    # How it was composed, for evaluation and logs (not part of the answer JSON): "offline" (no
    # model configured), "model" (the model's checked text), "fallback" (a model is configured but
    # the offline composer answered), "declined" (the model found no answer: a refusal), "overruled" (it
    # declined where the gate, or the judge, was confident enough to answer offline), "judged" (the
    # judge found the first clause does not answer: a refusal; RULEBOOK_LLM_JUDGE), "gate"
    # (refused below the evidence gate); and what the checks did to the model's reply.
    outcome: str = "offline"
    checks: tuple[str, ...] = ()
    # The owners' correction this answer follows (id, kind, similarity), if any.
    curated: dict[str, Any] | None = None

    def content_hashes(self) -> dict[str, str]:
        """Content hash of every clause the answer saw, by clause id."""
        found = {h.clause.clause_id: h.clause.content_hash for h in self.retrieved}
        found.update((c.clause_id, c.content_hash) for c in self.citations if c.content_hash)
        return found

    def to_dict(self) -> dict[str, Any]:
        """The answer JSON contract of the design card (plus `curated` when a correction applied)."""
        d = {
            "question": self.question,
            "grounded": self.grounded,
            "answer": self.answer,
            "citations": [c.to_dict() for c in self.citations],
            "retrieved": [
                {
                    "clause_id": h.clause.clause_id,
                    "source": h.clause.source,
                    "clause": h.clause.label,
                    "score": round(h.score, 4),
                }
                for h in self.retrieved
            ],
            "timings_ms": {k: round(v, 1) for k, v in self.timings_ms.items()},
        }
        if self.curated is not None:
            d["curated"] = self.curated
        return d
