"""Slack adapter on slack-bolt: @mentions, DMs, thread follow-ups, /rules, buttons.

Socket Mode (`rulebook slack`) or HTTP mode (mounted at /slack/events in the web app). Bolt acks
every event at once (within Slack's 3 seconds) and runs the listener afterwards; the question gets
an 👀 reaction while it is answered. Each event id is answered once, however often Slack delivers
it. Failures end in a short apology in Slack and a log line with the cause.
"""

from __future__ import annotations

import logging
import re
import uuid
from typing import Any

from slack_bolt import App
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler

from assistant.adapters.rendering import apology as render_apology
from assistant.adapters.slack_blocks import (
    ACTION_FEEDBACK_DOWN,
    ACTION_FEEDBACK_UP,
    ACTION_FULL_CLAUSE,
    ACTION_SHARE,
    answer_blocks,
    changes_blocks,
    clause_blocks,
    fallback_text,
)
from assistant.config import Settings
from assistant.errors import IndexNotBuilt, RulebookError
from assistant.records import Records

log = logging.getLogger(__name__)

_MENTION = re.compile(r"<@[A-Z0-9]+(?:\|[^>]*)?>")
WORKING = "eyes"
CHANGES_COMMANDS = {"changes", "what changed", "最近更新", "更新", "改了什么"}


def _question(text: str) -> str:
    return _MENTION.sub(" ", text or "").strip()


def create_slack_app(settings: Settings, assistant: Any, records: Records,
                     client: WebClient | None = None) -> App:
    """The bolt app. `client` defaults to a WebClient for SLACK_BOT_TOKEN (and the API URL setting)."""
    if client is None:
        kwargs: dict[str, Any] = {"token": settings.slack_bot_token}
        if settings.slack_api_url:
            kwargs["base_url"] = settings.slack_api_url
        client = WebClient(**kwargs)
    # Slack answers 429 with Retry-After when a workspace posts too fast; wait and retry.
    client.retry_handlers.append(RateLimitErrorRetryHandler(max_retry_count=2))
    app = App(client=client, signing_secret=settings.slack_signing_secret or "",
              token_verification_enabled=False, process_before_response=False)

    def apology(question: str, reason: str) -> str:
        return render_apology(assistant.prompts, question, reason, settings.contact)

    def answer(question: str, conversation_id: str) -> tuple[dict[str, Any], str]:
        ans = assistant.answer(question, records.history(conversation_id))
        answer_id = records.add_answer(ans, channel="slack", conversation_id=conversation_id)
        return ans.to_dict(), answer_id

    def reply_in_slack(client: WebClient, channel: str, ts: str, thread_ts: str | None, question: str,
                       conversation_id: str) -> None:
        """React 👀, answer (in the thread when there is one), remove the reaction; never silent."""
        try:
            client.reactions_add(channel=channel, timestamp=ts, name=WORKING)
        except SlackApiError as exc:
            log.warning("could not add the working reaction: %s", exc.response.get("error"))
        try:
            try:
                d, answer_id = answer(question, conversation_id)
                client.chat_postMessage(channel=channel, thread_ts=thread_ts, text=fallback_text(d),
                                        blocks=answer_blocks(d, answer_id))
            except IndexNotBuilt as exc:
                log.error("slack question not answered: %s", exc)
                client.chat_postMessage(channel=channel, thread_ts=thread_ts,
                                        text=apology(question, "the rulebook index is not built yet"))
            except SlackApiError as exc:
                log.error("slack API error while answering: %s", exc.response.get("error"))
                client.chat_postMessage(channel=channel, thread_ts=thread_ts,
                                        text=apology(question, f"Slack: {exc.response.get('error')}"))
            except Exception:
                log.exception("slack question not answered")
                client.chat_postMessage(channel=channel, thread_ts=thread_ts,
                                        text=apology(question, "internal error, logged"))
        except SlackApiError as exc:  # even the apology could not be posted
            log.error("could not post to Slack: %s", exc.response.get("error"))
        finally:
            try:
                client.reactions_remove(channel=channel, timestamp=ts, name=WORKING)
            except SlackApiError as exc:
                log.warning("could not remove the working reaction: %s", exc.response.get("error"))

    def what_changed() -> dict[str, Any]:
        """`/rules changes`: the served generation against the previous one."""
        from assistant.changes import ChangesError, changes
        from assistant.history import ClauseHistory
        from assistant.store import Layout

        history = ClauseHistory(Layout(settings.data_dir).history)
        try:
            result = changes(history)
        except ChangesError:
            return {"text": "还没有可以比较的修订。 No earlier version to compare with yet."}
        finally:
            history.close()
        return {"text": f"最近更新 What changed: {len(result['changes'])}", "blocks": changes_blocks(result)}

    def first_delivery(body: dict[str, Any]) -> bool:
        event_id = body.get("event_id")
        if event_id and not records.claim_event(event_id):
            log.info("duplicate delivery of %s ignored", event_id)
            return False
        return True

    def from_a_bot(event: dict[str, Any], context: dict[str, Any]) -> bool:
        return bool(event.get("bot_id") or event.get("subtype") == "bot_message"
                    or (context.get("bot_user_id") and event.get("user") == context.get("bot_user_id")))

    @app.event("app_mention")
    def on_mention(body: dict[str, Any], event: dict[str, Any], context: dict[str, Any], client: WebClient) -> None:
        if from_a_bot(event, context) or not first_delivery(body):
            return
        thread_ts = event.get("thread_ts") or event["ts"]
        reply_in_slack(client, event["channel"], event["ts"], thread_ts, _question(event.get("text", "")),
                       f"slack:{event['channel']}:{thread_ts}")

    @app.event("message")
    def on_message(body: dict[str, Any], event: dict[str, Any], context: dict[str, Any], client: WebClient) -> None:
        if from_a_bot(event, context) or event.get("subtype"):
            return  # edits, joins and other bots' posts are not questions
        text = event.get("text", "")
        bot = context.get("bot_user_id")
        if bot and f"<@{bot}" in text:
            return  # the app_mention event answers it
        channel = event["channel"]
        if event.get("channel_type") == "im":
            if first_delivery(body):
                reply_in_slack(client, channel, event["ts"], event.get("thread_ts"), _question(text),
                               f"slack:{channel}")
            return
        thread_ts = event.get("thread_ts")
        if thread_ts and thread_ts != event["ts"] and records.has_conversation(f"slack:{channel}:{thread_ts}"):
            if first_delivery(body):  # a reply in a thread the bot answered: a follow-up
                reply_in_slack(client, channel, event["ts"], thread_ts, _question(text),
                               f"slack:{channel}:{thread_ts}")

    @app.command("/rules")
    def on_rules(ack: Any, command: dict[str, Any], respond: Any) -> None:
        ack()
        question = (command.get("text") or "").strip()
        if not question:
            respond(response_type="ephemeral",
                    text="用法 Usage: /rules 年假可以留到明年用吗？  ·  /rules changes（最近更新）")
            return
        if question.lower() in CHANGES_COMMANDS:
            respond(response_type="ephemeral", **what_changed())
            return
        try:
            d, answer_id = answer(question, f"slack:cmd:{uuid.uuid4().hex}")
            respond(response_type="ephemeral", text=fallback_text(d), blocks=answer_blocks(d, answer_id, share=True))
        except RulebookError as exc:
            log.error("/rules not answered: %s", exc)
            respond(response_type="ephemeral", text=apology(question, "the rulebook index is not built yet"))
        except Exception:
            log.exception("/rules not answered")
            respond(response_type="ephemeral", text=apology(question, "internal error, logged"))

    @app.action(ACTION_SHARE)
    def on_share(ack: Any, action: dict[str, Any], respond: Any) -> None:
        ack()
        d = records.answer_payload(action["value"])
        if d is None:
            respond(response_type="ephemeral", replace_original=False, text="这条回答已找不到，请重新提问。")
            return
        respond(response_type="in_channel", delete_original=True, text=fallback_text(d),
                blocks=answer_blocks(d, action["value"]))

    @app.action(re.compile(rf"^{ACTION_FULL_CLAUSE}_\d+$"))
    def on_full_clause(ack: Any, action: dict[str, Any], respond: Any) -> None:
        ack()
        found = assistant.clause(action["value"])
        if found is None:
            respond(response_type="ephemeral", replace_original=False,
                    text="这个条款在当前的规章里已不存在（规章已更新）。")
            return
        respond(response_type="ephemeral", replace_original=False, text=found[0].text[:3000],
                blocks=clause_blocks(found[0]))

    @app.action(re.compile(rf"^({ACTION_FEEDBACK_UP}|{ACTION_FEEDBACK_DOWN})$"))
    def on_feedback(ack: Any, action: dict[str, Any], respond: Any) -> None:
        ack()
        answer_id = action["value"]
        if not records.answer_exists(answer_id):
            respond(response_type="ephemeral", replace_original=False, text="这条回答已找不到。")
            return
        rating = "up" if action["action_id"] == ACTION_FEEDBACK_UP else "down"
        records.add_feedback(answer_id, rating, None, channel="slack")
        respond(response_type="ephemeral", replace_original=False, text="谢谢反馈 Thanks for the feedback")

    return app


def run_socket_mode(settings: Settings) -> None:
    """`rulebook slack`: connect over Socket Mode (no public URL needed)."""
    from slack_bolt.adapter.socket_mode import SocketModeHandler

    from assistant.adapters.web import records_path
    from assistant.core import build_assistant

    app = create_slack_app(settings, build_assistant(settings), Records(records_path(settings)))
    SocketModeHandler(app, settings.slack_app_token).start()
