"""DingTalk through the real Stream SDK client (`DingTalkStreamClient.start`, its websocket, frame
routing and acks), with DingTalk's gateway, websocket and sessionWebhooks replaced by local fakes
on 127.0.0.1."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dingtalk_stream import ChatbotMessage

from assistant.adapters.dingtalk import StreamClient, create_dingtalk_client, run_stream_mode
from assistant.config import Settings
from assistant.errors import ConfigError, IndexNotBuilt
from assistant.records import Records

from .conftest import IndexedCorpus, make_settings
from .dingtalk_fake import CHATBOT_USER, CLIENT_ID, CLIENT_SECRET, FakeDingTalk, chatbot_message

ANNUAL_LEAVE_ANSWER = (
    "根据《澄川科技考勤与休假制度》第十五条：“职工累计工作已满1年的，享受带薪年休假：累计工作满1年不满10年的，"
    "每年5天；满10年不满20年的，每年10天；满20年及以上的，每年15天。累计工作年限包括在其他单位的工作年限，"
    "以社会保险缴费记录或者离职证明为依据。”[1]"
)
ANNUAL_LEAVE_HEADING = "[1] 澄川科技考勤与休假制度 › 第五章 假期 › 第一节 年休假 › 第十五条 (考勤与休假制度.md)"
ANNUAL_LEAVE_QUOTE = (
    "> 职工累计工作已满1年的，享受带薪年休假：累计工作满1年不满10年的，每年5天；满10年不满20年的，每年10天；"
    "满20年及以上的，每年15天。累计工作年限包括在其他单位的工作年限，以社会保险缴费记录或者离职证明为依据。"
)


class RunningClient:
    """The client's `start()` coroutine on its own loop in a daemon thread.

    `stop()` cancels it, as asyncio does on Ctrl+C, and checks that this really ends the connection
    loop (the SDK's own loop catches the cancellation and reconnects)."""

    def __init__(self, client: StreamClient) -> None:
        self.client = client
        self.loop = asyncio.new_event_loop()
        self.task = self.loop.create_task(client.start())
        self.thread = threading.Thread(target=self._run, daemon=True, name="dingtalk-stream-test")
        self.thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self.task)
        except asyncio.CancelledError:
            pass
        finally:  # the SDK's keepalive and per-frame tasks
            rest = [t for t in asyncio.all_tasks(self.loop) if not t.done()]
            for t in rest:
                t.cancel()
            if rest:
                self.loop.run_until_complete(asyncio.wait(rest, timeout=5))
            self.loop.close()

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.task.cancel)
        self.thread.join(15)
        assert not self.thread.is_alive(), "the stream client did not stop when cancelled"
        self.client.callback_handler_map[ChatbotMessage.TOPIC].close()


@pytest.fixture
def fake() -> Iterator[FakeDingTalk]:
    f = FakeDingTalk()
    yield f
    f.close()


@pytest.fixture
def records(tmp_path: Path) -> Records:
    return Records(tmp_path / "records.sqlite")


def settings_for(data_dir: Path, fake: FakeDingTalk, secret: str = CLIENT_SECRET) -> Settings:
    return make_settings(data_dir, dingtalk_client_id=CLIENT_ID, dingtalk_client_secret=secret,
                         dingtalk_api_url=fake.api_url)


def run(fake: FakeDingTalk, assistant: Any, records: Records, data_dir: Path) -> RunningClient:
    running = RunningClient(create_dingtalk_client(settings_for(data_dir, fake), assistant, records))
    try:
        fake.wait_connected()
    except AssertionError:
        running.stop()
        raise
    return running


@pytest.fixture
def dingtalk(sample_index: IndexedCorpus, fake: FakeDingTalk, records: Records) -> Iterator[RunningClient]:
    running = run(fake, sample_index.assistant, records, sample_index.settings.data_dir)
    yield running
    fake.disconnect()  # close the websocket from DingTalk's side, refuse reconnects
    running.stop()


def quiet_period(seconds: float = 0.5) -> None:
    time.sleep(seconds)


# --- answering -----------------------------------------------------------------------------------

def test_group_mention_is_answered_once_with_the_clause_quoted_and_the_asker_mentioned(
        dingtalk: RunningClient, fake: FakeDingTalk, records: Records) -> None:
    frame = fake.push(chatbot_message(fake, " 年假可以留到明年吗？", session="g1"))
    ack = fake.ack_for(frame)
    assert ack["code"] == 200 and ack["message"] == "OK"
    assert ack["headers"] == {"messageId": frame, "contentType": "application/json"}
    (post,) = fake.wait_posts(session="g1")
    assert post["msgtype"] == "markdown"
    assert post["at"] == {"atUserIds": ["staff001"], "isAtAll": False}
    assert post["markdown"]["title"] == ANNUAL_LEAVE_ANSWER[:63] + "…"
    assert post["markdown"]["text"] == "\n\n".join([
        "@staff001 " + ANNUAL_LEAVE_ANSWER, "**依据**", ANNUAL_LEAVE_HEADING, ANNUAL_LEAVE_QUOTE,
        "回复 👍 或 👎 评价这条回答（群里请先 @我）"])
    quiet_period()
    assert len(fake.posted()) == 1
    (recent,) = records.recent()
    assert recent["channel"] == "dingtalk" and recent["question"] == "年假可以留到明年吗？"
    assert records.has_conversation("dingtalk:cid-group-0001")


def test_one_to_one_question_is_answered_without_a_mention(dingtalk: RunningClient, fake: FakeDingTalk,
                                                            records: Records) -> None:
    message = chatbot_message(fake, "系统故障多长时间内必须恢复？", group=False, conversation="cid-single-1",
                              session="p1")
    frame = fake.push(message)
    assert fake.ack_for(frame)["code"] == 200
    (post,) = fake.wait_posts(session="p1")
    assert post["at"] == {"atUserIds": [], "isAtAll": False}
    text = post["markdown"]["text"]
    assert not text.startswith("@")
    heading = "[1] 信息系统故障处理与应急预案 › 第二章 故障分级与处置时限 › 第六条 (信息系统故障与应急预案.docx)"
    assert f"\n\n{heading}\n\n> " in text
    assert "1小时" in text and text.endswith("\n\n回复 👍 或 👎 评价这条回答")
    assert records.has_conversation("dingtalk:cid-single-1")


def test_follow_up_in_the_same_conversation_uses_the_history(dingtalk: RunningClient, fake: FakeDingTalk) -> None:
    fake.push(chatbot_message(fake, " 出差住酒店每晚最多报销多少？", conversation="cid-trip", session="t1"))
    (first,) = fake.wait_posts(session="t1")
    assert "（三）差旅住宿标准" in first["markdown"]["text"]
    fake.push(chatbot_message(fake, " 那成都呢？", conversation="cid-trip", session="t2", sender="staff002"))
    (second,) = fake.wait_posts(session="t2")
    # without the history the same words find the Chengdu customer-service clause (第二十一条)
    assert "（三）差旅住宿标准" in second["markdown"]["text"] and "第二十一条" not in second["markdown"]["text"]
    assert second["at"]["atUserIds"] == ["staff002"]


def test_redelivered_message_is_acknowledged_every_time_and_answered_once(
        dingtalk: RunningClient, fake: FakeDingTalk) -> None:
    message = chatbot_message(fake, " 客户咨询多久内要答复？", msg_id="msgRETRY1", session="r1")
    frames = [fake.push(message), fake.push(message), fake.push(message, frame_id="frame-same")]
    assert fake.push(message, frame_id="frame-same") == "frame-same"  # the same frame delivered twice
    for frame in frames:
        assert fake.ack_for(frame)["code"] == 200
    fake.wait_posts(session="r1")
    quiet_period(1.0)
    assert len(fake.posted("r1")) == 1


def test_ack_is_sent_before_the_answer_is_ready(sample_index: IndexedCorpus, fake: FakeDingTalk,
                                                records: Records) -> None:
    release = threading.Event()

    class SlowAssistant:
        prompts = sample_index.assistant.prompts

        def answer(self, question: str, history: list[Any]) -> Any:
            release.wait(10)
            return sample_index.assistant.answer(question, history)

    running = run(fake, SlowAssistant(), records, sample_index.settings.data_dir)
    try:
        frame = fake.push(chatbot_message(fake, " 年假可以留到明年吗？", session="slow"))
        assert fake.ack_for(frame, timeout=5)["code"] == 200
        assert fake.posted("slow") == []  # acknowledged while the answer is still being worked out
        release.set()
        fake.wait_posts(session="slow")
    finally:
        release.set()
        fake.disconnect()
        running.stop()


def test_messages_for_another_robot_or_from_itself_are_acknowledged_not_answered(
        dingtalk: RunningClient, fake: FakeDingTalk, records: Records) -> None:
    other = chatbot_message(fake, " 年假几天？", robot_code="dingsomeotherrobot", session="x1")
    itself = chatbot_message(fake, " 年假几天？", session="x2", senderId=CHATBOT_USER)
    frames = [fake.push(other), fake.push(itself)]
    for frame in frames:
        assert fake.ack_for(frame)["code"] == 200
    fake.push(chatbot_message(fake, " 客户咨询多久内要答复？", session="x3"))
    fake.wait_posts(session="x3")
    quiet_period()
    assert fake.posted("x1") == [] and fake.posted("x2") == []
    assert len(records.recent()) == 1


def test_other_message_types_get_a_short_note(dingtalk: RunningClient, fake: FakeDingTalk) -> None:
    picture = chatbot_message(fake, "", session="m1", msgtype="picture", content={"downloadCode": "dc1"})
    del picture["text"]
    fake.push(picture)
    (note,) = fake.wait_posts(session="m1")
    assert note["msgtype"] == "text" and "文字问题" in note["text"]["content"]
    assert note["at"]["atUserIds"] == ["staff001"]
    voice = chatbot_message(fake, "", session="m2", msgtype="audio",
                            content={"duration": 3000, "downloadCode": "dc2", "recognition": "年假可以留到明年吗"})
    del voice["text"]
    fake.push(voice)
    (answer,) = fake.wait_posts(session="m2")
    assert answer["msgtype"] == "markdown" and ANNUAL_LEAVE_HEADING in answer["markdown"]["text"]
    fake.push(chatbot_message(fake, " ", session="m3"))
    (usage,) = fake.wait_posts(session="m3")
    assert "请直接提问" in usage["text"]["content"]


# --- feedback ------------------------------------------------------------------------------------

def test_thumbs_reply_after_an_answer_is_stored_as_feedback(dingtalk: RunningClient, fake: FakeDingTalk,
                                                            records: Records) -> None:
    fake.push(chatbot_message(fake, " 👍", conversation="cid-fb", session="f0"))
    (early,) = fake.wait_posts(session="f0")
    assert "请先提问" in early["text"]["content"]
    fake.push(chatbot_message(fake, " 报销要在费用发生后多少天内提交？", conversation="cid-fb", session="f1"))
    fake.wait_posts(session="f1")
    (answer,) = records.recent()
    fake.push(chatbot_message(fake, " 👍", conversation="cid-fb", session="f2"))
    (thanks,) = fake.wait_posts(session="f2")
    assert thanks["msgtype"] == "text" and "谢谢反馈" in thanks["text"]["content"]
    assert thanks["at"]["atUserIds"] == ["staff001"]
    fake.push(chatbot_message(fake, "没用", conversation="cid-fb", session="f3", group=False))
    fake.wait_posts(session="f3")
    assert [(f.rating, f.channel) for f in records.feedback(str(answer["answer_id"]))] == [
        ("up", "dingtalk"), ("down", "dingtalk")]
    assert len(records.recent()) == 1  # the ratings were not taken for questions


def test_a_rating_finds_an_answer_given_before_a_restart(dingtalk: RunningClient, fake: FakeDingTalk,
                                                          records: Records, sample_index: IndexedCorpus) -> None:
    # An answer recorded by an earlier process (or another worker) in this chat: the answer to rate is
    # looked up in the records, not in this process's memory.
    earlier = sample_index.assistant.answer("报销要在费用发生后多少天内提交？")
    answer_id = records.add_answer(earlier, channel="dingtalk", conversation_id="dingtalk:cid-old")
    fake.push(chatbot_message(fake, " 👎", conversation="cid-old", session="r1"))
    (thanks,) = fake.wait_posts(session="r1")
    assert "谢谢反馈" in thanks["text"]["content"]
    assert [(f.rating, f.channel) for f in records.feedback(answer_id)] == [("down", "dingtalk")]


# --- failures ------------------------------------------------------------------------------------

def test_refused_reply_ends_in_an_apology(dingtalk: RunningClient, fake: FakeDingTalk) -> None:
    fake.script.append((200, {"errcode": 130101, "errmsg": "send too fast, exceed 20 times per minute"}))
    fake.push(chatbot_message(fake, " 客户咨询多久内要答复？", session="e1"))
    answer, apology = fake.wait_posts(2, session="e1")
    assert answer["msgtype"] == "markdown"
    assert apology["msgtype"] == "text" and "抱歉" in apology["text"]["content"]
    assert "send too fast" in apology["text"]["content"] and apology["at"]["atUserIds"] == ["staff001"]


def test_missing_index_gets_an_apology_not_silence(sample_index: IndexedCorpus, fake: FakeDingTalk,
                                                   records: Records, tmp_path: Path) -> None:
    class NoIndex:
        prompts = sample_index.assistant.prompts

        def answer(self, question: str, history: list[Any]) -> Any:
            raise IndexNotBuilt(str(tmp_path / "empty"))

    running = run(fake, NoIndex(), records, tmp_path / "empty")
    try:
        fake.push(chatbot_message(fake, " 年假几天？", session="n1"))
        (post,) = fake.wait_posts(session="n1")
        assert "抱歉" in post["text"]["content"] and "not built" in post["text"]["content"]
        assert "Traceback" not in post["text"]["content"]
    finally:
        fake.disconnect()
        running.stop()


def test_wrong_client_secret_is_refused_and_named(sample_index: IndexedCorpus, fake: FakeDingTalk,
                                                  records: Records, monkeypatch: pytest.MonkeyPatch,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    settings = settings_for(sample_index.settings.data_dir, fake, secret="wrong-secret")
    # `rulebook dingtalk` stops at once with the reason instead of retrying forever
    monkeypatch.setattr("assistant.core.build_assistant", lambda _settings: sample_index.assistant)
    t0 = time.monotonic()
    with pytest.raises(ConfigError, match=r"HTTP 401.*authFailed.*DINGTALK_CLIENT_SECRET"):
        run_stream_mode(settings)
    assert time.monotonic() - t0 < 20.0  # returned at all: the SDK alone retries every ten seconds, forever
    assert fake.gateway_calls[-1][0] == 401
    assert fake.gateway_calls[-1][1]["clientSecret"] == "wrong-secret"

    # the client on its own (the SDK's retry loop) logs the same reason and never connects
    caplog.set_level(logging.ERROR, logger="assistant.adapters.dingtalk")
    running = RunningClient(create_dingtalk_client(settings, sample_index.assistant, records))
    try:
        deadline = time.monotonic() + 5
        while len(fake.gateway_calls) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        deadline = time.monotonic() + 5
        while "DINGTALK_CLIENT_SECRET" not in caplog.text and time.monotonic() < deadline:
            time.sleep(0.02)
        assert "DingTalk refused the Stream connection (HTTP 401" in caplog.text
        assert fake.connected == 0 and fake.acks == [] and fake.posted() == []
    finally:
        running.stop()


def test_gateway_address_is_per_client(fake: FakeDingTalk, records: Records, tmp_path: Path) -> None:
    import dingtalk_stream

    before = dingtalk_stream.DingTalkStreamClient.OPEN_CONNECTION_API
    client = create_dingtalk_client(settings_for(tmp_path, fake), object(), records)
    assert client.open_connection_api == fake.api_url + "/v1.0/gateway/connections/open"
    assert dingtalk_stream.DingTalkStreamClient.OPEN_CONNECTION_API == before  # nothing global changed
    assert isinstance(client.callback_handler_map[ChatbotMessage.TOPIC], dingtalk_stream.ChatbotHandler)
    connection = client.open_connection()
    assert connection is not None and connection["ticket"] == fake.ticket
    subscriptions = fake.gateway_calls[-1][1]["subscriptions"]
    assert subscriptions == [{"type": "CALLBACK", "topic": "/v1.0/im/bot/messages/get"}]
    client.callback_handler_map[ChatbotMessage.TOPIC].close()
