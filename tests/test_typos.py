"""Homophone typos in Chinese questions are mended against the rulebook's own words."""

from __future__ import annotations

from .conftest import IndexedCorpus


def mend(sample_index: IndexedCorpus, text: str) -> str:
    return sample_index.assistant._current().searcher.mender.mend(text)


def test_a_word_typed_with_the_wrong_character_of_the_same_sound_is_mended(
        sample_index: IndexedCorpus) -> None:
    assert mend(sample_index, "上个月的发漂现在还能报吗") == "上个月的发票现在还能报吗"
    assert mend(sample_index, "值斑经理晚上几点交班") == "值班经理晚上几点交班"
    assert mend(sample_index, "报消多久到账") == "报销多久到账"


def test_real_words_are_left_alone(sample_index: IndexedCorpus) -> None:
    # Words of general Chinese the sample rulebook does not use, each with a homophone it does
    # use (一致, 总裁): a rarer real word is still not a typo.
    for q in ("我一直没报", "去仲裁还来得及吗", "离职证明找谁开"):
        assert mend(sample_index, q) == q
    # Everyday one-character words side by side are no dictionary word either (这/算, 不/回,
    # 要/请), yet their homophones (折算, 不会, 邀请) are not what was meant.
    for q in ("这算工伤吗", "他今天不回公司了", "要请事假的话找谁批"):
        assert mend(sample_index, q) == q
    # Stretches across two words are not looked at: 带新人 is not 带薪人.
    assert mend(sample_index, "带新人有补贴吗") == "带新人有补贴吗"


def test_the_mended_question_is_what_retrieval_sees(sample_index: IndexedCorpus) -> None:
    searcher = sample_index.assistant._current().searcher
    assert "发票" in searcher.plan("上个月的发漂现在还能报吗").tokens
    answer = sample_index.assistant.answer("上个月的发漂现在还能报吗")
    assert answer.grounded
    assert answer.citations[0].source == "费用报销管理办法.txt"
