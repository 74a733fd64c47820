"""What owners' corrections do: paraphrases fixed, unrelated answers changed.

    python -m eval.benchmarks.corrections [--data-dir DIR] [--similar 0.93]

1. Index the sample rulebook (examples/rulebook) in a scratch data folder.
2. Answer the sample rulebook's single-question eval cases (eval/cases/sample_rulebook*.jsonl,
   near_miss_blind.jsonl) and the paraphrases of eval/corrections/paraphrases.jsonl — questions
   written by someone who saw only the corrected question, never the rulebook — with no correction.
3. Curate the 30 questions of eval/corrections/curated.jsonl (questions the pipeline answered
   wrongly: their expected clauses, or "not covered" for the unanswerable ones).
4. Answer everything again; then learn from the corrections (`rulebook learn`, no other pairs)
   and answer everything once more. Print: paraphrases right before/after, eval cases changed for the
   better or the worse (the curated questions themselves counted apart), and the similarity
   calibration: cosines of paraphrase pairs against pairs of eval questions answered by different
   clauses. Writes eval/corrections/results.json.
"""

from __future__ import annotations

import argparse
import itertools
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
CASES = ROOT / "eval" / "cases"
HERE = ROOT / "eval" / "corrections"
SETS = ("sample_rulebook.jsonl", "sample_rulebook_blind.jsonl", "sample_rulebook_blind_2.jsonl",
        "near_miss_blind.jsonl")


def read(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def keys(case: dict[str, Any]) -> frozenset[tuple[str, str]]:
    return frozenset((e["source"], e["clause"]) for e in case["expected"]) if case["answerable"] else frozenset()


def right(case: dict[str, Any], answer: Any) -> bool:
    if not case["answerable"]:
        return not answer.grounded
    # An expected "clause" may name a section: a cited clause under it counts, as in `rulebook eval`.
    cited = {(c.source, part) for c in answer.citations for part in (c.clause, *c.path)}
    return answer.grounded and bool(keys(case) & cited)


def answer_all(assistant: Any, cases: list[dict[str, Any]]) -> dict[str, Any]:
    return {c["id"]: assistant.answer(c["question"]) for c in cases}


def calibration(assistant: Any, cases: list[dict[str, Any]], paraphrases: list[dict[str, Any]]) -> dict[str, Any]:
    """Cosines of paraphrase pairs, and of pairs of eval questions that a correction must not join:
    answered by different clauses, or one answerable and the other not."""
    with assistant._searching() as loaded:
        def vec(text: str) -> np.ndarray:
            v = assistant.embedder.query_array(loaded.searcher.plan(text).embed_text)
            return v / np.linalg.norm(v)

        by_id = {c["id"]: c for c in cases}
        vectors = {c["id"]: vec(c["question"]) for c in cases}
        para = [float(vec(p["question"]) @ vectors[p["of"]]) for p in paraphrases if p["of"] in vectors]
        harmful = []
        for a, b in itertools.combinations(list(vectors), 2):
            ka, kb = keys(by_id[a]), keys(by_id[b])
            if (ka or kb) and not (ka & kb):
                harmful.append(float(vectors[a] @ vectors[b]))
    thresholds = (0.90, 0.91, 0.92, 0.93, 0.94, 0.95)
    return {
        "paraphrase_pairs": len(para), "harmful_pairs": len(harmful),
        "by_threshold": {str(t): {"paraphrases_at_or_above": sum(s >= t for s in para),
                                  "harmful_pairs_at_or_above": sum(s >= t for s in harmful)} for t in thresholds},
    }


def main() -> None:
    from assistant.config import load_settings
    from assistant.core import build_assistant
    from assistant.curation import open_curations
    from ingest.pipeline import ingest

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", type=Path, help="Scratch data folder (default: a temporary one).")
    parser.add_argument("--similar", type=float, default=None, help="Paraphrase threshold to measure.")
    parser.add_argument("--out", type=Path, default=HERE / "results.json")
    args = parser.parse_args()

    scratch = args.data_dir or Path(tempfile.mkdtemp(prefix="rulebook-corrections-"))
    overrides: dict[str, Any] = {"data_dir": scratch}
    if args.similar is not None:
        overrides["curated_similar"] = args.similar
    settings = load_settings(**overrides)
    ingest(ROOT / "examples" / "rulebook", settings)
    curated_path = Path(settings.data_dir) / "curated.sqlite"
    for leftover in (curated_path, *curated_path.parent.glob("curated.sqlite-*")):
        leftover.unlink(missing_ok=True)

    cases = [c for name in SETS for c in read(CASES / name) if not c.get("history")]
    to_curate = read(HERE / "curated.jsonl")
    paraphrases = read(HERE / "paraphrases.jsonl")
    curated_ids = {c["id"] for c in to_curate}

    assistant = build_assistant(settings)
    before = answer_all(assistant, cases + paraphrases)

    store = open_curations(settings.data_dir, create=True)
    snapshot = assistant._current().snapshot
    by_key = {(c.source, c.label): c for c in snapshot.clauses}
    for case in to_curate:
        rows = [{"clause_id": by_key[k].clause_id, "source": k[0], "clause": k[1], "document": by_key[k].document}
                for k in sorted(keys(case)) if k in by_key]
        store.add(case["question"], "clauses" if case["answerable"] else "not_covered", rows)
    after = answer_all(assistant, cases + paraphrases)
    corrected = {c.curation_id: c.question for c in store.items()}

    def via(answer: Any) -> str | None:
        return corrected.get(answer.curated["id"]) if answer.curated else None

    para_before = sum(right(p, before[p["id"]]) for p in paraphrases)
    para_after = sum(right(p, after[p["id"]]) for p in paraphrases)
    para_matched = sum(after[p["id"]].curated is not None for p in paraphrases)
    better, worse, changed = [], [], []
    for c in cases:
        if c["id"] in curated_ids:
            continue
        b, a = before[c["id"]], after[c["id"]]
        if a.curated is not None:
            changed.append(c["id"])
        rb, ra = right(c, b), right(c, a)
        if ra and not rb:
            better.append({"id": c["id"], "question": c["question"], "via": via(a)})
        elif rb and not ra:
            worse.append({"id": c["id"], "question": c["question"], "via": via(a)})
    curated_right = sum(right(c, after[c["id"]]) for c in to_curate)

    # 5. `rulebook learn` over the corrections alone, then everything once more.
    from assistant.learned import learn

    learn([], settings, curated=True)
    learned = answer_all(assistant, cases + paraphrases)
    learned_para = sum(right(p, learned[p["id"]]) for p in paraphrases)
    learned_other = [c for c in cases if c["id"] not in curated_ids]
    learned_better = sum(right(c, learned[c["id"]]) and not right(c, before[c["id"]]) for c in learned_other)
    learned_worse = [{"id": c["id"], "question": c["question"]} for c in learned_other
                     if right(c, before[c["id"]]) and not right(c, learned[c["id"]])]
    result = {
        "similar": settings.curated_similar,
        "curated": len(to_curate), "curated_right_after": curated_right,
        "curated_right_before": sum(right(c, before[c["id"]]) for c in to_curate),
        "paraphrases": len(paraphrases), "paraphrases_right_before": para_before,
        "paraphrases_right_after": para_after, "paraphrases_matched_a_correction": para_matched,
        "other_cases": len(cases) - len(curated_ids & {c["id"] for c in cases}),
        "other_cases_following_a_correction": len(changed),
        "other_cases_better": better, "other_cases_worse": worse,
        "after_learning": {"paraphrases_right": learned_para, "curated_right": sum(
            right(c, learned[c["id"]]) for c in to_curate), "other_cases_better": learned_better,
            "other_cases_worse": learned_worse},
        "calibration": calibration(assistant, cases, paraphrases),
    }
    args.out.write_text(json.dumps(result, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    print(f"threshold {result['similar']}")
    print(f"curated questions right: {result['curated_right_before']} → {curated_right} of {len(to_curate)}")
    print(f"paraphrases right: {para_before} → {para_after} of {len(paraphrases)} "
          f"({para_matched} followed a correction)")
    print(f"other eval cases: {result['other_cases']}; following a correction {len(changed)}; "
          f"better {len(better)}; worse {len(worse)}")
    for w in worse:
        print(f"  worse: {w['id']} {w['question']}  (via {w['via']})")
    after_learning = result["after_learning"]
    print(f"after `rulebook learn` on the corrections: paraphrases right {learned_para} of {len(paraphrases)}; "
          f"curated {after_learning['curated_right']} of {len(to_curate)}; other cases better {learned_better}, "
          f"worse {len(learned_worse)}")
    cal = result["calibration"]
    for t, row in cal["by_threshold"].items():
        print(f"  cosine ≥ {t}: paraphrase pairs {row['paraphrases_at_or_above']}/{cal['paraphrase_pairs']}, "
              f"pairs a correction must not join {row['harmful_pairs_at_or_above']}/{cal['harmful_pairs']}")
    assistant.close()
    store.close()
    if args.data_dir is None:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
