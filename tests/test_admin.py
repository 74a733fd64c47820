"""The owners' admin API: recorded questions with filters, and knowledge gaps grouped by meaning,
behind admin keys that the ask keys never open."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from assistant.adapters.web import create_app
from assistant.records import Records

from .conftest import IndexedCorpus, make_settings

ASK, ADMIN = "ask-key", "admin-key"


def client(sample_index: IndexedCorpus, tmp_path: Path, **overrides: object) -> TestClient:
    settings = make_settings(sample_index.settings.data_dir, rate_limit_per_minute=0, **overrides)
    return TestClient(create_app(settings, assistant=sample_index.assistant,
                                 records=Records(tmp_path / "records.sqlite")))


def test_without_admin_keys_the_console_is_off(sample_index: IndexedCorpus, tmp_path: Path) -> None:
    web = client(sample_index, tmp_path, api_keys=ASK)
    for path in ("/v1/admin/questions", "/v1/admin/gaps"):
        assert web.get(path, headers={"Authorization": f"Bearer {ASK}"}).status_code == 404


def test_questions_and_gaps_for_the_owners(sample_index: IndexedCorpus, tmp_path: Path) -> None:
    web = client(sample_index, tmp_path, api_keys=ASK, admin_keys=ADMIN)
    ask_h, admin_h = {"Authorization": f"Bearer {ASK}"}, {"Authorization": f"Bearer {ADMIN}"}
    assert web.get("/v1/admin/questions").status_code == 401
    assert web.get("/v1/admin/questions", headers=ask_h).status_code == 401  # an ask key never opens it
    assert web.post("/v1/ask", json={"question": "x"}, headers=admin_h).status_code == 401  # nor the reverse
    asked = {}
    for q in ("客户咨询多久内要答复？", "食堂几点开饭？", "食堂什么时候开门吃饭？", "停车位怎么申请？",
              "公司停车场怎么申请车位？", "出差住酒店每晚最多报销多少？"):
        r = web.post("/v1/ask", json={"question": q}, headers=ask_h)
        assert r.status_code == 200
        asked[q] = r.json()
    assert not asked["食堂几点开饭？"]["grounded"] and asked["客户咨询多久内要答复？"]["grounded"]
    hotel = asked["出差住酒店每晚最多报销多少？"]["answer_id"]
    assert web.post("/v1/feedback", json={"answer_id": hotel, "rating": "down"}, headers=ask_h).status_code == 200

    everything = web.get("/v1/admin/questions", headers=admin_h).json()
    assert [i["question"] for i in everything["items"]] == list(reversed(asked))  # newest first
    assert everything["next"] is None
    first = everything["items"][-1]
    assert set(first) >= {"answer_id", "question", "grounded", "citations", "feedback", "channel", "created_at"}
    assert first["channel"] == "web" and first["citations"] == asked["客户咨询多久内要答复？"]["citations"]
    refused = web.get("/v1/admin/questions", params={"refused": "true"}, headers=admin_h).json()["items"]
    assert {i["question"] for i in refused} == {q for q, a in asked.items() if not a["grounded"]}
    down = web.get("/v1/admin/questions", params={"down": "true"}, headers=admin_h).json()["items"]
    assert [(i["answer_id"], i["feedback"][0]["rating"]) for i in down] == [(hotel, "down")]
    text = web.get("/v1/admin/questions", params={"q": "食堂"}, headers=admin_h).json()["items"]
    assert {i["question"] for i in text} == {"食堂几点开饭？", "食堂什么时候开门吃饭？"}
    by_doc = web.get("/v1/admin/questions", params={"document": "客户服务标准.md"}, headers=admin_h).json()
    assert [i["question"] for i in by_doc["items"]] == ["客户咨询多久内要答复？"]
    page = web.get("/v1/admin/questions", params={"limit": 4}, headers=admin_h).json()
    assert len(page["items"]) == 4 and page["next"] == 4
    rest = web.get("/v1/admin/questions", params={"limit": 4, "offset": 4}, headers=admin_h).json()
    assert len(rest["items"]) == 2 and rest["next"] is None
    assert web.get("/v1/admin/questions", params={"since": "yesterday"}, headers=admin_h).status_code == 422

    gaps = web.get("/v1/admin/gaps", headers=admin_h).json()
    groups = [sorted(g["questions"]) for g in gaps["groups"]]
    assert sorted(["食堂几点开饭？", "食堂什么时候开门吃饭？"]) in groups  # paraphrases land together
    assert ["出差住酒店每晚最多报销多少？"] in groups  # the 👎 answer is a gap of its own
    assert all(len(g) < 4 for g in groups)  # unrelated questions are not lumped together
    assert gaps["groups"][0]["size"] >= gaps["groups"][-1]["size"]


def test_records_and_gaps_on_the_command_line(sample_index: IndexedCorpus, tmp_path: Path) -> None:
    import csv
    import io
    import json

    from typer.testing import CliRunner

    from assistant.adapters.cli import app as cli

    data = tmp_path / "data"
    data.mkdir()
    store = Records(data / "records.sqlite")
    for q in ("客户咨询多久内要答复？", "食堂几点开饭？", "食堂几点开门？"):
        store.add_answer(sample_index.assistant.answer(q), channel="slack", conversation_id=None)
    store.close()
    runner = CliRunner()
    result = runner.invoke(cli, ["records", "--refused", "--json", "--data-dir", str(data)])
    assert result.exit_code == 0, result.output
    assert {i["question"] for i in json.loads(result.output)["items"]} == {"食堂几点开饭？", "食堂几点开门？"}
    result = runner.invoke(cli, ["records", "--csv", "--data-dir", str(data)])
    rows = list(csv.reader(io.StringIO(result.output)))
    assert rows[0][:4] == ["created_at", "channel", "question", "grounded"] and len(rows) == 4
    assert rows[-1][1:3] == ["slack", "客户咨询多久内要答复？"]
    result = runner.invoke(cli, ["gaps", "--json", "--data-dir", str(data)])
    assert result.exit_code == 0, result.output
    groups = json.loads(result.output)["groups"]
    assert [sorted(g["questions"]) for g in groups] == [sorted(["食堂几点开饭？", "食堂几点开门？"])]
