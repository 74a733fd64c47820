"""Clause history: what changed between two versions of the sample rulebook, and an earlier answer
reproduced with the clause text it quoted after the generation that served it is gone."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from assistant.adapters.cli import app as cli
from assistant.adapters.web import create_app, records_path
from assistant.changes import char_diff
from assistant.core import build_assistant
from assistant.effective import stated
from assistant.records import Records
from assistant.store import Layout
from ingest.pipeline import ingest

from .conftest import make_settings

QUESTION = "客户咨询多久内要答复？"
ADDED = "第三十二条　员工每年可以申请1天志愿服务假，须提前3个工作日报直属上级审批。本条自2027年1月1日起施行。"


def revise(rules: Path) -> None:
    """One clause edited, one added (with its own future date), one removed and the clauses after it
    renumbered, one document repealed."""
    costs = rules / "费用报销管理办法.txt"
    repealed = "自2026年2月1日起施行。本办法已废止，报销按财务部新发布的办法执行。"
    costs.write_text(costs.read_text(encoding="utf-8").replace("自2026年2月1日起施行。", repealed), encoding="utf-8")
    service = rules / "客户服务标准.md"
    text = service.read_text(encoding="utf-8")
    service.write_text(text.replace("一般咨询在24小时内答复", "一般咨询在12小时内答复", 1), encoding="utf-8")
    leave = rules / "考勤与休假制度.md"
    leave.write_text(leave.read_text(encoding="utf-8").rstrip() + "\n\n" + ADDED + "\n", encoding="utf-8")
    ops = rules / "运营管理规范.md"
    lines = ops.read_text(encoding="utf-8").splitlines()
    kept = [ln for ln in lines if not ln.startswith("第二十九条")]
    renumbered = {"第三十条": "第二十九条", "第三十一条": "第三十条", "第三十二条": "第三十一条"}
    out = []
    for ln in kept:
        for old, new in renumbered.items():
            if ln.startswith(old + " "):
                ln = new + ln[len(old):]
        out.append(ln)
    ops.write_text("\n".join(out) + "\n", encoding="utf-8")


def run(*args: str) -> dict:
    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_effective_dates_are_read_as_stated() -> None:
    assert stated("第三十一条　本制度由人力资源部负责解释，自2026年3月1日起施行。") == [("2026-03-01", False)]
    assert stated("本条自2027年1月1日起施行。") == [("2027-01-01", True)]
    assert stated("生效日期：2026-04-01") == [("2026-04-01", False)]
    assert stated("title: 加班管理办法\neffective: 2027-02-01\n---") == [("2027-02-01", False)]  # front matter
    assert stated("员工应当自费用发生之日起30日内提交报销申请。") == []
    assert stated("重大变更正式生效前，应当在测试环境试运行。") == []
    assert stated("修订日期：2026-06-01") == [("2026-06-01", False)]


def test_effective_on_publication_takes_the_stated_publication_date() -> None:
    from assistant.effective import effective_dates
    from assistant.schema import Clause

    def clause(cid: str, text: str) -> Clause:
        return Clause(clause_id=cid, source="a.md", document="差旅制度", label=cid, path=(cid,), text=text, ordinal=0,
                      content_hash="h")

    published = clause("前言", "2026年3月1日 总经理办公会审议通过并发布")
    closing = clause("第十条", "第十条 本制度自发布之日起执行。")
    assert effective_dates([published, closing]) == {"前言": "2026-03-01", "第十条": "2026-03-01"}
    assert effective_dates([closing]) == {}  # no publication date stated: unknown, not guessed


def test_char_diff_shows_the_change_with_a_little_context() -> None:
    assert char_diff("一般咨询在24小时内答复。", "一般咨询在12小时内答复。") == "一般咨询在[-24-]{+12+}小时内答复。"


@pytest.mark.slow
def test_changes_list_exactly_the_revision_and_audit_reproduces_an_old_answer(
        rulebook_copy: Path, warm_data_dir: Path) -> None:
    settings = make_settings(warm_data_dir)
    first = ingest(rulebook_copy, settings)
    records = Records(records_path(settings))
    before = build_assistant(settings).answer(QUESTION)
    assert before.grounded and "24小时" in before.citations[0].quote
    cited = before.to_dict()["citations"][0]
    assert cited["effective"] is None  # 客户服务标准 states no date
    answer_id = records.add_answer(before, channel="web", conversation_id=None)

    revise(rulebook_copy)
    second = ingest(rulebook_copy, settings)
    report = run("changes", "--data-dir", str(warm_data_dir), "--json")
    assert (report["since"], report["until"]) == (first.generation, second.generation)
    kinds = Counter(c["kind"] for c in report["changes"])
    assert kinds == {"modified": 2, "added": 1, "removed": 1, "moved": 3}, report["changes"]
    by_kind = {c["kind"]: c for c in report["changes"] if c["source"] != "费用报销管理办法.txt"}
    (repeal,) = [c for c in report["changes"] if c["source"] == "费用报销管理办法.txt"]
    assert repeal["kind"] == "modified" and "{+本办法已废止" in repeal["diff"]
    modified = by_kind["modified"]
    assert (modified["source"], modified["clause"]) == ("客户服务标准.md", "（一）咨询受理时限")
    assert "[-24-]{+12+}" in modified["diff"]
    added = by_kind["added"]
    assert added["clause"] == "第三十二条" and added["effective"] == "2027-01-01" and added["old_text"] is None
    removed = by_kind["removed"]
    assert (removed["source"], removed["clause"], removed["new_text"]) == ("运营管理规范.md", "第二十九条", None)
    moves = sorted((c["old_clause"], c["clause"]) for c in report["changes"] if c["kind"] == "moved")
    assert moves == [("第三十一条", "第三十条"), ("第三十二条", "第三十一条"), ("第三十条", "第二十九条")]
    assert all(c["source"] == c["old_source"] == "运营管理规范.md" for c in report["changes"] if c["kind"] == "moved")
    # The renumbered closing clause keeps the document's date for every clause of it.
    assert {c["effective"] for c in report["changes"] if c["kind"] == "moved"} == {"2026-03-15"}
    # "What changed in X?" is answered from the change log, citing the clauses as they read now.
    assistant = build_assistant(settings)
    import time

    after = assistant.answer(QUESTION)
    assert after.citations[0].updated == time.strftime("%Y-%m-%d") and "12小时" in after.citations[0].quote
    assert assistant.answer("年假可以留到明年用吗？").citations[0].updated is None  # unchanged since history began
    ops = assistant.answer("运营管理规范最近改了什么？")
    assert ops.grounded and ops.composer == "changes"
    assert "删除 第二十九条" in ops.answer and "移动 第三十条 → 第二十九条" in ops.answer
    assert {c.clause for c in ops.citations} == {"第二十九条", "第三十条", "第三十一条"}
    assert all(c.source == "运营管理规范.md" and c.quote for c in ops.citations)
    service = assistant.answer("客户服务标准有什么变化？")
    assert service.composer == "changes" and "[-24-]{+12+}" in service.answer
    assert service.citations[0].clause == "（一）咨询受理时限"
    assert assistant.answer("客户咨询多久内要答复？").composer != "changes"  # an ordinary question stays one
    # The repealed document no longer answers how things are, only how they were.
    today = assistant.answer("报销要在费用发生后多少天内提交？")
    assert all(c.source != "费用报销管理办法.txt" for c in today.citations)
    before_repeal = assistant.answer("以前的费用报销管理办法规定报销要在费用发生后多少天内提交？")
    assert before_repeal.citations and before_repeal.citations[0].source == "费用报销管理办法.txt"
    assert "已废止" in before_repeal.answer
    # Since the first generation by name gives the same.
    assert run("changes", "--since", first.generation, "--data-dir", str(warm_data_dir), "--json")["changes"] == \
        report["changes"]

    # Three more generations: the one that served the answer is removed from disk.
    readme = rulebook_copy / "员工行为准则.html"
    for k in range(3):
        readme.write_text(readme.read_text(encoding="utf-8") + f"\n<!-- {k} -->\n", encoding="utf-8")
        ingest(rulebook_copy, settings)
    assert not Layout(warm_data_dir).gen_dir(first.generation).exists()
    audit = run("audit", answer_id, "--data-dir", str(warm_data_dir), "--json")
    assert audit["question"] == QUESTION and audit["generation"] == first.generation
    (c,) = [x for x in audit["citations"] if x["clause_id"] == cited["clause_id"]]
    assert c["status"] == "changed" and "24小时" in c["text_then"] and "12小时" in c["current"]["text"]
    assert "[-24-]{+12+}" in c["diff"]
    # The same through the API.
    web = TestClient(create_app(settings, assistant=build_assistant(settings), records=records))
    assert web.get(f"/v1/answers/{answer_id}/audit").json()["citations"] == audit["citations"]
    assert web.get("/v1/answers/nope/audit").status_code == 404
    latest = web.get("/v1/changes").json()
    assert latest["changes"] == []  # the last ingest changed no clause
    assert Counter(c["kind"] for c in web.get("/v1/changes", params={"since": first.generation}).json()["changes"]) \
        == kinds
    assert web.get("/v1/changes", params={"since": "last tuesday"}).status_code == 422


@pytest.mark.slow
def test_a_rule_not_yet_in_force_is_quoted_with_its_date(rulebook_copy: Path, warm_data_dir: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    settings = make_settings(warm_data_dir)
    revise(rulebook_copy)
    ingest(rulebook_copy, settings)
    assistant = build_assistant(settings)
    answer = assistant.answer("志愿服务假怎么申请？")
    (c,) = [c for c in answer.citations if c.clause == "第三十二条"]
    assert c.effective == "2027-01-01"
    assert "第三十二条自2027年1月1日起施行，目前尚未生效" in answer.answer
    # Once the date has come, the same rule is simply the rule.
    import assistant.core as core

    monkeypatch.setattr(core, "_today", lambda: "2027-01-02")
    assert "尚未生效" not in assistant.answer("志愿服务假怎么申请？").answer


OLD_RULES = """# 运营管理办法（2023年版）

第一条　值班经理每班8小时，白班8:00至16:00，中班16:00至24:00，夜班0:00至8:00。

第二条　值班经理因故不能到岗的，应当提前48小时报运营部经理批准。
"""


@pytest.mark.slow
def test_a_repealed_document_answers_only_questions_about_the_past(rulebook_copy: Path,
                                                                   warm_data_dir: Path) -> None:
    # 运营管理规范 第三十二条: "2023年版《运营管理办法》同时废止" — and here is that document.
    (rulebook_copy / "运营管理办法2023.md").write_text(OLD_RULES, encoding="utf-8")
    settings = make_settings(warm_data_dir)
    ingest(rulebook_copy, settings)
    assistant = build_assistant(settings)
    now = assistant.answer("值班经理每班多长时间？")
    assert now.grounded and all(c.source != "运营管理办法2023.md" for c in now.citations)
    assert "12小时" in now.answer and "废止" not in now.answer
    then = assistant.answer("以前的运营管理办法规定值班经理每班多长时间？")
    assert then.grounded and then.citations[0].source == "运营管理办法2023.md"
    assert "注意：《运营管理办法（2023年版）》已废止（取代它的是：《澄川科技运营管理规范》）" in then.answer


def test_repeal_by_title_matches_the_same_title_only() -> None:
    from assistant.effective import superseded
    from assistant.schema import Clause

    def clause(source: str, document: str, text: str) -> Clause:
        return Clause(clause_id=source, source=source, document=document, label="第一条", path=("第一条",),
                      text=text, ordinal=0, content_hash="h")

    repeals = clause("new.md", "澄川科技运营管理规范", "本规范自2026年3月15日起施行，"
                     "2023年版《运营管理办法》同时废止。")
    old = clause("old.md", "运营管理办法（2023年版）", "x")
    assert superseded([repeals, old]) == {"old.md": "澄川科技运营管理规范"}
    # A regulation that repeals its own earlier edition does not repeal the law it implements.
    rules = clause("rules.md", "中华人民共和国著作权法实施条例",
                   "本条例自2002年9月15日起施行。1991年发布的《中华人民共和国著作权法实施条例》同时废止。")
    assert superseded([rules, clause("law.md", "中华人民共和国著作权法", "x")]) == {}
