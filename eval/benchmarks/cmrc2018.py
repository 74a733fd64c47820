"""CMRC 2018 (dev) as an outside retrieval and extractive-answer benchmark.

The 848 Wikipedia passages are written out as a rulebook — one markdown document per article
title, one clause per passage (labelled with the passage id) — ingested with the normal pipeline,
and every question is asked through the normal assistant. Reported: passage hit@1/@5 and MRR@10
over `retrieved`, answer-span recall (a gold answer occurs in the answer's quoted evidence),
refusals, latency and ingest time. It takes minutes on two cores: a script, not a test.

    python -m eval.benchmarks.cmrc2018 [--data ../shared/benchmarks/cmrc2018/cmrc2018_dev.squad.json]
                                       [--limit N] [--json] [--work DIR]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from assistant.config import load_settings
from assistant.core import build_assistant
from assistant.text import normalise
from ingest.pipeline import ingest

DEFAULT_DATA = Path(__file__).resolve().parents[3] / "shared" / "benchmarks" / "cmrc2018" / \
    "cmrc2018_dev.squad.json"


def write_rulebook(data: dict, folder: Path) -> list[dict]:
    """One .md per article; returns the questions with their gold (source, clause)."""
    folder.mkdir(parents=True, exist_ok=True)
    questions = []
    for i, article in enumerate(data["data"]):
        source = f"{i:04d}.md"
        lines = [f"# {article.get('title') or source}", ""]
        for para in article["paragraphs"]:
            lines += [f"## {para['id']}", para["context"].replace("\n", " "), ""]
            for qa in para["qas"]:
                questions.append({"question": qa["question"], "source": source, "clause": para["id"],
                                  "answers": [a["text"] for a in qa["answers"]]})
        (folder / source).write_text("\n".join(lines), encoding="utf-8")
    return questions


def run(data_path: Path, work: Path, limit: int | None) -> dict:
    data = json.loads(data_path.read_text(encoding="utf-8"))
    questions = write_rulebook(data, work / "rulebook")
    if limit:
        questions = questions[:limit]
    settings = load_settings(data_dir=work / "index")
    t0 = time.perf_counter()
    report = ingest(work / "rulebook", settings)
    ingest_s = time.perf_counter() - t0
    assistant = build_assistant(settings)
    assistant.answer("预热")  # load the model outside the timings
    ranks, span_hits, refused, latencies = [], 0, 0, []
    for q in questions:
        ans = assistant.answer(q["question"])
        latencies.append(ans.timings_ms["total"])
        rank = next((i for i, h in enumerate(ans.retrieved[:10], start=1)
                     if h.clause.source == q["source"] and h.clause.label == q["clause"]), None)
        ranks.append(rank)
        if not ans.grounded:
            refused += 1
        evidence = normalise(" ".join(c.quote for c in ans.citations))
        if any(normalise(a) in evidence for a in q["answers"] if a.strip()):
            span_hits += 1
    n = len(questions)
    lat = sorted(latencies)
    return {
        "passages": sum(len(a["paragraphs"]) for a in data["data"]),
        "questions": n,
        "hit@1": sum(1 for r in ranks if r == 1) / n,
        "hit@5": sum(1 for r in ranks if r and r <= 5) / n,
        "mrr@10": sum(1 / r for r in ranks if r) / n,
        "answer_span_recall": span_hits / n,
        "refused": refused / n,
        "latency_p50_ms": statistics.median(lat),
        "latency_p95_ms": lat[min(n - 1, round(0.95 * (n - 1)))],
        "ingest_s": ingest_s if report.changed else None,
        "clauses": report.clauses,
        "chunks": report.chunks,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--limit", type=int, default=None, help="ask only the first N questions")
    ap.add_argument("--work", type=Path, default=None, help="keep the rulebook and index here")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    if not args.data.exists():
        print(f"{args.data} not found: clone the shared benchmarks beside this repository", file=sys.stderr)
        return 2
    if args.work:
        result = run(args.data, args.work, args.limit)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            result = run(args.data, Path(tmp), args.limit)
    if args.json:
        print(json.dumps(result, ensure_ascii=False, indent=1))
    else:
        for k, v in result.items():
            print(f"{k:<20} {v:.3f}" if isinstance(v, float) else f"{k:<20} {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
