"""Cross-validated figures for what `rulebook learn` adds (`assistant/learned.py`).

    python -m eval.benchmarks.learned_cv DEV.jsonl --data-dir D [--folds 5] [--test TEST.jsonl]

The questions of DEV are split into folds; for each fold a resource is learned from the other
folds and the held-out questions are searched with it, so no question is ever scored by a
resource that saw it. With `--test`, a resource learned from all of DEV is applied to TEST once.
Each configuration is reported: no resource, each part alone (question memory, term associations,
query adapter), memory with associations, and all three; each with and without the bundled
dictionary.

Every question's BM25 scores, vector similarities and query vector are computed once with the
served index's own searcher, and each configuration re-does only the learned arithmetic of
`HybridSearcher.search` on them (same expansion, adapter, memory leg and fusion), so the figures
equal what `rulebook eval` reports for retrieval, at a fraction of the time.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from assistant.config import load_settings
from assistant.learned import (
    DEFAULT_WEIGHTS,
    ClauseKey,
    LearnedResource,
    LearnedScorer,
    LearnedWeights,
    Pair,
    build_resource,
    clause_key,
    clause_vectors,
    read_pairs,
    rule_word_shares,
)
from assistant.retrieval import HybridSearcher, default_synonym_files, load_synonyms

# Which parts each configuration learns: (memory, associations, adapter).
CONFIGS = {"baseline": (False, False, False), "memory": (True, False, False), "associations": (False, True, False),
           "memory+associations": (True, True, False), "adapter": (False, False, True), "all": (True, True, True)}


@dataclass
class Legs:
    """One question's scores that do not depend on what was learned."""

    pair: Pair
    own_tokens: list[str]
    lexical: dict[bool, np.ndarray]  # bundled dictionary on / off → BM25 of the plan's tokens
    semantic: np.ndarray
    qvec: np.ndarray


class _TermScores:
    """BM25 of single terms, memoised: each configuration asks for the same few thousand."""

    def __init__(self, bm25: Any) -> None:
        self.bm25 = bm25
        self.cache: dict[str, np.ndarray] = {}

    def get_scores(self, tokens: list[str]) -> np.ndarray:
        (term,) = tokens
        if term not in self.cache:
            self.cache[term] = np.asarray(self.bm25.get_scores([term]), dtype=np.float32)
        return self.cache[term]


class Bench:
    """The served index's searchers (dictionary on and off) and every question's legs."""

    def __init__(self, data_dir: Path) -> None:
        from assistant.core import build_assistant

        settings = load_settings(data_dir=data_dir, learned=False)
        assistant = build_assistant(settings)
        loaded = assistant._current()
        self.on: HybridSearcher = loaded.searcher
        self.off = HybridSearcher(loaded.snapshot, assistant.embedder, assistant.tokenizer,
                                  load_synonyms(default_synonym_files(settings.synonyms_file, bundled=False)))
        self.snapshot = loaded.snapshot
        self.clauses = loaded.snapshot.clauses
        self.clause_vectors = clause_vectors(loaded.snapshot)
        self.background = rule_word_shares(self.on.clause_tokens)
        self.embedder_name = assistant.embedder_name
        self.by_key: dict[ClauseKey, list[int]] = {}
        for i, c in enumerate(self.clauses):
            self.by_key.setdefault(clause_key(c.source, c.label), []).append(i)
        self.position = {c.clause_id: i for i, c in enumerate(self.clauses)}
        self.terms = _TermScores(self.on.bm25)

    def legs(self, pairs: Sequence[Pair]) -> list[Legs]:
        out = []
        for p in pairs:
            plan_on, plan_off = self.on.plan(p.question), self.off.plan(p.question)
            qvec = self.on.embedder.query_array(plan_on.embed_text)
            semantic, _ = self.on._semantic(plan_on.embed_text, qvec)
            lexical = {flag: (np.asarray(s.bm25.get_scores(plan.tokens), dtype=np.float32)
                              if plan.tokens else np.zeros(len(self.clauses), dtype=np.float32))
                       for flag, s, plan in ((True, self.on, plan_on), (False, self.off, plan_off))}
            out.append(Legs(p, plan_on.own_tokens, lexical, semantic, qvec))
        return out

    def learn(self, legs: Sequence[Legs], parts: tuple[bool, bool, bool]) -> LearnedResource:
        memory, associations, adapter = parts
        resource, _ = build_resource(
            [g.pair for g in legs], self.clauses, lambda c: self.on.clause_tokens[self.position[c.clause_id]],
            self.on.tokenizer, None, self.embedder_name, memory=memory, associations=associations,
            adapter=adapter, clause_vectors=self.clause_vectors, vectors=np.stack([g.qvec for g in legs]),
            background=self.background)
        return resource

    def ranks(self, legs: Sequence[Legs], scorer: LearnedScorer | None, bundled: bool) -> list[list[int]]:
        """For each question, the clause indices of `search`'s top 10 (the same arithmetic)."""
        out = []
        for g in legs:
            lexical = g.lexical[bundled]
            if scorer is not None and lexical.any():
                lexical = lexical + scorer.expansion_scores(self.terms, g.own_tokens)
            ranking = scorer.adapted_semantic(g.qvec) if scorer is not None and scorer.has_adapter else g.semantic
            fused = HybridSearcher._fuse(lexical, ranking)
            if scorer is not None and scorer.memory_weight > 0:
                fused += scorer.memory_weight * scorer.memory_scores(g.qvec)
            order = np.argsort(-fused, kind="stable")[:10]
            out.append([int(i) for i in order if fused[i] > 0])
        return out

    def metrics(self, legs: Sequence[Legs], ranks: list[list[int]]) -> dict[str, float]:
        """hit@1/5/10, MRR@10 and recall@5 as `eval/metrics.py` defines them."""
        h1 = h5 = h10 = mrr = rec = 0.0
        for g, top in zip(legs, ranks, strict=True):
            want = set(g.pair.expected)
            keys = [clause_key(self.clauses[i].source, self.clauses[i].label) for i in top]
            rank = next((n for n, k in enumerate(keys, start=1) if k in want), None)
            h1 += rank == 1
            h5 += rank is not None and rank <= 5
            h10 += rank is not None
            mrr += 1.0 / rank if rank else 0.0
            rec += len(want & set(keys[:5])) / len(want)
        n = max(1, len(legs))
        return {"hit@1": h1 / n, "hit@5": h5 / n, "hit@10": h10 / n, "mrr@10": mrr / n, "recall@5": rec / n}

    def score(self, train: Sequence[Legs], held_out: Sequence[Legs], config: str, bundled: bool,
              weights: LearnedWeights = DEFAULT_WEIGHTS) -> list[list[int]]:
        if config == "baseline":
            return self.ranks(held_out, None, bundled)
        scorer = LearnedScorer(self.learn(train, CONFIGS[config]), self.snapshot, self.on.idf, weights)
        return self.ranks(held_out, scorer, bundled)


def folds(n: int, k: int, seed: int = 13) -> list[list[int]]:
    """`k` disjoint folds of `range(n)`, shuffled with a fixed seed."""
    order = list(range(n))
    random.Random(seed).shuffle(order)
    return [sorted(order[i::k]) for i in range(k)]


def cross_validate(bench: Bench, legs: list[Legs], k: int, config: str, bundled: bool,
                   weights: LearnedWeights = DEFAULT_WEIGHTS) -> dict[str, float]:
    """Metrics over all of `legs`, each question scored by a resource learned without its fold."""
    ranks: list[list[int]] = [[] for _ in legs]
    for fold in folds(len(legs), k):
        held = set(fold)
        train = [g for i, g in enumerate(legs) if i not in held]
        for i, r in zip(fold, bench.score(train, [legs[i] for i in fold], config, bundled, weights), strict=True):
            ranks[i] = r
    return bench.metrics(legs, ranks)


def _row(name: str, m: dict[str, float]) -> str:
    return f"| {name} | " + " | ".join(f"{m[c]:.3f}" for c in ("hit@1", "hit@5", "hit@10", "mrr@10", "recall@5")) + " |"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dev", type=Path)
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--test", type=Path, help="Learn on all of DEV, then score these cases once.")
    parser.add_argument("--weights", help='JSON overrides of LearnedWeights, e.g. \'{"memory": 0.4}\'.')
    parser.add_argument("--json", type=Path, help="Also write the figures here.")
    args = parser.parse_args(argv)
    weights = replace(DEFAULT_WEIGHTS, **json.loads(args.weights)) if args.weights else DEFAULT_WEIGHTS

    t0 = time.perf_counter()
    bench = Bench(args.data_dir)
    dev = [g for g in bench.legs(read_pairs([args.dev])) if any(k in bench.by_key for k in g.pair.expected)]
    test = bench.legs(read_pairs([args.test])) if args.test else []
    print(f"{len(dev)} dev questions, {len(test)} test questions, {len(bench.clauses)} clauses "
          f"({time.perf_counter() - t0:.0f} s)", file=sys.stderr)
    figures: dict[str, Any] = {"weights": weights.__dict__, "folds": args.folds}
    header = "| configuration | hit@1 | hit@5 | hit@10 | MRR@10 | recall@5 |\n|---|---:|---:|---:|---:|---:|"
    for split in ("dev-cv", "test") if test else ("dev-cv",):
        print(f"\n{split}\n{header}")
        for bundled in (True, False):
            for config in CONFIGS:
                if split == "dev-cv":
                    m = cross_validate(bench, dev, args.folds, config, bundled, weights)
                else:
                    m = bench.metrics(test, bench.score(dev, test, config, bundled, weights))
                name = f"{config}, dictionary {'on' if bundled else 'off'}"
                figures.setdefault(split, {})[name] = m
                print(_row(name, m), flush=True)
    if args.json:
        args.json.write_text(json.dumps(figures, ensure_ascii=False, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
