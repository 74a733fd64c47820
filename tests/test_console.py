"""The owners' console behind RULEBOOK_ADMIN_KEYS: access, corrections that change the next answer,
usage figures, and documents uploaded or deleted through it (each one a background ingest)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from assistant.adapters.admin import COOKIE, SESSION_SECONDS, session_token
from assistant.adapters.web import create_app
from assistant.records import Records

from .conftest import IndexedCorpus, make_settings

ASK, ADMIN = "ask-key", "admin-key"
ADMIN_H = {"Authorization": f"Bearer {ADMIN}"}
ASK_H = {"Authorization": f"Bearer {ASK}"}
ADMIN_ROUTES = [("GET", "/v1/admin/questions"), ("GET", "/v1/admin/gaps"), ("GET", "/v1/admin/usage"),
                ("GET", "/v1/admin/documents"), ("GET", "/v1/admin/ingest"), ("GET", "/v1/admin/clauses?q=年假"),
                ("GET", "/v1/admin/curations"), ("GET", "/v1/admin/curations.jsonl"),
                ("POST", "/v1/admin/curations"), ("DELETE", "/v1/admin/curations/x"),
                ("PUT", "/v1/admin/documents/a.md"), ("DELETE", "/v1/admin/documents/a.md"),
                ("GET", "/admin/charts.js")]


@pytest.fixture
def private(rulebook_copy: Path, warm_data_dir: Path) -> tuple[Path, Path]:
    """A rules folder and a data folder of their own (corrections and uploads change them)."""
    from ingest.pipeline import ingest

    ingest(rulebook_copy, make_settings(warm_data_dir))
    return rulebook_copy, warm_data_dir


def console(data_dir: Path, **overrides: object) -> TestClient:
    settings = make_settings(data_dir, rate_limit_per_minute=0, api_keys=ASK, admin_keys=ADMIN, **overrides)
    return TestClient(create_app(settings, records=Records(data_dir / "records.sqlite")))


def call(web: TestClient, method: str, path: str, **kw: object):  # type: ignore[no-untyped-def]
    if method in ("POST", "PUT") and "json" not in kw and "content" not in kw:
        kw["json"] = {}
    return web.request(method, path, **kw)  # type: ignore[arg-type]


def test_the_console_is_off_without_admin_keys(sample_index: IndexedCorpus, tmp_path: Path) -> None:
    settings = make_settings(sample_index.settings.data_dir, api_keys=ASK)
    web = TestClient(create_app(settings, assistant=sample_index.assistant, records=Records(tmp_path / "r.sqlite")))
    assert web.get("/admin").status_code == 404
    assert web.post("/admin/login", data={"key": ""}).status_code == 404
    for method, path in ADMIN_ROUTES:
        assert call(web, method, path, headers=ASK_H).status_code == 404, path


def test_only_an_admin_key_or_its_session_opens_it(sample_index: IndexedCorpus, tmp_path: Path) -> None:
    settings = make_settings(sample_index.settings.data_dir, api_keys=ASK, admin_keys=ADMIN, rate_limit_per_minute=0)
    web = TestClient(create_app(settings, assistant=sample_index.assistant, records=Records(tmp_path / "r.sqlite")))
    page = web.get("/admin")
    assert page.status_code == 401 and 'id="login"' in page.text and "LOGIN = true" in page.text
    for headers in ({}, ASK_H, {"Authorization": "Bearer admin-key-but-longer"}):
        for method, path in ADMIN_ROUTES:
            assert call(web, method, path, headers=headers).status_code == 401, (path, headers)
        assert web.get("/admin", headers=headers).status_code == 401

    wrong = web.post("/admin/login", data={"key": ASK}, follow_redirects=False)
    assert wrong.status_code == 401 and COOKIE not in wrong.cookies
    ok = web.post("/admin/login", data={"key": ADMIN}, follow_redirects=False)
    assert ok.status_code == 303 and ok.headers["location"] == "/admin"
    cookie = ok.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and ADMIN not in cookie.split(";")[0]
    page = web.get("/admin")
    assert page.status_code == 200 and "LOGIN = false" in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert web.get("/v1/admin/curations").status_code == 200  # reading with the session
    # Changing anything with the session needs the console's header (another site cannot send it).
    body = {"question": "x", "kind": "not_covered"}
    assert web.post("/v1/admin/curations", json=body).status_code == 403
    assert web.get("/admin/charts.js").headers["content-type"].startswith("text/javascript")
    assert web.get("/v1/admin/questions").headers["cache-control"] == "no-store"
    web.post("/admin/logout")
    assert web.get("/admin").status_code == 401
    for forged in (session_token(ASK),  # a session made up from an ask key
                   session_token(ADMIN, int(time.time()) - SESSION_SECONDS - 60),  # an expired one
                   "1." + "0" * 64, "x" * 500):  # and garbage: a 401, never a server error
        web.cookies.set(COOKIE, forged)
        assert web.get("/v1/admin/curations").status_code == 401, forged
        assert web.get("/admin").status_code == 401, forged
    web.cookies.clear()
    raw = [(b"cookie", f"{COOKIE}=é1.{'0' * 63}".encode())]  # bytes outside ASCII, as a client may send
    assert web.get("/v1/admin/curations", headers=raw).status_code == 401
    assert web.get("/admin", headers=raw).status_code == 401
    web.cookies.set(COOKIE, session_token(ADMIN, int(time.time()) - 60))
    assert web.get("/v1/admin/curations").status_code == 200


def test_a_correction_answers_its_paraphrases_and_nothing_else(private: tuple[Path, Path]) -> None:
    _, data = private
    web = console(data)

    def ask(q: str) -> dict:
        r = web.post("/v1/ask", json={"question": q}, headers=ASK_H)
        assert r.status_code == 200
        return r.json()

    wrong = ask("我在财务部，能不能每天十点再到公司？")  # answered from the expense rules today
    assert {c["source"] for c in wrong["citations"]} != {"考勤与休假制度.md"} and "curated" not in wrong
    found = web.get("/v1/admin/clauses", params={"q": "弹性上班"}, headers=ADMIN_H).json()["items"]
    flex = next(c for c in found if c["source"] == "考勤与休假制度.md" and c["clause"] == "第五条")
    by_label = web.get("/v1/admin/clauses", params={"q": "考勤与休假制度.md 第五条"}, headers=ADMIN_H).json()
    assert by_label["items"][0]["clause_id"] == flex["clause_id"]

    made = web.post("/v1/admin/curations", headers=ADMIN_H, json={
        "question": wrong["question"], "kind": "clauses", "clause_ids": [flex["clause_id"]],
        "answer_id": wrong["answer_id"]})
    assert made.status_code == 201, made.text
    again = ask("我在财务部，能不能每天十点再到公司？")
    assert again["grounded"]
    assert [(c["source"], c["clause"]) for c in again["citations"]] == [("考勤与休假制度.md", "第五条")]
    assert again["curated"]["id"] == made.json()["id"] and again["retrieved"][0]["clause_id"] == flex["clause_id"]
    assert set(again["curated"]) == {"id", "kind", "similarity"}  # not the corrected question's words
    assert "10:00" in again["answer"]
    paraphrase = ask("财务这边的同事可以上午10点才打卡吗？")  # worded differently, same question
    assert paraphrase.get("curated", {}).get("id") == made.json()["id"]
    assert paraphrase["citations"][0]["clause"] == "第五条"
    for unrelated in ("出差住酒店每晚最多报销多少？", "客户咨询多久内要答复？", "病假一年最多能请几天？"):
        assert "curated" not in ask(unrelated), unrelated

    # Not covered, with whom to ask: paraphrases are refused naming that contact.
    nc = web.post("/v1/admin/curations", headers=ADMIN_H, json={
        "question": "公司有没有上下班的班车", "kind": "not_covered", "contact": "行政部 admin@chengchuan.example"})
    assert nc.status_code == 201
    refused = ask("公司有班车吗")
    assert not refused["grounded"] and "行政部 admin@chengchuan.example" in refused["answer"]
    assert refused["curated"]["kind"] == "not_covered"

    # Confirming an answer keeps the clauses it cited.
    good = ask("客户咨询多久内要答复？")
    confirmed = web.post("/v1/admin/curations", headers=ADMIN_H, json={
        "question": good["question"], "kind": "confirmed", "answer_id": good["answer_id"]}).json()
    assert [c["clause_id"] for c in confirmed["clauses"]] == [c["clause_id"] for c in good["citations"]]

    # Clear refusals for what cannot be stored.
    assert web.post("/v1/admin/curations", headers=ADMIN_H, json={
        "question": "x", "kind": "clauses", "clause_ids": ["no-such-clause"]}).status_code == 422
    no_clause = {"question": "x", "kind": "clauses"}
    assert web.post("/v1/admin/curations", headers=ADMIN_H, json=no_clause).status_code == 422

    # Exported as eval cases, in the format of eval/cases/.
    lines = web.get("/v1/admin/curations.jsonl", headers=ADMIN_H).text.splitlines()
    cases = [json.loads(line) for line in lines]
    assert len(cases) == 3
    flex_case = next(c for c in cases if c["question"] == wrong["question"])
    assert flex_case["expected"] == [{"source": "考勤与休假制度.md", "clause": "第五条"}] and flex_case["answerable"]
    assert next(c for c in cases if c["question"] == "公司有没有上下班的班车")["answerable"] is False

    # Deleted: the next answer is the pipeline's own again.
    assert web.delete(f"/v1/admin/curations/{made.json()['id']}", headers=ADMIN_H).status_code == 200
    assert "curated" not in ask("财务这边的同事可以上午10点才打卡吗？")
    assert web.delete(f"/v1/admin/curations/{made.json()['id']}", headers=ADMIN_H).status_code == 404


def test_usage_figures_and_csv(private: tuple[Path, Path]) -> None:
    _, data = private
    web = console(data)
    ids = []
    for q in ("客户咨询多久内要答复？", "客户咨询多久内要答复？", "食堂几点开饭？"):
        ids.append(web.post("/v1/ask", json={"question": q}, headers=ASK_H).json()["answer_id"])
    web.post("/v1/feedback", json={"answer_id": ids[0], "rating": "up"}, headers=ASK_H)
    web.post("/v1/feedback", json={"answer_id": ids[2], "rating": "down"}, headers=ASK_H)
    usage = web.get("/v1/admin/usage", headers=ADMIN_H).json()
    today = time.strftime("%Y-%m-%d")
    assert usage["totals"]["questions"] == 3 and usage["totals"]["refused"] == 1
    assert usage["totals"]["refusal_rate"] == pytest.approx(1 / 3, abs=1e-3)
    assert (usage["totals"]["up"], usage["totals"]["down"]) == (1, 1)
    assert usage["days"][0]["day"] == today and usage["days"][0]["questions"] == 3
    assert 0 < usage["totals"]["p50_ms"] <= usage["totals"]["p95_ms"]
    assert usage["top_documents"][0] == {"source": "客户服务标准.md", "answers": 2}
    assert usage["top_clauses"][0]["source"] == "客户服务标准.md" and usage["top_clauses"][0]["citations"] >= 2
    csv_text = web.get("/v1/admin/usage", params={"format": "csv"}, headers=ADMIN_H).text.splitlines()
    assert csv_text[0] == "day,questions,refused,refusal_rate,up,down,p50_ms,p95_ms"
    assert csv_text[1].startswith(f"{today},3,1,")
    later = web.get("/v1/admin/usage", params={"since": "2999-01-01"}, headers=ADMIN_H).json()
    assert later["totals"]["questions"] == 0


def wait_for_ingest(web: TestClient, seconds: float = 120) -> dict:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        status = web.get("/v1/admin/ingest", headers=ADMIN_H).json()
        if status["state"] in ("done", "failed"):
            return status
        time.sleep(0.2)
    raise AssertionError("the console's ingest did not finish")


def test_documents_uploaded_revised_and_deleted(private: tuple[Path, Path]) -> None:
    rules, data = private
    web = console(data)
    listed = web.get("/v1/admin/documents", headers=ADMIN_H).json()
    names = [d["source"] for d in listed["items"]]
    assert "考勤与休假制度.md" in names
    row = next(d for d in listed["items"] if d["source"] == "考勤与休假制度.md")
    assert row["clauses"] > 10 and row["title"] and row["last_changed"] is not None

    new = "# 班车管理办法\n\n第一条 公司每个工作日早上8:00在地铁滨江站发出员工班车，发车前5分钟停止上车。\n"
    r = web.put("/v1/admin/documents/班车管理办法.md", content=new.encode(), headers=ADMIN_H)
    assert r.status_code == 202, r.text
    assert r.json()["replaced"] is False and r.json()["title"] == "班车管理办法"
    status = wait_for_ingest(web)
    assert status["state"] == "done" and status["report"]["added"] == ["班车管理办法.md"]
    assert (rules / "班车管理办法.md").read_text(encoding="utf-8") == new
    answer = web.post("/v1/ask", json={"question": "班车几点发车？"}, headers=ASK_H).json()
    assert answer["grounded"] and answer["citations"][0]["source"] == "班车管理办法.md" and "8:00" in answer["answer"]

    revised = new.replace("8:00", "7:40")
    assert web.put("/v1/admin/documents/班车管理办法.md", content=revised.encode(), headers=ADMIN_H).json()["replaced"]
    assert wait_for_ingest(web)["report"]["updated"] == ["班车管理办法.md"]
    assert "7:40" in web.post("/v1/ask", json={"question": "班车几点发车？"}, headers=ASK_H).json()["answer"]

    # While another ingest (the command line's, another worker's) holds the data folder, the
    # console's waits for it instead of failing, and then indexes the change.
    from assistant.store import Layout
    from ingest.pipeline import _writer_lock

    with _writer_lock(Layout(data)):
        assert web.delete("/v1/admin/documents/班车管理办法.md", headers=ADMIN_H).status_code == 202
        deadline = time.monotonic() + 30
        while web.get("/v1/admin/ingest", headers=ADMIN_H).json()["state"] != "waiting":
            assert time.monotonic() < deadline, "the console's ingest did not wait for the other one"
            time.sleep(0.1)
    assert wait_for_ingest(web)["report"]["removed"] == ["班车管理办法.md"]
    assert not (rules / "班车管理办法.md").exists()
    listed = web.get("/v1/admin/documents", headers=ADMIN_H).json()["items"]
    assert "班车管理办法.md" not in [d["source"] for d in listed]


def test_uploads_refuse_tricks_oversize_and_unsupported_files(private: tuple[Path, Path], tmp_path: Path) -> None:
    rules, data = private
    web = console(data, max_file_mb=0.01)
    body = "# 标题\n\n第一条 内容。\n".encode()
    for name, status in (("..%2F..%2Fescape.md", 422), (".hidden.md", 422), ("a%2F..%2F..%2Fb.md", 422),
                         ("%2Fetc%2Fx.md", 422), ("tool.exe", 415), ("notes", 415)):
        r = web.put(f"/v1/admin/documents/{name}", content=body, headers=ADMIN_H)
        assert r.status_code == status, (name, r.status_code, r.text)
        assert r.json()["error"]["message"]
    big = web.put("/v1/admin/documents/big.md", content=b"x" * 20_000, headers=ADMIN_H)
    assert big.status_code == 413 and "limit" in big.json()["error"]["message"]
    broken = web.put("/v1/admin/documents/broken.docx", content=b"not a zip at all", headers=ADMIN_H)
    assert broken.status_code == 422 and "cannot be used" in broken.json()["error"]["message"]
    outside = tmp_path / "secret.md"
    outside.write_text("# 秘密\n\n第一条 不该出现。\n", encoding="utf-8")
    (rules / "linked.md").symlink_to(outside)
    linked = web.put("/v1/admin/documents/linked.md", content=body, headers=ADMIN_H)
    assert linked.status_code == 409 and outside.read_text(encoding="utf-8").startswith("# 秘密")
    assert web.delete("/v1/admin/documents/linked.md", headers=ADMIN_H).status_code == 404
    # A linked folder inside the rules folder leads outside it: neither upload nor delete goes there.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "keep.md").write_text("# 留着\n", encoding="utf-8")
    (rules / "shared").symlink_to(elsewhere, target_is_directory=True)
    assert web.delete("/v1/admin/documents/shared/keep.md", headers=ADMIN_H).status_code == 404
    assert web.put("/v1/admin/documents/shared/new.md", content=body, headers=ADMIN_H).status_code == 409
    assert web.put("/v1/admin/documents/shared/sub/new.md", content=body, headers=ADMIN_H).status_code == 409
    assert sorted(p.name for p in elsewhere.iterdir()) == ["keep.md"]
    # A file where a folder would go, a name too long for the file system, a file that is not a rule.
    assert web.put("/v1/admin/documents/考勤与休假制度.md/x.md", content=body, headers=ADMIN_H).status_code == 409
    assert web.put("/v1/admin/documents/" + "长" * 90 + ".md", content=body, headers=ADMIN_H).status_code == 422
    (rules / "notes.csv").write_text("a,b\n", encoding="utf-8")
    assert web.delete("/v1/admin/documents/notes.csv", headers=ADMIN_H).status_code == 404
    assert (rules / "notes.csv").exists()
    assert sorted(p.name for p in rules.iterdir() if p.name.startswith(".")) == []  # nothing staged left behind
    assert not (data.parent / "escape.md").exists() and not (rules.parent / "b.md").exists()
    assert web.get("/v1/admin/ingest", headers=ADMIN_H).json()["state"] == "idle"  # no ingest was started


def test_curate_learn_and_eval_on_the_command_line(private: tuple[Path, Path], tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from assistant.adapters.cli import app

    _, data = private
    runner = CliRunner()
    run = lambda *args: runner.invoke(app, [*args, "--data-dir", str(data)])  # noqa: E731
    made = run("curate", "我在财务部，能不能每天十点再到公司？", "--clause", "考勤与休假制度.md 第五条", "--json")
    assert made.exit_code == 0, made.output
    assert json.loads(made.output)["clauses"][0]["clause"] == "第五条"
    assert run("curate", "公司有班车吗", "--not-covered", "--contact", "行政部").exit_code == 0
    bad = run("curate", "x", "--clause", "考勤与休假制度.md 第九十九条")
    assert bad.exit_code == 1 and "no clause" in bad.output
    assert run("curate", "x").exit_code == 2
    listed = json.loads(run("curate", "--list", "--json").output)["items"]
    assert [c["kind"] for c in listed] == ["not_covered", "clauses"]
    exported = tmp_path / "curated.jsonl"
    assert run("curate", "--export", str(exported)).exit_code == 0
    cases = [json.loads(line) for line in exported.read_text(encoding="utf-8").splitlines()]
    assert [c["answerable"] for c in cases] == [True, False]

    evaluated = run("eval", "--curated", "--json")
    assert evaluated.exit_code == 0, evaluated.output
    metrics = json.loads(evaluated.output)["metrics"]["curated.jsonl"]
    assert metrics["cases"] == 2 and metrics["any_expected_cited"] == 1.0 and metrics["refusal_recall"] == 1.0

    learned = run("learn", "--json", "--no-adapter")  # the corrections alone are pairs to learn from
    assert learned.exit_code == 0, learned.output
    assert json.loads(learned.output)["learned_pairs"] == 1

    # A revision that removes the corrected clause: the regression set says so.
    from ingest.pipeline import ingest

    rules, _ = private
    attendance = rules / "考勤与休假制度.md"
    kept = [line for line in attendance.read_text(encoding="utf-8").splitlines() if not line.startswith("第五条")]
    attendance.write_text("\n".join(kept) + "\n", encoding="utf-8")
    ingest(rules, make_settings(data))
    broken = json.loads(run("eval", "--curated", "--json").output)["metrics"]["curated.jsonl"]
    assert broken["any_expected_cited"] == 0.0 and broken["refusal_recall"] == 1.0

