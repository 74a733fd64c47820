"""STARD: real questions from the public against the statutes that answer them.

The benchmark (`../shared/benchmarks/stard`, see its README) holds 30 statute files (3,765
articles) and questions asked by ordinary people, labelled by legal experts with the articles
that answer them, in the project's eval case format (`dev` 984, `test` 246). The laws are
ingested once into a persistent data dir with the normal pipeline (a sync: a second run reuses
the index), then every question is asked through the normal assistant and scored with the
project's own runner and metrics: hit@1/5/10, MRR@10, recall@5, latency p50/p95.

Beside the pipeline it times the parts it cannot beat on this machine: the bare query embedding
of the same questions (`embedder.query_array`, one call each, interleaved with the pipeline so both
see the same load), and the bare passage embedding of the text the ingest embeds. Embedding all
of it costs as much as the ingest itself, so `--embed-sample N` times N chunks (a fixed random
sample, batches of 16 as the ingest does) and extrapolates to all chunks by characters; the output
says when it extrapolated. ingest time / bare passage time is the ingest's overhead ratio.

`--slice` runs the CI slice instead: the dev questions listed in `stard_slice.json` (ids only),
whose gold articles all lie in the few statute files named there. Those files are copied into a
temporary folder and ingested into their own data dir.

    python -m eval.benchmarks.stard [--bench DIR] [--data-dir D] [--split dev|test|both] [--limit N]
                                    [--slice] [--embed-sample N] [--out FILE] [--write-report] [--json]
    python -m eval.benchmarks.stard --report-only     # REPORT.md section from the saved figures

Figures go to `eval/benchmarks/stard-results.json` (the full run and the slice side by side);
`--write-report` also rewrites the "STARD (real questions)" section of eval/REPORT.md. Tune on
`dev`; `test` is reported, not tuned on.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from assistant.config import load_settings
from eval.metrics import compute, fmt
from eval.runner import load_cases, run_case

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_BENCH = ROOT.parent / "shared" / "benchmarks" / "stard"
DEFAULT_DATA = ROOT / ".rulebook" / "bench" / "stard"
SLICE_DATA = ROOT / ".rulebook" / "bench" / "stard-slice"
SLICE_FILE = Path(__file__).with_name("stard_slice.json")
RESULTS = Path(__file__).with_name("stard-results.json")
REPORT = ROOT / "eval" / "REPORT.md"
# Beside the index: the report of the ingest that built its current generation, so a later run
# that reuses the index can still say how long building it took.
INGEST_RECORD = "ingest-report.json"
SPLITS = ("dev", "test")
METRICS = ("cases", "hit@1", "hit@5", "hit@10", "mrr@10", "recall@5", "latency_p50_ms", "latency_p95_ms")


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q * (len(s) - 1))))]


def load_slice(path: Path = SLICE_FILE) -> dict[str, Any]:
    """The CI slice: {"split", "files", "ids"} (no question text)."""
    return json.loads(path.read_text(encoding="utf-8"))


def load_split(bench: Path, split: str, ids: list[str] | None = None, limit: int | None = None) -> list[dict]:
    cases = load_cases(bench / f"{split}.jsonl")
    if ids is not None:
        by_id = {c["id"]: c for c in cases}
        missing = [i for i in ids if i not in by_id]
        if missing:
            raise SystemExit(f"{len(missing)} slice ids are not in {split}.jsonl (first: {missing[0]}); "
                             "the benchmark changed: rebuild stard_slice.json")
        cases = [by_id[i] for i in ids]
    return cases[:limit] if limit else cases


def build_index(laws: Path, data_dir: Path) -> dict[str, Any]:
    """Ingest `laws` into `data_dir` (a sync) and say how long building the current index took."""
    from ingest.pipeline import ingest

    settings = load_settings(data_dir=data_dir)
    report = ingest(laws, settings)
    record = Path(data_dir) / INGEST_RECORD
    built: dict[str, Any] | None = None
    if report.changed:
        built = report.to_dict()
        record.write_text(json.dumps(built, ensure_ascii=False, indent=1), encoding="utf-8")
        timed = "this run"
    else:
        try:
            saved = json.loads(record.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            saved = None
        if saved and saved.get("generation") == report.generation:
            built, timed = saved, "recorded when the index was built"
        else:
            timed = "not known (index reused, built elsewhere)"
    return {
        "generation": report.generation, "documents": report.documents, "clauses": report.clauses,
        "chunks": report.chunks, "reused": not report.changed,
        "ingest_s": round(built["seconds"], 1) if built else None,
        "ingest_embedded": built.get("embedded") if built else None,
        "ingest_timed": timed,
        "sync_s": round(report.seconds, 2),
    }


def index_texts(data_dir: Path) -> list[str]:
    """The texts the ingest embedded for the current generation (one per chunk)."""
    from assistant.store import Layout, read_documents, read_rows
    from ingest.pipeline import embed_text

    layout = Layout(data_dir)
    name = layout.current()
    if name is None:
        return []
    db = layout.gen_dir(name) / "index.sqlite"
    return [embed_text(ch) for source in sorted(read_documents(db)) for ch in read_rows(db, source)[1]]


def passage_embedding(embedder: Any, texts: list[str], sample: int, seed: int = 0) -> dict[str, Any] | None:
    """Bare passage-embedding time of `texts` (all of them, or a sample extrapolated by characters)."""
    if sample <= 0 or not texts:
        return None
    chosen = texts if sample >= len(texts) else random.Random(seed).sample(texts, sample)
    embedder.embed_array(chosen[:2])  # warm up the model outside the timing
    t = time.perf_counter()
    for i in range(0, len(chosen), 16):
        embedder.embed_array(chosen[i : i + 16])
    seconds = time.perf_counter() - t
    chars = sum(len(x) for x in chosen)
    total_chars = sum(len(x) for x in texts)
    return {
        "chunks": len(texts), "chars": total_chars, "timed_chunks": len(chosen), "timed_chars": chars,
        "timed_s": round(seconds, 2), "extrapolated": len(chosen) < len(texts),
        "chars_per_s": round(chars / seconds) if seconds else None,
        "all_s": round(seconds * total_chars / chars, 1) if chars else None,
    }


def evaluate(assistant: Any, cases: list[dict], name: str, bare_query: bool = True) -> dict[str, Any]:
    """The project's metrics for `cases`, plus the bare query-embedding time of the same questions."""
    results, embed_ms = [], []
    for case in cases:
        if bare_query:
            t = time.perf_counter()
            assistant.embedder.query_array(case["question"])
            embed_ms.append((time.perf_counter() - t) * 1000)
        results.append(run_case(assistant, case, name))
    m = compute(results)
    out = {k: m[k] for k in METRICS}
    if embed_ms:
        out["query_embed_p50_ms"] = _pct(embed_ms, 0.5)
        out["query_embed_p95_ms"] = _pct(embed_ms, 0.95)
    return out


def code_version() -> str | None:
    """The commit measured, marked when the pipeline's code differs from it."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                              text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "assistant", "ingest"], cwd=ROOT,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return head + ("+modified" if dirty else "")


def run(bench: Path, data_dir: Path, splits: list[str], limit: int | None = None, use_slice: bool = False,
        embed_sample: int = 300, timings: bool = True) -> dict[str, Any]:
    from assistant.core import build_assistant

    started = time.perf_counter()
    load_before = os.getloadavg()[0]
    ids = None
    with tempfile.TemporaryDirectory() as tmp:
        laws = bench / "laws"
        if use_slice:
            spec = load_slice()
            splits, ids = [spec["split"]], spec["ids"]
            laws = Path(tmp) / "laws"
            laws.mkdir()
            for name in spec["files"]:
                shutil.copy2(bench / "laws" / name, laws / name)
        index = build_index(laws, data_dir)

    assistant = build_assistant(load_settings(data_dir=data_dir))
    assistant.answer("预热")  # load the model and the index outside the timings
    learned = assistant._current().searcher.learned is not None  # `rulebook learn` was run on this index
    out: dict[str, Any] = {
        "slice": use_slice, "learned": learned, "date": time.strftime("%Y-%m-%d"), "code": code_version(),
        "index": index,
        "splits": {s: evaluate(assistant, load_split(bench, s, ids, limit), f"{s}.jsonl", timings)
                   for s in splits},
    }
    if limit:
        out["limit"] = limit
    if timings:
        passages = passage_embedding(assistant.embedder, index_texts(data_dir), embed_sample)
        out["passage_embed"] = passages
        if passages and index["ingest_s"] and passages["all_s"]:
            out["ingest_over_bare_embed"] = round(index["ingest_s"] / passages["all_s"], 2)
    out["load_avg_1min"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
    out["seconds"] = round(time.perf_counter() - started, 1)
    return out


def print_result(r: dict[str, Any]) -> None:
    ix = r["index"]
    what = "CI slice" if r["slice"] else "full"
    print(f"STARD {what}: {ix['documents']} documents, {ix['clauses']} clauses, {ix['chunks']} chunks "
          f"({'reused' if ix['reused'] else 'built'} {ix['generation']}; code {r['code']})")
    if ix["ingest_s"] is not None:
        print(f"ingest time          {ix['ingest_s']:.1f} s ({ix['ingest_embedded']} chunks embedded; "
              f"{ix['ingest_timed']})")
    else:
        print(f"ingest time          {ix['ingest_timed']}")
    cols = {**{k: k.removesuffix("_ms").replace("latency_", "") + (" ms" if k.endswith("_ms") else "")
               for k in METRICS}, "query_embed_p50_ms": "bare query embed p50 ms"}
    print(f"{'split':<8}" + "".join(f"{c:>{len(c) + 2}}" for c in cols.values()))
    for split, m in r["splits"].items():
        print(f"{split:<8}" + "".join(f"{fmt(m.get(k)):>{len(c) + 2}}" for k, c in cols.items()))
    p = r.get("passage_embed")
    if p:
        how = (f"extrapolated by characters from {p['timed_chunks']} of {p['chunks']} chunks "
               f"({p['timed_s']:.1f} s)" if p["extrapolated"] else "all chunks")
        print(f"bare passage embed   {p['all_s']:.1f} s for {p['chars']} characters, "
              f"{p['chars_per_s']} chars/s ({how})")
    if r.get("ingest_over_bare_embed"):
        print(f"ingest / bare embed  {r['ingest_over_bare_embed']:.2f}")
    print(f"load average (1 min) {r['load_avg_1min'][0]} before, {r['load_avg_1min'][1]} after")


def save_result(r: dict[str, Any], path: Path) -> dict[str, Any]:
    """Keep the full run, the slice and runs with a learned resource side by side: a run replaces
    only its own entry."""
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        saved = {}
    saved[("slice" if r["slice"] else "full") + ("+learned" if r.get("learned") else "")] = r
    path.write_text(json.dumps(saved, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    return saved


def write_report_section(saved: dict[str, Any], report: Path = REPORT) -> None:
    """Replace (or add, before the evidence gate) the STARD section of REPORT.md."""
    from eval.report import STARD_TITLE, stard_section

    section = "\n".join(stard_section(saved)).strip("\n") + "\n"
    text = report.read_text(encoding="utf-8") if report.exists() else "# Evaluation report\n"
    head = f"## {STARD_TITLE}"
    if head in text:
        before, rest = text.split(head, 1)
        nxt = rest.find("\n## ")
        after = rest[nxt + 1:] if nxt >= 0 else ""
    elif "\n## Evidence gate" in text:
        before, after = text.split("\n## Evidence gate", 1)
        before, after = before + "\n", "## Evidence gate" + after
    else:
        before, after = text.rstrip("\n") + "\n\n", ""
    report.write_text(before + section + ("\n" + after if after else ""), encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bench", type=Path, default=DEFAULT_BENCH, help="the STARD folder (laws/, dev.jsonl, test.jsonl)")
    ap.add_argument("--data-dir", type=Path, default=None,
                    help=f"index to build or reuse (default {DEFAULT_DATA.relative_to(ROOT)}, "
                         f"with --slice {SLICE_DATA.relative_to(ROOT)})")
    ap.add_argument("--split", choices=["dev", "test", "both"], default="both")
    ap.add_argument("--limit", type=int, default=None, help="ask only the first N questions of each split")
    ap.add_argument("--slice", action="store_true", help="the CI slice of dev (stard_slice.json) instead")
    ap.add_argument("--embed-sample", type=int, default=300,
                    help="chunks to time for the bare passage embedding (0: skip; more than there are: all)")
    ap.add_argument("--out", type=Path, default=RESULTS, help="results JSON to update")
    ap.add_argument("--write-report", action="store_true", help="also rewrite the STARD section of eval/REPORT.md")
    ap.add_argument("--report-only", action="store_true",
                    help="only rewrite the STARD section of eval/REPORT.md from the saved figures (--out)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    if args.report_only:
        write_report_section(json.loads(args.out.read_text(encoding="utf-8")))
        print(f"wrote the STARD section of {REPORT}")
        return 0
    if not (args.bench / "laws").is_dir():
        print(f"skipped: STARD not found at {args.bench} (clone the shared benchmarks beside this "
              "repository, or give --bench DIR)")
        return 0
    data_dir = args.data_dir or (SLICE_DATA if args.slice else DEFAULT_DATA)
    splits = list(SPLITS) if args.split == "both" else [args.split]
    result = run(args.bench, data_dir, splits, args.limit, args.slice, args.embed_sample)
    if args.json:
        print(json.dumps(result, ensure_ascii=False, indent=1))
    else:
        print_result(result)
    if args.limit:
        print("(--limit: figures not saved)", file=sys.stderr)
        return 0
    saved = save_result(result, args.out)
    if args.write_report:
        write_report_section(saved)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
