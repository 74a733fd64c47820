"""The `rulebook` command: the contracts of DESIGN.md, run as a user would run them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from .conftest import ROOT, IndexedCorpus


def rulebook(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "assistant.adapters.cli", *args], cwd=ROOT, capture_output=True,
        text=True, env={**os.environ, **(env or {})}, timeout=300,
    )


def test_ingest_json_summary(rulebook_copy: Path, warm_data_dir: Path) -> None:
    (rulebook_copy / "broken.pdf").write_bytes(b"%PDF-1.4 not really")
    r = rulebook("ingest", str(rulebook_copy), "--data-dir", str(warm_data_dir), "--json")
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["documents"] == 8 and report["clauses"] > 150 and report["chunks"] > 150
    assert report["skipped"] == [{"source": "broken.pdf", "reason": report["skipped"][0]["reason"]}]
    assert "PDF" in report["skipped"][0]["reason"]


def test_ingest_table_summary_lists_skipped(rulebook_copy: Path, warm_data_dir: Path) -> None:
    (rulebook_copy / "notes.xlsx").write_bytes(b"PK")
    r = rulebook("ingest", str(rulebook_copy), "--data-dir", str(warm_data_dir))
    assert r.returncode == 0, r.stderr
    assert "documents" in r.stdout and "notes.xlsx" in r.stdout and "unsupported" in r.stdout


def test_ask_json_and_text(sample_index: IndexedCorpus) -> None:
    data_dir = str(sample_index.settings.data_dir)
    r = rulebook("ask", "客户咨询多久内要答复？", "--json", "--data-dir", data_dir)
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["grounded"] and d["citations"][0]["clause"] == "（一）咨询受理时限"
    r = rulebook("ask", "客户咨询多久内要答复？", env={"RULEBOOK_DATA_DIR": data_dir})
    assert r.returncode == 0 and "24小时" in r.stdout and "客户服务标准" in r.stdout


def test_ask_without_index_says_what_to_do(tmp_path: Path) -> None:
    r = rulebook("ask", "年假几天？", "--data-dir", str(tmp_path / "empty"))
    assert r.returncode == 1
    assert "rulebook ingest" in r.stderr and "Traceback" not in r.stderr


def test_bad_setting_is_reported_plainly(tmp_path: Path) -> None:
    r = rulebook("ask", "年假几天？", "--data-dir", str(tmp_path), env={"RULEBOOK_EMBEDDING": "word2vec"})
    assert r.returncode == 1
    assert "RULEBOOK_EMBEDDING" in r.stderr and "Traceback" not in r.stderr


def test_eval_against_data_dir(sample_index: IndexedCorpus, tmp_path: Path) -> None:
    cases = tmp_path / "mine.jsonl"
    cases.write_text("\n".join(json.dumps(c, ensure_ascii=False) for c in [
        {"id": "a", "question": "客户咨询多久内要答复？", "answerable": True, "must_contain": ["24小时"],
         "expected": [{"source": "客户服务标准.md", "clause": "（一）咨询受理时限"}]},
        {"id": "b", "question": "你好", "answerable": False, "expected": []},
    ]) + "\n", "utf-8")
    out = tmp_path / "results.json"
    r = rulebook("eval", str(cases), "--json", "--out", str(out), "--data-dir",
                 str(sample_index.settings.data_dir))
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    m = data["metrics"]["mine.jsonl"]
    assert m["hit@1"] == 1.0 and m["refusal_recall"] == 1.0 and m["must_contain"] == 1.0
    per_case = json.loads(out.read_text("utf-8"))["cases"]
    assert {c["id"] for c in per_case} == {"a", "b"}
    assert {"question", "expected", "retrieved", "cited", "grounded", "latency_ms"} <= set(per_case[0])


def test_help_has_examples() -> None:
    for cmd in ("ingest", "ask", "eval"):
        r = rulebook(cmd, "--help")
        assert r.returncode == 0 and "Example" in r.stdout


def test_serve_prints_the_url_and_answers(sample_index: IndexedCorpus) -> None:
    import socket
    import time
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "assistant.adapters.cli", "serve", "--data-dir", str(sample_index.settings.data_dir),
         "--port", str(port)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert f"http://127.0.0.1:{port}/" in proc.stdout.readline()
        deadline = time.time() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as r:
                    assert json.loads(r.read())["status"] == "ready"
                    break
            except OSError:
                assert time.time() < deadline, "server did not come up"
                time.sleep(0.3)
    finally:
        proc.terminate()
        proc.wait(timeout=20)
