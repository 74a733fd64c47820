"""Feishu / Lark adapter on the official SDK (lark-oapi): group @mentions, DMs, thread follow-ups,
answer cards with full-clause and feedback buttons.

Long connection (`rulebook feishu`, no public URL needed) or HTTP callbacks (mounted at
/feishu/events in the web app); both run the same event dispatcher. In HTTP mode the SDK checks
every request itself (the signature over timestamp, nonce, Encrypt Key and body; the Verification
Token), decrypts it and answers Feishu's URL verification; a request it refuses gets a 4xx.
Messages are acknowledged at once (Feishu wants an answer within 3 seconds) and answered by a
small pool of workers. Each event id is answered once, however often Feishu delivers it. Failures
end in a short apology in Feishu and a log line with the cause.

Group questions are answered in a thread under the question (conversation
`feishu:{chat_id}:{thread root}`), direct messages in the chat itself (`feishu:{chat_id}`); a later
message in a thread the bot answered is a follow-up. Only text messages are questions: anything
else addressed to the bot gets a short note asking for text.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

import lark_oapi as lark
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from lark_oapi.api.im.v1 import (
    CreateMessageRequest,
    CreateMessageRequestBody,
    P2ImMessageReceiveV1,
    ReplyMessageRequest,
    ReplyMessageRequestBody,
)
from lark_oapi.event.callback.model.p2_card_action_trigger import P2CardActionTrigger, P2CardActionTriggerResponse
from starlette.concurrency import run_in_threadpool

from assistant.adapters.feishu_cards import (
    ACTION_FEEDBACK,
    ACTION_FULL_CLAUSE,
    answer_card,
    card_content,
    text_content,
)
from assistant.adapters.rendering import apology as render_apology
from assistant.config import Settings
from assistant.errors import IndexNotBuilt, RulebookError
from assistant.records import Records

log = logging.getLogger(__name__)

CHANNEL = "feishu"
WORKERS = 4
API_TIMEOUT = 15.0  # seconds per Open API call
BOT_INFO_URI = "/open-apis/bot/v3/info"

_MENTION = re.compile(r"@_(?:user_\d+|all)")
NOT_TEXT = "我目前只能回答文字提问，请直接用文字写下你的问题，例如：年假可以留到明年用吗？"
EMPTY = "请在消息里写下你的问题，例如：年假可以留到明年用吗？"


class FeishuApiError(Exception):
    """The Open API answered with a non-zero code."""

    def __init__(self, code: int | None, msg: str | None) -> None:
        super().__init__(f"{code} {msg}")
        self.code, self.msg = code, msg


@dataclass(frozen=True)
class Target:
    """Where an answer goes: a reply in the question's thread (groups) or a new message in the chat (DMs)."""

    chat_id: str
    message_id: str
    thread: bool


def question_text(content: str | None) -> str:
    """The text of a text message without its @mention placeholders (`@_user_1`)."""
    try:
        text = json.loads(content or "{}").get("text", "")
    except (ValueError, AttributeError):
        return ""
    return " ".join(_MENTION.sub(" ", str(text)).split())


def _toast(kind: str, text: str) -> P2CardActionTriggerResponse:
    return P2CardActionTriggerResponse({"toast": {"type": kind, "content": text}})


class FeishuBot:
    """The event dispatcher (messages and card actions) and the Open API client, shared by both modes."""

    def __init__(self, settings: Settings, assistant: Any, records: Records, client: lark.Client) -> None:
        self.settings, self.assistant, self.records, self.client = settings, assistant, records, client
        self.dispatcher = (
            lark.EventDispatcherHandler.builder(settings.feishu_encrypt_key or "",
                                                settings.feishu_verification_token or "")
            .register_p2_im_message_receive_v1(self.on_message)
            .register_p2_card_action_trigger(self.on_card_action)
            .build()
        )
        self._pool = ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="feishu")
        self._pending: set[Future[None]] = set()
        self._lock = threading.Lock()
        self._open_id: str | None = None

    # --- background work ------------------------------------------------------------------------

    def _submit(self, fn: Any, *args: Any) -> None:
        future = self._pool.submit(fn, *args)
        with self._lock:
            self._pending.add(future)

        def done(f: Future[None]) -> None:
            with self._lock:
                self._pending.discard(f)

        future.add_done_callback(done)

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """Wait until every accepted message has been answered; False on timeout."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                pending = list(self._pending)
            remaining = deadline - time.monotonic()
            if not pending:
                return True
            if remaining <= 0:
                return False
            wait(pending, timeout=remaining)

    def close(self) -> None:
        self._pool.shutdown(wait=True)

    # --- messages -------------------------------------------------------------------------------

    def on_message(self, data: P2ImMessageReceiveV1) -> None:
        """`im.message.receive_v1`: decide quickly whether the message may be a question, then
        hand it to a worker."""
        event = data.event
        message, sender = (event.message, event.sender) if event else (None, None)
        if message is None or sender is None or sender.sender_type != "user":
            return  # the app's own posts and other bots' are not questions
        chat_id, message_id = message.chat_id or "", message.message_id or ""
        if message.chat_type == "p2p":
            conversation_id, target = f"feishu:{chat_id}", Target(chat_id, message_id, False)
        else:
            conversation_id = f"feishu:{chat_id}:{message.root_id or message_id}"
            follow_up = bool(message.root_id) and self.records.has_conversation(conversation_id)
            if not follow_up and not message.mentions:
                return  # group chatter that neither mentions anyone nor continues a thread the bot answered
            target = Target(chat_id, message_id, True)
        event_id = data.header.event_id if data.header else None
        if event_id and not self.records.claim_event(f"feishu:{event_id}"):
            log.info("duplicate delivery of %s ignored", event_id)
            return
        self._submit(self._handle, message, target, conversation_id)

    def _handle(self, message: Any, target: Target, conversation_id: str) -> None:
        try:
            if target.thread and message.mentions and not self._mentions_me(message.mentions):
                return  # a group message for someone else, even in the bot's thread
            if message.message_type != "text":
                if not target.thread or message.mentions:  # addressed to the bot, not just posted in its thread
                    self._send(target, "text", text_content(NOT_TEXT))
                return
            question = question_text(message.content)
            if not question:
                self._send(target, "text", text_content(EMPTY))
                return
        except Exception as exc:
            log.error("feishu message not handled: %s", exc)
            return
        self._answer(target, question, conversation_id)

    def _answer(self, target: Target, question: str, conversation_id: str) -> None:
        """Answer as a card (in the thread for groups); never silent."""
        try:
            try:
                ans = self.assistant.answer(question, self.records.history(conversation_id))
                answer_id = self.records.add_answer(ans, channel=CHANNEL, conversation_id=conversation_id)
                self._send(target, "interactive", card_content(answer_card(ans.to_dict(), answer_id)))
            except IndexNotBuilt as exc:
                log.error("feishu question not answered: %s", exc)
                self._send(target, "text", text_content(self._apology(question, "the rulebook index is not built yet")))
            except FeishuApiError as exc:
                self._send(target, "text", text_content(self._apology(question, f"Feishu: {exc.code} {exc.msg}")))
            except Exception:
                log.exception("feishu question not answered")
                self._send(target, "text", text_content(self._apology(question, "internal error, logged")))
        except Exception as exc:  # even the apology could not be posted
            log.error("could not post to Feishu: %s", exc)

    def _apology(self, question: str, reason: str) -> str:
        return render_apology(self.assistant.prompts, question, reason, self.settings.contact)

    def _send(self, target: Target, msg_type: str, content: str) -> None:
        if target.thread:
            body = ReplyMessageRequestBody.builder().msg_type(msg_type).content(content).reply_in_thread(True).build()
            response: Any = self.client.im.v1.message.reply(
                ReplyMessageRequest.builder().message_id(target.message_id).request_body(body).build())
        else:
            body = CreateMessageRequestBody.builder().receive_id(target.chat_id).msg_type(msg_type) \
                .content(content).build()
            response = self.client.im.v1.message.create(
                CreateMessageRequest.builder().receive_id_type("chat_id").request_body(body).build())
        if not response.success():
            log.error("feishu %s message not sent: code %s, msg %s, log_id %s", msg_type, response.code,
                      response.msg, response.get_log_id())
            raise FeishuApiError(response.code, response.msg)

    def _mentions_me(self, mentions: list[Any]) -> bool:
        me = self._my_open_id()
        if me is None:  # cannot tell who is mentioned: treat any mention as addressing the bot
            return True
        return any(m.id is not None and m.id.open_id == me for m in mentions)

    def _my_open_id(self) -> str | None:
        """The bot's open_id (GET /open-apis/bot/v3/info), fetched once."""
        if self._open_id is None:
            request = lark.BaseRequest.builder().http_method(lark.HttpMethod.GET).uri(BOT_INFO_URI) \
                .token_types({lark.AccessTokenType.TENANT}).build()
            try:
                response = self.client.request(request)
                body = json.loads(response.raw.content) if response.raw and response.raw.content else {}
                if not response.success():
                    log.warning("feishu bot info not available: code %s, msg %s", response.code, response.msg)
                self._open_id = (body.get("bot") or {}).get("open_id") or None
            except Exception as exc:
                log.warning("feishu bot info not available: %s", exc)
        return self._open_id

    # --- card buttons ---------------------------------------------------------------------------

    def on_card_action(self, data: P2CardActionTrigger) -> P2CardActionTriggerResponse:
        """`card.action.trigger`: answered in the callback response itself (a toast, or the card
        with a whole clause shown)."""
        action = data.event.action if data.event else None
        value = (action.value if action else None) or {}
        try:
            if value.get("action") == ACTION_FEEDBACK:
                return self._feedback(value)
            if value.get("action") == ACTION_FULL_CLAUSE:
                return self._full_clause(value)
            return P2CardActionTriggerResponse({})
        except RulebookError as exc:
            log.error("feishu card action not handled: %s", exc)
            return _toast("error", "规章暂时无法查阅，请稍后再试。")
        except Exception:
            log.exception("feishu card action not handled")
            return _toast("error", "出错了，原因已记录，请稍后再试。")

    def _feedback(self, value: dict[str, Any]) -> P2CardActionTriggerResponse:
        answer_id, rating = str(value.get("answer_id") or ""), value.get("rating")
        if not answer_id or not self.records.answer_exists(answer_id):
            return _toast("warning", "这条回答已找不到。")
        if rating not in ("up", "down"):
            return P2CardActionTriggerResponse({})
        self.records.add_feedback(answer_id, rating, None, channel=CHANNEL)
        return _toast("success", "谢谢反馈")

    def _full_clause(self, value: dict[str, Any]) -> P2CardActionTriggerResponse:
        clause_id, answer_id = str(value.get("clause_id") or ""), str(value.get("answer_id") or "")
        found = self.assistant.clause(clause_id) if clause_id else None
        if found is None:
            return _toast("warning", "这个条款在当前的规章里已不存在（规章已更新）。")
        answer = self.records.answer_payload(answer_id) if answer_id else None
        if answer is None:
            return _toast("warning", "这条回答已找不到，请重新提问。")
        card = answer_card(answer, answer_id, expanded={clause_id: found[0].text})
        return P2CardActionTriggerResponse({"toast": {"type": "info", "content": "已展开全文"},
                                            "card": {"type": "raw", "data": card}})


def _api_client(settings: Settings) -> lark.Client:
    return lark.Client.builder().app_id(settings.feishu_app_id or "").app_secret(settings.feishu_app_secret or "") \
        .domain(settings.feishu_api_url.rstrip("/")).timeout(API_TIMEOUT).build()


def create_feishu_bot(settings: Settings, assistant: Any, records: Records,
                      client: lark.Client | None = None) -> FeishuBot:
    """The bot for both modes. `client` defaults to an Open API client for FEISHU_APP_ID / FEISHU_APP_SECRET
    (and the API URL setting)."""
    return FeishuBot(settings, assistant, records, client or _api_client(settings))


def _refused(response: lark.RawResponse, unsigned: bool) -> JSONResponse:
    # The SDK answers every request it refuses (bad or missing signature, wrong token, undecryptable
    # or unknown payload) with a 500; for Feishu and for us it is a bad request, not a server error.
    detail = (response.content or b"").decode("utf-8", "replace")
    log.warning("feishu callback refused: %s", detail)
    if unsigned or any(word in detail for word in ("signature", "verification_token", "encrypt_key")):
        return JSONResponse({"error": {"code": "invalid_signature", "message": "The Feishu request could not be "
                                       "verified (signature or verification token)."}}, status_code=401)
    return JSONResponse({"error": {"code": "malformed_request", "message": "The Feishu request could not be "
                                   "handled."}}, status_code=400)


def mount_feishu(app: FastAPI, settings: Settings, assistant: Any, records: Records) -> None:
    """POST /feishu/events: Feishu's event subscription and card callbacks, through the SDK's dispatcher."""
    bot = create_feishu_bot(settings, assistant, records)
    app.state.feishu = bot

    @app.post("/feishu/events", include_in_schema=False)
    async def feishu_events(request: Request) -> Response:
        raw = lark.RawRequest()
        raw.uri = request.url.path
        raw.headers = {k.title(): v for k, v in request.headers.items()}  # the SDK reads X-Lark-Signature etc.
        raw.body = await request.body()
        response: lark.RawResponse = await run_in_threadpool(bot.dispatcher.do, raw)
        if (response.status_code or 500) >= 500:
            return _refused(response, unsigned=bool(settings.feishu_encrypt_key)
                            and not request.headers.get("x-lark-signature"))
        return Response(content=response.content or b"{}", status_code=response.status_code or 200,
                        media_type="application/json")


def long_connection_client(bot: FeishuBot, settings: Settings) -> lark.ws.Client:
    """The SDK's long-connection client delivering events and card callbacks to `bot`."""
    return lark.ws.Client(settings.feishu_app_id or "", settings.feishu_app_secret or "",
                          event_handler=bot.dispatcher, domain=settings.feishu_api_url.rstrip("/"),
                          log_level=lark.LogLevel.INFO)


def run_long_connection(settings: Settings) -> None:
    """`rulebook feishu`: receive events over Feishu's long connection (no public URL needed)."""
    from assistant.adapters.web import records_path
    from assistant.core import build_assistant

    bot = create_feishu_bot(settings, build_assistant(settings), Records(records_path(settings)))
    long_connection_client(bot, settings).start()
