"""Slack through bolt's real request pipeline (signed requests, `app.dispatch`, the Starlette
adapter), with Slack's Web API replaced by a local fake on 127.0.0.1."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from fastapi.testclient import TestClient
from slack_bolt import BoltRequest

from assistant.adapters.slack import create_slack_app
from assistant.adapters.web import create_app
from assistant.core import build_assistant
from assistant.records import Records

from .conftest import IndexedCorpus, make_settings
from .slack_fake import BOT_USER, FakeSlack, signed_headers

SECRET = "test-signing-secret"


@pytest.fixture
def fake() -> Iterator[FakeSlack]:
    f = FakeSlack()
    yield f
    f.close()


@pytest.fixture
def records(tmp_path: Path) -> Records:
    return Records(tmp_path / "records.sqlite")


@pytest.fixture
def slack(sample_index: IndexedCorpus, fake: FakeSlack, records: Records):  # type: ignore[no-untyped-def]
    settings = make_settings(sample_index.settings.data_dir, slack_bot_token="xoxb-test",
                             slack_signing_secret=SECRET, slack_api_url=fake.api_url)
    return create_slack_app(settings, sample_index.assistant, records)


def event_body(event: dict[str, Any], event_id: str) -> str:
    return json.dumps({"token": "x", "team_id": "T1", "api_app_id": "A1", "type": "event_callback",
                       "event_id": event_id, "event_time": int(time.time()), "event": event})


def dispatch(app, body: str, content_type: str = "application/json", retry: int | None = None):  # type: ignore[no-untyped-def]
    return app.dispatch(BoltRequest(body=body, headers=signed_headers(body, SECRET, content_type=content_type,
                                                                       retry=retry)))


def mention(text: str, ts: str = "1700000000.000100", thread_ts: str | None = None) -> dict[str, Any]:
    e = {"type": "app_mention", "user": "U1", "text": f"<@{BOT_USER}> {text}", "ts": ts, "channel": "C1"}
    if thread_ts:
        e["thread_ts"] = thread_ts
    return e


def section_texts(blocks: list[dict[str, Any]]) -> str:
    return "\n".join(b["text"]["text"] for b in blocks if b["type"] == "section")


# --- HTTP mode: signatures and URL verification, through the web app ---------------------------

@pytest.fixture
def web(sample_index: IndexedCorpus, fake: FakeSlack, records: Records) -> TestClient:
    settings = make_settings(sample_index.settings.data_dir, slack_bot_token="xoxb-test",
                             slack_signing_secret=SECRET, slack_api_url=fake.api_url, rate_limit_per_minute=0)
    return TestClient(create_app(settings, assistant=sample_index.assistant, records=records))


def test_http_mode_rejects_bad_and_stale_signatures(web: TestClient) -> None:
    body = json.dumps({"type": "url_verification", "challenge": "abc", "token": "x"})
    wrong = signed_headers(body, "another-secret")
    assert web.post("/slack/events", content=body, headers=wrong).status_code == 401
    stale = signed_headers(body, SECRET, timestamp=int(time.time()) - 6 * 60)
    assert web.post("/slack/events", content=body, headers=stale).status_code == 401
    ok = web.post("/slack/events", content=body, headers=signed_headers(body, SECRET))
    assert ok.status_code == 200 and ok.json()["challenge"] == "abc"


def test_http_mode_answers_a_mention(web: TestClient, fake: FakeSlack) -> None:
    body = event_body(mention("客户咨询多久内要答复？"), "Ev-http-1")
    r = web.post("/slack/events", content=body, headers=signed_headers(body, SECRET))
    assert r.status_code == 200
    (post,) = fake.wait_for("chat.postMessage")
    assert post["thread_ts"] == "1700000000.000100" and "（一）咨询受理时限" in section_texts(post["blocks"])


# --- events --------------------------------------------------------------------------------------

def test_mention_is_answered_in_a_thread_with_the_clause_quoted(slack, fake: FakeSlack) -> None:  # type: ignore[no-untyped-def]
    t0 = time.perf_counter()
    resp = dispatch(slack, event_body(mention("系统故障多长时间内必须恢复？"), "Ev1"))
    assert resp.status == 200 and time.perf_counter() - t0 < 3.0  # acknowledged at once
    (post,) = fake.wait_for("chat.postMessage")
    assert post["channel"] == "C1" and post["thread_ts"] == "1700000000.000100"
    text = section_texts(post["blocks"])
    assert "信息系统故障处理与应急预案 › 第二章 故障分级与处置时限 › 第六条" in text
    assert "\n> " in text and "1小时" in text
    actions = [b for b in post["blocks"] if b["type"] == "actions"][0]["elements"]
    assert {e["action_id"] for e in actions} == {"rulebook_feedback_up", "rulebook_feedback_down"}
    assert any(b.get("accessory", {}).get("action_id", "").startswith("rulebook_full_clause") for b in post["blocks"])
    fake.wait_for("reactions.remove")
    assert fake.named("reactions.add")[0]["name"] == "eyes"


def test_direct_message_is_answered_in_the_dm(slack, fake: FakeSlack) -> None:  # type: ignore[no-untyped-def]
    event = {"type": "message", "channel_type": "im", "user": "U1", "text": "年假可以留到明年用吗？",
             "ts": "1700000001.000100", "channel": "D1"}
    dispatch(slack, event_body(event, "Ev-dm"))
    (post,) = fake.wait_for("chat.postMessage")
    assert post["channel"] == "D1" and "thread_ts" not in post
    assert "考勤与休假制度" in section_texts(post["blocks"])


def test_thread_reply_is_a_follow_up(slack, fake: FakeSlack) -> None:  # type: ignore[no-untyped-def]
    dispatch(slack, event_body(mention("出差住酒店每晚最多能报销多少钱？", ts="1700000002.000100"), "Ev-a"))
    fake.wait_for("chat.postMessage")
    reply = {"type": "message", "channel_type": "channel", "user": "U1", "text": "那成都呢？",
             "ts": "1700000003.000100", "thread_ts": "1700000002.000100", "channel": "C1"}
    dispatch(slack, event_body(reply, "Ev-b"))
    posts = fake.wait_for("chat.postMessage", 2)
    assert posts[1]["thread_ts"] == "1700000002.000100"
    assert "（三）差旅住宿标准" in section_texts(posts[1]["blocks"])


def test_unrelated_channel_messages_and_bots_are_ignored(slack, fake: FakeSlack) -> None:  # type: ignore[no-untyped-def]
    plain = {"type": "message", "channel_type": "channel", "user": "U1", "text": "午饭吃什么", "ts": "1.1",
             "channel": "C1"}
    bot = {"type": "message", "channel_type": "im", "bot_id": "B9", "user": "U9", "text": "年假几天", "ts": "1.2",
           "channel": "D1"}
    myself = {"type": "message", "channel_type": "im", "user": BOT_USER, "text": "年假几天", "ts": "1.3",
              "channel": "D1"}
    for i, e in enumerate((plain, bot, myself)):
        dispatch(slack, event_body(e, f"Ev-ignored-{i}"))
    time.sleep(1.0)
    assert fake.named("chat.postMessage") == []


def test_retried_delivery_is_answered_once(slack, fake: FakeSlack) -> None:  # type: ignore[no-untyped-def]
    body = event_body(mention("客户咨询多久内要答复？"), "Ev-retry")
    assert dispatch(slack, body).status == 200
    assert dispatch(slack, body, retry=1).status == 200
    assert dispatch(slack, body, retry=2).status == 200
    fake.wait_for("chat.postMessage")
    time.sleep(1.0)
    assert len(fake.named("chat.postMessage")) == 1


def test_rate_limited_post_is_retried_after_retry_after(slack, fake: FakeSlack) -> None:  # type: ignore[no-untyped-def]
    fake.script["chat.postMessage"] = [(429, {"Retry-After": "1"}, {"ok": False, "error": "ratelimited"})]
    t0 = time.time()
    dispatch(slack, event_body(mention("客户咨询多久内要答复？"), "Ev-429"))
    posts = fake.wait_for("chat.postMessage", 2)
    assert time.time() - t0 >= 1.0
    assert posts[0]["blocks"] == posts[1]["blocks"]  # the same message, sent again


def test_missing_index_gets_an_apology_not_silence(fake: FakeSlack, records: Records, tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "empty", slack_bot_token="xoxb-test", slack_signing_secret=SECRET,
                             slack_api_url=fake.api_url)
    app = create_slack_app(settings, build_assistant(settings), records)
    dispatch(app, event_body(mention("年假几天？"), "Ev-noindex"))
    (post,) = fake.wait_for("chat.postMessage")
    assert "抱歉" in post["text"] and "Traceback" not in post["text"]


def test_slack_api_error_ends_in_an_apology(slack, fake: FakeSlack) -> None:  # type: ignore[no-untyped-def]
    fake.script["chat.postMessage"] = [(200, {}, {"ok": False, "error": "invalid_blocks"})]
    dispatch(slack, event_body(mention("客户咨询多久内要答复？"), "Ev-apierr"))
    posts = fake.wait_for("chat.postMessage", 2)
    assert "invalid_blocks" in posts[1]["text"] and "抱歉" in posts[1]["text"]


# --- slash command and buttons -------------------------------------------------------------------

def block_action(action_id: str, value: str, response_url: str) -> str:
    payload = {"type": "block_actions", "team": {"id": "T1"}, "user": {"id": "U1"}, "api_app_id": "A1",
               "token": "x", "trigger_id": "t", "response_url": response_url, "channel": {"id": "C1"},
               "container": {"type": "message", "message_ts": "1.0", "channel_id": "C1", "is_ephemeral": True},
               "actions": [{"type": "button", "action_id": action_id, "block_id": "b", "value": value,
                            "action_ts": "1.1"}]}
    return urlencode({"payload": json.dumps(payload)})


def test_slash_command_share_full_clause_and_feedback(slack, fake: FakeSlack, records: Records) -> None:  # type: ignore[no-untyped-def]
    form = urlencode({"command": "/rules", "text": "报销要在费用发生后多少天内提交？", "user_id": "U1",
                      "channel_id": "C1", "team_id": "T1", "response_url": fake.response_url("cmd"),
                      "trigger_id": "t", "token": "x"})
    resp = dispatch(slack, form, content_type="application/x-www-form-urlencoded")
    assert resp.status == 200
    (answer,) = fake.wait_for("respond/cmd")
    assert answer["response_type"] == "ephemeral" and "二、报销时限" in section_texts(answer["blocks"])
    actions = [b for b in answer["blocks"] if b["type"] == "actions"][0]["elements"]
    share = next(e for e in actions if e["action_id"] == "rulebook_share")
    answer_id = share["value"]

    dispatch(slack, block_action("rulebook_share", answer_id, fake.response_url("share")),
             content_type="application/x-www-form-urlencoded")
    (shared,) = fake.wait_for("respond/share")
    assert shared["response_type"] == "in_channel" and shared["delete_original"] is True
    assert section_texts(shared["blocks"]) == section_texts(answer["blocks"])

    full = next(b["accessory"] for b in answer["blocks"] if "accessory" in b)
    dispatch(slack, block_action(full["action_id"], full["value"], fake.response_url("clause")),
             content_type="application/x-www-form-urlencoded")
    (clause,) = fake.wait_for("respond/clause")
    assert clause["response_type"] == "ephemeral" and "30日内" in section_texts(clause["blocks"])

    dispatch(slack, block_action("rulebook_feedback_down", answer_id, fake.response_url("fb")),
             content_type="application/x-www-form-urlencoded")
    fake.wait_for("respond/fb")
    assert [(f.rating, f.channel) for f in records.feedback(answer_id)] == [("down", "slack")]


# --- rendering limits ---------------------------------------------------------------------------

def test_blocks_escape_and_respect_slack_limits() -> None:
    from assistant.adapters.slack_blocks import BLOCK_LIMIT, SECTION_LIMIT, answer_blocks, clause_blocks
    from assistant.schema import Clause

    quote = "不得把 <script> & 代码粘贴到 <客户系统>。" * 200
    citations = [{"n": i, "clause_id": f"c{i}", "document": "员工行为准则", "source": "x.html",
                  "clause": "信息安全", "path": ["信息安全"], "quote": quote} for i in range(1, 80)]
    answer = {"grounded": True, "answer": "答案 <b>&</b> " * 1000, "citations": citations}
    blocks = answer_blocks(answer, "a1")
    assert len(blocks) <= BLOCK_LIMIT and blocks[-1]["type"] == "actions"
    for b in blocks:
        if b["type"] == "section":
            text = b["text"]["text"]
            assert len(text) <= SECTION_LIMIT
            assert "<script>" not in text and "<b>" not in text
    assert "&amp;" in blocks[0]["text"]["text"] and "&lt;b&gt;" in blocks[0]["text"]["text"]
    long_clause = Clause("c", "x.md", "规定", "第一条", ("第一条",), "很长的规定<a>。" * 2000, 0, "h")
    cb = clause_blocks(long_clause)
    assert all(len(b["text"]["text"]) <= SECTION_LIMIT for b in cb) and len(cb) <= BLOCK_LIMIT
    assert "&lt;a&gt;" in cb[1]["text"]["text"]


def test_refusal_names_whom_to_ask(slack, fake: FakeSlack) -> None:  # type: ignore[no-untyped-def]
    dispatch(slack, event_body(mention("推荐一只明年能涨的股票"), "Ev-refuse"))
    (post,) = fake.wait_for("chat.postMessage")
    text = section_texts(post["blocks"])
    assert text.startswith(":warning:") and "人力资源部" in text


def test_slash_command_changes_lists_what_changed(fake: FakeSlack, records: Records, rulebook_copy: Path,
                                                  warm_data_dir: Path) -> None:
    from ingest.pipeline import ingest

    settings = make_settings(warm_data_dir, slack_bot_token="xoxb-test", slack_signing_secret=SECRET,
                             slack_api_url=fake.api_url)
    ingest(rulebook_copy, settings)
    app = create_slack_app(settings, build_assistant(settings), records)

    def changes(name: str) -> dict[str, Any]:
        form = urlencode({"command": "/rules", "text": "changes", "user_id": "U1", "channel_id": "C1", "team_id": "T1",
                          "response_url": fake.response_url(name), "trigger_id": "t", "token": "x"})
        assert dispatch(app, form, content_type="application/x-www-form-urlencoded").status == 200
        (reply,) = fake.wait_for(f"respond/{name}")
        return reply

    assert "No earlier version" in changes("c1")["text"]
    service = rulebook_copy / "客户服务标准.md"
    revised = service.read_text(encoding="utf-8").replace("一般咨询在24小时内答复", "一般咨询在12小时内答复", 1)
    service.write_text(revised, encoding="utf-8")
    ingest(rulebook_copy, settings)
    reply = changes("c2")
    assert reply["response_type"] == "ephemeral"
    text = section_texts(reply["blocks"])
    assert "客户服务标准" in text and "修改 changed" in text and "[-24-]{+12+}" in text
