"""A local fake of Slack's Web API and response URLs, speaking real HTTP on 127.0.0.1."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from typing import Any
from urllib.parse import parse_qs

from .loopback import LoopbackServer, QuietHandler

BOT_USER = "UBOT"


class FakeSlack(LoopbackServer):
    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.script: dict[str, list[tuple[int, dict[str, str], dict[str, Any]]]] = {}
        self._lock = threading.Lock()
        fake = self

        class Handler(QuietHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("content-length", 0))).decode("utf-8")
                if "json" in (self.headers.get("content-type") or ""):
                    params = json.loads(raw or "{}")
                else:
                    params = {k: v[0] for k, v in parse_qs(raw).items()}
                for key in ("blocks",):
                    if isinstance(params.get(key), str):
                        params[key] = json.loads(params[key])
                name = self.path.split("/api/", 1)[1] if "/api/" in self.path else self.path.lstrip("/")
                with fake._lock:
                    fake.calls.append((name, params))
                    scripted = fake.script.get(name)
                    status, headers, body = scripted.pop(0) if scripted else (200, {}, fake.default(name, params))
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        super().__init__(Handler)

    @property
    def base(self) -> str:
        return self.root

    @property
    def api_url(self) -> str:
        return self.base + "/api/"

    def response_url(self, name: str) -> str:
        return f"{self.base}/respond/{name}"

    @staticmethod
    def default(name: str, params: dict[str, Any]) -> dict[str, Any]:
        if name == "auth.test":
            return {"ok": True, "user_id": BOT_USER, "bot_id": "BBOT", "team_id": "T1", "user": "rulebook"}
        if name == "chat.postMessage":
            return {"ok": True, "channel": params.get("channel"), "ts": f"{time.time():.6f}"}
        return {"ok": True}

    def named(self, name: str) -> list[dict[str, Any]]:
        with self._lock:
            return [p for n, p in self.calls if n == name]

    def wait_for(self, name: str, count: int = 1, timeout: float = 30.0) -> list[dict[str, Any]]:
        deadline = time.time() + timeout
        while time.time() < deadline:
            found = self.named(name)
            if len(found) >= count:
                return found
            time.sleep(0.05)
        raise AssertionError(f"expected {count} call(s) to {name}, got {self.named(name)}; all: {self.calls}")


def signed_headers(body: str, secret: str, *, timestamp: int | None = None,
                   content_type: str = "application/json", retry: int | None = None) -> dict[str, str]:
    ts = str(int(time.time()) if timestamp is None else timestamp)
    sig = "v0=" + hmac.new(secret.encode(), f"v0:{ts}:{body}".encode(), hashlib.sha256).hexdigest()
    headers = {"content-type": content_type, "x-slack-request-timestamp": ts, "x-slack-signature": sig}
    if retry is not None:
        headers["x-slack-retry-num"] = str(retry)
        headers["x-slack-retry-reason"] = "http_timeout"
    return headers
