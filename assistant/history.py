"""Every version of every clause, kept beside the index generations (`DATA_DIR/history.sqlite`).

Each ingest that publishes a generation records it here: a clause version (clause id + content
hash) that appears is added with the generation and time it was first served; one that disappears
is closed with the generation and time it stopped being served. Unchanged clauses cost nothing. So
the rulebook as it stood at any moment since history began can be rebuilt after its generation has
been removed — for `rulebook changes` (what changed since a date or generation) and `rulebook audit`
(the exact clause text an earlier answer quoted).
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from assistant.records import open_shared
from assistant.schema import Clause

SCHEMA = """
CREATE TABLE IF NOT EXISTS generations (
    name TEXT PRIMARY KEY, published_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS versions (
    clause_id TEXT NOT NULL, content_hash TEXT NOT NULL, source TEXT NOT NULL, document TEXT NOT NULL,
    label TEXT NOT NULL, path TEXT NOT NULL, text TEXT NOT NULL, ordinal INTEGER NOT NULL,
    effective TEXT,
    added_generation TEXT NOT NULL, added_at REAL NOT NULL,
    removed_generation TEXT, removed_at REAL,
    PRIMARY KEY (clause_id, content_hash, added_generation)
);
"""


@dataclass(frozen=True)
class Version:
    """One version of a clause and when it was served."""

    clause_id: str
    content_hash: str
    source: str
    document: str
    label: str
    path: tuple[str, ...]
    text: str
    ordinal: int
    effective: str | None
    added_generation: str
    added_at: float
    removed_generation: str | None
    removed_at: float | None


_COLUMNS = ("clause_id, content_hash, source, document, label, path, text, ordinal, effective, "
            "added_generation, added_at, removed_generation, removed_at")


def _version(row: tuple) -> Version:  # type: ignore[type-arg]
    values = list(row)
    values[5] = tuple(json.loads(values[5]))
    return Version(*values)


class ClauseHistory:
    """Thread-safe access to `history.sqlite`."""

    def __init__(self, path: Path) -> None:
        self._db = open_shared(path, SCHEMA)
        self._lock = threading.Lock()

    def close(self) -> None:
        self._db.close()

    # --- writing (the ingest that publishes a generation) ---------------------------------------

    def record(self, generation: str, clauses: list[Clause], effective: dict[str, str | None] | None = None,
               at: float | None = None) -> tuple[int, int]:
        """Record that `generation` (serving `clauses`) was published; returns (versions added,
        versions closed). `effective` maps clause id → effective date where one is known."""
        at = time.time() if at is None else at
        effective = effective or {}
        with self._lock, self._db:
            if self._db.execute("SELECT 1 FROM generations WHERE name = ?", (generation,)).fetchone():
                return 0, 0  # recorded already
            self._db.execute("INSERT INTO generations VALUES (?, ?)", (generation, at))
            alive = {(r[0], r[1]) for r in self._db.execute(
                "SELECT clause_id, content_hash FROM versions WHERE removed_at IS NULL")}
            now = {(c.clause_id, c.content_hash): c for c in clauses}
            added = [c for key, c in now.items() if key not in alive]
            closed = [key for key in alive if key not in now]
            self._db.executemany(
                f"INSERT OR IGNORE INTO versions ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, NULL)",
                [(c.clause_id, c.content_hash, c.source, c.document, c.label,
                  json.dumps(list(c.path), ensure_ascii=False), c.text, c.ordinal, effective.get(c.clause_id),
                  generation, at) for c in added])
            self._db.executemany(
                "UPDATE versions SET removed_generation = ?, removed_at = ? "
                "WHERE clause_id = ? AND content_hash = ? AND removed_at IS NULL",
                [(generation, at, cid, h) for cid, h in closed])
        return len(added), len(closed)

    def forget_before(self, cutoff: float) -> int:
        """Retention: drop versions that stopped being served before `cutoff`; returns how many."""
        with self._lock, self._db:
            cur = self._db.execute("DELETE FROM versions WHERE removed_at IS NOT NULL AND removed_at < ?", (cutoff,))
        return cur.rowcount

    # --- reading ----------------------------------------------------------------------------------

    def generations(self) -> list[tuple[str, float]]:
        """(name, published at) of every recorded generation, oldest first."""
        with self._lock:
            return list(self._db.execute("SELECT name, published_at FROM generations ORDER BY published_at, name"))

    def published_at(self, generation: str) -> float | None:
        with self._lock:
            row = self._db.execute("SELECT published_at FROM generations WHERE name = ?", (generation,)).fetchone()
        return row[0] if row else None

    def served_at(self, moment: float, source: str | None = None) -> list[Version]:
        """The clause versions being served at `moment` (as far as history reaches), of one file
        when `source` is given."""
        where = "added_at <= ? AND (removed_at IS NULL OR removed_at > ?)"
        args: tuple = (moment, moment)
        if source is not None:
            where, args = where + " AND source = ?", (*args, source)
        with self._lock:
            rows = self._db.execute(f"SELECT {_COLUMNS} FROM versions WHERE {where} ORDER BY source, ordinal",
                                    args).fetchall()
        return [_version(r) for r in rows]

    def version(self, clause_id: str, content_hash: str) -> Version | None:
        """A clause's version with that content hash (the latest time it was served)."""
        with self._lock:
            row = self._db.execute(
                f"SELECT {_COLUMNS} FROM versions WHERE clause_id = ? AND content_hash = ? "
                "ORDER BY added_at DESC LIMIT 1", (clause_id, content_hash)).fetchone()
        return _version(row) if row else None

    def current(self, clause_id: str) -> Version | None:
        """The version of a clause being served now, if it still exists."""
        with self._lock:
            row = self._db.execute(
                f"SELECT {_COLUMNS} FROM versions WHERE clause_id = ? AND removed_at IS NULL "
                "ORDER BY added_at DESC LIMIT 1", (clause_id,)).fetchone()
        return _version(row) if row else None

    def last_changed(self) -> dict[str, float]:
        """File → when the newest of its clause versions being served now was first served."""
        with self._lock:
            rows = self._db.execute("SELECT source, MAX(added_at) FROM versions WHERE removed_at IS NULL "
                                    "GROUP BY source").fetchall()
        return {source: at for source, at in rows}

    def updated_since(self, clause_ids: list[str], since: float) -> dict[str, float]:
        """Clause id → when its current version was first served, for those of `clause_ids` whose
        current version replaced an earlier one (or was added after history began) since `since`."""
        if not clause_ids:
            return {}
        with self._lock:
            first = self._db.execute("SELECT MIN(published_at) FROM generations").fetchone()[0]
            if first is None:
                return {}
            marks = ",".join("?" * len(clause_ids))
            rows = self._db.execute(
                f"SELECT clause_id, added_at FROM versions WHERE removed_at IS NULL AND clause_id IN ({marks}) "
                "AND added_at >= ? AND added_at > ?", (*clause_ids, since, first)).fetchall()
        return dict(rows)
