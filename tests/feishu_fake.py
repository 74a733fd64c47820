"""A local fake of Feishu's Open API and long-connection gateway on 127.0.0.1, and callbacks built
the way Feishu builds them (event schema 2.0, AES-256-CBC with the Encrypt Key, X-Lark-Signature)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import threading
import time
import uuid
from typing import Any
from urllib.parse import parse_qs, urlparse

from Crypto.Cipher import AES
from lark_oapi.ws.pb.pbbp2_pb2 import Frame

from .loopback import LoopbackServer, QuietHandler

APP_ID = "cli_test_app"
APP_SECRET = "test-app-secret"
VERIFICATION_TOKEN = "test-verification-token"
ENCRYPT_KEY = "test-encrypt-key"
TENANT_TOKEN = "t-fake-tenant-token"
BOT_OPEN_ID = "ou_rulebook_bot"
TENANT_KEY = "2ca1d211f64f6438"


class FakeFeishu(LoopbackServer):
    """Records every Open API call as (name, body); `name` is `reply`, `create`, `token`, `bot_info`
    or `endpoint`, and `reply` bodies carry the replied-to `message_id` too."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.script: dict[str, list[dict[str, Any]]] = {}
        self.ws_url = ""
        self._lock = threading.Lock()
        self._seq = 0
        fake = self

        class Handler(QuietHandler):
            def _reply(self, body: dict[str, Any], status: int = 200) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json; charset=utf-8")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                self.do_POST()

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("content-length", 0)))
                body = json.loads(raw or b"{}")
                url = urlparse(self.path)
                query = {k: v[0] for k, v in parse_qs(url.query).items()}
                name, answer = fake.route(self.command, url.path, query, body, self.headers.get("authorization", ""))
                self._reply(answer)

        super().__init__(Handler)

    @property
    def base(self) -> str:
        return self.root

    def route(self, method: str, path: str, query: dict[str, str], body: dict[str, Any],
              auth: str) -> tuple[str, dict[str, Any]]:
        if path in ("/open-apis/auth/v3/tenant_access_token/internal", "/open-apis/auth/v3/app_access_token/internal"):
            self._record("token", body)
            ok = body.get("app_id") == APP_ID and body.get("app_secret") == APP_SECRET
            if not ok:
                return "token", {"code": 10014, "msg": "app secret invalid"}
            return "token", {"code": 0, "msg": "ok", "tenant_access_token": TENANT_TOKEN,
                             "app_access_token": "a-fake-app-token", "expire": 7200}
        if path == "/callback/ws/endpoint":
            self._record("endpoint", body)
            return "endpoint", {"code": 0, "msg": "ok", "data": {"URL": self.ws_url, "ClientConfig": {
                "ReconnectCount": 0, "ReconnectInterval": 1, "ReconnectNonce": 0, "PingInterval": 120}}}
        if auth != f"Bearer {TENANT_TOKEN}":
            return "unauthorized", {"code": 99991663, "msg": "Invalid access token for authorization."}
        if path == "/open-apis/bot/v3/info" and method == "GET":
            self._record("bot_info", {})
            return "bot_info", {"code": 0, "msg": "ok", "bot": {"activate_status": 2, "app_name": "rulebook",
                                                                "open_id": BOT_OPEN_ID}}
        if path.startswith("/open-apis/im/v1/messages/") and path.endswith("/reply"):
            name = "reply"
            self._record(name, {"message_id": path.split("/")[-2], **body})
        elif path == "/open-apis/im/v1/messages" and method == "POST":
            name = "create"
            self._record(name, {"receive_id_type": query.get("receive_id_type"), **body})
        else:
            return "unknown", {"code": 404, "msg": f"no such API {method} {path}"}
        with self._lock:
            scripted = self.script.get(name)
            if scripted:
                return name, scripted.pop(0)
            self._seq += 1
            new_id = f"om_sent_{self._seq}"
        return name, {"code": 0, "msg": "success", "data": {"message_id": new_id, "msg_type": body.get("msg_type")}}

    def _record(self, name: str, body: dict[str, Any]) -> None:
        with self._lock:
            self.calls.append((name, body))

    def named(self, name: str) -> list[dict[str, Any]]:
        with self._lock:
            return [b for n, b in self.calls if n == name]

    def messages(self) -> list[dict[str, Any]]:
        """Every reply and create call, in order."""
        with self._lock:
            return [b for n, b in self.calls if n in ("reply", "create")]

    def wait_for(self, name: str, count: int = 1, timeout: float = 30.0) -> list[dict[str, Any]]:
        deadline = time.time() + timeout
        while time.time() < deadline:
            found = self.named(name)
            if len(found) >= count:
                return found
            time.sleep(0.02)
        raise AssertionError(f"expected {count} call(s) to {name}, got {self.named(name)}; all: {self.calls}")


# --- callbacks as Feishu sends them ---------------------------------------------------------------

def encrypt(plaintext: str, key: str = ENCRYPT_KEY) -> str:
    """AES-256-CBC, key = sha256(Encrypt Key), PKCS#7 padding, random IV prepended, base64."""
    data = plaintext.encode("utf-8")
    pad = AES.block_size - len(data) % AES.block_size
    iv = os.urandom(AES.block_size)
    cipher = AES.new(hashlib.sha256(key.encode()).digest(), AES.MODE_CBC, iv)
    return base64.b64encode(iv + cipher.encrypt(data + bytes([pad]) * pad)).decode()


def signed_headers(body: bytes, key: str = ENCRYPT_KEY) -> dict[str, str]:
    timestamp, nonce = str(int(time.time())), uuid.uuid4().hex
    signature = hashlib.sha256((timestamp + nonce + key).encode() + body).hexdigest()
    return {"content-type": "application/json", "x-lark-request-timestamp": timestamp,
            "x-lark-request-nonce": nonce, "x-lark-signature": signature}


def callback(payload: dict[str, Any], *, key: str = ENCRYPT_KEY,
             sign_key: str | None = None) -> tuple[bytes, dict[str, str]]:
    """The encrypted body `{"encrypt": ...}` and its signed headers."""
    body = json.dumps({"encrypt": encrypt(json.dumps(payload, ensure_ascii=False), key)}).encode()
    return body, signed_headers(body, sign_key if sign_key is not None else key)


def header(event_type: str, event_id: str, token: str = VERIFICATION_TOKEN) -> dict[str, str]:
    return {"event_id": event_id, "event_type": event_type, "token": token,
            "create_time": str(int(time.time() * 1000)), "app_id": APP_ID, "tenant_key": TENANT_KEY}


def message_event(text: str | None, *, event_id: str, message_id: str, chat_id: str = "oc_group",
                  chat_type: str = "group", root_id: str = "", mentions: list[dict[str, Any]] | None = None,
                  sender_type: str = "user", message_type: str = "text", content: str | None = None,
                  token: str = VERIFICATION_TOKEN) -> dict[str, Any]:
    """`im.message.receive_v1`, event schema 2.0."""
    message: dict[str, Any] = {
        "message_id": message_id, "root_id": root_id, "parent_id": root_id,
        "create_time": str(int(time.time() * 1000)), "update_time": str(int(time.time() * 1000)),
        "chat_id": chat_id, "chat_type": chat_type, "message_type": message_type,
        "content": content if content is not None else json.dumps({"text": text}, ensure_ascii=False),
        "user_agent": "Mozilla/5.0 Lark/7.30.0",
    }
    if root_id:
        message["thread_id"] = f"omt_{root_id}"
    if mentions:
        message["mentions"] = mentions
    return {"schema": "2.0", "header": header("im.message.receive_v1", event_id, token), "event": {
        "sender": {"sender_id": {"union_id": "on_user_1", "user_id": "u_1", "open_id": "ou_user_1"},
                   "sender_type": sender_type, "tenant_key": TENANT_KEY},
        "message": message}}


def mention(key: str = "@_user_1", open_id: str = BOT_OPEN_ID, name: str = "rulebook") -> dict[str, Any]:
    return {"key": key, "id": {"union_id": f"on_{open_id}", "user_id": "", "open_id": open_id}, "name": name,
            "tenant_key": TENANT_KEY}


def card_action_event(value: dict[str, Any], *, event_id: str, message_id: str = "om_sent_1",
                      chat_id: str = "oc_group", token: str = VERIFICATION_TOKEN) -> dict[str, Any]:
    """`card.action.trigger` (the card callback of card JSON 2.0), event schema 2.0."""
    return {"schema": "2.0", "header": header("card.action.trigger", event_id, token), "event": {
        "operator": {"tenant_key": TENANT_KEY, "user_id": "u_1", "open_id": "ou_user_1", "union_id": "on_user_1"},
        "token": "c-update-token", "action": {"value": value, "tag": "button"}, "host": "im_message",
        "context": {"open_message_id": message_id, "open_chat_id": chat_id}}}


# --- the long-connection gateway -------------------------------------------------------------------

class FakeGateway:
    """A websocket server speaking the long connection's protobuf frames: pushes data frames and
    records every frame the client sends back (acknowledgements and pings)."""

    def __init__(self) -> None:
        import websockets.asyncio.server

        self.received: list[Frame] = []
        self._conn: Any = None
        self._connected = threading.Event()
        self._ready = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._stop: asyncio.Future[None] | None = None
        serve = websockets.asyncio.server.serve

        async def handler(conn: Any) -> None:
            self._conn = conn
            self._connected.set()
            async for data in conn:
                frame = Frame()
                frame.ParseFromString(data)
                self.received.append(frame)

        async def main() -> None:
            self._stop = self._loop.create_future()
            async with serve(handler, "127.0.0.1", 0) as server:
                self.port = server.sockets[0].getsockname()[1]
                self._ready.set()
                await self._stop

        self._thread = threading.Thread(target=self._loop.run_until_complete, args=(main(),), daemon=True)
        self._thread.start()
        assert self._ready.wait(10), "gateway did not start"

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws?device_id=device-1&service_id=7"

    def wait_connected(self, timeout: float = 10.0) -> None:
        assert self._connected.wait(timeout), "the client never connected"

    def push(self, payload: dict[str, Any], message_id: str, kind: str = "event") -> None:
        frame = Frame()
        frame.SeqID, frame.LogID, frame.service, frame.method = 1, 1, 7, 1  # method 1: data frame
        for key, value in (("type", kind), ("message_id", message_id), ("trace_id", "trace-1"),
                           ("sum", "1"), ("seq", "0")):
            h = frame.headers.add()
            h.key, h.value = key, value
        frame.payload = json.dumps(payload, ensure_ascii=False).encode()
        asyncio.run_coroutine_threadsafe(self._conn.send(frame.SerializeToString()), self._loop).result(10)

    def wait_ack(self, message_id: str, timeout: float = 10.0) -> dict[str, Any]:
        """The client's answer to a pushed data frame: its JSON payload (`code`, optional base64 `data`)."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            for frame in list(self.received):
                headers = {h.key: h.value for h in frame.headers}
                if frame.method == 1 and headers.get("message_id") == message_id:
                    return json.loads(frame.payload)
            time.sleep(0.02)
        raise AssertionError(f"no acknowledgement of {message_id}; frames: {self.received}")

    def close(self) -> None:
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set_result, None)
        self._thread.join(5)
