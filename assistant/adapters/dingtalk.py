"""DingTalk adapter on the official Stream SDK (dingtalk-stream): group @mentions and one-to-one chats.

`rulebook dingtalk` opens an outbound websocket to DingTalk's Stream gateway (no public URL needed).
Every pushed message is acknowledged at once; the answer is worked out on a worker thread and sent
to the message's sessionWebhook as one markdown message (answer, cited clauses, quotes), @-mentioning
the asker in groups. Each message id is answered once, however often DingTalk delivers it. Messages
for another robot, or from this robot itself, are acknowledged and left alone. A reply of exactly
👍 / 👎 (or 有用 / 没用) right after an answer is stored as feedback on it. Failures end in a short
apology in the chat and a log line with the cause.
"""

from __future__ import annotations

import asyncio
import json
import logging
import platform
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import dingtalk_stream
import requests
from dingtalk_stream import AckMessage, CallbackMessage, ChatbotHandler, ChatbotMessage, Credential
from dingtalk_stream.version import VERSION_STRING

from assistant.adapters.rendering import apology as render_apology
from assistant.adapters.rendering import citation_heading, quote_lines
from assistant.config import Settings
from assistant.errors import ConfigError, IndexNotBuilt
from assistant.records import Records
from assistant.text import is_chinese

log = logging.getLogger(__name__)

CHANNEL = "dingtalk"
GATEWAY_PATH = "/v1.0/gateway/connections/open"
GROUP, ONE_TO_ONE = "2", "1"
TEXT_LIMIT = 5000  # markdown text sent per message: a safety bound, answers are far shorter
TITLE_LIMIT = 64
HTTP_TIMEOUT = 10.0
FEEDBACK = {"👍": "up", "👎": "down", "有用": "up", "没用": "down"}
THANKS = "谢谢反馈 Thanks for the feedback"
NOTHING_TO_RATE = "还没有可以评价的回答：请先提问。 Nothing to rate yet: ask a question first."
USAGE = "请直接提问，例如：年假可以留到明年用吗？ Ask me about the company rules, e.g. How many days of annual leave?"
TEXT_ONLY = "目前只能回答文字问题，请把问题打字发给我。 I can only answer typed questions for now."


def conversation_key(message: ChatbotMessage) -> str:
    """`dingtalk:{conversationId}` for groups and one-to-one chats alike.

    DingTalk groups have no threads: the chat itself is the conversation everyone in it sees, so a
    follow-up ("那成都呢？") continues whatever the robot last answered there.
    """
    return f"{CHANNEL}:{message.conversation_id}"


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _at(message: ChatbotMessage) -> str | None:
    """Whom to @-mention: the asker in a group (by staff id, which DingTalk needs for atUserIds)."""
    if message.conversation_type == GROUP and message.sender_staff_id:
        return str(message.sender_staff_id)
    return None


def rating_hint(answer: dict[str, Any], group: bool) -> str:
    """The line that tells people how to rate an answer (no buttons without a card template)."""
    if is_chinese(answer.get("question") or str(answer.get("answer", ""))):
        return "回复 👍 或 👎 评价这条回答" + ("（群里请先 @我）" if group else "")
    return "Reply 👍 or 👎 to rate this answer" + (" (@-mention me in a group)" if group else "")


def answer_markdown(answer: dict[str, Any], at: str | None = None, *, group: bool = False) -> str:
    """The answer (the answer JSON) as DingTalk markdown: the answer, then each citation as
    `[n] document › path › clause (file)` with its quote, then the rating hint.

    Blocks are separated by blank lines: DingTalk's markdown does not reliably break a line at a
    single newline. `@staffId` first when the asker is to be mentioned.
    """
    text = str(answer["answer"]).strip()
    blocks = [f"@{at} {text}" if at else text]
    if answer.get("grounded") and answer.get("citations"):
        blocks.append("**依据**" if is_chinese(answer.get("question") or text) else "**Sources**")
        for c in answer["citations"]:
            blocks.append(f"[{c['n']}] {citation_heading(c)}")
            blocks.extend(quote_lines(c["quote"]))
    blocks.append(rating_hint(answer, group))
    return "\n\n".join(blocks)


def answer_message(answer: dict[str, Any], at: str | None = None, *, group: bool = False) -> dict[str, Any]:
    """The sessionWebhook payload of an answer: a markdown message titled with the start of the
    answer (what notifications and the chat list show), mentioning `at` when given."""
    first = str(answer["answer"]).strip().splitlines()
    return {"msgtype": "markdown",
            "markdown": {"title": _clip(first[0] if first else "rulebook", TITLE_LIMIT),
                         "text": _clip(answer_markdown(answer, at, group=group), TEXT_LIMIT)},
            "at": {"atUserIds": [at] if at else [], "isAtAll": False}}


def text_message(text: str, at: str | None = None) -> dict[str, Any]:
    """A plain text reply (apologies, notes, thanks), @-mentioning `at` when given."""
    return {"msgtype": "text", "text": {"content": _clip(f"@{at} {text}" if at else text, TEXT_LIMIT)},
            "at": {"atUserIds": [at] if at else [], "isAtAll": False}}


def question_text(message: ChatbotMessage) -> str | None:
    """The question a message asks, or None when it is not something a question can be read from.

    Text (DingTalk removes the robot's @mention), the text parts of rich text, and the speech
    recognition DingTalk attaches to voice messages; pictures, files and the rest are not questions.
    """
    if message.message_type == "text":
        return (message.text.content or "").strip() if message.text else ""
    if message.message_type == "richText":
        return " ".join(part.strip() for part in message.get_text_list() or [] if part.strip())
    if message.message_type == "audio":
        content = message.extensions.get("content") or {}
        recognition = content.get("recognition") if isinstance(content, dict) else None
        return str(recognition).strip() if recognition else None
    return None


class StreamClient(dingtalk_stream.DingTalkStreamClient):
    """The SDK's stream client with the gateway taken from the API URL setting, a timeout on the
    gateway request, and refused credentials named clearly.

    The SDK posts to the class constant `DingTalkStreamClient.OPEN_CONNECTION_API` (built from the
    DINGTALK_OPENAPI_ENDPOINT environment variable when the SDK is imported); this client overrides
    `open_connection` instead, so the address is per client and nothing global is changed.
    """

    def __init__(self, credential: Credential, api_url: str, logger: logging.Logger | None = None) -> None:
        super().__init__(credential, logger=logger or logging.getLogger(f"{__name__}.stream"))
        self.open_connection_api = api_url.rstrip("/") + GATEWAY_PATH
        self._opened: dict[str, Any] | None = None

    def request_connection(self) -> dict[str, Any] | None:
        """Ask the gateway for a websocket endpoint and ticket.

        Raises ConfigError when DingTalk refuses the credentials (HTTP 400/401/403: they will not
        start working by retrying); returns None, logged, on failures that may pass (network, 5xx).
        """
        topics = [{"type": "EVENT", "topic": "*"}] if self._is_event_required else []
        topics += [{"type": "CALLBACK", "topic": topic} for topic in self.callback_handler_map]
        body = {"clientId": self.credential.client_id, "clientSecret": self.credential.client_secret,
                "subscriptions": topics, "ua": f"dingtalk-sdk-python/v{VERSION_STRING}-union",
                "localIp": self.get_host_ip()}
        headers = {"Content-Type": "application/json", "Accept": "application/json",
                   "User-Agent": f"DingTalkStream/1.0 SDK/{VERSION_STRING} Python/{platform.python_version()} "
                                 "(rulebook)"}
        try:
            response = requests.post(self.open_connection_api, data=json.dumps(body), headers=headers,
                                     timeout=HTTP_TIMEOUT)
        except requests.RequestException as exc:
            log.error("DingTalk Stream gateway not reachable at %s: %s", self.open_connection_api, exc)
            return None
        if response.status_code in (400, 401, 403):
            raise ConfigError(
                f"DingTalk refused the Stream connection (HTTP {response.status_code}: {response.text[:300]}). "
                "Check DINGTALK_CLIENT_ID and DINGTALK_CLIENT_SECRET: the Client ID and Client Secret of the "
                "app that owns the robot (DingTalk developer console › the app › 凭证与基础信息 Credentials).")
        try:
            response.raise_for_status()
            connection = response.json()
            connection["endpoint"], connection["ticket"]  # noqa: B018 - both are needed to connect
        except (requests.RequestException, ValueError, KeyError, TypeError) as exc:
            log.error("DingTalk Stream gateway answered HTTP %s %s (%s); retrying", response.status_code,
                      response.text[:300], exc)
            return None
        return dict(connection)

    async def start(self) -> None:
        """The SDK's connect loop, made stoppable.

        The SDK's loop catches CancelledError and reconnects, so Ctrl+C (which asyncio turns into a
        cancellation of this coroutine) did not stop it; here a cancellation is passed on to the
        loop until it has ended, then re-raised.
        """
        connect_loop = asyncio.ensure_future(super().start())
        try:
            await asyncio.wait({connect_loop})
        finally:
            while not connect_loop.done():
                connect_loop.cancel()
                await asyncio.wait({connect_loop}, timeout=0.2)
        connect_loop.result()

    def check_credentials(self) -> None:
        """Open the first connection now, so refused credentials stop the command with a clear
        error instead of a retry every ten seconds; the ticket is used by the first connect."""
        self._opened = self.request_connection()

    def open_connection(self) -> dict[str, Any] | None:  # called by the SDK's connect loop
        if self._opened is not None:
            connection, self._opened = self._opened, None
            return connection
        try:
            return self.request_connection()
        except ConfigError as exc:
            log.error("%s", exc)
            return None


class RulebookChatbotHandler(ChatbotHandler):
    """Answers chatbot messages (topic `/v1.0/im/bot/messages/get`) from the rulebook.

    `process` only hands the message to a worker thread and returns, so the SDK sends the ack frame
    at once, however long the answer takes.
    """

    def __init__(self, settings: Settings, assistant: Any, records: Records, *, workers: int = 8) -> None:
        super().__init__()
        self.settings = settings
        self.assistant = assistant
        self.records = records
        self.robot_code = settings.dingtalk_client_id
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="dingtalk-answer")

    async def process(self, callback: CallbackMessage) -> tuple[int, str]:
        try:
            self._pool.submit(self.handle, callback.data, callback.headers.message_id)
        except RuntimeError:  # the pool is shut down: the process is stopping
            log.error("dingtalk message %s not answered: shutting down", callback.headers.message_id)
        return AckMessage.STATUS_OK, "OK"

    async def raw_process(self, callback: CallbackMessage) -> AckMessage:
        ack = await super().raw_process(callback)
        ack.message = "OK"  # the SDK leaves the ack's message empty
        return ack

    def close(self) -> None:
        """Wait for the answers being worked out, then stop the workers."""
        self._pool.shutdown(wait=True)

    # -- one message -----------------------------------------------------------------------------

    def handle(self, data: dict[str, Any], frame_id: str | None = None) -> None:
        """Answer one pushed chatbot message (the `data` of the callback frame); never raises."""
        try:
            message = ChatbotMessage.from_dict(data)
        except Exception:
            log.exception("dingtalk message %s could not be read", frame_id)
            return
        try:
            if not self._for_us(message):
                return
            delivery = message.message_id or frame_id
            if delivery and not self.records.claim_event(f"{CHANNEL}:{delivery}"):
                log.info("duplicate delivery of dingtalk message %s ignored", delivery)
                return
            self._respond(message)
        except Exception:
            log.exception("dingtalk message %s not answered", message.message_id or frame_id)
            self._post(message, text_message(self._apology("", "internal error, logged"), _at(message)))

    def _for_us(self, message: ChatbotMessage) -> bool:
        if self.robot_code and message.robot_code != self.robot_code:
            log.warning("dingtalk message for robot %r ignored: this is robot %r", message.robot_code,
                        self.robot_code)
            return False
        if message.sender_id and message.sender_id == message.chatbot_user_id:
            return False  # the robot's own message
        if message.conversation_type not in (GROUP, ONE_TO_ONE) or not message.session_webhook:
            log.warning("dingtalk message ignored: conversation type %r, sessionWebhook %r",
                        message.conversation_type, message.session_webhook)
            return False
        return True

    def _respond(self, message: ChatbotMessage) -> None:
        at = _at(message)
        question = question_text(message)
        if question is None:
            self._post(message, text_message(TEXT_ONLY, at))
            return
        rating = FEEDBACK.get(question.strip().rstrip("!！。.～~ "))
        if rating:
            self._feedback(message, rating, at)
            return
        if not question:
            self._post(message, text_message(USAGE, at))
            return
        self._answer(message, question, at)

    def _answer(self, message: ChatbotMessage, question: str, at: str | None) -> None:
        conversation = conversation_key(message)
        try:
            ans = self.assistant.answer(question, self.records.history(conversation))
            self.records.add_answer(ans, channel=CHANNEL, conversation_id=conversation)
        except IndexNotBuilt as exc:
            log.error("dingtalk question not answered: %s", exc)
            self._post(message, text_message(self._apology(question, "the rulebook index is not built yet"), at))
            return
        except Exception:
            log.exception("dingtalk question not answered")
            self._post(message, text_message(self._apology(question, "internal error, logged"), at))
            return
        error = self._post(message, answer_message(ans.to_dict(), at, group=message.conversation_type == GROUP))
        if error:
            self._post(message, text_message(self._apology(question, f"DingTalk: {error}"), at))

    def _feedback(self, message: ChatbotMessage, rating: str, at: str | None) -> None:
        answer_id = self.records.latest_answer_id(conversation_key(message))
        if answer_id is None or not self.records.answer_exists(answer_id):
            self._post(message, text_message(NOTHING_TO_RATE, at))
            return
        self.records.add_feedback(answer_id, rating, None, channel=CHANNEL)
        self._post(message, text_message(THANKS, at))

    def _apology(self, question: str, reason: str) -> str:
        return render_apology(self.assistant.prompts, question, reason, self.settings.contact)

    def _post(self, message: ChatbotMessage, payload: dict[str, Any]) -> str | None:
        """POST a reply to the message's sessionWebhook; the error (logged) or None when sent."""
        try:
            response = requests.post(message.session_webhook, json=payload, timeout=HTTP_TIMEOUT)
        except requests.RequestException as exc:
            log.error("could not reply in DingTalk: %s", exc)
            return str(exc)
        try:
            result = response.json()
        except ValueError:
            result = {}
        if response.status_code != 200 or result.get("errcode", 0) != 0:
            error = f"{result.get('errcode', response.status_code)} {result.get('errmsg', response.text[:200])}"
            log.error("DingTalk refused the reply (HTTP %s): %s", response.status_code, error)
            return error.strip()
        return None


def create_dingtalk_client(settings: Settings, assistant: Any, records: Records) -> StreamClient:
    """The stream client for DINGTALK_CLIENT_ID / DINGTALK_CLIENT_SECRET, with the chatbot handler
    registered for `ChatbotMessage.TOPIC` and the gateway under the DingTalk API URL setting."""
    client = StreamClient(Credential(settings.dingtalk_client_id, settings.dingtalk_client_secret),
                          settings.dingtalk_api_url)
    client.register_callback_handler(ChatbotMessage.TOPIC, RulebookChatbotHandler(settings, assistant, records))
    return client


def run_stream_mode(settings: Settings) -> None:
    """`rulebook dingtalk`: connect over Stream mode (no public URL needed) and answer until stopped.

    Refused credentials end the command with ConfigError; a gateway that cannot be reached is
    retried, as the SDK does, every ten seconds.
    """
    from assistant.adapters.web import records_path
    from assistant.core import build_assistant

    client = create_dingtalk_client(settings, build_assistant(settings), Records(records_path(settings)))
    client.check_credentials()
    client.start_forever()
