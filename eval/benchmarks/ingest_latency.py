"""Ingest and query timings on a real rulebook (default: the 15 labour laws, 685 articles).

    python -m eval.benchmarks.ingest_latency [FOLDER] [--questions eval/cases/labour_law.jsonl]

Measures, in one run on a copy of FOLDER:
- cold ingest (empty data dir, empty embedding cache), in-process;
- `rulebook ingest` re-run with nothing changed, as a fresh CLI process (what a user waits for);
- `rulebook ingest` after one file changed (one article edited), as a CLI process;
- warm `ask` latency p50/p95 over the questions, in one process after a warm-up question.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from assistant.config import load_settings
from assistant.core import build_assistant
from ingest.pipeline import ingest

ROOT = Path(__file__).resolve().parents[2]
DEFAULT = ROOT.parent / "shared" / "corpora" / "labour-law"


def cli_ingest(folder: Path, data_dir: Path) -> tuple[float, dict]:
    t = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "assistant.adapters.cli", "ingest", str(folder),
                          "--data-dir", str(data_dir), "--json"], cwd=ROOT, capture_output=True,
                         text=True, check=True)
    return time.perf_counter() - t, json.loads(out.stdout)


def run(folder: Path, questions: Path, work: Path) -> dict:
    rules = work / "rules"
    shutil.copytree(folder, rules)
    data = work / "data"
    settings = load_settings(data_dir=data)
    t = time.perf_counter()
    cold = ingest(rules, settings)
    cold_s = time.perf_counter() - t

    unchanged_s, unchanged = cli_ingest(rules, data)

    victim = sorted(rules.glob("*.md"))[0]
    text = victim.read_text(encoding="utf-8")
    victim.write_text(text.replace("。", "。（本条已修订）", 1), encoding="utf-8")
    changed_s, changed = cli_ingest(rules, data)

    assistant = build_assistant(settings)
    assistant.answer("预热")
    qs = [json.loads(line)["question"] for line in questions.read_text(encoding="utf-8").splitlines()
          if line.strip()]
    lat = sorted(assistant.answer(q).timings_ms["total"] for q in qs)
    return {
        "documents": cold.documents, "clauses": cold.clauses, "chunks": cold.chunks,
        "cold_ingest_s": round(cold_s, 1),
        "unchanged_rerun_cli_s": round(unchanged_s, 2), "unchanged_rerun_changed": unchanged["changed"],
        "one_file_changed_cli_s": round(changed_s, 2), "one_file_changed_embedded": changed["embedded"],
        "ask_questions": len(qs),
        "ask_p50_ms": round(statistics.median(lat), 1),
        "ask_p95_ms": round(lat[min(len(lat) - 1, round(0.95 * (len(lat) - 1)))], 1),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folder", nargs="?", type=Path, default=DEFAULT)
    ap.add_argument("--questions", type=Path, default=ROOT / "eval" / "cases" / "labour_law.jsonl")
    args = ap.parse_args(argv)
    if not args.folder.is_dir():
        print(f"{args.folder} not found", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        result = run(args.folder, args.questions, Path(tmp))
    for k, v in result.items():
        print(f"{k:<28} {v}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
