"""The owners' console: `/admin` and `/v1/admin/*` (see README: For the rulebook's owners).

Off (404) unless RULEBOOK_ADMIN_KEYS is set; the ask keys never open it. A script sends an
admin key as `Authorization: Bearer KEY`; the console page logs in once with the key and then
holds a session cookie (HttpOnly, SameSite=Strict, derived from the key, so every worker process
accepts it and removing the key from RULEBOOK_ADMIN_KEYS ends its sessions). A request
authenticated by the cookie that changes anything must also carry `X-Rulebook-Admin: 1`, which a
page on another site cannot send without the browser asking first (CSRF).

Routes: questions (filters, search), knowledge gaps, usage (JSON or CSV), documents (list,
upload a new or revised file, delete; each change runs an ingest in the background and the
index switches when it is done), clause search for corrections, corrections (list, add, delete,
export as eval cases).
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import hmac
import io
import json
import logging
import os
import re
import shutil
import tempfile
import threading
import time
from importlib import resources
from pathlib import Path, PurePosixPath
from typing import Any, Literal
from urllib.parse import parse_qs

from fastapi import Depends, FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from pydantic import BaseModel, Field

from assistant.adapters.web import bearer_token
from assistant.config import Settings
from assistant.curation import CurationError, clause_row, find_clause, open_curations
from assistant.records import Records

log = logging.getLogger(__name__)

COOKIE = "rulebook_admin"
CSRF_HEADER = "x-rulebook-admin"
UPLOAD_PREFIX = "/v1/admin/documents/"
STATUS_FILE = "console-ingest.json"

ADMIN_CSP = ("default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
             "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")


SESSION_SECONDS = 12 * 3600


def session_token(key: str, issued: int | None = None) -> str:
    """The cookie value of a session opened with `key` at `issued` (now): the time and an HMAC of it
    under the key — not the key, accepted by every worker, expiring after SESSION_SECONDS."""
    issued = int(time.time()) if issued is None else issued
    mac = hmac.new(key.encode(), f"rulebook-admin-session:{issued}".encode(), hashlib.sha256).hexdigest()
    return f"{issued}.{mac}"


def session_key(cookie: str, keys: set[str], now: float | None = None) -> str | None:
    """The admin key a session cookie was opened with, if it is valid and has not expired."""
    issued, _, mac = cookie.partition(".")
    if not issued.isascii() or not issued.isdigit() or not mac.isascii() or len(mac) != 64:
        return None
    age = (time.time() if now is None else now) - int(issued)
    if not 0 <= age <= SESSION_SECONDS:
        return None
    for key in keys:
        if hmac.compare_digest(session_token(key, int(issued)).encode(), cookie.encode()):
            return key
    return None


class CurationRequest(BaseModel):
    question: str = Field(min_length=1, max_length=2000)
    kind: Literal["clauses", "not_covered", "confirmed"]
    clause_ids: list[str] = Field(default_factory=list, max_length=10)
    contact: str | None = Field(None, max_length=300)
    note: str | None = Field(None, max_length=2000)
    answer_id: str | None = Field(None, max_length=64)


class IngestJob:
    """One background ingest at a time per process; its state is written to the data folder so
    every worker process reports the same progress."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.path = Path(settings.data_dir) / STATUS_FILE
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._pending = False

    def status(self) -> dict[str, Any]:
        try:
            state = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {"state": "idle"}
        if state.get("state") in ("running", "waiting") and not _alive(state.get("pid")):
            # The process that ran it stopped (a restart, a crash): it will not finish.
            state = {**state, "state": "failed", "error": "the server stopped during the ingest; upload again "
                     "or run `rulebook ingest`"}
        return state

    def _write(self, **state: Any) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
        tmp.write_text(json.dumps({**state, "pid": os.getpid(), "updated_at": time.time()}, ensure_ascii=False),
                       encoding="utf-8")
        os.replace(tmp, self.path)

    def start(self, directory: Path, reason: str) -> None:
        """Run an ingest of `directory`; a change made while one runs is picked up by one more run."""
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                self._pending = True
                return
            self._write(state="running", reason=reason, phase="starting", done=0, total=0)
            self._thread = threading.Thread(target=self._run, args=(directory, reason), daemon=True,
                                            name="console-ingest")
            self._thread.start()

    def _run(self, directory: Path, reason: str) -> None:
        from ingest.pipeline import ingest

        job = self

        class Progress:
            phase, done, total = "", 0, 0

            def start(self, phase: str, total: int) -> None:
                self.phase, self.done, self.total = phase, 0, total
                job._write(state="running", reason=reason, phase=phase, done=0, total=total)

            def advance(self, n: int = 1) -> None:
                self.done += n
                if self.done == self.total or self.done % 20 == 0:
                    job._write(state="running", reason=reason, phase=self.phase, done=self.done, total=self.total)

        from ingest.pipeline import IngestBusy

        while True:
            outcome: dict[str, Any]
            try:
                report = self._when_free(lambda: ingest(directory, self.settings, Progress()), reason, IngestBusy)
                outcome = {"state": "done", "reason": reason,
                           "report": {k: v for k, v in report.to_dict().items() if k != "directory"}}
            except Exception as exc:
                log.exception("console ingest failed")
                outcome = {"state": "failed", "reason": reason, "error": str(exc)[:500]}
            with self._lock:
                if not self._pending or outcome["state"] == "failed":
                    self._pending = False
                    self._write(**outcome)  # "done" only once no change is waiting for another run
                    self._thread = None
                    return
                self._pending = False
                reason = "later changes"

    def _when_free(self, run: Any, reason: str, busy: type[Exception]) -> Any:
        """`run()`, retried while another ingest (another worker's, or the command line's) holds the
        data folder: every change made through the console is indexed, none fails for being second."""
        deadline = time.monotonic() + BUSY_WAIT_SECONDS
        while True:
            try:
                return run()
            except busy:
                if time.monotonic() > deadline:
                    raise
                self._write(state="waiting", reason=reason, phase="another ingest is running", done=0, total=0)
                time.sleep(2.0)


BUSY_WAIT_SECONDS = 3600.0  # how long a console ingest waits for another one to finish


def _alive(pid: Any) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _inside(folder: Path, rel: str) -> Path | None:
    """`folder / rel` when no part of it below `folder` is a link and it resolves inside `folder`."""
    root = folder.resolve()
    path = folder
    for part in PurePosixPath(rel).parts:
        path = path / part
        if path.is_symlink():
            return None
    return path if path.resolve(strict=False).is_relative_to(root) else None


def _safe_name(name: str) -> str | None:
    """A rule file's name relative to the rules folder, or None when it is not a plain one: no
    absolute path, no `..`, no hidden part, no control characters, at most three folders deep."""
    if not name or len(name) > 200 or "\\" in name or any(ord(ch) < 32 for ch in name):
        return None
    path = PurePosixPath(name)
    parts = path.parts
    if path.is_absolute() or not parts or len(parts) > 4:
        return None
    if any(p in ("", ".", "..") or p.startswith(".") or len(p.encode("utf-8")) > 240 for p in parts):
        return None
    return path.as_posix()


def mount_admin(app: FastAPI, settings: Settings, assistant: Any, records: Records, check_key: Any,
                error: Any, api_error: type[Exception]) -> None:
    """Add the console's routes to `app`; every one answers 404 when no admin key is set.

    `check_key(request, token, accepted, message)` returns the token when it is accepted and
    otherwise raises the 401 (or, after too many failures from one address, the 429)."""
    admin_keys = set(settings.admin_key_list)
    job = IngestJob(settings)
    curations: list[Any] = []  # opened on first use, then shared

    def fail(status: int, code: str, message: str) -> Exception:
        return api_error(status, code, message)  # type: ignore[call-arg]

    def admin(request: Request) -> str:
        """An admin key (bearer) or an admin session cookie; never an ask key. 404 when off."""
        if not admin_keys:
            raise fail(404, "not_found", "Not found.")
        cookie = request.cookies.get(COOKIE, "")
        if cookie and not request.headers.get("authorization"):
            key = session_key(cookie, admin_keys)
            if key is not None:
                if request.method not in ("GET", "HEAD") and request.headers.get(CSRF_HEADER) != "1":
                    raise fail(403, "forbidden", f"Send the header {CSRF_HEADER}: 1 with console changes.")
                return f"admin:{hashlib.sha256(key.encode()).hexdigest()[:12]}"
        token = check_key(request, bearer_token(request), admin_keys,
                          "An admin key is needed: send `Authorization: Bearer ADMIN_KEY`.")
        return f"admin:{hashlib.sha256(token.encode()).hexdigest()[:12]}"

    def day(value: str | None, name: str) -> float | None:
        if not value:
            return None
        try:
            return dt.datetime.strptime(value, "%Y-%m-%d").timestamp()
        except ValueError as exc:
            raise fail(422, "invalid_request", f"{name}: expected YYYY-MM-DD, got {value!r}") from exc

    @app.middleware("http")
    async def _no_store(request: Request, call_next: Any) -> Any:
        # What staff asked is not for shared caches or the browser's back button.
        response = await call_next(request)
        if request.url.path.startswith(("/admin", "/v1/admin/")):
            response.headers["Cache-Control"] = "no-store"
        return response

    # -- the page --------------------------------------------------------------------------
    page = resources.files("assistant.adapters").joinpath("static/admin.html").read_text(encoding="utf-8")
    charts = resources.files("assistant.adapters").joinpath("static/charts.js").read_text(encoding="utf-8")

    def login_page(message: str = "", status: int = 401) -> HTMLResponse:
        html = page.replace("__LOGIN__", "true").replace("__MESSAGE__", json.dumps(message, ensure_ascii=False))
        return HTMLResponse(html, status_code=status, headers={"Content-Security-Policy": ADMIN_CSP,
                                                                 "Cache-Control": "no-store"})

    @app.get("/admin", response_class=HTMLResponse, include_in_schema=False)
    def console(request: Request) -> Response:
        if not admin_keys:
            return error(404, "not_found", "Not found.")
        try:
            admin(request)
        except api_error:
            return login_page()
        html = page.replace("__LOGIN__", "false").replace("__MESSAGE__", '""')
        return HTMLResponse(html, headers={"Content-Security-Policy": ADMIN_CSP, "Cache-Control": "no-store"})

    @app.get("/admin/charts.js", include_in_schema=False)
    def charts_js(_admin: str = Depends(admin)) -> Response:
        return Response(charts, media_type="text/javascript")

    @app.post("/admin/login", include_in_schema=False)
    async def login(request: Request) -> Response:
        if not admin_keys:
            return error(404, "not_found", "Not found.")
        form = parse_qs((await request.body()).decode("utf-8", "replace"))
        key = (form.get("key") or [""])[0].strip()
        if key not in admin_keys:
            try:
                check_key(request, key, admin_keys, "wrong key")
            except api_error as exc:
                status = getattr(exc, "status", 401)
                return login_page("管理密钥不正确 · Wrong admin key" if status == 401 else
                                  "尝试次数过多，请稍后再试 · Too many attempts; wait a minute", status)
        response = RedirectResponse("/admin", status_code=303)
        response.set_cookie(COOKIE, session_token(key), httponly=True, samesite="strict", path="/",
                            secure=request.url.scheme == "https", max_age=SESSION_SECONDS)
        return response

    @app.post("/admin/logout", include_in_schema=False)
    def logout() -> Response:
        response = RedirectResponse("/admin", status_code=303)
        response.delete_cookie(COOKIE, path="/")
        return response

    # -- questions, gaps, usage ------------------------------------------------------------
    @app.get("/v1/admin/questions", summary="Recorded questions, newest first (admin)")
    def admin_questions(refused: bool | None = None, down: bool | None = None, low_confidence: bool = False,
                        since: str | None = None, until: str | None = None, document: str | None = None,
                        channel: str | None = None, q: str | None = None, limit: int = 50, offset: int = 0,
                        _admin: str = Depends(admin)) -> dict[str, Any]:
        if not 1 <= limit <= 500 or offset < 0:
            raise fail(422, "invalid_request", "limit must be 1–500 and offset at least 0.")
        until_ts = day(until, "until")
        items, next_offset = records.questions(
            refused=refused, down=down, max_confidence=assistant.gate.threshold * 1.2 if low_confidence else None,
            since=day(since, "since"), until=until_ts + 86400 if until_ts is not None else None, source=document,
            channel=channel, text=q, limit=limit, offset=offset)
        return {"items": items, "next": next_offset}

    @app.get("/v1/admin/gaps", summary="Refused and 👎 questions grouped by meaning (admin)")
    def admin_gaps(since: str | None = None, limit: int = 2000, _admin: str = Depends(admin)) -> dict[str, Any]:
        from assistant.gaps import group_questions

        items: list[dict[str, Any]] = []
        for filters in ({"refused": True}, {"refused": False, "down": True}):
            found, _ = records.questions(**filters, since=day(since, "since"), limit=min(max(limit, 1), 5000))
            items += found
        items.sort(key=lambda item: item["created_at"])
        return {"groups": group_questions(items, assistant.embedder.query_array), "questions": len(items)}

    @app.get("/v1/admin/usage", summary="Questions per day, refusals, feedback, latency, most-cited (admin)")
    def admin_usage(since: str | None = None, until: str | None = None, format: Literal["json", "csv"] = "json",
                    _admin: str = Depends(admin)) -> Any:
        until_ts = day(until, "until")
        usage = records.usage(day(since, "since"), until_ts + 86400 if until_ts is not None else None)
        if format == "json":
            return usage
        buffer = io.StringIO()
        columns = ("day", "questions", "refused", "refusal_rate", "up", "down", "p50_ms", "p95_ms")
        writer = csv.writer(buffer)
        writer.writerow(columns)
        for row in usage["days"]:  # type: ignore[attr-defined]
            writer.writerow([row[c] for c in columns])
        return PlainTextResponse(buffer.getvalue(), media_type="text/csv; charset=utf-8",
                                 headers={"Content-Disposition": 'attachment; filename="rulebook-usage.csv"'})

    # -- documents -------------------------------------------------------------------------
    def rules_dir() -> Path:
        if settings.rules_dir is not None:
            return Path(settings.rules_dir)
        try:
            with assistant._searching() as loaded:
                directory = loaded.snapshot.meta.get("directory")
        except Exception:
            directory = None
        if not directory:
            raise fail(409, "no_rules_folder", "The rules folder is not known: set RULEBOOK_RULES_DIR, or run "
                       "`rulebook ingest DIR` once.")
        return Path(directory)

    @app.get("/v1/admin/documents", summary="The rule files being served (admin)")
    def admin_documents(_admin: str = Depends(admin)) -> dict[str, Any]:
        with assistant._searching() as loaded:
            snapshot = loaded.snapshot
            documents = dict(snapshot.documents)
            effective: dict[str, str] = {}
            for clause in snapshot.clauses:
                when = snapshot.effective.get(clause.clause_id)
                if when and clause.source not in effective:
                    effective[clause.source] = when
            repealed = dict(snapshot.superseded)
            generation = snapshot.generation
        history = assistant.history()
        changed = history.last_changed() if history is not None else {}
        items = [{"source": d.source, "title": d.title, "kind": d.kind, "clauses": d.n_clauses,
                  "last_changed": changed.get(d.source), "effective": effective.get(d.source),
                  "repealed_by": repealed.get(d.source)} for d in sorted(documents.values(), key=lambda d: d.source)]
        return {"generation": generation, "items": items, "ingest": job.status()}

    @app.get("/v1/admin/ingest", summary="The console's background ingest (admin)")
    def admin_ingest(_admin: str = Depends(admin)) -> dict[str, Any]:
        return job.status()

    @app.put(UPLOAD_PREFIX + "{name:path}", status_code=202, summary="Upload a new or revised rule file (admin)")
    async def upload(name: str, request: Request, _admin: str = Depends(admin)) -> dict[str, Any]:
        from ingest.loaders import SUPPORTED

        rel = _safe_name(name)
        if rel is None:
            raise fail(422, "invalid_name", "Give a plain file name (folders allowed, no `..`, no hidden parts).")
        if PurePosixPath(rel).suffix.lower() not in SUPPORTED:
            raise fail(415, "unsupported_type", f"Unsupported file type; the console takes "
                       f"{', '.join(sorted(SUPPORTED))}.")
        data = await request.body()
        limit = int(settings.max_file_mb * 1_000_000)
        if len(data) > limit:
            raise fail(413, "file_too_large", f"The file has {len(data) / 1e6:.1f} MB; the limit is "
                       f"{settings.max_file_mb:g} MB (RULEBOOK_MAX_FILE_MB).")
        if not data:
            raise fail(422, "empty_file", "The file is empty.")
        # Reading a PDF or a .docx takes a while: off the event loop, so answers go on meanwhile.
        return await run_in_threadpool(store_upload, rel, data)

    def store_upload(rel: str, data: bytes) -> dict[str, Any]:
        from ingest.loaders import UnsupportedFile, load_file
        from ingest.pipeline import file_limits

        folder = rules_dir()
        target = _inside(folder, rel)
        if target is None or (target.exists() and not target.is_file()):
            raise fail(409, "not_a_file", "A link or a folder is in the way of that name; an operator has to "
                       "remove it.")
        staging = None
        try:
            for parent in reversed(target.relative_to(folder).parents):
                if (folder / parent).exists() and not (folder / parent).is_dir():
                    raise fail(409, "not_a_file", f"{parent} is a file, not a folder.")
            target.parent.mkdir(parents=True, exist_ok=True)
            # Staged under its own name in a hidden folder: read as it will be read, then moved in.
            staging = Path(tempfile.mkdtemp(prefix=".upload-", dir=target.parent))
            staged = staging / target.name
            staged.write_bytes(data)
            try:
                document = load_file(staged, staging, limits=file_limits(settings))
            except UnsupportedFile as exc:
                raise fail(422, "unreadable_file", f"The file cannot be used: {exc}.") from None
            except Exception as exc:  # a parser's own error on a damaged file
                log.warning("upload %s unreadable: %s", rel, exc)
                raise fail(422, "unreadable_file", "The file cannot be used: it could not be read "
                           f"({exc.__class__.__name__}).") from None
            replaced = target.exists()
            os.replace(staged, target)
        except OSError as exc:
            log.warning("upload %s not stored: %s", rel, exc)
            raise fail(422, "not_stored", f"The file could not be stored ({exc.strerror or exc}).") from None
        finally:
            if staging is not None:
                shutil.rmtree(staging, ignore_errors=True)
        job.start(folder, f"{'revised' if replaced else 'added'} {rel}")
        return {"source": rel, "replaced": replaced, "title": document.title, "notes": list(document.notes),
                "ingest": job.status()}

    @app.delete(UPLOAD_PREFIX + "{name:path}", status_code=202, summary="Delete a rule file (admin)")
    def delete_document(name: str, _admin: str = Depends(admin)) -> dict[str, Any]:
        from ingest.loaders import SUPPORTED

        rel = _safe_name(name)
        if rel is None:
            raise fail(422, "invalid_name", "Give the file's name as the document list shows it.")
        folder = rules_dir()
        target = _inside(folder, rel)
        if (target is None or PurePosixPath(rel).suffix.lower() not in SUPPORTED or not target.is_file()):
            raise fail(404, "not_found", f"No rule file {rel} in the rules folder.")
        try:
            target.unlink()
        except OSError as exc:
            raise fail(409, "not_deleted", f"The file could not be deleted ({exc.strerror or exc}).") from None
        job.start(folder, f"deleted {rel}")
        return {"source": rel, "deleted": True, "ingest": job.status()}

    # -- clause search and corrections -----------------------------------------------------
    def clause_brief(clause: Any) -> dict[str, Any]:
        return {"clause_id": clause.clause_id, "source": clause.source, "document": clause.document,
                "clause": clause.label, "path": list(clause.path), "text": clause.text[:300]}

    @app.get("/v1/admin/clauses", summary="Find clauses by words, label or file (admin)")
    def admin_clauses(q: str = "", limit: int = 20, _admin: str = Depends(admin)) -> dict[str, Any]:
        q = q.strip()[:200]
        limit = min(max(limit, 1), 50)
        with assistant._searching() as loaded:
            clauses = loaded.snapshot.clauses
            if not q:
                return {"items": []}
            exact = find_clause(clauses, q)
            named = [c for c in clauses if q == c.label or (len(q) >= 2 and (q in c.label or q in c.source))]
            found = [h.clause for h in loaded.searcher.search(q, limit).hits]
            seen: set[str] = set()
            items = []
            for c in ([exact] if exact else []) + named + found:
                if c.clause_id not in seen:
                    seen.add(c.clause_id)
                    items.append(clause_brief(c))
        return {"items": items[:limit]}

    def store() -> Any:
        if not curations:
            curations.append(open_curations(settings.data_dir, create=True))
        return curations[0]

    @app.get("/v1/admin/curations", summary="The owners' corrections, newest first (admin)")
    def list_curations(_admin: str = Depends(admin)) -> dict[str, Any]:
        return {"items": [c.to_dict() for c in store().items()]}

    @app.get("/v1/admin/curations.jsonl", summary="The corrections as eval cases (admin)")
    def export_curations(_admin: str = Depends(admin)) -> Response:
        lines = store().export_jsonl()
        return Response(lines, media_type="application/x-ndjson; charset=utf-8",
                        headers={"Content-Disposition": 'attachment; filename="curated.jsonl"'})

    @app.post("/v1/admin/curations", status_code=201, summary="Correct an answer (admin)")
    def add_curation(body: CurationRequest, who: str = Depends(admin)) -> dict[str, Any]:
        ids = list(body.clause_ids)
        fallback: dict[str, str] = {}
        if body.kind == "confirmed":
            if not body.answer_id:
                raise fail(422, "invalid_request", "Confirming needs the answer_id of the answer confirmed.")
            cited = records.citations(body.answer_id)
            ids = [str(c["clause_id"]) for c in cited]
            fallback = {str(c["clause_id"]): f"{c['source']} {c['clause']}" for c in cited}
            if not ids:
                raise fail(422, "invalid_request", "That answer cites no clause: pick the clauses, or mark it "
                           "not covered.")
        rows = []
        with assistant._searching() as loaded:
            for ref in ids:
                clause = find_clause(loaded.snapshot.clauses, ref)
                if clause is None and body.kind == "confirmed":  # renumbered since: by file and label
                    clause = find_clause(loaded.snapshot.clauses, fallback.get(ref, ""))
                if clause is None:
                    raise fail(422, "unknown_clause", f"No clause {ref!r} in the index being served.")
                rows.append(clause_row(clause))
        try:
            item = store().add(re.sub(r"\s+", " ", body.question).strip(), body.kind, rows, contact=body.contact,
                               note=body.note, answer_id=body.answer_id, author=who)
        except CurationError as exc:
            raise fail(422, "invalid_request", str(exc)) from None
        return item.to_dict()

    @app.delete("/v1/admin/curations/{curation_id}", summary="Delete a correction (admin)")
    def delete_curation(curation_id: str, _admin: str = Depends(admin)) -> dict[str, Any]:
        if not store().delete(curation_id):
            raise fail(404, "not_found", "No such correction.")
        return {"deleted": curation_id}
