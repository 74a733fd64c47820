"""`python -m eval.benchmarks.llm`: its sets, its replay file and its table."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from assistant.config import Settings
from eval.benchmarks.llm import ReplayCache, case_files, table

from .conftest import ROOT
from .openai_fake import FakeOpenAI, Reply

pytest.importorskip("langchain_openai", reason="pip install -e '.[llm]'")


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    f = FakeOpenAI()
    yield f
    f.close()


def test_the_sets_are_the_ones_the_figures_name(tmp_path: Path) -> None:
    files = case_files(tmp_path)
    assert [f.name for f in files] == ["sample_75.jsonl", "near_miss_blind.jsonl", "sample_rulebook_blind.jsonl",
                                       "sample_rulebook_blind_2.jsonl"]
    sample = [json.loads(x) for x in files[0].read_text("utf-8").splitlines()]
    every = [json.loads(x) for x in (ROOT / "eval" / "cases" / "sample_rulebook.jsonl").read_text("utf-8").splitlines()]
    assert [c for c in sample if c["answerable"]] == [c for c in every if c["answerable"]][:40]
    assert [c for c in sample if not c["answerable"]] == [c for c in every if not c["answerable"]]
    corpora = json.loads((tmp_path / "corpora.json").read_text("utf-8"))
    assert set(corpora) == {f.name for f in files}
    assert all(Path(p) == ROOT / "examples" / "rulebook" for p in corpora.values())


def test_replies_are_kept_and_replayed_per_request(fake: FakeOpenAI, tmp_path: Path) -> None:
    from langchain_core.globals import set_llm_cache

    from assistant.llm import make_chat_model

    model = make_chat_model(Settings(llm="openai:fake", llm_base_url=fake.base_url, llm_api_key="k",
                                     llm_max_retries=0))
    fake.default = Reply("是")
    path = tmp_path / "replies.jsonl"
    try:
        first = ReplayCache(path)
        set_llm_cache(first.cache)
        assert model.invoke("问题一").content == "是"
        assert model.invoke("问题一").content == "是"
        assert len(fake.requests) == 1 and first.counts == {"replayed": 1, "sent": 1}
        biased = model.bind(logit_bias={"1": 2.0}, max_tokens=1)
        biased.invoke("问题一")  # other request parameters: another request
        assert len(fake.requests) == 2
        again = ReplayCache(path)  # a later run reads the file
        set_llm_cache(again.cache)
        fake.default = Reply("否")
        assert model.invoke("问题一").content == "是" and biased.invoke("问题一").content == "是"
        assert len(fake.requests) == 2 and again.counts == {"replayed": 2, "sent": 0}
    finally:
        set_llm_cache(None)


def test_the_table_shows_no_latency_for_replayed_runs() -> None:
    m = {"refusal_recall": 0.5, "wrongly_refused": 0.0, "any_expected_cited": 0.8, "must_contain": 0.75,
         "citation_precision": 0.7, "model_written": 0.4, "latency_p50_ms": 8000.0, "latency_p95_ms": 12000.0,
         "composer": {"model": 4, "judged": 1, "declined": 0}}
    results = {"modes": {"offline": {"sets": {"all": m}},
                         "judge": {"sets": {"all": m}, "requests": {"replayed": 3, "sent": 1}}}}
    offline, judge = table(results)[2:]
    assert offline.endswith("| 8000 / 12000 |") and "| – |" in offline  # no model: no model-written share
    assert judge.endswith("| replayed |") and "model 4, judged 1" in judge and "declined" not in judge
