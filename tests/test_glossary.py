"""English questions: the general English–Chinese glossary and what it changes in retrieval."""

from __future__ import annotations

from assistant.glossary import senses

from .conftest import IndexedCorpus


def test_senses_come_in_chinese_most_common_first() -> None:
    assert senses("database")[0] == "数据库"
    assert "费用" in senses("expenses")  # regular plural
    assert "关闭的" in senses("closed")  # regular past
    assert "偷窃" in senses("stolen")  # irregular form, glossed by reference to "steal"
    assert senses("fees")[0] == "费"  # fee, not fe (iron)
    assert "使用" in senses("uses")  # use, not us
    # An inflected form that is a headword of its own keeps the stem's senses after its own.
    assert "笔记" in senses("notes") and "请假" in senses("leaves")
    assert senses("qwzxv") == [] and senses("word")  # the word list's header is not an entry


class TestEnglishQuestions:
    def test_an_unmapped_english_word_stands_for_the_rulebooks_own_word(
            self, sample_index: IndexedCorpus) -> None:
        searcher = sample_index.assistant._current().searcher
        plan = searcher.plan("How many minutes of data could be lost if the database fails?")
        database = next(c for c in plan.concepts if "database" in c.alternatives)
        assert database.known and "数据库" in database.alternatives
        assert "数据库" in plan.tokens  # BM25 sees it too
        # Only renderings the rulebook uses are kept: none of "qwzxv", and no sense outside it.
        assert all(a in searcher.idf for a in database.alternatives - {"database"})

    def test_a_plain_english_question_is_answered_from_its_clause(self, sample_index: IndexedCorpus) -> None:
        # Without the glossary no word of it is known to the rulebook, so the gate saw nothing.
        answer = sample_index.assistant.answer(
            "In the worst case, how many minutes of data could be lost if the database fails?")
        assert answer.grounded
        assert answer.citations[0].source == "信息系统故障与应急预案.docx"
        assert answer.citations[0].clause == "第十七条"
