"""Metrics of the design card, computed from per-case results.

Retrieval (answerable cases with expected clauses, over `retrieved`): hit@1, hit@5, hit@10,
MRR@10, recall@5. Citations: precision = cited clauses that are expected / all cited clauses (micro,
over answerable cases), any-expected-cited = answerable cases with at least one expected clause
cited. Refusals (a refusal is the positive class): precision and recall over `answerable`, plus
the share of answerable questions wrongly refused. `must_contain` rate over cases that have it.
Latency p50/p95 of the whole answer. Conversations: `from_previous` counts questions that stand on
their own (not elliptical follow-ups) answered from a clause that answered an earlier turn.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from assistant.text import normalise

# The metrics of a report, in display order.
COLUMNS = ["cases", "hit@1", "hit@5", "hit@10", "mrr@10", "recall@5", "citation_precision", "any_expected_cited",
           "refusal_precision", "refusal_recall", "wrongly_refused", "from_previous", "must_contain", "latency_p50_ms",
           "latency_p95_ms"]


def fmt(value: Any) -> str:
    """A metric for people: rates with three decimals, milliseconds whole, missing as a dash."""
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.3f}" if value <= 1.0 else f"{value:.0f}"
    return str(value)


def clause_key(source: str, clause: str) -> tuple[str, str]:
    """Clauses match when the file name of the source and the clause label are equal."""
    return (PurePosixPath(source.replace("\\", "/")).name, clause.strip())


@dataclass
class CaseResult:
    id: str
    file: str
    question: str
    answerable: bool
    expected: list[dict[str, str]]
    must_contain: list[str]
    history: list[str]
    grounded: bool
    answer: str
    retrieved: list[dict[str, Any]]
    cited: list[dict[str, Any]]
    latency_ms: float
    confidence: float
    standalone_question: str = ""
    kind: str = ""  # conversations: elliptical | complete | switch
    previous_expected: list[dict[str, str]] | None = None  # what answered the earlier turns
    outcome: str = ""  # model | fallback | declined | gate | offline (see assistant.schema.Answer)
    checks: list[str] | None = None  # what the checks did to a model's reply

    def expected_keys(self) -> set[tuple[str, str]]:
        return {clause_key(e["source"], e["clause"]) for e in self.expected}

    def rank(self) -> int | None:
        """1-based rank of the first expected clause in `retrieved`."""
        want = self.expected_keys()
        for i, r in enumerate(self.retrieved, start=1):
            if clause_key(r["source"], r["clause"]) in want:
                return i
        return None

    def to_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        d = asdict(self)
        d["rank"] = self.rank()
        return d


def _pct(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    s = sorted(values)
    i = min(len(s) - 1, max(0, round(q * (len(s) - 1))))
    return s[i]


def _mean(values: Iterable[float]) -> float | None:
    v = list(values)
    return sum(v) / len(v) if v else None


def compute(results: list[CaseResult]) -> dict[str, Any]:
    answerable = [r for r in results if r.answerable]
    with_gold = [r for r in answerable if r.expected]
    unanswerable = [r for r in results if not r.answerable]

    ranks = [r.rank() for r in with_gold]
    m: dict[str, Any] = {"cases": len(results), "answerable": len(answerable),
                         "unanswerable": len(unanswerable)}
    m["hit@1"] = _mean(1.0 if k == 1 else 0.0 for k in ranks)
    m["hit@5"] = _mean(1.0 if k is not None and k <= 5 else 0.0 for k in ranks)
    m["hit@10"] = _mean(1.0 if k is not None and k <= 10 else 0.0 for k in ranks)
    m["mrr@10"] = _mean(1.0 / k if k is not None and k <= 10 else 0.0 for k in ranks)
    m["recall@5"] = _mean(
        len(r.expected_keys() & {clause_key(x["source"], x["clause"]) for x in r.retrieved[:5]})
        / len(r.expected_keys())
        for r in with_gold
    )

    cited_total = cited_good = 0
    any_cited: list[float] = []
    for r in with_gold:
        want = r.expected_keys()
        keys = [clause_key(c["source"], c["clause"]) for c in r.cited]
        cited_total += len(keys)
        cited_good += sum(1 for k in keys if k in want)
        any_cited.append(1.0 if any(k in want for k in keys) else 0.0)
    m["citation_precision"] = cited_good / cited_total if cited_total else None
    m["any_expected_cited"] = _mean(any_cited)

    refused_unans = sum(1 for r in unanswerable if not r.grounded)
    refused_all = sum(1 for r in results if not r.grounded)
    m["refusal_recall"] = refused_unans / len(unanswerable) if unanswerable else None
    m["refusal_precision"] = refused_unans / refused_all if refused_all else None
    m["wrongly_refused"] = (sum(1 for r in answerable if not r.grounded) / len(answerable)
                            if answerable else None)

    # A question that stands on its own, answered from a clause that answered an earlier turn and
    # not one it expects: the previous topic carried into an unrelated question.
    m["from_previous"] = sum(
        1 for r in results
        if r.history and r.kind != "elliptical" and r.grounded and any(
            clause_key(c["source"], c["clause"]) in
            {clause_key(e["source"], e["clause"]) for e in r.previous_expected or []} - r.expected_keys()
            for c in r.cited)
    ) if any(r.history for r in results) else None

    mc = [r for r in answerable if r.must_contain]
    m["must_contain"] = _mean(
        1.0 if all(normalise(s) in normalise(r.answer) for s in r.must_contain) else 0.0
        for r in mc
    )
    # With a model configured: whose text the answers were, and why the model's was not used.
    # ("judged": the judge found the first clause does not answer, a refusal; with a judge and no
    # writing model the rest are "offline".)
    always = ("model", "fallback", "declined", "overruled")  # counted even when 0
    kinds = (*always, "judged")
    if any(r.outcome in kinds for r in results):
        # An offline answer with checks is one a failed judge request left as it was.
        composed = [r for r in results if r.outcome in kinds or (r.outcome == "offline" and r.checks)]
        m["composer"] = {o: n for o in (*kinds, "offline") if (n := sum(1 for r in results if r.outcome == o))
                         or o in always}
        grounded = [r for r in results if r.grounded]
        m["model_written"] = (sum(1 for r in grounded if r.outcome == "model") / len(grounded)
                              if grounded else None)
        reasons: dict[str, int] = {}
        for r in composed:
            for check in {_check_kind(c) for c in r.checks or []}:
                reasons[check] = reasons.get(check, 0) + 1
        m["checks"] = dict(sorted(reasons.items(), key=lambda kv: -kv[1]))
    lat = [r.latency_ms for r in results]
    m["latency_p50_ms"] = _pct(lat, 0.5)
    m["latency_p95_ms"] = _pct(lat, 0.95)
    return m


def _check_kind(note: str) -> str:
    """A check note without its particulars ("dropped sentence with unsupported figure(s) ['5']: …"
    → "dropped sentence with unsupported figure(s)")."""
    for stop in (" [", " (", ":"):
        note = note.split(stop, 1)[0]
    return note.strip()


def threshold_sweep(results: list[CaseResult], thresholds: list[float]) -> list[dict[str, float]]:
    """Refusal precision/recall if the gate threshold were t (from each case's confidence)."""
    rows = []
    unans = [r for r in results if not r.answerable]
    ans = [r for r in results if r.answerable]
    for t in thresholds:
        refused = [r for r in results if r.confidence < t]
        tp = sum(1 for r in refused if not r.answerable)
        rows.append({
            "threshold": t,
            "refusal_precision": tp / len(refused) if refused else 1.0,
            "refusal_recall": tp / len(unans) if unans else 1.0,
            "wrongly_refused": (sum(1 for r in ans if r.confidence < t) / len(ans)) if ans else 0.0,
        })
    return rows
