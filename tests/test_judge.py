"""The model as a judge (RULEBOOK_LLM_JUDGE), against a local fake OpenAI-compatible server that
behaves like a model with a given log-odds of 是 over 否 for each question: it answers the one-token
judge request the way greedy decoding under the request's logit bias would."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from assistant.answering import DECLINE
from assistant.config import Settings
from assistant.core import build_assistant
from assistant.judge import LIFT

from .conftest import IndexedCorpus, make_settings
from .openai_fake import FakeOpenAI, Reply

pytest.importorskip("langchain_openai", reason="pip install -e '.[llm]'")

YES, NO = 20412, 32376
Q = "客户咨询多久内要答复？"  # answered by （一）咨询受理时限
NEAR_MISS = "公司每年会组织员工体检吗"  # the offline gate lets it through; no clause answers it


class Model:
    """What the fake server answers: judge requests by `log_odds[question]`, others with `writes`."""

    def __init__(self, log_odds: dict[str, float], writes: str = "") -> None:
        self.log_odds = log_odds
        self.writes = writes
        self.judged: list[dict[str, Any]] = []  # the judge requests
        self.written: list[dict[str, Any]] = []  # the answer requests

    def __call__(self, body: dict[str, Any]) -> Reply:
        if "logit_bias" not in body:
            self.written.append(body)
            return Reply(self.writes)
        self.judged.append(body)
        question = re.search(r"员工的问题：(.+)", body["messages"][-1]["content"]).group(1)  # type: ignore[union-attr]
        bias = {int(k): v for k, v in body["logit_bias"].items()}
        return Reply("是" if self.log_odds[question] + bias[YES] - bias[NO] >= 0 else "否")


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    f = FakeOpenAI()
    f.vocabulary = {"是": [YES], "否": [NO]}
    yield f
    f.close()


def judged(index: IndexedCorpus, fake: FakeOpenAI, model: Model, **overrides: object):  # type: ignore[no-untyped-def]
    fake.default = model
    settings = make_settings(index.settings.data_dir, llm="openai:fake-model", llm_base_url=fake.base_url,
                             llm_api_key="test", llm_max_retries=0, llm_timeout=10.0, llm_judge=True,
                             **{"llm_write": False, **overrides})
    return build_assistant(settings, embedder=index.assistant.embedder)


def test_the_judge_refuses_below_its_threshold_and_answers_offline_above(sample_index: IndexedCorpus,
                                                                         fake: FakeOpenAI) -> None:
    offline = sample_index.assistant.answer(NEAR_MISS)
    assert offline.grounded  # the near miss the offline gate lets through
    model = Model({NEAR_MISS: -1.5, Q: -0.5})
    a = judged(sample_index, fake, model).answer(NEAR_MISS)
    assert not a.grounded and a.outcome == "judged" and not a.citations
    assert "hr@chengchuan.example" in a.answer  # the usual refusal, naming whom to ask
    assert any("judge found the clause does not answer" in c for c in a.checks)
    # Only the refusal reading is asked when no model writes: one request, one token, the bias
    # putting the threshold (−0.72 by default) between the two answer words, both lifted.
    (request,) = model.judged
    assert request["max_tokens"] == 1 and request["temperature"] == 0
    assert {int(k): v for k, v in request["logit_bias"].items()} == pytest.approx({YES: LIFT + 0.72, NO: LIFT})
    # Above the threshold the answer is the offline composer's, exact quote and all.
    b = judged(sample_index, fake, Model({Q: -0.5})).answer(Q)
    assert b.grounded and b.outcome == "offline" and b.answer == sample_index.assistant.answer(Q).answer


def test_the_judge_sees_the_clause_the_answer_stands_on(sample_index: IndexedCorpus, fake: FakeOpenAI) -> None:
    model = Model({Q: 1.0})
    a = judged(sample_index, fake, model).answer(Q)
    shown = model.judged[0]["messages"][-1]["content"]
    assert a.citations[0].quote in shown and Q in shown
    assert model.judged[0]["messages"][0]["role"] == "system"


def test_the_threshold_is_the_operators(sample_index: IndexedCorpus, fake: FakeOpenAI) -> None:
    assert judged(sample_index, fake, Model({NEAR_MISS: -1.5}), llm_judge_refuse_below=-2.0).answer(NEAR_MISS).grounded
    assert not judged(sample_index, fake, Model({Q: 0.5}), llm_judge_refuse_below=1.0).answer(Q).grounded
    model = Model({NEAR_MISS: -5.0})
    assert judged(sample_index, fake, model, llm_judge_refuse_below="").answer(NEAR_MISS).grounded
    assert model.judged == []  # no reading asked for, no request


def test_readings_are_switched_off_by_an_empty_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RULEBOOK_LLM_JUDGE_REFUSE_BELOW", "")
    monkeypatch.setenv("RULEBOOK_LLM_JUDGE_OVERRULE_ABOVE", "off")
    s = Settings()
    assert s.llm_judge_refuse_below is None and s.llm_judge_overrule_above is None
    monkeypatch.setenv("RULEBOOK_LLM_JUDGE_REFUSE_BELOW", "-1.5")
    assert Settings().llm_judge_refuse_below == -1.5


def test_a_decline_is_overruled_only_where_the_judge_is_sure(sample_index: IndexedCorpus, fake: FakeOpenAI) -> None:
    offline = sample_index.assistant.answer(Q)
    # Sure (log-odds 0.5 ≥ 0.2): the model's decline is overruled with the offline answer.
    model = Model({Q: 0.5}, writes=DECLINE)
    a = judged(sample_index, fake, model, llm_write=True).answer(Q)
    assert a.grounded and a.outcome == "overruled" and a.answer == offline.answer
    assert "decline overruled by the judge" in a.checks
    assert len(model.judged) == 2 and len(model.written) == 1  # both readings, then the writer
    # Not sure (0.1: above the refusal threshold, below the overrule one): the decline stands.
    model = Model({Q: 0.1}, writes=DECLINE)
    b = judged(sample_index, fake, model, llm_write=True).answer(Q)
    assert not b.grounded and b.outcome == "declined"
    # Judged out: the writer is never asked.
    model = Model({Q: -1.0}, writes="一般咨询应当在24小时内答复客户[1]。")
    c = judged(sample_index, fake, model, llm_write=True).answer(Q)
    assert not c.grounded and c.outcome == "judged" and model.written == []
    # Where the judge agrees, the model's own answer is used as before.
    model = Model({Q: 1.0}, writes="一般咨询应当在24小时内答复客户[1]。")
    d = judged(sample_index, fake, model, llm_write=True).answer(Q)
    assert d.grounded and d.outcome == "model" and d.answer.startswith("一般咨询应当在24小时内答复客户[1]。")


def test_below_the_gate_the_judge_is_never_asked(sample_index: IndexedCorpus, fake: FakeOpenAI) -> None:
    model = Model({})
    a = judged(sample_index, fake, model).answer("推荐一只明年能涨的股票")
    assert not a.grounded and a.outcome == "gate" and fake.requests == []


def test_a_failing_judge_changes_nothing(sample_index: IndexedCorpus, fake: FakeOpenAI) -> None:
    expected = sample_index.assistant.answer(NEAR_MISS).answer
    a = judged(sample_index, fake, Reply(status=500)).answer(NEAR_MISS)  # type: ignore[arg-type]
    assert a.grounded and a.answer == expected and any(c.startswith("judge failed") for c in a.checks)
    # Answer words the server cannot look up (here: not in its vocabulary) are a failure too …
    fake.vocabulary = {}
    b = judged(sample_index, fake, Model({NEAR_MISS: -3.0})).answer(NEAR_MISS)
    assert b.grounded and any("RULEBOOK_LLM_JUDGE_TOKEN_IDS" in c for c in b.checks)
    # … unless the operator gives the ids.
    c = judged(sample_index, fake, Model({NEAR_MISS: -3.0}), llm_judge_token_ids=f"{YES},{NO}").answer(NEAR_MISS)
    assert not c.grounded and c.outcome == "judged"


def test_an_answer_word_of_two_tokens_is_refused_with_the_reason(sample_index: IndexedCorpus,
                                                                 fake: FakeOpenAI) -> None:
    fake.vocabulary = {"是的": [1, 2], "否": [NO]}
    a = judged(sample_index, fake, Model({NEAR_MISS: -3.0}), llm_judge_words="是的,否").answer(NEAR_MISS)
    assert a.grounded and any("is 2 tokens" in c and "RULEBOOK_LLM_JUDGE_WORDS" in c for c in a.checks)


def test_the_streamed_answer_is_judged_too(sample_index: IndexedCorpus, fake: FakeOpenAI) -> None:
    model = Model({NEAR_MISS: -1.5}, writes="体检每年一次[1]。")
    assistant = judged(sample_index, fake, model, llm_write=True)
    events = list(assistant.answer_stream(NEAR_MISS))
    done = events[-1][1]
    assert not done.grounded and done.outcome == "judged" and model.written == []
    assert "体检每年一次" not in "".join(e[1] for e in events if e[0] == "delta")


def test_eval_counts_judged_refusals(sample_index: IndexedCorpus, fake: FakeOpenAI, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import json

    from eval.runner import run

    cases = tmp_path / "c.jsonl"
    rows = [{"id": "a", "question": Q, "answerable": True, "must_contain": [], "expected": []},
            {"id": "n", "question": NEAR_MISS, "answerable": False, "must_contain": [], "expected": []}]
    cases.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), "utf-8")
    assistant = judged(sample_index, fake, Model({Q: 1.0, NEAR_MISS: -2.0}))
    result = run([cases], assistant.settings, lambda _s: assistant, lambda *_: None, use_data_dir=True)
    m = result.metrics()["c.jsonl"]
    assert m["composer"]["judged"] == 1 and m["composer"]["offline"] == 1
    assert m["checks"]["the judge found the clause does not answer the question"] == 1


def test_a_prompt_folder_from_before_the_judge_still_loads(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import shutil

    from assistant.prompts import load_prompts

    from .conftest import ROOT

    custom = tmp_path / "prompts"
    shutil.copytree(ROOT / "prompts", custom)
    for name in ("judge_system", "judge_user"):
        (custom / f"{name}.txt").unlink()
    (custom / "refusal_zh.txt").write_text("没有找到。请问{contact}。\n", "utf-8")
    prompts = load_prompts(custom)
    assert prompts.templates["refusal_zh"] == "没有找到。请问{contact}。"  # the folder's own
    assert "{clause}" in prompts.templates["judge_user"]  # the bundled judge prompt
    (custom / "judge_user.txt").write_text("{question}\n", "utf-8")  # one of its own is checked as usual
    with pytest.raises(Exception, match="judge_user"):
        load_prompts(custom)


def test_hosted_models_get_only_the_modern_length_field(fake: FakeOpenAI) -> None:
    from assistant.answering import Evidence
    from assistant.judge import Judge
    from assistant.llm import make_chat_model
    from assistant.prompts import load_prompts

    from .conftest import ROOT

    model = Model({Q: 1.0})
    fake.default = model
    chat = make_chat_model(Settings(llm="openai:m", llm_base_url=fake.base_url, llm_api_key="k", llm_max_retries=0))
    evidence = Evidence(question=Q, plan=None, hits=(), chinese=True)  # type: ignore[arg-type]
    for self_hosted in (True, False):
        judge = Judge(chat, load_prompts(ROOT / "prompts"), (YES, NO), -0.72, None, self_hosted=self_hosted)
        assert judge.verdict(evidence, "一般咨询应当在24小时内答复。", writes=False).answers
        body = model.judged[-1]
        assert body["max_completion_tokens"] == 1
        assert body.get("max_tokens") == (1 if self_hosted else None)  # never the answer cap of 400
