"""HTTP API and chat page over the assistant (`rulebook serve`).

Routes (documented at /docs): POST /v1/ask, POST /v1/ask/stream (Server-Sent Events),
GET /v1/clauses/{clause_id}, POST /v1/feedback, GET /v1/changes, GET /v1/answers/{id}/audit, the
OpenAI-compatible POST /v1/chat/completions and GET /v1/models, GET /healthz, GET /readyz, the
chat page at /, and the owners' console at /admin with /v1/admin/* (`assistant.adapters.admin`).
This module only converts: requests → `assistant.answer(...)` → JSON, and records each exchange.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
import uuid
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, StreamingResponse
from pydantic import BaseModel, Field, field_validator
from starlette.exceptions import HTTPException as StarletteHTTPException

from assistant.adapters import openai_compat
from assistant.config import Settings
from assistant.errors import IndexNotBuilt, RulebookError
from assistant.records import Records
from assistant.schema import Answer, Turn

log = logging.getLogger(__name__)


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=headers)


def _no_surrogates(value: str | None) -> str | None:
    # A lone surrogate ("\ud800" in JSON) is valid JSON but not text: it cannot be stored or encoded.
    if value is not None and any("\ud800" <= ch <= "\udfff" for ch in value):
        raise ValueError("contains an invalid character (a lone UTF-16 surrogate)")
    return value


class AskRequest(BaseModel):
    question: str = Field(description="The question, in Chinese or English.", examples=["客户咨询多久内要答复？"])
    conversation_id: str | None = Field(
        None, max_length=100, description="Keep follow-up questions in one conversation: send back the id "
        "an earlier answer returned. Ids are scoped to the caller (API key, else address) that made them.")

    _text = field_validator("question", "conversation_id")(_no_surrogates)


class FeedbackRequest(BaseModel):
    answer_id: str = Field(max_length=100)
    rating: Literal["up", "down"]
    comment: str | None = Field(None, max_length=2000)

    _text = field_validator("answer_id", "comment")(_no_surrogates)


class RateLimiter:
    """Token bucket per client: `rate` requests per minute, bursts up to the same number."""

    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def check(self, client: str) -> float:
        """0 when allowed, else seconds until the next request would be."""
        if self.per_minute <= 0:
            return 0.0
        now = time.monotonic()
        rate = self.per_minute / 60.0
        with self._lock:
            tokens, last = self._buckets.get(client, (float(self.per_minute), now))
            tokens = min(float(self.per_minute), tokens + (now - last) * rate)
            if tokens >= 1.0:
                self._buckets[client] = (tokens - 1.0, now)
                return 0.0
            self._buckets[client] = (tokens, now)
            return (1.0 - tokens) / rate


class BodyLimit:
    """Refuse request bodies over `limit` bytes with 413 before they are read into memory: by the
    declared Content-Length at once, and by counting for chunked bodies that declare none."""

    def __init__(self, app: Any, limit: int, wider: tuple[str, int] | None = None) -> None:
        self.app, self.default, self.wider = app, limit, wider

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.default
        if self.wider and scope.get("path", "").startswith(self.wider[0]) and scope.get("method") == "PUT":
            limit = self.wider[1]
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length", b"0")
        if not declared.isdigit() or int(declared) > limit:
            await self._refuse(send, limit)
            return
        seen = 0
        refused = False

        async def counted() -> dict:
            nonlocal seen, refused
            message = await receive()
            if message["type"] == "http.request" and not refused:
                seen += len(message.get("body", b""))
                if seen > limit:
                    # Answer now and tell the app the client went away: it stops reading.
                    refused = True
                    await self._refuse(send, limit)
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: dict) -> None:
            if not refused:
                await send(message)

        try:
            await self.app(scope, counted, guarded_send)
        except Exception:
            if not refused:
                raise

    async def _refuse(self, send: Any, limit: int) -> None:
        response = _error(413, "body_too_large", f"The request body is larger than the limit of {limit // 1024} KB.",
                          {"Connection": "close"})
        await send({"type": "http.response.start", "status": 413, "headers": response.raw_headers})
        await send({"type": "http.response.body", "body": response.body})


# The chat page needs its own inline script and style, and nothing from elsewhere.
PAGE_CSP = ("default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
            "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")


def bearer_token(request: Request) -> str:
    """The token of an `Authorization: Bearer …` header ("" without one)."""
    header = request.headers.get("authorization", "")
    return header[7:].strip() if header.lower().startswith("bearer ") else ""


def _caller_scope(client: str) -> str:
    """A short, stable, non-reversible name of a caller, for scoping its conversations."""
    import hashlib

    return hashlib.sha256(client.encode("utf-8", "replace")).hexdigest()[:16]


def _sse(event: str, data: Any) -> str:
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


def create_app(settings: Settings, assistant: Any = None, records: Records | None = None) -> FastAPI:
    """The FastAPI app; `assistant` and `records` are built from settings unless given."""
    if assistant is None:
        from assistant.core import build_assistant

        assistant = build_assistant(settings)
    records = records or Records(records_path(settings))
    limiter = RateLimiter(settings.rate_limit_per_minute)
    keys = set(settings.api_key_list)

    app = FastAPI(
        title="rulebook",
        version="0.1.0",
        description="Answers staff questions about the company rulebook, citing the clause that applies. "
        "When API keys are configured (RULEBOOK_API_KEYS), every /v1 route needs `Authorization: Bearer KEY`.",
    )
    app.state.assistant, app.state.records = assistant, records

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return _error(exc.status, exc.code, exc.message, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        if any(e.get("type") == "json_invalid" for e in errors):
            return _error(400, "malformed_json", "The request body is not valid JSON.")
        first = errors[0] if errors else {}
        where = ".".join(str(x) for x in first.get("loc", ()) if x != "body")
        return _error(422, "invalid_request", f"{where or 'body'}: {first.get('msg', 'invalid')}")

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _error(exc.status_code, "http_error", str(exc.detail))

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error")
        return _error(500, "internal_error", "Something went wrong on our side; it has been logged.")

    def bearer(request: Request, accepted: set[str], needed: str) -> str:
        """The request's bearer token when it is one of `accepted`; otherwise a 401 (or 429)."""
        return check_key(request, bearer_token(request), accepted, needed)

    def check_key(request: Request, token: str, accepted: set[str], needed: str) -> str:
        """`token` when it is one of `accepted`; otherwise a 401 (or 429: failed attempts spend the
        address's own bucket, so keys cannot be guessed at full speed)."""
        if token not in accepted:
            client = request.client.host if request.client else "unknown"
            wait = limiter.check(f"auth-failure:{client}")
            if wait > 0:
                raise ApiError(429, "rate_limited", f"Too many failed attempts; retry in {math.ceil(wait)} s.",
                               {"Retry-After": str(math.ceil(wait))})
            raise ApiError(401, "unauthorized", needed, {"WWW-Authenticate": "Bearer"})
        return token

    def guard(request: Request) -> str:
        """Authentication and rate limit of every /v1 route; returns the client's identity."""
        client = request.client.host if request.client else "unknown"
        if keys:
            token = bearer(request, keys, "Missing or invalid API key: send `Authorization: Bearer KEY`.")
            client = f"key:{_caller_scope(token)}"  # the whole key: keys sharing a prefix are different callers
        wait = limiter.check(client)
        if wait > 0:
            raise ApiError(429, "rate_limited", f"Too many requests; retry in {math.ceil(wait)} s.",
                           {"Retry-After": str(math.ceil(wait))})
        return client

    def clean_question(question: str) -> str:
        q = question.strip()
        if not q:
            raise ApiError(422, "empty_question", "The question is empty.")
        if len(q) > settings.max_question_chars:
            raise ApiError(422, "question_too_long",
                           f"The question has {len(q)} characters; the limit is {settings.max_question_chars}.")
        return q

    def conversation(body: AskRequest, client: str) -> tuple[str, str]:
        """(the id the caller sees, the id records keep): a new random id unless the caller sends one
        back; kept under the web channel and the caller, so no other channel's or caller's
        conversation can be joined by naming its id."""
        public = body.conversation_id or uuid.uuid4().hex
        return public, f"web:{_caller_scope(client)}:{public}"

    def answer(body: AskRequest, client: str) -> tuple[Answer, str, str]:
        question = clean_question(body.question)
        public, conversation_id = conversation(body, client)
        history = records.history(conversation_id)
        try:
            ans = assistant.answer(question, history)
        except RulebookError as exc:
            raise ApiError(503, "not_ready", not_ready(exc)) from exc
        answer_id = records.add_answer(ans, channel="web", conversation_id=conversation_id)
        return ans, answer_id, public

    def not_ready(exc: Exception) -> str:
        # The full message names the data folder: for the log and the operator, not for callers.
        log.error("not ready: %s", exc)
        if isinstance(exc, IndexNotBuilt):
            return "No rulebook index has been built yet; the operator needs to run `rulebook ingest`."
        return "The rulebook index cannot be used right now; the cause has been logged for the operator."

    @app.post("/v1/ask", summary="Answer a question with cited clauses")
    def ask(body: AskRequest, client: str = Depends(guard)) -> dict[str, Any]:
        ans, answer_id, conversation_id = answer(body, client)
        return {**ans.to_dict(), "answer_id": answer_id, "conversation_id": conversation_id}

    @app.post("/v1/ask/stream", summary="The same answer as Server-Sent Events",
              response_class=StreamingResponse)
    def ask_stream(body: AskRequest, client: str = Depends(guard)) -> StreamingResponse:
        clean_question(body.question)  # reject bad input with a plain 4xx before the stream starts
        public, conversation_id = conversation(body, client)

        def events() -> Iterator[str]:
            question = body.question.strip()
            try:
                for kind, value in assistant.answer_stream(question, records.history(conversation_id)):
                    if kind == "retrieval":
                        yield _sse("retrieval", {"retrieved": [
                            {"clause_id": h.clause.clause_id, "source": h.clause.source, "clause": h.clause.label,
                             "score": round(h.score, 4)} for h in value]})
                    elif kind == "delta":
                        yield _sse("delta", {"text": value})
                    else:
                        ans: Answer = value
                        answer_id = records.add_answer(ans, channel="web", conversation_id=conversation_id)
                        d = ans.to_dict()
                        yield _sse("citations", {"citations": d["citations"]})  # verified
                        yield _sse("done", {**d, "answer_id": answer_id, "conversation_id": public})
            except RulebookError as exc:
                yield _sse("error", {"code": "not_ready", "message": not_ready(exc)})
            except Exception:
                log.exception("unexpected error while streaming")
                yield _sse("error", {"code": "internal_error", "message": "Something went wrong on our side."})

        return StreamingResponse(events(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    @app.get("/v1/clauses/{clause_id}", summary="A whole clause with its neighbours")
    def clause(clause_id: str, _client: str = Depends(guard)) -> dict[str, Any]:
        try:
            found = assistant.clause(clause_id)
        except RulebookError as exc:
            raise ApiError(503, "not_ready", not_ready(exc)) from exc
        if found is None:
            raise ApiError(404, "unknown_clause", f"No clause with id {clause_id!r} in the current index.")
        c, prev, nxt = found

        def brief(x: Any) -> dict[str, Any] | None:
            return None if x is None else {"clause_id": x.clause_id, "clause": x.label, "path": list(x.path)}

        return {"clause_id": c.clause_id, "document": c.document, "source": c.source, "clause": c.label,
                "path": list(c.path), "text": c.text, "content_hash": c.content_hash,
                "previous": brief(prev), "next": brief(nxt)}

    @app.post("/v1/feedback", summary="Thumbs up or down on an answer")
    def feedback(body: FeedbackRequest, _client: str = Depends(guard)) -> dict[str, Any]:
        if not records.answer_exists(body.answer_id):
            raise ApiError(404, "unknown_answer", f"No answer with id {body.answer_id!r}.")
        # An answer was given to one caller: one vote on it from the web, not one per request.
        if any(f.channel == "web" for f in records.feedback(body.answer_id)):
            raise ApiError(409, "already_rated", "This answer already has feedback.")
        records.add_feedback(body.answer_id, body.rating, body.comment, channel="web")
        return {"ok": True}

    from assistant.adapters.admin import mount_admin

    mount_admin(app, settings, assistant, records, check_key, _error, ApiError)

    def history() -> Any:
        from assistant.history import ClauseHistory
        from assistant.store import Layout

        return ClauseHistory(Layout(settings.data_dir).history)

    @app.get("/v1/changes", summary="What changed in the rulebook since a date or generation",
             description="Added, removed, modified and moved clauses, by document, between `since` (YYYY-MM-DD or "
             "a generation name; default: the previous generation) and the index served now.")
    def changes(since: str | None = None, _client: str = Depends(guard)) -> dict[str, Any]:
        from assistant.changes import ChangesError
        from assistant.changes import changes as compute

        h = history()
        try:
            return compute(h, since)
        except ChangesError as exc:
            raise ApiError(404 if since is None else 422, "no_changes", str(exc)) from exc
        finally:
            h.close()

    @app.get("/v1/answers/{answer_id}/audit", summary="An earlier answer with the clause text it quoted then")
    def audit(answer_id: str, _client: str = Depends(guard)) -> dict[str, Any]:
        from assistant.changes import audit as compute

        payload, meta = records.answer_payload(answer_id), records.answer_meta(answer_id)
        if payload is None or meta is None:
            raise ApiError(404, "unknown_answer", f"No answer with id {answer_id!r}.")
        h = history()
        try:
            return compute(answer_id, payload, meta, records.citations(answer_id), h)
        finally:
            h.close()

    @app.get("/v1/models", summary="The rulebook as an OpenAI-compatible model list")
    def list_models(_client: str = Depends(guard)) -> dict[str, Any]:
        return openai_compat.models()

    @app.post("/v1/chat/completions", summary="OpenAI-compatible chat completion (plain or streamed)",
              description="Any OpenAI-compatible chat front end can use the rulebook as a model. The last "
              "message is the question; earlier user/assistant messages are the conversation. The citations "
              "are in the text and in `choices[0].message.citations` (the objects of /v1/ask); a stream sends "
              "them in its last chunk.")
    def chat_completions(body: openai_compat.ChatCompletionRequest, client: str = Depends(guard)) -> Any:
        if body.model != openai_compat.MODEL_ID:
            raise ApiError(404, "model_not_found",
                           f"The model {body.model!r} does not exist; use {openai_compat.MODEL_ID!r}.")
        try:
            question, history = openai_compat.question_and_history(body.messages)
        except openai_compat.ChatRequestError as exc:
            raise ApiError(422, "invalid_request", str(exc)) from exc
        try:
            question = clean_question(_no_surrogates(question) or "")
            history = [Turn(_no_surrogates(t.question) or "", _no_surrogates(t.answer) or "") for t in history]
        except ValueError as exc:
            raise ApiError(422, "invalid_request", f"messages: {exc}") from exc

        def answer() -> tuple[dict[str, Any], str]:
            ans = assistant.answer(question, history)
            return ans.to_dict(), records.add_answer(ans, channel="api", conversation_id=None)

        if not body.stream:
            try:
                d, answer_id = answer()
            except RulebookError as exc:
                raise ApiError(503, "not_ready", not_ready(exc)) from exc
            return openai_compat.completion(d, answer_id)

        def events() -> Iterator[str]:
            try:
                yield from openai_compat.stream(answer)
            except RulebookError as exc:
                yield openai_compat.stream_error("not_ready", not_ready(exc))
            except Exception:
                log.exception("unexpected error while streaming a chat completion")
                yield openai_compat.stream_error("internal_error", "Something went wrong on our side.")

        return StreamingResponse(events(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    @app.get("/healthz", summary="The process is up")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", summary="The index is loaded")
    def readyz() -> JSONResponse:
        ok, detail = assistant.ready()
        if not ok:
            log.error("not ready: %s", detail)
            detail = "no usable rulebook index yet: run `rulebook ingest DIR` (details in the server log)"
        return JSONResponse({"status": "ready" if ok else "not_ready", "detail": detail},
                            status_code=200 if ok else 503)

    if settings.slack_signing_secret and settings.slack_bot_token:
        # Slack's HTTP mode: the same bolt app as `rulebook slack`, behind bolt's own request
        # verification (signature and 5-minute timestamp window) and URL verification.
        from slack_bolt.adapter.starlette.handler import SlackRequestHandler

        from assistant.adapters.slack import create_slack_app

        slack_handler = SlackRequestHandler(create_slack_app(settings, assistant, records))

        @app.post("/slack/events", include_in_schema=False)
        async def slack_events(request: Request):  # type: ignore[no-untyped-def]
            # Bolt's verification expects a numeric timestamp and a parseable body; anything else
            # is a malformed request (4xx), never a server error.
            if not request.headers.get("x-slack-request-timestamp", "").strip().isdigit():
                return _error(401, "invalid_signature", "Missing or malformed X-Slack-Request-Timestamp.")
            try:
                response = await slack_handler.handle(request)
            except Exception:
                log.warning("unparseable Slack request", exc_info=True)
                return _error(400, "malformed_request", "The Slack request body could not be parsed.")
            if response.status_code >= 500:
                log.warning("Slack request answered %d; treating it as malformed", response.status_code)
                return _error(400, "malformed_request", "The Slack request body could not be parsed.")
            return response

    if settings.feishu_app_id and settings.feishu_app_secret:
        # Feishu's HTTP callbacks (events and card actions) at /feishu/events, verified and
        # decrypted by the Feishu SDK itself.
        from assistant.adapters.feishu import mount_feishu

        mount_feishu(app, settings, assistant, records)

    page = resources.files("assistant.adapters").joinpath("static/index.html").read_text(encoding="utf-8")
    examples = json.dumps(EXAMPLES, ensure_ascii=False)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def index() -> HTMLResponse:
        return HTMLResponse(page.replace("__EXAMPLES__", examples).replace(
            "__AUTH__", "true" if keys else "false"), headers={"Content-Security-Policy": PAGE_CSP})

    @app.middleware("http")
    async def _headers(request: Request, call_next: Any) -> Any:
        response = await call_next(request)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        return response

    # Uploads through the console may be as large as a rule file may be; everything else is small.
    app.add_middleware(BodyLimit, limit=settings.max_body_kb * 1024,
                       wider=("/v1/admin/documents/", int(settings.max_file_mb * 1_000_000) + 1))
    return app


EXAMPLES = ["客户咨询多久内要答复？", "系统故障多长时间内必须恢复？", "年假可以留到明年用吗？",
            "出差住酒店每晚最多报销多少？", "How many days of annual leave do I get?"]


def app_from_environment() -> FastAPI:
    """The app of one worker of `rulebook serve --workers N`, from `RULEBOOK_*` settings."""
    from assistant.config import load_settings

    return create_app(load_settings())


def records_path(settings: Settings) -> Path:
    return Path(settings.data_dir) / "records.sqlite"
