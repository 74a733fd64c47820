"""A local fake of DingTalk's Stream mode on 127.0.0.1, speaking the real protocol.

- `POST /v1.0/gateway/connections/open`: checks clientId / clientSecret from the JSON body; refuses
  wrong ones with 401 and DingTalk's error body, else returns the websocket endpoint and a ticket;
- a websocket server (`/connect?ticket=…`) that pushes CALLBACK frames and records the frames the
  client sends back (the acks);
- sessionWebhook URLs (`/robot/sendBySession?session=…`) that record the exact payloads posted.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
import time
import uuid
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request

from .loopback import LoopbackServer, QuietHandler

CLIENT_ID = "dingrulebooktest"
CLIENT_SECRET = "test-client-secret"
CORP_ID = "dingcorp0001"
CHATBOT_USER = "$:LWCP_v1:$robot0001"
TOPIC = "/v1.0/im/bot/messages/get"


class FakeDingTalk:
    def __init__(self) -> None:
        self.ticket = uuid.uuid4().hex
        self.accepting = True  # False: the gateway answers 503 (no new connections)
        self.gateway_calls: list[tuple[int, dict[str, Any]]] = []
        self.posts: list[tuple[str, dict[str, Any]]] = []  # (session, payload)
        self.acks: list[dict[str, Any]] = []
        self.refused_tickets: list[str] = []
        self.script: list[tuple[int, dict[str, Any]]] = []  # responses for the next webhook posts
        self._lock = threading.Lock()
        self._connections: set[ServerConnection] = set()
        self._ids = itertools.count(1)

        self.loop = asyncio.new_event_loop()
        self._loop_thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._loop_thread.start()
        self.ws_server: Server = self._call(self._start_ws())
        fake = self

        class Handler(QuietHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("content-length", 0))).decode("utf-8")
                body = json.loads(raw or "{}")
                url = urlsplit(self.path)
                if url.path == "/v1.0/gateway/connections/open":
                    status, reply = fake._open(body)
                elif url.path == "/robot/sendBySession":
                    session = parse_qs(url.query).get("session", [""])[0]
                    with fake._lock:
                        fake.posts.append((session, body))
                        status, reply = fake.script.pop(0) if fake.script else (200, {"errcode": 0, "errmsg": "ok"})
                else:
                    status, reply = 404, {"code": "NotFound", "message": self.path}
                data = json.dumps(reply, ensure_ascii=False).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json;charset=utf-8")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.http = LoopbackServer(Handler)

    # -- HTTP ------------------------------------------------------------------------------------

    @property
    def api_url(self) -> str:
        return self.http.root

    def _open(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        if body.get("clientId") != CLIENT_ID or body.get("clientSecret") != CLIENT_SECRET:
            status, reply = 401, {"requestid": uuid.uuid4().hex.upper(), "code": "authFailed", "message": "鉴权失败"}
        elif not self.accepting:
            status, reply = 503, {"code": "ServiceUnavailable", "message": "not accepting connections"}
        else:
            port = self.ws_server.sockets[0].getsockname()[1]
            status, reply = 200, {"endpoint": f"ws://127.0.0.1:{port}/connect", "ticket": self.ticket}
        with self._lock:
            self.gateway_calls.append((status, body))
        return status, reply

    def session_webhook(self, session: str) -> str:
        return f"{self.http.root}/robot/sendBySession?session={session}"

    # -- websocket -------------------------------------------------------------------------------

    def _call(self, coro: Any, timeout: float = 5.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    async def _start_ws(self) -> Server:
        return await serve(self._serve_connection, "127.0.0.1", 0, process_request=self._check_ticket)

    def _check_ticket(self, connection: ServerConnection, request: Request) -> Any:
        url = urlsplit(request.path)
        ticket = parse_qs(url.query).get("ticket", [""])[0]
        if url.path != "/connect" or ticket != self.ticket:
            with self._lock:
                self.refused_tickets.append(ticket)
            return connection.respond(HTTPStatus.UNAUTHORIZED, "invalid ticket\n")
        return None

    async def _serve_connection(self, connection: ServerConnection) -> None:
        self._connections.add(connection)
        try:
            async for raw in connection:
                with self._lock:
                    self.acks.append(json.loads(raw))
        except ConnectionClosed:
            pass  # the client went away without a closing handshake
        finally:
            self._connections.discard(connection)

    @property
    def connected(self) -> int:
        return len(self._connections)

    def wait_connected(self, timeout: float = 10.0) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self._connections:
                return
            time.sleep(0.02)
        raise AssertionError(f"the client did not connect; gateway calls: {self.gateway_calls}")

    def push(self, message: dict[str, Any], frame_id: str | None = None) -> str:
        """Push one chatbot message as a CALLBACK frame; returns the frame's messageId."""
        frame_id = frame_id or f"frame-{next(self._ids)}-{uuid.uuid4().hex[:8]}"
        frame = {"specVersion": "1.0", "type": "CALLBACK",
                 "headers": {"topic": TOPIC, "messageId": frame_id, "contentType": "application/json",
                             "time": str(int(time.time() * 1000)), "appId": "app-0001"},
                 "data": json.dumps(message, ensure_ascii=False)}

        async def send() -> None:
            for connection in list(self._connections):
                await connection.send(json.dumps(frame, ensure_ascii=False))

        self._call(send())
        return frame_id

    def disconnect(self) -> None:
        """Stop handing out connections and close the open ones from this side."""
        self.accepting = False

        async def close_all() -> None:
            await asyncio.gather(*(c.close() for c in list(self._connections)), return_exceptions=True)

        self._call(close_all(), timeout=10.0)

    def close(self) -> None:
        self.disconnect()

        async def stop() -> None:
            self.ws_server.close()
            await self.ws_server.wait_closed()

        self._call(stop(), timeout=10.0)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._loop_thread.join(5)
        self.loop.close()
        self.http.close()

    # -- what the client did -----------------------------------------------------------------------

    def ack_for(self, frame_id: str, timeout: float = 10.0) -> dict[str, Any]:
        deadline = time.time() + timeout
        while time.time() < deadline:
            with self._lock:
                found = [a for a in self.acks if a.get("headers", {}).get("messageId") == frame_id]
            if found:
                return found[0]
            time.sleep(0.02)
        raise AssertionError(f"no ack for {frame_id}; acks: {self.acks}")

    def posted(self, session: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            return [p for s, p in self.posts if session is None or s == session]

    def wait_posts(self, count: int = 1, session: str | None = None, timeout: float = 30.0) -> list[dict[str, Any]]:
        deadline = time.time() + timeout
        while time.time() < deadline:
            found = self.posted(session)
            if len(found) >= count:
                return found
            time.sleep(0.05)
        raise AssertionError(f"expected {count} post(s) to {session or 'any session'}, got {self.posts}")


def chatbot_message(fake: FakeDingTalk, text: str, *, msg_id: str | None = None, group: bool = True,
                    conversation: str = "cid-group-0001", session: str = "s1", sender: str = "staff001",
                    robot_code: str = CLIENT_ID, **extra: Any) -> dict[str, Any]:
    """A chatbot message with the fields DingTalk sends (text content as it arrives: the robot's
    @mention removed, a leading space left)."""
    now = int(time.time() * 1000)
    message = {
        "conversationId": conversation, "chatbotCorpId": CORP_ID, "chatbotUserId": CHATBOT_USER,
        "msgId": msg_id or f"msg{uuid.uuid4().hex}", "senderNick": "张三", "isAdmin": False,
        "senderStaffId": sender, "sessionWebhookExpiredTime": now + 90 * 60 * 1000, "createAt": now,
        "senderCorpId": CORP_ID, "conversationType": "2" if group else "1",
        "senderId": f"$:LWCP_v1:${sender}", "sessionWebhook": fake.session_webhook(session),
        "robotCode": robot_code, "msgtype": "text", "text": {"content": text},
    }
    if group:
        message.update(conversationTitle="行政群", isInAtList=True,
                       atUsers=[{"dingtalkId": CHATBOT_USER}])
    message.update(extra)
    return message
