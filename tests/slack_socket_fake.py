"""A local fake of Slack's Socket Mode on 127.0.0.1: `apps.connections.open` hands out a websocket URL,
the websocket server says hello, pushes envelopes and records the acks; the Web API methods are
answered and recorded by `FakeSlack`."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from .slack_fake import BOT_USER, FakeSlack

APP_ID = "A1"
TEAM_ID = "T1"


def mention_envelope(text: str, ts: str, event_id: str, *, channel: str = "C1", user: str = "U1",
                     envelope_id: str | None = None, retry_attempt: int = 0) -> dict[str, Any]:
    """An `events_api` envelope carrying an app_mention, as Slack pushes it over Socket Mode."""
    event = {"type": "app_mention", "user": user, "text": f"<@{BOT_USER}> {text}", "ts": ts, "channel": channel,
             "event_ts": ts, "team": TEAM_ID}
    payload = {"token": "x", "team_id": TEAM_ID, "api_app_id": APP_ID, "event": event, "type": "event_callback",
               "event_id": event_id, "event_time": int(time.time()), "event_context": "4-" + uuid.uuid4().hex,
               "is_ext_shared_channel": False,
               "authorizations": [{"enterprise_id": None, "team_id": TEAM_ID, "user_id": BOT_USER, "is_bot": True,
                                   "is_enterprise_install": False}]}
    return {"envelope_id": envelope_id or str(uuid.uuid4()), "type": "events_api", "accepts_response_payload": False,
            "retry_attempt": retry_attempt, "retry_reason": "timeout" if retry_attempt else "", "payload": payload}


class FakeSocketModeSlack:
    """`web` answers the Web API (and records every call with its bearer token in `auth`); a websocket
    server in a background thread with its own event loop plays Slack's Socket Mode endpoint."""

    def __init__(self) -> None:
        self.web = FakeSlack()
        self.auth: list[tuple[str, str | None]] = []  # (method, Authorization header) of every Web API call
        self.connections: list[str] = []  # request paths of the websocket connections, in order
        self.acks: list[dict[str, Any]] = []  # every message a client sent over a websocket
        self.pushed: list[dict[str, Any]] = []
        self._cond = threading.Condition()
        self._socket: ServerConnection | None = None
        self._tickets: list[str] = []

        fake = self
        base = self.web.server.RequestHandlerClass

        class Recording(base):  # type: ignore[valid-type, misc]
            def do_POST(self) -> None:
                name = self.path.split("/api/", 1)[1] if "/api/" in self.path else self.path.lstrip("/")
                with fake._cond:
                    fake.auth.append((name, self.headers.get("authorization")))
                    if name == "apps.connections.open":  # each connection gets a new one-time URL
                        ticket = uuid.uuid4().hex
                        fake._tickets.append(ticket)
                        fake.web.script.setdefault(name, []).append(
                            (200, {}, {"ok": True, "url": f"{fake.ws_root}/link/?ticket={ticket}&app_id={APP_ID}"}))
                super().do_POST()

        self.web.server.RequestHandlerClass = Recording

        self.loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self._failed: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        if not self._started.wait(10) or self._failed is not None:
            self.web.close()
            raise RuntimeError(f"the websocket server did not start: {self._failed}")

    # --- the websocket side, on the background loop --------------------------------------------

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self._server = self.loop.run_until_complete(self._start())
            self.ws_port = self._server.sockets[0].getsockname()[1]
        except BaseException as exc:  # reported by __init__
            self._failed = exc
            self._started.set()
            return
        self._started.set()
        self.loop.run_forever()

    async def _start(self) -> Server:
        return await serve(self._handle, "127.0.0.1", 0, ping_interval=None, compression=None)

    async def _handle(self, ws: ServerConnection) -> None:
        path = ws.request.path if ws.request is not None else ""
        with self._cond:
            issued = any(f"ticket={t}" in path for t in self._tickets)
        if not issued:
            await ws.close(4000, "unknown ticket")  # Slack refuses URLs it did not issue
            return
        with self._cond:
            self.connections.append(path)
            self._socket = ws
            self._cond.notify_all()
        await ws.send(json.dumps({"type": "hello", "num_connections": len(self.connections),
                                  "debug_info": {"host": "applink-fake", "build_number": 1,
                                                 "approximate_connection_time": 18060},
                                  "connection_info": {"app_id": APP_ID}}))
        try:
            async for raw in ws:
                message = json.loads(raw)
                with self._cond:
                    self.acks.append(message)
                    self._cond.notify_all()
        except ConnectionClosed:
            pass
        finally:
            with self._cond:
                if self._socket is ws:
                    self._socket = None

    async def _stop(self) -> None:
        self._server.close()
        await asyncio.wait_for(self._server.wait_closed(), 10)

    # --- what tests use -------------------------------------------------------------------------

    @property
    def ws_root(self) -> str:
        return f"ws://127.0.0.1:{self.ws_port}"

    @property
    def api_url(self) -> str:
        return self.web.api_url

    def _wait(self, ready: Any, timeout: float, what: str) -> Any:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not (found := ready()):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"timed out after {timeout} s waiting for {what}; "
                                         f"connections {self.connections}, acks {self.acks}")
                self._cond.wait(min(left, 0.5))
            return found

    def wait_connected(self, timeout: float = 60.0, alive: Any = None) -> str:
        """The path of the open websocket connection; `alive()` returning False ends the wait early."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self._wait(lambda: self._socket is not None and self.connections[-1], 1.0, "a connection")
            except AssertionError:
                if time.monotonic() > deadline or (alive is not None and not alive()):
                    raise

    def push(self, envelope: dict[str, Any], timeout: float = 10.0) -> None:
        with self._cond:
            ws = self._socket
            self.pushed.append(envelope)
        assert ws is not None, "no Socket Mode connection to push to"
        asyncio.run_coroutine_threadsafe(ws.send(json.dumps(envelope, ensure_ascii=False)), self.loop).result(timeout)

    def wait_ack(self, envelope_id: str, timeout: float = 30.0) -> dict[str, Any]:
        return self._wait(lambda: next((a for a in self.acks if a.get("envelope_id") == envelope_id), None),
                          timeout, f"the ack of {envelope_id}")

    def wait_for(self, name: str, count: int = 1, timeout: float = 30.0) -> list[dict[str, Any]]:
        return self.web.wait_for(name, count, timeout)

    def named(self, name: str) -> list[dict[str, Any]]:
        return self.web.named(name)

    def close(self) -> None:
        try:
            if self.thread.is_alive():
                asyncio.run_coroutine_threadsafe(self._stop(), self.loop).result(15)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            if not self.thread.is_alive():
                self.loop.close()
            self.web.close()
