"""The answer path with a chat model, four ways, on the sample rulebook's question sets.

    RULEBOOK_LLM=openai:qwen RULEBOOK_LLM_BASE_URL=http://127.0.0.1:8080/v1 \\
        python -m eval.benchmarks.llm [--modes offline,judge,write,write+judge] [--replies FILE]

Modes: `offline` (no model), `judge` (the model only judges, RULEBOOK_LLM_WRITE=false), `write`
(the model writes the answers), `write+judge` (both). The model and the thresholds come from the
environment as for `rulebook serve`. Sets: `sample_75` (the first 40 answerable and every
unanswerable case of `eval/cases/sample_rulebook.jsonl`), `near_miss_blind`,
`sample_rulebook_blind` and `sample_rulebook_blind_2`, each on an index of `examples/rulebook`.
The judge's default thresholds were set on the first two; the two blind sample sets were not looked
at when setting them, and are also shown pooled as "held out".

Prints, per set and mode: unanswerable refused, answerable wrongly refused, an expected clause
cited, must_contain, citation precision, the share of grounded answers written by the model, the
outcomes and latency; writes them to --out (read by `python -m eval.report`).

--replies FILE keeps every model reply (answers and judge verdicts) keyed by the whole request;
a later run sends only requests not seen before. At temperature 0 a model answers the same
request the same way, so this is how a second run with other thresholds or checks stays cheap.
Model calls take seconds each on a CPU: a full run of all four modes is about an hour there.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from assistant.config import load_settings
from eval.metrics import compute, fmt
from eval.runner import assistant_factory, run
from ingest.pipeline import ingest

ROOT = Path(__file__).resolve().parents[2]
CASES = ROOT / "eval" / "cases"
CORPUS = ROOT / "examples" / "rulebook"
OUT = Path(__file__).with_name("llm-results.json")
MODES: dict[str, dict[str, Any]] = {
    "offline": {"llm": None},
    "judge": {"llm_judge": True, "llm_write": False},
    "write": {"llm_judge": False, "llm_write": True},
    "write+judge": {"llm_judge": True, "llm_write": True},
}
TUNED = ("sample_75", "near_miss_blind")  # where the judge's default thresholds were set
HELD_OUT = ("sample_rulebook_blind", "sample_rulebook_blind_2")


class ReplayCache:
    """LangChain's LLM cache over a JSONL file: request (prompt and model parameters) → reply text."""

    def __init__(self, path: Path) -> None:
        from langchain_core.caches import BaseCache
        from langchain_core.messages import AIMessage
        from langchain_core.outputs import ChatGeneration

        self.counts = {"replayed": 0, "sent": 0}
        counts = self.counts
        store: dict[str, str] = {}
        if path.exists():
            for line in path.read_text(encoding="utf-8").splitlines():
                row = json.loads(line)
                store[row["key"]] = row["reply"]

        def key(prompt: str, llm_string: str) -> str:
            return hashlib.sha1((prompt + "\x00" + llm_string).encode()).hexdigest()

        class Cache(BaseCache):
            def lookup(self, prompt: str, llm_string: str):  # type: ignore[no-untyped-def]
                found = store.get(key(prompt, llm_string))
                counts["replayed" if found is not None else "sent"] += 1
                return [ChatGeneration(message=AIMessage(content=found))] if found is not None else None

            def update(self, prompt: str, llm_string: str, return_val) -> None:  # type: ignore[no-untyped-def]
                k = key(prompt, llm_string)
                store[k] = "".join(str(g.text) for g in return_val[:1])  # the reply's text is all that is kept
                with path.open("a", encoding="utf-8") as f:
                    f.write(json.dumps({"key": k, "reply": store[k]}, ensure_ascii=False) + "\n")

            def clear(self, **kwargs: Any) -> None:
                store.clear()

        self.cache = Cache()


def case_files(folder: Path) -> list[Path]:
    """The four sets as case files beside a corpora.json naming the sample rulebook."""
    rows = [json.loads(x) for x in (CASES / "sample_rulebook.jsonl").read_text("utf-8").splitlines() if x.strip()]
    answerable = [r for r in rows if r["answerable"]][:40]
    subset = answerable + [r for r in rows if not r["answerable"]]
    (folder / "sample_75.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in subset), "utf-8")
    files = [folder / "sample_75.jsonl"]
    for name in ("near_miss_blind", *HELD_OUT):
        (folder / f"{name}.jsonl").write_text((CASES / f"{name}.jsonl").read_text("utf-8"), "utf-8")
        files.append(folder / f"{name}.jsonl")
    (folder / "corpora.json").write_text(json.dumps({f.name: str(CORPUS) for f in files}), "utf-8")
    return files


def measure(modes: list[str], data_dir: Path | None, replies: ReplayCache | None = None,
            label: str | None = None) -> dict[str, Any]:
    base = load_settings(**({"data_dir": data_dir} if data_dir else {}))
    if any(m != "offline" for m in modes) and not base.llm:
        raise SystemExit("set RULEBOOK_LLM (and RULEBOOK_LLM_BASE_URL) for the model modes")
    make = assistant_factory()
    out: dict[str, Any] = {"measured": time.strftime("%Y-%m-%d"), "model": label or base.llm,
                           "refuse_below": base.llm_judge_refuse_below,
                           "overrule_above": base.llm_judge_overrule_above, "modes": {}}
    with tempfile.TemporaryDirectory() as tmp:
        files = case_files(Path(tmp))
        for mode in modes:
            settings = base.model_copy(update=MODES[mode])
            started = time.time()
            result = run(files, settings, make, lambda folder, local: ingest(folder, local))
            by_set = {name.removesuffix(".jsonl"): rs for name, rs in result.results.items()}
            sets = {name: compute(rs) for name, rs in by_set.items()}
            sets["tuned"] = compute([r for n in TUNED for r in by_set[n]])
            sets["held out"] = compute([r for n in HELD_OUT for r in by_set[n]])
            sets["all"] = compute([r for rs in by_set.values() for r in rs])
            out["modes"][mode] = {"seconds": round(time.time() - started), "sets": sets}
            if replies is not None:  # model requests answered from the file / sent to the model
                out["modes"][mode]["requests"] = dict(replies.counts)
                replies.counts.update(replayed=0, sent=0)
            print(f"{mode}: {time.time() - started:.0f} s", file=sys.stderr, flush=True)
    return out


def table(results: dict[str, Any]) -> list[str]:
    """Markdown: one row per set and mode."""
    lines = ["| set | mode | unanswerable refused | answerable wrongly refused | expected cited | must_contain "
             "| citation precision | model-written | outcomes | p50 / p95 ms |",
             "|---|---|---:|---:|---:|---:|---:|---:|---|---:|"]
    replayed = {mode for mode, r in results["modes"].items() if r.get("requests", {}).get("replayed")}
    names = list(next(iter(results["modes"].values()))["sets"])
    for name in names:
        for mode, r in results["modes"].items():
            m = r["sets"][name]
            outcomes = ", ".join(f"{k} {v}" for k, v in (m.get("composer") or {}).items() if v)
            lines.append(f"| {name} | {mode} | {fmt(m.get('refusal_recall'))} | {fmt(m.get('wrongly_refused'))} | "
                         f"{fmt(m.get('any_expected_cited'))} | {fmt(m.get('must_contain'))} | "
                         f"{fmt(m.get('citation_precision'))} | "
                         f"{fmt(m.get('model_written')) if 'write' in mode else '–'} | {outcomes or '–'} | "
                         + (f"{fmt(m.get('latency_p50_ms'))} / {fmt(m.get('latency_p95_ms'))} |"
                            if mode not in replayed else "replayed |"))
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--modes", default="offline,judge,write,write+judge")
    ap.add_argument("--data-dir", type=Path, default=None, help="where the sample rulebook is indexed "
                    "(default RULEBOOK_DATA_DIR)")
    ap.add_argument("--replies", type=Path, default=None, help="JSONL of model replies kept between runs")
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--label", default=None, help="what the model is, for the report (default RULEBOOK_LLM)")
    args = ap.parse_args(argv)
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = [m for m in modes if m not in MODES]
    if unknown:
        ap.error(f"unknown mode(s) {unknown}; choose from {list(MODES)}")
    replies = None
    if args.replies:
        from langchain_core.globals import set_llm_cache

        replies = ReplayCache(args.replies)
        set_llm_cache(replies.cache)
    results = measure(modes, args.data_dir, replies, args.label)
    args.out.write_text(json.dumps(results, ensure_ascii=False, indent=1) + "\n", "utf-8")
    print("\n".join(table(results)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
