"""HTTP API: every route, every error, records that survive restarts, ingest while serving."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from assistant.adapters.web import create_app, records_path
from assistant.core import build_assistant
from assistant.records import Records
from ingest.pipeline import ingest

from .conftest import IndexedCorpus, make_settings


@pytest.fixture
def client(sample_index: IndexedCorpus, tmp_path: Path) -> TestClient:
    settings = make_settings(sample_index.settings.data_dir, rate_limit_per_minute=0)
    app = create_app(settings, assistant=sample_index.assistant, records=Records(tmp_path / "records.sqlite"))
    return TestClient(app)


def sse_events(text: str) -> list[tuple[str, dict]]:
    out = []
    for block in text.strip().split("\n\n"):
        event = next(line[7:] for line in block.splitlines() if line.startswith("event: "))
        data = next(line[6:] for line in block.splitlines() if line.startswith("data: "))
        out.append((event, json.loads(data)))
    return out


def test_ask_returns_the_answer_contract_and_records_it(client: TestClient) -> None:
    r = client.post("/v1/ask", json={"question": "客户咨询多久内要答复？"})
    assert r.status_code == 200
    d = r.json()
    assert {"question", "grounded", "answer", "citations", "retrieved", "timings_ms", "answer_id",
            "conversation_id"} <= set(d)
    assert d["grounded"] and d["citations"][0]["clause"] == "（一）咨询受理时限"
    records: Records = client.app.state.records
    (cited,) = records.citations(d["answer_id"])
    assert cited["clause_id"] == d["citations"][0]["clause_id"] and len(cited["content_hash"]) == 16
    assert cited["quote"] == d["citations"][0]["quote"]


def test_conversation_carries_follow_ups(client: TestClient) -> None:
    first = client.post("/v1/ask", json={"question": "出差住酒店每晚最多能报销多少钱？"}).json()
    second = client.post("/v1/ask", json={"question": "那成都呢？",
                                          "conversation_id": first["conversation_id"]}).json()
    assert second["conversation_id"] == first["conversation_id"]
    assert second["grounded"] and second["citations"][0]["clause"] == "（三）差旅住宿标准"


def test_stream_sends_retrieval_pieces_citations_done(client: TestClient) -> None:
    r = client.post("/v1/ask/stream", json={"question": "系统故障多长时间内必须恢复？"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    events = sse_events(r.text)
    names = [e for e, _ in events]
    assert names[0] == "retrieval" and names[-2:] == ["citations", "done"] and "delta" in names
    text = "".join(d["text"] for e, d in events if e == "delta")
    done = events[-1][1]
    assert text == done["answer"] and done["answer_id"] and done["citations"]


def test_clause_with_neighbours(client: TestClient) -> None:
    d = client.post("/v1/ask", json={"question": "系统故障多长时间内必须恢复？"}).json()
    clause_id = d["citations"][0]["clause_id"]
    c = client.get(f"/v1/clauses/{clause_id}").json()
    assert c["clause"] == "第六条" and c["source"] == "信息系统故障与应急预案.docx"
    assert d["citations"][0]["quote"] in c["text"]
    assert c["previous"]["clause"] == "第五条" and c["next"]["clause"] == "第七条"
    assert c["path"][-1] == "第六条" and c["document"]


def test_feedback_is_stored(client: TestClient) -> None:
    d = client.post("/v1/ask", json={"question": "年假可以留到明年用吗？"}).json()
    r = client.post("/v1/feedback", json={"answer_id": d["answer_id"], "rating": "down", "comment": "不够清楚"})
    assert r.status_code == 200 and r.json() == {"ok": True}
    (row,) = client.app.state.records.feedback(d["answer_id"])
    assert (row.rating, row.comment, row.channel) == ("down", "不够清楚", "web")


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "code"),
    [
        ("post", "/v1/ask", {"question": ""}, 422, "empty_question"),
        ("post", "/v1/ask", {"question": "   \n "}, 422, "empty_question"),
        ("post", "/v1/ask", {"question": "年" * 501}, 422, "question_too_long"),
        ("post", "/v1/ask", {}, 422, "invalid_request"),
        ("post", "/v1/ask", "{not json", 400, "malformed_json"),
        ("post", "/v1/ask/stream", {"question": " "}, 422, "empty_question"),
        ("get", "/v1/clauses/no-such-clause", None, 404, "unknown_clause"),
        ("post", "/v1/feedback", {"answer_id": "nope", "rating": "up"}, 404, "unknown_answer"),
        ("post", "/v1/feedback", {"answer_id": "nope", "rating": "meh"}, 422, "invalid_request"),
    ],
)
def test_bad_input_gets_a_clear_json_error(client: TestClient, method: str, path: str, body: object,
                                           status: int, code: str) -> None:
    if isinstance(body, str):
        r = client.post(path, content=body, headers={"content-type": "application/json"})
    elif method == "post":
        r = client.post(path, json=body)
    else:
        r = client.get(path)
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["code"] == code and err["message"] and "Traceback" not in r.text


def test_health_and_readiness(client: TestClient, tmp_path: Path) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["status"] == "ready"
    empty = make_settings(tmp_path / "empty")
    cold = TestClient(create_app(empty, assistant=build_assistant(empty), records=Records(tmp_path / "r.sqlite")))
    r = cold.get("/readyz")
    assert r.status_code == 503 and "rulebook ingest" in r.json()["detail"]
    r = cold.post("/v1/ask", json={"question": "年假几天？"})
    assert r.status_code == 503 and r.json()["error"]["code"] == "not_ready"


def test_api_keys(sample_index: IndexedCorpus, tmp_path: Path) -> None:
    settings = make_settings(sample_index.settings.data_dir, api_keys="k-one, k-two", rate_limit_per_minute=0)
    c = TestClient(create_app(settings, assistant=sample_index.assistant, records=Records(tmp_path / "r.sqlite")))
    assert c.post("/v1/ask", json={"question": "年假几天？"}).status_code == 401
    bad = c.post("/v1/ask", json={"question": "年假几天？"}, headers={"Authorization": "Bearer wrong"})
    assert bad.status_code == 401 and bad.headers["www-authenticate"] == "Bearer"
    assert c.get("/v1/clauses/x", headers={"Authorization": "Bearer wrong"}).status_code == 401
    ok = c.post("/v1/ask", json={"question": "年假几天？"}, headers={"Authorization": "Bearer k-two"})
    assert ok.status_code == 200
    assert c.get("/healthz").status_code == 200  # probes stay open
    assert "const AUTH_REQUIRED = true;" in c.get("/").text


def test_rate_limit_answers_429_with_retry_after(sample_index: IndexedCorpus, tmp_path: Path) -> None:
    settings = make_settings(sample_index.settings.data_dir, rate_limit_per_minute=2)
    c = TestClient(create_app(settings, assistant=sample_index.assistant, records=Records(tmp_path / "r.sqlite")))
    codes = [c.post("/v1/ask", json={"question": "年假几天？"}).status_code for _ in range(3)]
    assert codes == [200, 200, 429]
    r = c.post("/v1/ask", json={"question": "年假几天？"})
    assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
    assert r.json()["error"]["code"] == "rate_limited"


def test_records_survive_a_restart(sample_index: IndexedCorpus, tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "data", rate_limit_per_minute=0)
    first = TestClient(create_app(settings, assistant=sample_index.assistant))
    answer_id = first.post("/v1/ask", json={"question": "客户咨询多久内要答复？"}).json()["answer_id"]
    first.app.state.records.close()
    again = TestClient(create_app(settings, assistant=sample_index.assistant))
    assert again.post("/v1/feedback", json={"answer_id": answer_id, "rating": "up"}).status_code == 200
    assert Records(records_path(settings)).citations(answer_id)[0]["clause"] == "（一）咨询受理时限"


def test_requests_keep_succeeding_during_ingest(rulebook_copy: Path, warm_data_dir: Path) -> None:
    settings = make_settings(warm_data_dir, rate_limit_per_minute=0)
    ingest(rulebook_copy, settings)
    c = TestClient(create_app(settings))
    before = c.post("/v1/ask", json={"question": "停车费每月多少钱？"}).json()
    assert "停车规定.md" not in {x["source"] for x in before["retrieved"]}
    (rulebook_copy / "停车规定.md").write_text(
        "# 停车规定\n第一条 员工车辆停放在地下二层员工车位，每月停车费300元。\n", "utf-8")
    for i in range(12):  # new text to embed, so that the ingest takes a few seconds
        (rulebook_copy / f"附加规定{i}.md").write_text(
            f"# 附加规定{i}\n" + "".join(f"第{n}条 第{i}号附加规定的第{n}项要求，编号{i * 100 + k}。\n"
                                        for k, n in enumerate("一二三四五六七八九十")), "utf-8")
    statuses: list[int] = []
    stop = threading.Event()

    def hammer() -> None:
        while not stop.is_set():
            statuses.append(c.post("/v1/ask", json={"question": "客户咨询多久内要答复？"}).status_code)

    worker = threading.Thread(target=hammer)
    worker.start()
    try:
        report = ingest(rulebook_copy, settings)
    finally:
        stop.set()
        worker.join()
    assert report.changed and len(statuses) >= 3
    assert set(statuses) == {200}
    after = c.post("/v1/ask", json={"question": "停车费每月多少钱？"}).json()
    assert after["grounded"] and after["citations"][0]["source"] == "停车规定.md"


def test_openapi_documents_every_route(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/v1/ask", "/v1/ask/stream", "/v1/clauses/{clause_id}", "/v1/feedback", "/healthz", "/readyz"} <= set(paths)
