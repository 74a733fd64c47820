"""Feishu through the SDK's own request pipeline (encrypted, signed callbacks verified by its event
dispatcher, the web app's /feishu/events route, its long-connection client), with Feishu's Open API
and gateway replaced by local fakes on 127.0.0.1."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from assistant.adapters.feishu import create_feishu_bot, long_connection_client, question_text
from assistant.adapters.feishu_cards import CARD_LIMIT, answer_card, escape, size
from assistant.adapters.rendering import citation_heading
from assistant.adapters.web import create_app
from assistant.records import Records

from .conftest import IndexedCorpus, make_settings
from .feishu_fake import (
    APP_ID,
    APP_SECRET,
    ENCRYPT_KEY,
    VERIFICATION_TOKEN,
    FakeFeishu,
    FakeGateway,
    callback,
    card_action_event,
    encrypt,
    mention,
    message_event,
    signed_headers,
)

FAULT = "系统故障多长时间内必须恢复？"
FAULT_HEADING = "信息系统故障处理与应急预案 › 第二章 故障分级与处置时限 › 第六条 (信息系统故障与应急预案.docx)"


@pytest.fixture
def fake() -> Iterator[FakeFeishu]:
    f = FakeFeishu()
    yield f
    f.close()


@pytest.fixture
def records(tmp_path: Path) -> Records:
    return Records(tmp_path / "records.sqlite")


def feishu_settings(data_dir: Any, fake: FakeFeishu, **overrides: Any):  # type: ignore[no-untyped-def]
    return make_settings(data_dir, feishu_app_id=APP_ID, feishu_app_secret=APP_SECRET,
                         feishu_verification_token=VERIFICATION_TOKEN, feishu_encrypt_key=ENCRYPT_KEY,
                         feishu_api_url=fake.base, rate_limit_per_minute=0, **overrides)


@pytest.fixture
def web(sample_index: IndexedCorpus, fake: FakeFeishu, records: Records) -> Iterator[TestClient]:
    app = create_app(feishu_settings(sample_index.settings.data_dir, fake), assistant=sample_index.assistant,
                     records=records)
    with TestClient(app) as client:
        yield client


def post(web: TestClient, payload: dict[str, Any], **kwargs: Any):  # type: ignore[no-untyped-def]
    body, headers = callback(payload, **kwargs)
    return web.post("/feishu/events", content=body, headers=headers)


def settle(web: TestClient) -> None:
    """Wait until every accepted message has been answered."""
    assert web.app.state.feishu.wait_idle(30)  # type: ignore[attr-defined]


def buttons(node: Any) -> list[dict[str, Any]]:
    """Every button of a card, in order."""
    if isinstance(node, dict):
        found = [node] if node.get("tag") == "button" else []
        return found + [b for v in node.values() for b in buttons(v)]
    if isinstance(node, list):
        return [b for v in node for b in buttons(v)]
    return []


def callback_value(button: dict[str, Any]) -> dict[str, Any]:
    (behaviour,) = button["behaviors"]
    assert behaviour["type"] == "callback"
    return behaviour["value"]


def markdown(card: dict[str, Any]) -> list[str]:
    return [e["content"] for e in card["body"]["elements"] if e["tag"] == "markdown"]


def ask_in_group(web: TestClient, fake: FakeFeishu, question: str, message_id: str, event_id: str,
                 count: int = 1) -> tuple[dict[str, Any], dict[str, Any]]:
    r = post(web, message_event(f"@_user_1 {question}", event_id=event_id, message_id=message_id,
                                mentions=[mention()]))
    assert r.status_code == 200 and r.json() == {"msg": "success"}
    reply = fake.wait_for("reply", count)[count - 1]
    return reply, json.loads(reply["content"])


# --- verification, through the web app --------------------------------------------------------------

def test_url_verification_challenge_is_answered(web: TestClient, fake: FakeFeishu) -> None:
    r = post(web, {"challenge": "ajls384kdjx98XX", "token": VERIFICATION_TOKEN, "type": "url_verification"})
    assert r.status_code == 200 and r.json() == {"challenge": "ajls384kdjx98XX"}
    wrong = post(web, {"challenge": "ajls384kdjx98XX", "token": "not-the-token", "type": "url_verification"})
    assert wrong.status_code == 401 and "ajls384kdjx98XX" not in wrong.text


def test_bad_signature_is_refused_without_any_call(web: TestClient, fake: FakeFeishu) -> None:
    event = message_event(f"@_user_1 {FAULT}", event_id="ev-badsig", message_id="om_badsig", mentions=[mention()])
    r = post(web, event, sign_key="another-key")
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_signature"
    body, headers = callback(event)
    for broken in ({**headers, "x-lark-signature": "0" * 64}, {"content-type": "application/json"}):
        assert web.post("/feishu/events", content=body, headers=broken).status_code == 401
    tampered = json.dumps({"encrypt": encrypt(json.dumps(event), "another-key")}).encode()
    assert web.post("/feishu/events", content=tampered, headers=signed_headers(tampered)).status_code in (400, 401)
    garbage = b"not json"
    assert web.post("/feishu/events", content=garbage, headers=signed_headers(garbage)).status_code == 400
    settle(web)
    assert fake.messages() == []
    # and the event id was not used up: the real delivery is still answered
    assert post(web, event).status_code == 200
    fake.wait_for("reply")


def test_wrong_verification_token_is_refused(web: TestClient, fake: FakeFeishu, records: Records) -> None:
    event = message_event(f"@_user_1 {FAULT}", event_id="ev-token", message_id="om_token", mentions=[mention()],
                          token="not-the-token")
    r = post(web, event)
    assert r.status_code == 401
    settle(web)
    assert fake.messages() == [] and records.recent() == []


# --- messages --------------------------------------------------------------------------------------

def test_group_mention_is_answered_once_in_a_thread_with_the_card(web: TestClient, fake: FakeFeishu,
                                                                  records: Records) -> None:
    reply, card = ask_in_group(web, fake, FAULT, "om_q1", "ev-group-1")
    settle(web)
    assert len(fake.messages()) == 1
    assert set(reply) == {"message_id", "msg_type", "content", "reply_in_thread"}
    assert reply["message_id"] == "om_q1" and reply["msg_type"] == "interactive" and reply["reply_in_thread"] is True

    (row,) = records.recent()
    assert row["question"] == FAULT and row["channel"] == "feishu"  # the @mention placeholder is gone
    answer_id = row["answer_id"]
    d = records.answer_payload(answer_id)
    assert d is not None and d["grounded"]
    assert card == answer_card(d, answer_id)  # exactly the rendering of the recorded answer

    # what that rendering holds, spelled out
    (c,) = d["citations"]
    assert citation_heading(c) == FAULT_HEADING
    assert card["schema"] == "2.0"
    texts = markdown(card)
    assert texts[0] == escape(d["answer"]) and "1小时内恢复" in texts[0]
    assert texts[1] == "**依据**"
    assert texts[2] == f"**[1] {FAULT_HEADING}**\n> {c['quote']}"  # the quote is one line here
    assert [b["text"]["content"] for b in buttons(card)] == ["全文", "👍", "👎"]
    assert [callback_value(b) for b in buttons(card)] == [
        {"action": "full_clause", "clause_id": c["clause_id"], "answer_id": answer_id},
        {"action": "feedback", "rating": "up", "answer_id": answer_id},
        {"action": "feedback", "rating": "down", "answer_id": answer_id},
    ]
    assert fake.named("bot_info")  # the bot checked that the mention is its own


def test_direct_message_is_answered_in_the_chat(web: TestClient, fake: FakeFeishu, records: Records) -> None:
    r = post(web, message_event("年假可以留到明年吗？", event_id="ev-dm", message_id="om_dm", chat_id="oc_dm",
                                chat_type="p2p"))
    assert r.status_code == 200
    (sent,) = fake.wait_for("create")
    assert set(sent) == {"receive_id_type", "receive_id", "msg_type", "content"}
    assert sent["receive_id_type"] == "chat_id" and sent["receive_id"] == "oc_dm"
    assert sent["msg_type"] == "interactive"
    card = json.loads(sent["content"])
    heading = "澄川科技考勤与休假制度 › 第五章 假期 › 第一节 年休假 › 第十五条 (考勤与休假制度.md)"
    assert heading in "\n".join(markdown(card))
    settle(web)
    assert fake.named("reply") == []
    assert records.history("feishu:oc_dm")[0].question == "年假可以留到明年吗？"


def test_thread_reply_is_a_follow_up_with_the_threads_history(web: TestClient, fake: FakeFeishu,
                                                              records: Records) -> None:
    ask_in_group(web, fake, "出差住酒店每晚最多报销多少？", "om_trip", "ev-trip-1")
    # a reply in the bot's thread, without @mention: a follow-up
    post(web, message_event("那成都呢？", event_id="ev-trip-2", message_id="om_trip_2", root_id="om_trip"))
    follow = fake.wait_for("reply", 2)[1]
    assert follow["message_id"] == "om_trip_2" and follow["reply_in_thread"] is True
    card = json.loads(follow["content"])
    assert "费用报销管理办法 › 四、差旅费 › （三）差旅住宿标准" in "\n".join(markdown(card))
    turns = records.history("feishu:oc_group:om_trip")
    assert [t.question for t in turns] == ["出差住酒店每晚最多报销多少？", "那成都呢？"]
    # without the thread's history the same words are about something else entirely
    post(web, message_event("@_user_1 那成都呢？", event_id="ev-trip-3", message_id="om_other",
                            mentions=[mention()]))
    alone = json.loads(fake.wait_for("reply", 3)[2]["content"])
    assert "（三）差旅住宿标准" not in "\n".join(markdown(alone))


def test_redelivered_event_is_answered_once(web: TestClient, fake: FakeFeishu) -> None:
    event = message_event(f"@_user_1 {FAULT}", event_id="ev-again", message_id="om_again", mentions=[mention()])
    for _ in range(3):
        assert post(web, event).status_code == 200
    settle(web)
    assert len(fake.messages()) == 1


def test_bots_chatter_and_other_peoples_mentions_are_ignored(web: TestClient, fake: FakeFeishu) -> None:
    events = [
        message_event("年假几天？", event_id="ev-i1", message_id="om_i1", chat_type="p2p", chat_id="oc_dm",
                      sender_type="app"),
        message_event("午饭吃什么", event_id="ev-i2", message_id="om_i2"),
        message_event("@_user_1 年假几天？", event_id="ev-i3", message_id="om_i3",
                      mentions=[mention(open_id="ou_colleague", name="张三")]),
        message_event("谢谢", event_id="ev-i4", message_id="om_i4", root_id="om_not_ours"),
    ]
    for e in events:
        assert post(web, e).status_code == 200
    settle(web)
    assert fake.messages() == []


def test_non_text_message_gets_a_note(web: TestClient, fake: FakeFeishu, records: Records) -> None:
    post(web, message_event(None, event_id="ev-img", message_id="om_img", chat_type="p2p", chat_id="oc_dm",
                            message_type="image", content=json.dumps({"image_key": "img_v2_1"})))
    (sent,) = fake.wait_for("create")
    assert sent["msg_type"] == "text" and "文字" in json.loads(sent["content"])["text"]
    assert records.recent() == []


def test_api_error_ends_in_an_apology(web: TestClient, fake: FakeFeishu) -> None:
    fake.script["reply"] = [{"code": 230002, "msg": "Bot/User can NOT be out of the chat."}]
    ask_in_group(web, fake, FAULT, "om_err", "ev-err")
    apology = fake.wait_for("reply", 2)[1]
    assert apology["msg_type"] == "text" and apology["reply_in_thread"] is True
    text = json.loads(apology["content"])["text"]
    assert "抱歉" in text and "230002" in text and "Traceback" not in text


def test_missing_index_gets_an_apology(fake: FakeFeishu, records: Records, tmp_path: Path) -> None:
    from assistant.core import build_assistant

    settings = feishu_settings(tmp_path / "empty", fake)
    with TestClient(create_app(settings, assistant=build_assistant(settings), records=records)) as web:
        post(web, message_event("年假几天？", event_id="ev-noindex", message_id="om_noindex", chat_type="p2p",
                                chat_id="oc_dm"))
        (sent,) = fake.wait_for("create")
    assert sent["msg_type"] == "text" and "抱歉" in json.loads(sent["content"])["text"]


# --- card buttons ------------------------------------------------------------------------------------

def test_card_buttons_feedback_and_full_clause(web: TestClient, fake: FakeFeishu, records: Records,
                                               sample_index: IndexedCorpus) -> None:
    _, card = ask_in_group(web, fake, "报销要在费用发生后多少天内提交？", "om_claim", "ev-claim")
    full, up, down = (callback_value(b) for b in buttons(card))
    answer_id = down["answer_id"]

    r = post(web, card_action_event(down, event_id="ev-card-1"))
    assert r.status_code == 200 and r.json() == {"toast": {"type": "success", "content": "谢谢反馈"}}
    assert [(f.rating, f.comment, f.channel) for f in records.feedback(answer_id)] == [("down", None, "feishu")]

    r = post(web, card_action_event(full, event_id="ev-card-2"))
    assert r.status_code == 200
    body = r.json()
    assert body["toast"]["type"] == "info" and body["card"]["type"] == "raw"
    expanded = body["card"]["data"]
    clause = sample_index.assistant.clause(full["clause_id"])[0]
    assert "30日内" in clause.text
    assert "全文：\n" + "\n".join(f"> {line.strip()}" for line in escape(clause.text).splitlines() if line.strip()) \
        in "\n".join(markdown(expanded))
    assert [callback_value(b)["action"] for b in buttons(expanded)] == ["feedback", "feedback"]

    r = post(web, card_action_event({**up, "answer_id": "no-such-answer"}, event_id="ev-card-3"))
    assert r.json() == {"toast": {"type": "warning", "content": "这条回答已找不到。"}}
    r = post(web, card_action_event({**full, "clause_id": "gone"}, event_id="ev-card-4"))
    assert r.json()["toast"]["type"] == "warning" and "card" not in r.json()

    forged = post(web, card_action_event(down, event_id="ev-card-5"), sign_key="another-key")
    assert forged.status_code == 401
    assert len(records.feedback(answer_id)) == 1


def test_refusal_card_says_so(web: TestClient, fake: FakeFeishu) -> None:
    _, card = ask_in_group(web, fake, "推荐一只明年能涨的股票", "om_stock", "ev-stock")
    assert card["header"]["template"] == "orange"
    (text,) = markdown(card)
    assert text.startswith("⚠️ ") and "人力资源部" in text
    assert [callback_value(b)["action"] for b in buttons(card)] == ["feedback", "feedback"]


# --- rendering -----------------------------------------------------------------------------------------

def test_cards_escape_markup_and_stay_within_feishu_limits() -> None:
    quote = "不得把 <font color='red'>* & ~~ 代码粘贴到 <客户系统>。\n" * 300
    citations = [{"n": i, "clause_id": f"c{i}", "document": "员工行为准则", "source": "x.html",
                  "clause": "信息安全", "path": ["信息安全"], "quote": quote} for i in range(1, 40)]
    answer = {"question": "能粘贴代码吗？", "grounded": True, "answer": "答案 <b>**粗**</b> & " * 2000,
              "citations": citations}
    card = answer_card(answer, "a1", expanded={"c1": "很长的规定<a>。" * 5000})
    assert size(card) <= CARD_LIMIT
    text = "\n".join(markdown(card))  # the summary (chat list preview) is plain text, not markup
    assert "<font" not in text and "<b>" not in text and "<a>" not in text and "**粗**" not in text
    assert "&lt;b&gt;&#42;&#42;粗&#42;&#42;&lt;/b&gt; &amp;" in card["body"]["elements"][0]["content"]
    assert [callback_value(b)["action"] for b in buttons(card)][-2:] == ["feedback", "feedback"]


def test_question_text_strips_mentions() -> None:
    assert question_text(json.dumps({"text": "@_user_1 年假可以留到明年吗？"})) == "年假可以留到明年吗？"
    assert question_text(json.dumps({"text": "@_user_2  请问 @_user_1 出差标准"})) == "请问 出差标准"
    assert question_text("not json") == ""


# --- long connection -----------------------------------------------------------------------------------

def test_long_connection_delivers_events_and_card_actions(sample_index: IndexedCorpus, fake: FakeFeishu,
                                                          records: Records) -> None:
    import lark_oapi.ws.client as ws_client

    gateway = FakeGateway()
    fake.ws_url = gateway.url
    settings = feishu_settings(sample_index.settings.data_dir, fake)
    bot = create_feishu_bot(settings, sample_index.assistant, records)
    client = long_connection_client(bot, settings)
    failures: list[BaseException] = []

    def run() -> None:
        try:
            client.start()
        except RuntimeError:
            pass  # the loop was stopped at the end of the test
        except BaseException as exc:  # noqa: B036 - reported below
            failures.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        gateway.wait_connected()
        (endpoint,) = fake.named("endpoint")
        assert endpoint == {"AppID": APP_ID, "AppSecret": APP_SECRET}

        event = message_event(f"@_user_1 {FAULT}", event_id="ev-ws-1", message_id="om_ws", mentions=[mention()])
        gateway.push(event, "frame-1")
        assert gateway.wait_ack("frame-1")["code"] == 200
        (reply,) = fake.wait_for("reply")
        assert reply["message_id"] == "om_ws" and reply["reply_in_thread"] is True
        card = json.loads(reply["content"])
        assert f"**[1] {FAULT_HEADING}**" in "\n".join(markdown(card))

        gateway.push(event, "frame-2")  # the same event again: acknowledged, not answered again
        assert gateway.wait_ack("frame-2")["code"] == 200
        assert bot.wait_idle(30) and len(fake.messages()) == 1

        down = callback_value(buttons(card)[-1])
        gateway.push(card_action_event(down, event_id="ev-ws-card", message_id="om_sent_1"), "frame-3")
        ack = gateway.wait_ack("frame-3")
        assert ack["code"] == 200
        assert json.loads(base64.b64decode(ack["data"])) == {"toast": {"type": "success", "content": "谢谢反馈"}}
        assert [(f.rating, f.channel) for f in records.feedback(down["answer_id"])] == [("down", "feishu")]
        assert not failures
    finally:
        ws_client.loop.call_soon_threadsafe(ws_client.loop.stop)
        thread.join(5)
        gateway.close()
        bot.close()
