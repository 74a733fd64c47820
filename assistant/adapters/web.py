"""HTTP API and chat page over the assistant (`rulebook serve`).

Routes (documented at /docs): POST /v1/ask, POST /v1/ask/stream (Server-Sent Events),
GET /v1/clauses/{clause_id}, POST /v1/feedback, GET /healthz, GET /readyz, and the chat page at /.
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
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from assistant.config import Settings
from assistant.errors import RulebookError
from assistant.records import Records
from assistant.schema import Answer

log = logging.getLogger(__name__)


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=headers)


class AskRequest(BaseModel):
    question: str = Field(description="The question, in Chinese or English.", examples=["客户咨询多久内要答复？"])
    conversation_id: str | None = Field(
        None, max_length=100, description="Keep follow-up questions in one conversation.")


class FeedbackRequest(BaseModel):
    answer_id: str = Field(max_length=100)
    rating: Literal["up", "down"]
    comment: str | None = Field(None, max_length=2000)


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

    def guard(request: Request) -> str:
        """Authentication and rate limit of every /v1 route; returns the client's identity."""
        client = request.client.host if request.client else "unknown"
        if keys:
            header = request.headers.get("authorization", "")
            token = header[7:].strip() if header.lower().startswith("bearer ") else ""
            if token not in keys:
                raise ApiError(401, "unauthorized", "Missing or invalid API key: send `Authorization: Bearer KEY`.",
                               {"WWW-Authenticate": "Bearer"})
            client = f"key:{token[:8]}"
        wait = limiter.check(client)
        if wait > 0:
            raise ApiError(429, "rate_limited", f"Too many requests; retry in {math.ceil(wait)} s.",
                           {"Retry-After": str(math.ceil(wait))})
        return client

    def clean_question(body: AskRequest) -> str:
        q = body.question.strip()
        if not q:
            raise ApiError(422, "empty_question", "The question is empty.")
        if len(q) > settings.max_question_chars:
            raise ApiError(422, "question_too_long",
                           f"The question has {len(q)} characters; the limit is {settings.max_question_chars}.")
        return q

    def answer(body: AskRequest) -> tuple[Answer, str, str]:
        question = clean_question(body)
        conversation_id = body.conversation_id or uuid.uuid4().hex
        history = records.history(conversation_id)
        try:
            ans = assistant.answer(question, history)
        except RulebookError as exc:
            raise ApiError(503, "not_ready", str(exc)) from exc
        answer_id = records.add_answer(ans, channel="web", conversation_id=conversation_id)
        return ans, answer_id, conversation_id

    @app.post("/v1/ask", summary="Answer a question with cited clauses")
    def ask(body: AskRequest, _client: str = Depends(guard)) -> dict[str, Any]:
        ans, answer_id, conversation_id = answer(body)
        return {**ans.to_dict(), "answer_id": answer_id, "conversation_id": conversation_id}

    @app.post("/v1/ask/stream", summary="The same answer as Server-Sent Events",
              response_class=StreamingResponse)
    def ask_stream(body: AskRequest, _client: str = Depends(guard)) -> StreamingResponse:
        clean_question(body)  # reject bad input with a plain 4xx before the stream starts

        def events() -> Iterator[str]:
            question = body.question.strip()
            conversation_id = body.conversation_id or uuid.uuid4().hex
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
                        yield _sse("done", {**d, "answer_id": answer_id, "conversation_id": conversation_id})
            except RulebookError as exc:
                yield _sse("error", {"code": "not_ready", "message": str(exc)})
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
            raise ApiError(503, "not_ready", str(exc)) from exc
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
        records.add_feedback(body.answer_id, body.rating, body.comment, channel="web")
        return {"ok": True}

    @app.get("/healthz", summary="The process is up")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", summary="The index is loaded")
    def readyz() -> JSONResponse:
        ok, detail = assistant.ready()
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
            return await slack_handler.handle(request)

    page = resources.files("assistant.adapters").joinpath("static/index.html").read_text(encoding="utf-8")
    examples = json.dumps(EXAMPLES, ensure_ascii=False)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def index() -> HTMLResponse:
        return HTMLResponse(page.replace("__EXAMPLES__", examples).replace(
            "__AUTH__", "true" if keys else "false"))

    return app


EXAMPLES = ["客户咨询多久内要答复？", "系统故障多长时间内必须恢复？", "年假可以留到明年用吗？",
            "出差住酒店每晚最多报销多少？", "How many days of annual leave do I get?"]


def records_path(settings: Settings) -> Path:
    return Path(settings.data_dir) / "records.sqlite"
