"""The rulebook as one more "model" behind any OpenAI-compatible chat front end.

`POST /v1/chat/completions` (plain and streaming) and `GET /v1/models`, mounted in the web app
behind the same API keys and rate limits as the rest of `/v1`. This module only converts: the
`messages` of a chat completion request become a question and the conversation before it, the
answer becomes a `chat.completion` object whose text carries the citations (`[1] document › path
› clause (file)` and the quote) and whose `choices[0].message.citations` carries the same citation
objects as `/v1/ask`.

Decisions a caller should know:
- The last message must be the user's question. Earlier user messages, each with the assistant
  reply that followed it, are the conversation (elliptical follow-ups inherit their subject).
  `system` and `developer` messages are ignored: the evidence gate and the prompts are the
  operator's, not the caller's.
- A stream carries only checked text: the answer is composed and verified first, then sent in
  pieces, so a streamed answer is never one that the checks would have replaced.
- `model` must be one of `GET /v1/models` (today only `rulebook`); other sampling parameters are
  accepted and ignored.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from assistant.adapters.rendering import markdown_answer, strip_sources
from assistant.schema import Turn

MODEL_ID = "rulebook"
CREATED = 1_767_225_600  # when the model id was first published (2026-01-01); stable across restarts


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[dict[str, Any]] | None = None


class ChatCompletionRequest(BaseModel):
    model_config = ConfigDict(extra="allow")  # temperature, top_p, user, … are accepted and ignored

    model: str = Field(MODEL_ID, max_length=100, examples=[MODEL_ID])
    messages: list[ChatMessage] = Field(min_length=1, max_length=200)
    stream: bool = False


class ChatRequestError(ValueError):
    """The request's messages hold no question this endpoint can answer."""


def text_of(message: ChatMessage) -> str:
    """A message's text: a string, or the text parts of a list of content parts."""
    if message.content is None:
        return ""
    if isinstance(message.content, str):
        return message.content
    return "\n".join(str(p.get("text", "")) for p in message.content if p.get("type") in ("text", "input_text"))


def question_and_history(messages: list[ChatMessage]) -> tuple[str, list[Turn]]:
    """The last user message and the (question, reply) turns before it, oldest first."""
    talk = [m for m in messages if m.role in ("user", "assistant")]
    if not talk or talk[-1].role != "user":
        raise ChatRequestError("The last message must be the user's question (role `user`).")
    question = text_of(talk[-1]).strip()
    turns: list[Turn] = []
    for i, m in enumerate(talk[:-1]):
        if m.role != "user":
            continue
        reply = talk[i + 1] if talk[i + 1].role == "assistant" else None
        turns.append(Turn(question=text_of(m).strip(),
                          answer=strip_sources(text_of(reply)).strip() if reply is not None else ""))
    return question, turns


def models() -> dict[str, Any]:
    return {"object": "list",
            "data": [{"id": MODEL_ID, "object": "model", "created": CREATED, "owned_by": "rulebook"}]}


def completion_id() -> str:
    return "chatcmpl-" + uuid.uuid4().hex


def completion(d: dict[str, Any], answer_id: str) -> dict[str, Any]:
    """The standard `chat.completion` object; the citations also as structured objects."""
    return {
        "id": completion_id(), "object": "chat.completion", "created": int(time.time()), "model": MODEL_ID,
        "choices": [{"index": 0, "finish_reason": "stop", "logprobs": None,
                     "message": {"role": "assistant", "content": markdown_answer(d), "refusal": None,
                                 "citations": d["citations"]}}],
        "rulebook": {"answer_id": answer_id, "grounded": d["grounded"]},
    }


def _chunk(cid: str, created: int, delta: dict[str, Any], finish: str | None = None,
           **extra: Any) -> str:
    body = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": MODEL_ID,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}], **extra}
    return f"data: {json.dumps(body, ensure_ascii=False)}\n\n"


def pieces(text: str) -> Iterator[str]:
    """A checked text in sentence- and line-sized pieces, in order; they join back to `text`."""
    start = 0
    for i, ch in enumerate(text):
        if ch in "。！？!?\n":
            yield text[start : i + 1]
            start = i + 1
    if start < len(text):
        yield text[start:]


def stream(answer: Any) -> Iterator[str]:
    """Server-sent `chat.completion.chunk`s: the role, the checked text in pieces, then a last
    chunk with `finish_reason` and the citations, then `[DONE]`. `answer()` returns
    (answer JSON, answer id) and runs after the first chunk is sent."""
    cid, created = completion_id(), int(time.time())
    yield _chunk(cid, created, {"role": "assistant", "content": ""})
    d, answer_id = answer()
    for piece in pieces(markdown_answer(d)):
        yield _chunk(cid, created, {"content": piece})
    yield _chunk(cid, created, {"citations": d["citations"]}, "stop", citations=d["citations"],
                 rulebook={"answer_id": answer_id, "grounded": d["grounded"]})
    yield "data: [DONE]\n\n"


def stream_error(code: str, message: str) -> str:
    """An error after a stream has started: OpenAI's clients raise it as an APIError."""
    return f"data: {json.dumps({'error': {'code': code, 'type': code, 'message': message}})}\n\n"
