"""What was asked, what was answered from which clause text, and what people thought of it.

Kept in `DATA_DIR/records.sqlite`, outside the index generations, so re-ingesting never loses
it. Each cited clause is stored with its content hash and quote: a manager can later see exactly
which clause text an answer relied on, even after the rule has changed.
"""

from __future__ import annotations

import json
import math
import sqlite3
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from assistant.schema import Answer, Turn

SCHEMA = """
CREATE TABLE IF NOT EXISTS answers (
    answer_id TEXT PRIMARY KEY, created REAL NOT NULL, channel TEXT NOT NULL,
    conversation_id TEXT, question TEXT NOT NULL, standalone_question TEXT NOT NULL,
    grounded INTEGER NOT NULL, answer TEXT NOT NULL, composer TEXT NOT NULL,
    confidence REAL NOT NULL, latency_ms REAL NOT NULL, generation TEXT NOT NULL,
    payload TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS answers_conversation ON answers (conversation_id, created);
CREATE TABLE IF NOT EXISTS citations (
    answer_id TEXT NOT NULL REFERENCES answers (answer_id), n INTEGER NOT NULL,
    clause_id TEXT NOT NULL, content_hash TEXT NOT NULL, source TEXT NOT NULL,
    clause TEXT NOT NULL, quote TEXT NOT NULL, PRIMARY KEY (answer_id, n)
);
CREATE TABLE IF NOT EXISTS delivered_events (
    event_id TEXT PRIMARY KEY, created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS feedback (
    feedback_id INTEGER PRIMARY KEY AUTOINCREMENT, answer_id TEXT NOT NULL REFERENCES answers (answer_id),
    created REAL NOT NULL, rating TEXT NOT NULL CHECK (rating IN ('up', 'down')), comment TEXT,
    channel TEXT NOT NULL
);
"""


@dataclass(frozen=True)
class FeedbackRow:
    answer_id: str
    rating: str
    comment: str | None
    channel: str


def open_shared(path: Path, schema: str) -> sqlite3.Connection:
    """A SQLite file written by several threads and processes (every server worker, the chat
    channels, the ingest): WAL, a 30 s busy timeout, `schema` created if missing."""
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, check_same_thread=False, timeout=30)
    db.execute("PRAGMA journal_mode=WAL")
    db.executescript(schema)
    return db


class Records:
    """Thread-safe SQLite log of answers and feedback."""

    def __init__(self, path: Path) -> None:
        self._db = open_shared(path, SCHEMA)
        self._lock = threading.Lock()

    def add_answer(self, answer: Answer, *, channel: str, conversation_id: str | None) -> str:
        """Record an answer with the content hash of every clause it cites; returns its id."""
        answer_id = uuid.uuid4().hex
        content_hashes = answer.content_hashes()
        payload = json.dumps(answer.to_dict(), ensure_ascii=False)
        with self._lock, self._db:
            self._db.execute(
                "INSERT INTO answers VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (answer_id, time.time(), channel, conversation_id, answer.question,
                 answer.standalone_question or answer.question, int(answer.grounded), answer.answer,
                 answer.composer, answer.confidence, answer.timings_ms.get("total", 0.0), answer.generation,
                 payload),
            )
            self._db.executemany(
                "INSERT INTO citations VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(answer_id, c.n, c.clause_id, content_hashes.get(c.clause_id, ""), c.source, c.clause,
                  c.quote) for c in answer.citations],
            )
        return answer_id

    def claim_event(self, event_id: str) -> bool:
        """True the first time an event id is seen: deliveries and retries are answered once."""
        with self._lock, self._db:
            cur = self._db.execute("INSERT OR IGNORE INTO delivered_events VALUES (?, ?)", (event_id, time.time()))
        return cur.rowcount == 1

    def answer_payload(self, answer_id: str) -> dict[str, object] | None:
        """The answer JSON as it was given."""
        with self._lock:
            row = self._db.execute("SELECT payload FROM answers WHERE answer_id = ?", (answer_id,)).fetchone()
        return json.loads(row[0]) if row else None

    def answer_meta(self, answer_id: str) -> dict[str, object] | None:
        """When, where and from which index generation an answer was given."""
        with self._lock:
            row = self._db.execute("SELECT created, channel, generation FROM answers WHERE answer_id = ?",
                                   (answer_id,)).fetchone()
        return None if row is None else {"created": row[0], "channel": row[1], "generation": row[2]}

    def has_conversation(self, conversation_id: str) -> bool:
        with self._lock:
            row = self._db.execute("SELECT 1 FROM answers WHERE conversation_id = ? LIMIT 1",
                                   (conversation_id,)).fetchone()
        return row is not None

    def latest_answer_id(self, conversation_id: str) -> str | None:
        """The id of the newest answer in a conversation (what a bare 👍 in a chat rates)."""
        with self._lock:
            row = self._db.execute("SELECT answer_id FROM answers WHERE conversation_id = ? "
                                   "ORDER BY created DESC LIMIT 1", (conversation_id,)).fetchone()
        return row[0] if row else None

    def answer_exists(self, answer_id: str) -> bool:
        with self._lock:
            row = self._db.execute("SELECT 1 FROM answers WHERE answer_id = ?", (answer_id,)).fetchone()
        return row is not None

    def add_feedback(self, answer_id: str, rating: str, comment: str | None, channel: str) -> None:
        with self._lock, self._db:
            self._db.execute(
                "INSERT INTO feedback (answer_id, created, rating, comment, channel) VALUES (?, ?, ?, ?, ?)",
                (answer_id, time.time(), rating, comment, channel),
            )

    def feedback(self, answer_id: str) -> list[FeedbackRow]:
        with self._lock:
            rows = self._db.execute(
                "SELECT answer_id, rating, comment, channel FROM feedback WHERE answer_id = ? ORDER BY feedback_id",
                (answer_id,),
            ).fetchall()
        return [FeedbackRow(*r) for r in rows]

    def citations(self, answer_id: str) -> list[dict[str, object]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT n, clause_id, content_hash, source, clause, quote FROM citations "
                "WHERE answer_id = ? ORDER BY n", (answer_id,),
            ).fetchall()
        keys = ("n", "clause_id", "content_hash", "source", "clause", "quote")
        return [dict(zip(keys, r, strict=True)) for r in rows]

    def recent(self, limit: int = 20) -> list[dict[str, object]]:
        """The newest answers, newest first (for reviewing what people asked)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT answer_id, created, channel, question, grounded FROM answers "
                "ORDER BY created DESC LIMIT ?", (limit,),
            ).fetchall()
        keys = ("answer_id", "created", "channel", "question", "grounded")
        return [dict(zip(keys, r, strict=True)) for r in rows]

    def history(self, conversation_id: str, limit: int = 5) -> list[Turn]:
        """Earlier turns of a conversation, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT question, answer FROM answers WHERE conversation_id = ? "
                "ORDER BY created DESC LIMIT ?", (conversation_id, limit),
            ).fetchall()
        return [Turn(question=q, answer=a) for q, a in reversed(rows)]

    def questions(self, *, refused: bool | None = None, down: bool | None = None,
                  max_confidence: float | None = None, since: float | None = None, until: float | None = None,
                  source: str | None = None, channel: str | None = None, text: str | None = None,
                  limit: int = 50, offset: int = 0) -> tuple[list[dict[str, object]], int | None]:
        """Recorded questions, newest first, filtered; (items, offset of the next page or None).
        Each item: answer_id, question, grounded, answer, citations, feedback, channel, created_at,
        confidence, latency_ms."""
        where, args = ["1 = 1"], []  # type: ignore[var-annotated]
        if refused is not None:
            where.append("a.grounded = ?")
            args.append(0 if refused else 1)
        if down is not None:
            where.append(("" if down else "NOT ") + "EXISTS (SELECT 1 FROM feedback f WHERE f.answer_id = a.answer_id "
                         "AND f.rating = 'down')")
        if max_confidence is not None:
            where.append("a.confidence <= ?")
            args.append(max_confidence)
        if since is not None:
            where.append("a.created >= ?")
            args.append(since)
        if until is not None:
            where.append("a.created < ?")
            args.append(until)
        if source:
            where.append("EXISTS (SELECT 1 FROM citations c WHERE c.answer_id = a.answer_id AND c.source = ?)")
            args.append(source)
        if channel:
            where.append("a.channel = ?")
            args.append(channel)
        if text:
            where.append("(a.question LIKE ? ESCAPE '\\' OR a.answer LIKE ? ESCAPE '\\')")
            like = "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            args += [like, like]
        with self._lock:
            rows = self._db.execute(
                "SELECT a.answer_id, a.question, a.grounded, a.answer, a.payload, a.channel, a.created, a.confidence, "
                f"a.latency_ms FROM answers a WHERE {' AND '.join(where)} ORDER BY a.created DESC LIMIT ? OFFSET ?",
                (*args, limit + 1, offset)).fetchall()
        items = []
        for answer_id, question, grounded, answer, payload, channel_, created, confidence, latency in rows[:limit]:
            items.append({
                "answer_id": answer_id, "question": question, "grounded": bool(grounded), "answer": answer,
                "citations": json.loads(payload).get("citations", []),
                "feedback": [{"rating": f.rating, "comment": f.comment, "channel": f.channel}
                             for f in self.feedback(answer_id)],
                "channel": channel_, "created_at": created, "confidence": confidence, "latency_ms": latency,
            })
        return items, (offset + limit if len(rows) > limit else None)

    def usage(self, since: float | None = None, until: float | None = None, top: int = 10) -> dict[str, object]:
        """Questions per day (local dates) with refusals, 👍/👎 and latency p50/p95; the totals; the
        most-cited clauses and documents."""
        where, args = "1 = 1", []  # type: ignore[var-annotated]
        if since is not None:
            where, args = where + " AND a.created >= ?", [*args, since]
        if until is not None:
            where, args = where + " AND a.created < ?", [*args, until]
        with self._lock:
            rows = self._db.execute(
                "SELECT date(a.created, 'unixepoch', 'localtime'), a.grounded, a.latency_ms, "
                "(SELECT COUNT(*) FROM feedback f WHERE f.answer_id = a.answer_id AND f.rating = 'up'), "
                "(SELECT COUNT(*) FROM feedback f WHERE f.answer_id = a.answer_id AND f.rating = 'down') "
                f"FROM answers a WHERE {where} ORDER BY a.created", args).fetchall()
            clauses = self._db.execute(
                "SELECT c.source, c.clause, COUNT(*) FROM citations c JOIN answers a ON a.answer_id = c.answer_id "
                f"WHERE {where} GROUP BY c.source, c.clause ORDER BY COUNT(*) DESC, c.source, c.clause LIMIT ?",
                (*args, top)).fetchall()
            documents = self._db.execute(
                "SELECT c.source, COUNT(DISTINCT c.answer_id) FROM citations c JOIN answers a "
                f"ON a.answer_id = c.answer_id WHERE {where} GROUP BY c.source "
                "ORDER BY COUNT(DISTINCT c.answer_id) DESC, c.source LIMIT ?", (*args, top)).fetchall()

        def summary(group: list[tuple]) -> dict[str, object]:  # type: ignore[type-arg]
            latencies = sorted(r[2] for r in group)
            n = len(group)
            refused = sum(1 for r in group if not r[1])
            return {"questions": n, "refused": refused, "refusal_rate": round(refused / n, 4) if n else None,
                    "up": sum(r[3] for r in group), "down": sum(r[4] for r in group),
                    "p50_ms": round(_percentile(latencies, 0.5), 1) if n else None,
                    "p95_ms": round(_percentile(latencies, 0.95), 1) if n else None}

        days: dict[str, list[tuple]] = {}  # type: ignore[type-arg]
        for r in rows:
            days.setdefault(r[0], []).append(r)
        return {"days": [{"day": d, **summary(group)} for d, group in days.items()], "totals": summary(rows),
                "top_clauses": [{"source": s_, "clause": c, "citations": n} for s_, c, n in clauses],
                "top_documents": [{"source": s_, "answers": n} for s_, n in documents]}

    def close(self) -> None:
        self._db.close()


def _percentile(ordered: list[float], q: float) -> float:
    """The `q` quantile of an ordered list (nearest rank)."""
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]
