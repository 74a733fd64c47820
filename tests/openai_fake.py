"""A local fake of an OpenAI-compatible chat-completions server on 127.0.0.1, scripted per test."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .loopback import LoopbackServer, QuietHandler


@dataclass
class Reply:
    content: str = ""
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    raw: str | None = None  # a body sent as is (malformed output)


class FakeOpenAI(LoopbackServer):
    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.script: list[Reply | Callable[[dict[str, Any]], Reply]] = []
        self.default: Reply | Callable[[dict[str, Any]], Reply] | None = None
        # llama-cpp-python's tokenizer endpoint (POST /extras/tokenize {"input": …}): word → token ids
        self.vocabulary: dict[str, list[int]] = {}
        self._lock = threading.Lock()
        fake = self

        class Handler(QuietHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))) or b"{}")
                if self.path.endswith("/extras/tokenize"):
                    tokens = fake.vocabulary.get(body.get("input", ""))
                    if tokens is None:
                        self._send(404, b'{"detail": "Not Found"}', "application/json", {})
                    else:
                        self._send(200, json.dumps({"tokens": tokens}).encode(), "application/json", {})
                    return
                with fake._lock:
                    fake.requests.append(body)
                    step = fake.script.pop(0) if fake.script else fake.default
                reply = step(body) if callable(step) else step
                if reply is None:
                    reply = Reply(status=500, raw='{"error": {"message": "no scripted reply"}}')
                if reply.delay:
                    time.sleep(reply.delay)
                if reply.status != 200 or reply.raw is not None:
                    data = (reply.raw or json.dumps({"error": {"message": "scripted error", "type": "server_error"}}))
                    self._send(reply.status, data.encode(), "application/json", reply.headers)
                    return
                if body.get("stream"):
                    self._stream(body, reply)
                    return
                data = json.dumps({
                    "id": "chatcmpl-1", "object": "chat.completion", "created": int(time.time()),
                    "model": body.get("model", "fake"),
                    "choices": [{"index": 0, "finish_reason": "stop",
                                 "message": {"role": "assistant", "content": reply.content}}],
                    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
                }).encode()
                self._send(200, data, "application/json", reply.headers)

            def _send(self, status: int, data: bytes, ctype: str, headers: dict[str, str]) -> None:
                self.send_response(status)
                self.send_header("content-type", ctype)
                self.send_header("content-length", str(len(data)))
                for k, v in headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def _stream(self, body: dict[str, Any], reply: Reply) -> None:
                self.send_response(200)
                self.send_header("content-type", "text/event-stream")
                self.send_header("transfer-encoding", "chunked")
                self.end_headers()

                def chunk(payload: str) -> None:
                    data = f"data: {payload}\n\n".encode()
                    self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                    self.wfile.flush()

                pieces = [reply.content[i : i + 4] for i in range(0, len(reply.content), 4)]
                for i, piece in enumerate(pieces):
                    delta = {"content": piece} if i else {"role": "assistant", "content": piece}
                    chunk(json.dumps({"id": "c", "object": "chat.completion.chunk", "created": 0,
                                      "model": body.get("model", "fake"),
                                      "choices": [{"index": 0, "delta": delta, "finish_reason": None}]}))
                chunk(json.dumps({"id": "c", "object": "chat.completion.chunk", "created": 0,
                                  "model": body.get("model", "fake"),
                                  "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}))
                chunk("[DONE]")
                self.wfile.write(b"0\r\n\r\n")

        super().__init__(Handler)

    @property
    def base_url(self) -> str:
        return self.root + "/v1"
