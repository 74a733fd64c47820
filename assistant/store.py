"""The on-disk index: generations of (SQLite, Chroma) behind an atomically switched pointer.

    DATA_DIR/
      CURRENT                  name of the generation being served, replaced atomically
      cache.sqlite             embedding cache (model, text hash) → vector, shared by generations
      history.sqlite           every version of every clause and when it was served (assistant/history)
      ingest.lock              held by the one ingest that may write
      generations/gen-000007/  index.sqlite (documents, clauses, chunks, meta) + chroma/

An ingest writes a complete new generation next to the served one, marks it `COMPLETE` and only
then replaces `CURRENT`; a failed or killed ingest leaves an unmarked directory that the next
ingest removes. (Directories are never renamed: Chroma keeps its files open.)
Readers (CLI, web, Slack) open whatever `CURRENT` names and can re-check it cheaply to switch.
Chroma's embedded store is not process-safe, so each generation has its own directory that only
one ingest ever writes; with `RULEBOOK_CHROMA_URL` the generation is a collection on that server.
A new embedded generation starts as a copy of the served generation's vector store (copy-on-write):
only the vectors of new or changed chunks are inserted and those of removed ones deleted, so a
re-ingest that changes one file costs that file, not the whole rulebook. On a Chroma server (where
collections cannot be copied) the generations share one collection whose vector ids name the
chunk and its context (`vector_id`); a generation inserts only the vectors it lacks, each reader
ignores vectors that are not its generation's, and vectors no kept generation uses are deleted when
old generations are removed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import sqlite3
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from assistant.errors import IndexMismatch, IndexNotBuilt
from assistant.schema import Chunk, Clause

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE documents (
    source TEXT PRIMARY KEY, title TEXT NOT NULL, sha256 TEXT NOT NULL, encoding TEXT NOT NULL,
    kind TEXT NOT NULL, n_clauses INTEGER NOT NULL, n_chunks INTEGER NOT NULL
);
CREATE TABLE clauses (
    clause_id TEXT PRIMARY KEY, source TEXT NOT NULL, document TEXT NOT NULL, label TEXT NOT NULL,
    path TEXT NOT NULL, text TEXT NOT NULL, ordinal INTEGER NOT NULL, content_hash TEXT NOT NULL
);
CREATE INDEX clauses_source ON clauses (source, ordinal);
CREATE TABLE chunks (
    chunk_id TEXT PRIMARY KEY, clause_id TEXT NOT NULL, ordinal INTEGER NOT NULL,
    text TEXT NOT NULL, context TEXT NOT NULL
);
CREATE INDEX chunks_clause ON chunks (clause_id);
"""

KEEP_GENERATIONS = 3


@dataclass(frozen=True)
class DocumentRow:
    source: str
    title: str
    sha256: str
    encoding: str
    kind: str
    n_clauses: int
    n_chunks: int


def _chroma_settings():  # type: ignore[no-untyped-def]
    from chromadb.config import Settings as ChromaSettings

    return ChromaSettings(anonymized_telemetry=False, allow_reset=False)


def _collection_name(generation: str) -> str:
    # Chroma names: 3–512 characters of [a-zA-Z0-9._-]; never the document titles (Chinese).
    return f"rulebook-{generation}"


def vector_id(chunk: Chunk) -> str:
    """A chunk's vector id in a collection shared by generations: the chunk id (which already hashes
    the clause, position and text) and a hash of the context embedded with it (document › path)."""
    return f"{chunk.chunk_id}.{hashlib.sha1(chunk.context.encode('utf-8')).hexdigest()[:8]}"


def _http_client(chroma_url: str):  # type: ignore[no-untyped-def]
    from urllib.parse import urlparse

    import chromadb

    u = urlparse(chroma_url)
    return chromadb.HttpClient(host=u.hostname or "127.0.0.1", port=u.port or 8000, ssl=u.scheme == "https",
                               settings=_chroma_settings())


class VectorStore:
    """Chunk vectors of one generation in Chroma (cosine space, embeddings always supplied).

    With `vector_ids` (chunk id → vector id) the collection is shared by generations: queries
    return only this generation's chunks, by chunk id, and vectors are read by chunk id."""

    def __init__(self, gen_dir: Path, generation: str, chroma_url: str | None, create: bool,
                 collection: str | None = None, vector_ids: dict[str, str] | None = None):
        import chromadb

        if chroma_url:
            self._client = _http_client(chroma_url)
        else:
            self._client = chromadb.PersistentClient(path=str(gen_dir / "chroma"),
                                                     settings=_chroma_settings())
        self._vid = vector_ids
        self._cid = {v: k for k, v in vector_ids.items()} if vector_ids is not None else None
        name = collection or _collection_name(generation)
        if create:
            self._col = self._client.get_or_create_collection(
                name, metadata={"hnsw:space": "cosine"}, embedding_function=None
            )
        else:
            self._col = self._client.get_collection(name, embedding_function=None)

    def add(self, ids: list[str], vectors: np.ndarray, clause_ids: list[str]) -> None:
        for i in range(0, len(ids), 1000):
            self._col.add(
                ids=ids[i : i + 1000],
                embeddings=vectors[i : i + 1000],
                metadatas=[{"clause_id": c} for c in clause_ids[i : i + 1000]],
            )

    def query(self, vector: np.ndarray, n: int) -> list[tuple[str, float]]:
        """(chunk id, cosine similarity), best first."""
        n = min(n, self.count)
        if n <= 0:
            return []
        res = self._col.query(query_embeddings=[vector], n_results=n, include=["distances"])
        pairs = zip(res["ids"][0], res["distances"][0], strict=True)
        if self._cid is None:
            return [(cid, 1.0 - float(d)) for cid, d in pairs]
        # A shared collection also holds other generations' vectors: only this one's count.
        return [(self._cid[vid], 1.0 - float(d)) for vid, d in pairs if vid in self._cid]

    def ids(self) -> set[str]:
        """Every vector id in the collection."""
        return VectorStore.ids_of(self._col)

    @staticmethod
    def ids_of(col: Any) -> set[str]:
        out: set[str] = set()
        offset = 0
        while True:
            got = col.get(include=[], limit=10_000, offset=offset)["ids"]
            out.update(got)
            if len(got) < 10_000:
                return out
            offset += len(got)

    def delete(self, ids: list[str]) -> None:
        for i in range(0, len(ids), 1000):
            self._col.delete(ids=ids[i : i + 1000])

    def get_vectors(self, ids: list[str]) -> np.ndarray:
        """Vectors of chunks, by chunk id, in that order."""
        if self._vid is not None:
            ids = [self._vid[i] for i in ids]
        res = self._col.get(ids=ids, include=["embeddings"])
        by_id = dict(zip(res["ids"], res["embeddings"], strict=True))
        return np.asarray([by_id[i] for i in ids], dtype=np.float32)

    def close(self) -> None:
        """Release the client: a long-running server opens one per index switch, and an unclosed
        embedded client keeps its threads and the (later deleted) generation's files open."""
        client, self._client = getattr(self, "_client", None), None
        if client is not None:
            try:
                client.close()
            except Exception:  # closing must never take a request or an ingest down
                pass

    @property
    def count(self) -> int:
        if not hasattr(self, "_count"):
            self._count = self._col.count()
        return self._count

    @staticmethod
    def drop(generation: str, chroma_url: str | None) -> None:
        """Remove a generation's collection from a Chroma server (embedded ones go with the dir)."""
        if not chroma_url:
            return
        client = _http_client(chroma_url)
        try:
            client.delete_collection(_collection_name(generation))
        except Exception:  # already gone, or the generation used the shared collection
            pass


class Layout:
    """Paths of a data directory."""

    def __init__(self, data_dir: Path) -> None:
        self.root = Path(data_dir)
        self.generations = self.root / "generations"
        self.current_file = self.root / "CURRENT"
        self.cache = self.root / "cache.sqlite"
        self.history = self.root / "history.sqlite"
        self.lock = self.root / "ingest.lock"

    def current(self) -> str | None:
        try:
            name = self.current_file.read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            return None
        return name if name and self.is_complete(name) else None

    def gen_dir(self, name: str) -> Path:
        return self.generations / name

    def next_generation(self) -> str:
        self.generations.mkdir(parents=True, exist_ok=True)
        numbers = [int(p.name[4:]) for p in self.generations.iterdir()
                   if p.name.startswith("gen-") and p.name[4:].isdigit()]
        return f"gen-{(max(numbers) + 1 if numbers else 1):06d}"

    def is_complete(self, name: str) -> bool:
        return (self.gen_dir(name) / "COMPLETE").exists()

    def publish(self, name: str) -> None:
        """Point CURRENT at a complete generation, atomically."""
        tmp = self.current_file.with_suffix(".tmp")
        tmp.write_text(name + "\n", encoding="utf-8")
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, self.current_file)

    def remove_stale(self, chroma_url: str | None) -> None:
        """Delete unfinished generations and all but the newest few finished ones."""
        if not self.generations.exists():
            return
        current = self.current()
        names = sorted(p.name for p in self.generations.iterdir() if p.is_dir())
        finished = [n for n in names if self.is_complete(n)]
        for name in names:
            if name not in finished and name != current:
                VectorStore.drop(name, chroma_url)
                shutil.rmtree(self.gen_dir(name), ignore_errors=True)
        for name in finished[:-KEEP_GENERATIONS]:
            if name != current:
                VectorStore.drop(name, chroma_url)
                shutil.rmtree(self.gen_dir(name), ignore_errors=True)
        if chroma_url:
            self._collect_shared_vectors(chroma_url)

    def _collect_shared_vectors(self, chroma_url: str) -> None:
        """Delete from each shared collection the vectors that no remaining generation uses."""
        keep: dict[str, set[str]] = {}
        for name in sorted(p.name for p in self.generations.iterdir() if p.is_dir()):
            path = self.gen_dir(name) / "index.sqlite"
            if not path.exists():
                continue
            db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
            try:
                row = db.execute("SELECT value FROM meta WHERE key = 'vector_collection'").fetchone()
                if row is None:
                    continue
                ids = keep.setdefault(json.loads(row[0]), set())
                ids.update(vector_id(Chunk(chunk_id=r[0], clause_id="", text="", context=r[1]))
                           for r in db.execute("SELECT chunk_id, context FROM chunks"))
            except sqlite3.Error as exc:  # an unfinished generation being written: keep everything
                log.warning("vectors not collected: %s unreadable (%s)", name, exc)
                return
            finally:
                db.close()
        client = _http_client(chroma_url)
        for collection, used in keep.items():
            try:
                col = client.get_collection(collection, embedding_function=None)
                stale = [i for i in VectorStore.ids_of(col) if i not in used]
                for i in range(0, len(stale), 1000):
                    col.delete(ids=stale[i : i + 1000])
            except Exception as exc:  # collecting garbage must never fail an ingest
                log.warning("stale vectors of %s not deleted: %s", collection, exc)


class IndexWriter:
    """Writes one new generation; `commit()` marks it complete and publishes it."""

    def __init__(self, layout: Layout, chroma_url: str | None, embedder_name: str) -> None:
        self.layout = layout
        self.name = layout.next_generation()
        self.dir = layout.gen_dir(self.name)
        self.dir.mkdir(parents=True)
        self.chroma_url = chroma_url
        self.db = sqlite3.connect(self.dir / "index.sqlite")
        self.db.executescript(SCHEMA)
        self.set_meta("embedder", embedder_name)
        self.set_meta("created", time.strftime("%Y-%m-%dT%H:%M:%S%z"))
        # chunk id → (text, context) of the vectors copied from the served generation
        self.base: dict[str, tuple[str, str]] | None = None
        self.shared: set[str] | None = None  # vector ids already in the shared collection (server mode)
        if chroma_url:
            collection = self._shared_collection(embedder_name)
            self.set_meta("vector_collection", collection)
            self.vectors = VectorStore(self.dir, self.name, chroma_url, create=True, collection=collection)
            self.shared = self.vectors.ids()
        else:
            self.base = self._copy_current_vectors(embedder_name)
            self.vectors = VectorStore(self.dir, self.name, chroma_url, create=True)
        self.vectors_carried = 0
        self.vectors_inserted = 0

    def _shared_collection(self, embedder_name: str) -> str:
        """The served generation's shared collection when it was built with the same embedder, else
        a new one (vectors of two models never share a collection)."""
        prev = self.layout.current()
        if prev is not None:
            path = self.layout.gen_dir(prev) / "index.sqlite"
            db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
            try:
                meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
            finally:
                db.close()
            if "vector_collection" in meta and json.loads(meta.get("embedder", "null")) == embedder_name:
                return str(json.loads(meta["vector_collection"]))
        return f"rulebook-shared-{uuid.uuid4().hex[:12]}"

    def _copy_current_vectors(self, embedder_name: str) -> dict[str, tuple[str, str]] | None:
        """Start this generation's embedded store as a copy of the served one's, renamed; None (and
        a fresh store) when there is none, it was built with another embedder, or copying fails."""
        prev = self.layout.current()
        if prev is None:
            return None
        source = self.layout.gen_dir(prev)
        try:
            db = sqlite3.connect(f"file:{source / 'index.sqlite'}?mode=ro", uri=True)
            try:
                meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
                if json.loads(meta.get("embedder", "null")) != embedder_name:
                    return None
                base = {r[0]: (r[1], r[2]) for r in db.execute("SELECT chunk_id, text, context FROM chunks")}
            finally:
                db.close()
            _copy_chroma(source / "chroma", self.dir / "chroma")
            import chromadb

            client = chromadb.PersistentClient(path=str(self.dir / "chroma"), settings=_chroma_settings())
            try:
                col = client.get_collection(_collection_name(prev), embedding_function=None)
                if col.count() != len(base):
                    raise ValueError(f"{col.count()} vectors for {len(base)} chunks")
                col.modify(name=_collection_name(self.name))
            finally:
                client.close()
            return base
        except Exception as exc:  # a fresh store is always correct, only slower
            log.warning("vectors of %s not reused (%s); inserting all", prev, exc)
            shutil.rmtree(self.dir / "chroma", ignore_errors=True)
            return None

    def set_meta(self, key: str, value: Any) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, json.dumps(value)))

    def add_document(self, doc: DocumentRow, clauses: list[Clause], chunks: list[Chunk]) -> None:
        self.db.execute(
            "INSERT INTO documents VALUES (?, ?, ?, ?, ?, ?, ?)",
            (doc.source, doc.title, doc.sha256, doc.encoding, doc.kind, doc.n_clauses,
             doc.n_chunks),
        )
        self.db.executemany(
            "INSERT INTO clauses VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [(c.clause_id, c.source, c.document, c.label, json.dumps(list(c.path),
              ensure_ascii=False), c.text, c.ordinal, c.content_hash) for c in clauses],
        )
        ordinals: dict[str, int] = {}
        rows = []
        for ch in chunks:
            n = ordinals.get(ch.clause_id, 0)
            ordinals[ch.clause_id] = n + 1
            rows.append((ch.chunk_id, ch.clause_id, n, ch.text, ch.context))
        self.db.executemany("INSERT INTO chunks VALUES (?, ?, ?, ?, ?)", rows)

    def needs_vector(self, chunks: list[Chunk]) -> list[int]:
        """Positions of the chunks whose vector the copied store does not already hold (all of them
        without a copy): a chunk is reused only when its id, text and context are unchanged."""
        if self.shared is not None:
            return [i for i, ch in enumerate(chunks) if vector_id(ch) not in self.shared]
        if self.base is None:
            return list(range(len(chunks)))
        return [i for i, ch in enumerate(chunks) if self.base.get(ch.chunk_id) != (ch.text, ch.context)]

    def add_vectors(self, chunks: list[Chunk], positions: list[int], vectors: np.ndarray) -> None:
        """Store the vectors of `chunks[positions]` (in that order) and drop the copied vectors that
        no chunk of this generation uses any more."""
        if self.base is not None:
            wanted = {ch.chunk_id: (ch.text, ch.context) for ch in chunks}
            self.vectors.delete([cid for cid, tc in self.base.items() if wanted.get(cid) != tc])
        # In a shared collection other generations still use the vectors this one dropped: they go
        # when those generations are removed (Layout.remove_stale).
        ids = [vector_id(chunks[i]) if self.shared is not None else chunks[i].chunk_id for i in positions]
        self.vectors.add(ids, vectors, [chunks[i].clause_id for i in positions])
        self.vectors_inserted = len(positions)
        self.vectors_carried = len(chunks) - len(positions)

    def commit(self) -> str:
        self.db.commit()
        self.db.close()
        self.vectors.close()
        (self.dir / "COMPLETE").write_text(time.strftime("%Y-%m-%dT%H:%M:%S%z") + "\n")
        self.layout.publish(self.name)
        return self.name

    def abort(self) -> None:
        try:
            self.db.close()
            self.vectors.close()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)
            VectorStore.drop(self.name, self.chroma_url)


def _copy_chroma(source: Path, dest: Path) -> None:
    """Copy an embedded Chroma directory that readers may have open (nobody writes it: its ingest
    has finished): SQLite files through SQLite's online backup, so the copy is consistent whatever
    the readers' connections hold; the vector segment files as they are."""
    def copy(src: str, dst: str) -> None:
        if src.endswith(".sqlite3"):
            with sqlite3.connect(f"file:{src}?mode=ro", uri=True) as a, sqlite3.connect(dst) as b:
                a.backup(b)
            return
        shutil.copy2(src, dst)

    shutil.copytree(source, dest, copy_function=copy,
                    ignore=shutil.ignore_patterns("*.sqlite3-wal", "*.sqlite3-shm", "*.sqlite3-journal"))


def read_documents(db_path: Path) -> dict[str, DocumentRow]:
    db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        return {r[0]: DocumentRow(*r) for r in db.execute("SELECT * FROM documents")}
    finally:
        db.close()


def read_rows(db_path: Path, source: str) -> tuple[list[Clause], list[Chunk]]:
    """Clauses and chunks of one document from a generation (to carry unchanged files over)."""
    db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        clauses = [_clause(r) for r in db.execute(
            "SELECT * FROM clauses WHERE source = ? ORDER BY ordinal", (source,))]
        chunks = [Chunk(chunk_id=r[0], clause_id=r[1], text=r[3], context=r[4]) for r in db.execute(
            "SELECT c.* FROM chunks c JOIN clauses k ON k.clause_id = c.clause_id "
            "WHERE k.source = ? ORDER BY k.ordinal, c.ordinal", (source,))]
        return clauses, chunks
    finally:
        db.close()


def read_clauses(db_path: Path) -> list[Clause]:
    """Every clause of a generation, by document and position."""
    db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        return [_clause(r) for r in db.execute("SELECT * FROM clauses ORDER BY source, ordinal")]
    finally:
        db.close()


def _clause(r: tuple) -> Clause:  # type: ignore[type-arg]
    return Clause(clause_id=r[0], source=r[1], document=r[2], label=r[3],
                  path=tuple(json.loads(r[4])), text=r[5], ordinal=r[6], content_hash=r[7])


class IndexSnapshot:
    """One generation loaded for reading: all clauses and chunks in memory, vectors in Chroma."""

    def __init__(self, layout: Layout, chroma_url: str | None, embedder_name: str) -> None:
        name = layout.current()
        if name is None:
            raise IndexNotBuilt(str(layout.root))
        self.generation = name
        gen = layout.gen_dir(name)
        db = sqlite3.connect(f"file:{gen / 'index.sqlite'}?mode=ro", uri=True,
                             check_same_thread=False)
        try:
            meta = {k: json.loads(v) for k, v in db.execute("SELECT key, value FROM meta")}
            built_with = meta.get("embedder")
            if built_with != embedder_name:
                raise IndexMismatch(
                    f"The index in {layout.root} was built with {built_with}, but "
                    f"RULEBOOK_EMBEDDING selects {embedder_name}. Re-run `rulebook ingest` "
                    "with the same setting to rebuild it."
                )
            self.meta = meta
            self.clauses: list[Clause] = [
                _clause(r) for r in db.execute("SELECT * FROM clauses ORDER BY source, ordinal")
            ]
            self.documents = {r[0]: DocumentRow(*r) for r in db.execute("SELECT * FROM documents")}
            chunk_rows = db.execute(
                "SELECT chunk_id, clause_id, text, context FROM chunks ORDER BY clause_id, ordinal"
            ).fetchall()
        finally:
            db.close()
        self.by_id = {c.clause_id: i for i, c in enumerate(self.clauses)}
        self.chunks = [Chunk(chunk_id=a, clause_id=b, text=c, context=d) for a, b, c, d in chunk_rows]
        self.chunk_clause = np.array([self.by_id[c.clause_id] for c in self.chunks], dtype=np.int64)
        self.chunk_index = {c.chunk_id: i for i, c in enumerate(self.chunks)}
        from assistant.effective import effective_dates, superseded

        self.effective = effective_dates(self.clauses)  # clause id → YYYY-MM-DD, where stated
        self.superseded = superseded(self.clauses)  # source → the document that repealed it
        shared = meta.get("vector_collection")
        if shared is not None and chroma_url:
            self.vectors = VectorStore(gen, name, chroma_url, create=False, collection=shared,
                                       vector_ids={c.chunk_id: vector_id(c) for c in self.chunks})
        else:
            self.vectors = VectorStore(gen, name, chroma_url, create=False)

    def close(self) -> None:
        """Release the vector store; the clauses and chunks in memory stay readable."""
        self.vectors.close()

    def neighbours(self, clause_id: str) -> tuple[Clause | None, Clause | None]:
        i = self.by_id[clause_id]
        c = self.clauses[i]
        prev = self.clauses[i - 1] if i > 0 and self.clauses[i - 1].source == c.source else None
        nxt = (self.clauses[i + 1] if i + 1 < len(self.clauses)
               and self.clauses[i + 1].source == c.source else None)
        return prev, nxt
