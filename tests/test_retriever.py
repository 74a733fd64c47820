"""Retriever contract (run against every retriever face) and edge cases of tiny corpora."""

from __future__ import annotations

from pathlib import Path

import pytest
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever

from assistant.core import build_assistant
from assistant.retrieval import RulebookRetriever
from ingest.pipeline import ingest

from .conftest import IndexedCorpus, make_settings


class RetrieverContract:
    """What every retriever implementation must do; subclasses provide `retriever`."""

    @pytest.fixture
    def retriever(self) -> BaseRetriever:
        raise NotImplementedError

    def test_returns_documents_with_clause_metadata(self, retriever: BaseRetriever) -> None:
        docs = retriever.invoke("员工迟到怎么处理？")
        assert docs and all(isinstance(d, Document) for d in docs)
        for d in docs:
            assert {"clause_id", "source", "clause", "path", "score"} <= set(d.metadata)
            assert d.page_content.strip()

    def test_ranked_best_first_and_bounded(self, retriever: BaseRetriever) -> None:
        docs = retriever.invoke("加班需要审批吗")
        scores = [d.metadata["score"] for d in docs]
        assert scores == sorted(scores, reverse=True)
        assert len(docs) <= 10

    def test_empty_and_punctuation_queries_do_not_fail(self, retriever: BaseRetriever) -> None:
        assert isinstance(retriever.invoke(""), list)
        assert isinstance(retriever.invoke("？？！"), list)


class TestSampleRetriever(RetrieverContract):
    @pytest.fixture
    def retriever(self, sample_index: IndexedCorpus) -> BaseRetriever:
        a = sample_index.assistant
        return RulebookRetriever(searcher=a._current().searcher, k=10)


class TestOneClauseRetriever(RetrieverContract):
    """k larger than the corpus: bm25s and Chroma must be clamped."""

    @pytest.fixture
    def retriever(self, tmp_path: Path) -> BaseRetriever:
        rules = tmp_path / "rules"
        rules.mkdir()
        (rules / "考勤.md").write_text(
            "# 考勤规定\n第一条 员工迟到超过30分钟的按半天事假处理；加班需要提前在系统中审批。\n", "utf-8")
        settings = make_settings(tmp_path / "data")
        ingest(rules, settings)
        return RulebookRetriever(searcher=build_assistant(settings)._current().searcher, k=10)


def test_answer_for_tiny_corpus_lists_what_exists(tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "a.md").write_text("# 规定\n第一条 每月10日发放上月工资。\n", "utf-8")
    settings = make_settings(tmp_path / "data")
    ingest(rules, settings)
    answer = build_assistant(settings).answer("每月几号发放工资？")
    assert answer.grounded and answer.citations[0].clause == "第一条"
    assert len(answer.retrieved) == 1


class TestDictionaryTriggers:
    """Lay wording fires its rule-wording mapping even with words in between."""

    def test_trigger_words_with_a_few_characters_between(self, sample_index: IndexedCorpus) -> None:
        searcher = sample_index.assistant._current().searcher
        assert "分级审批" in searcher.plan("报销谁批").expansions
        assert "分级审批" in searcher.plan("报销8000块要谁批").expansions

    def test_trigger_words_in_different_parts_of_the_question_do_not_fire(
            self, sample_index: IndexedCorpus) -> None:
        searcher = sample_index.assistant._current().searcher
        assert "分级审批" not in searcher.plan("报销单交了，谁能批我的加班").expansions
        assert "分级审批" not in searcher.plan("报销一张出差时在机场买的咖啡的票，谁批").expansions
        assert "分级审批" in searcher.plan("报销的钱谁批").expansions
        assert "分级审批" not in searcher.plan("报销的钱，谁批").expansions  # the comma ends the clause

    def test_numbers_and_spaces_do_not_end_a_clause(self, sample_index: IndexedCorpus) -> None:
        searcher = sample_index.assistant._current().searcher
        for q in ("报销1.5万要谁批", "报销1,500要谁批", "报销 8000 块要谁批"):
            assert "分级审批" in searcher.plan(q).expansions, q

    def test_one_character_words_of_a_trigger_stay_together(self, sample_index: IndexedCorpus) -> None:
        searcher = sample_index.assistant._current().searcher
        assert "年休假" in searcher.plan("年假有几天").expansions
        assert "丧假" in searcher.plan("家里办白事要请几天").expansions
        # 年…假 and 白…事 with other characters between them are other words altogether.
        assert "年休假" not in searcher.plan("今年我想请个假").expansions
        assert "丧假" not in searcher.plan("我明白这事该怎么办了").expansions
        # A lone 不 or 没 stays with its word: 不…加班 is not 不加班.
        assert "变相强迫劳动者加班" not in searcher.plan("我不知道加班费怎么算").expansions
        assert "二倍的工资" not in searcher.plan("我不知道签合同要带什么材料").expansions
        assert "二倍的工资" in searcher.plan("新员工就是不肯签合同怎么办").expansions  # 不 + helper + 签

    def test_a_very_long_question_stays_fast(self, sample_index: IndexedCorpus) -> None:
        import time

        searcher = sample_index.assistant._current().searcher
        t0 = time.perf_counter()
        searcher.plan("报销" * 20000)
        assert time.perf_counter() - t0 < 5  # unbounded, the gapped search took minutes here
        # The bound that keeps it fast: gapped triggers are looked for in the opening only.
        assert "分级审批" in searcher.plan("报销8000块要谁批").expansions
        assert "分级审批" not in searcher.plan("。" * 600 + "报销8000块要谁批").expansions


def test_a_pasted_rule_sentence_finds_its_clause_word_for_word(tmp_path: Path) -> None:
    # The second clause's own sentence, pasted, must find it, although the first is short and holds
    # the same words in another order (BM25 and the vectors favour it).
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "加班.md").write_text(
        "# 加班管理\n"
        "第一条 工作时间不计入的情形：自行留在公司、未经审批的时间。\n"
        "第二条 员工因工作需要延长工作时间的，应当事先提交加班申请，写明事由、预计时长和工作内容，"
        "经直属上级和部门负责人审批后方可安排。加班结束后，员工应当在系统中如实登记实际时长，"
        "由直属上级确认。未经审批自行留在公司的时间不计入工作时间。加班时长可以申请调休，"
        "调休应当在加班后三个月内使用完毕，逾期作废；不能安排调休的，按国家规定支付加班费。\n", "utf-8")
    settings = make_settings(tmp_path / "data")
    ingest(rules, settings)
    assistant = build_assistant(settings)
    searcher = assistant._current().searcher
    pasted = "未经审批自行留在公司的时间不计入工作时间"
    share = searcher.exact_share(pasted)
    assert share is not None and share.max() == 1.0
    assert searcher.search(pasted, 2).hits[0].clause.label == "第二条"
    # Short or reworded questions are left to the other legs.
    assert searcher.exact_share("加班要谁审批") is None
    assert searcher.exact_share("没审批就留在公司加班的时间算不算工作时间") is None
    assistant.close()
