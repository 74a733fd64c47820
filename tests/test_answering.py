"""Answers on the sample rulebook: the right clause, verified quotes, refusals, the JSON contract."""

from __future__ import annotations

import pytest

from assistant.answering import Draft, verify_citations
from assistant.followup import is_follow_up, standalone_question
from assistant.schema import Citation, Turn
from assistant.text import is_verbatim, normalise

from .conftest import IndexedCorpus


@pytest.mark.parametrize(
    ("question", "source", "label", "fact"),
    [
        ("客户咨询多久内要答复？", "客户服务标准.md", "（一）咨询受理时限", "24小时"),
        ("系统出故障了多久必须恢复？", "信息系统故障与应急预案.docx", "第六条", "1小时"),
        ("报销要在费用发生后多少天内提交？", "费用报销管理办法.txt", "二、报销时限", "30日"),
        ("How many days of annual leave do I get after 5 years?", "考勤与休假制度.md", "第十五条", "10天"),
    ],
)
def test_answers_cite_the_clause_and_quote_it(sample_index: IndexedCorpus, question: str,
                                              source: str, label: str, fact: str) -> None:
    answer = sample_index.assistant.answer(question)
    assert answer.grounded, answer.answer
    first = answer.citations[0]
    assert (first.source, first.clause) == (source, label)
    clause = next(h.clause for h in answer.retrieved if h.clause.clause_id == first.clause_id)
    assert is_verbatim(first.quote, clause.text)
    assert fact in normalise(answer.answer)
    assert f"[{first.n}]" in answer.answer


@pytest.mark.parametrize("question", ["你好", "hello", "谢谢！", "今天杭州天气怎么样？",
                                      "推荐一只明年能涨的股票", "How do I cook fried rice?",
                                      # thanks and acknowledgements whose words a rule also uses
                                      # (办公用品, 收到礼品)
                                      "哈哈谢了 你真好用", "好的 收到", "thanks, you're great"])
def test_off_topic_and_small_talk_are_refused_with_a_contact(sample_index: IndexedCorpus,
                                                             question: str) -> None:
    answer = sample_index.assistant.answer(question)
    assert not answer.grounded
    assert answer.citations == ()
    assert sample_index.settings.contact in answer.answer
    assert len(answer.retrieved) >= 10  # a refusal still lists what was found


def test_answer_json_contract(sample_index: IndexedCorpus) -> None:
    d = sample_index.assistant.answer("年假最多能留到什么时候用？").to_dict()
    assert set(d) == {"question", "grounded", "answer", "citations", "retrieved", "timings_ms"}
    assert d["grounded"] is True
    c = d["citations"][0]
    assert set(c) == {"n", "clause_id", "document", "source", "clause", "path", "quote", "content_hash",
                      "effective", "updated"}
    assert len(c["content_hash"]) >= 16
    assert c["n"] == 1 and c["path"][-1] == c["clause"] and isinstance(c["path"], list)
    assert len(d["retrieved"]) >= 10
    assert set(d["retrieved"][0]) == {"clause_id", "source", "clause", "score"}
    scores = [r["score"] for r in d["retrieved"]]
    assert scores == sorted(scores, reverse=True)
    assert set(d["timings_ms"]) >= {"retrieve", "answer", "total"}


def test_refusal_json_contract(sample_index: IndexedCorpus) -> None:
    d = sample_index.assistant.answer("你好").to_dict()
    assert d["grounded"] is False and d["citations"] == [] and len(d["retrieved"]) >= 10


def test_clauses_close_in_score_are_shown_as_several_that_may_apply(sample_index: IndexedCorpus) -> None:
    several = sample_index.assistant.answer("报销需要哪些人签字？")
    assert several.grounded and len(several.citations) > 1
    assert several.answer.splitlines()[0] == "以下几条都可能适用，按相关程度排列："
    assert several.answer.index("[1]") < several.answer.index("[2]")
    one = sample_index.assistant.answer("出差住酒店每晚最多报多少？")
    assert one.grounded and len(one.citations) == 1 and one.answer.startswith("根据《")


def test_english_questions_get_english_wording(sample_index: IndexedCorpus) -> None:
    answer = sample_index.assistant.answer("Within how many minutes must IT respond to a P1 fault?")
    assert answer.grounded and answer.answer.startswith(("According to", "Several clauses may apply"))
    assert "According to" in answer.answer
    refusal = sample_index.assistant.answer("What's the best pizza in town?")
    assert refusal.answer.startswith("The rulebook has no clause")


def test_follow_up_uses_the_previous_question(sample_index: IndexedCorpus) -> None:
    history = [Turn("出差住酒店每晚最多能报多少钱？")]
    answer = sample_index.assistant.answer("那成都呢？", history)
    assert answer.standalone_question.startswith("出差住酒店")
    assert answer.grounded and answer.citations[0].clause == "（三）差旅住宿标准"


def test_follow_up_rule() -> None:
    assert is_follow_up("那试用期呢？") and is_follow_up("what about Chengdu?")
    assert is_follow_up("需要谁批准？")
    assert not is_follow_up("员工出差住酒店每晚最多能报销多少钱？")
    assert standalone_question("那病假呢？", [Turn("事假怎么请？")]) == "事假怎么请？ 那病假呢？"
    assert standalone_question("那病假呢？", []) == "那病假呢？"


def test_every_quote_is_checked_and_bad_ones_dropped(sample_index: IndexedCorpus) -> None:
    answer = sample_index.assistant.answer("客户咨询多久内要答复？")
    hit = answer.retrieved[0]
    good = answer.citations[0]
    forged = Citation(n=2, clause_id=hit.clause.clause_id, document=hit.clause.document,
                      source=hit.clause.source, clause=hit.clause.label, path=hit.clause.path,
                      quote="一般咨询在72小时内答复。")
    outside = Citation(n=3, clause_id="not-in-evidence", document="x", source="x.md",
                       clause="第九十九条", path=("第九十九条",), quote="x")
    draft = Draft(text="...", citations=(good, forged, outside), composer="test")
    checked, problems = verify_citations(draft, answer.retrieved)
    assert checked.citations == (good,)
    assert len(problems) == 2


def test_quote_verification_is_normalised() -> None:
    clause = "第六条 P1级和P2级故障实行“15分钟响应、1小时恢复”的要求：\n值守工程师应当在15分钟内响应。"
    assert is_verbatim("Ｐ1级和Ｐ2级故障实行“15分钟响应、1小时恢复”的要求：值守工程师", clause)
    assert not is_verbatim("P1级故障实行“30分钟响应”", clause)
    assert not is_verbatim("", clause)


def test_traditional_chinese_question(sample_index: IndexedCorpus) -> None:
    answer = sample_index.assistant.answer("客戶諮詢多久內要答覆？")
    assert answer.grounded and answer.citations[0].clause == "（一）咨询受理时限"
