"""Run eval case files against the assistant.

A case file may name the rulebook it is about in `corpora.json` beside it (file name → folder,
relative to that JSON file). Such files are evaluated on their own index of that folder, built
under `DATA_DIR/eval/<name>` (a sync: cheap when nothing changed); when the folder is absent (for
example `../shared` on a bare clone) the file is skipped with the reason. Files not named there
are evaluated against the index in `--data-dir`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from assistant.config import Settings
from assistant.schema import Turn
from eval.metrics import CaseResult, compute

CORPORA_FILE = "corpora.json"


@dataclass
class CaseFile:
    path: Path
    cases: list[dict[str, Any]]
    corpus: Path | None  # folder to ingest for this file, or None for --data-dir
    skip_reason: str | None = None


@dataclass
class EvalRun:
    files: list[CaseFile]
    results: dict[str, list[CaseResult]] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)

    def all_results(self) -> list[CaseResult]:
        return [r for rs in self.results.values() for r in rs]

    def metrics(self) -> dict[str, Any]:
        out = {name: compute(rs) for name, rs in self.results.items()}
        out["overall"] = compute(self.all_results())
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "metrics": self.metrics(),
            "skipped": self.skipped,
            "cases": [r.to_dict() for r in self.all_results()],
        }


def parse_history(raw: list[Any]) -> list[Turn]:
    """History as strings (earlier questions), {"question","answer"} or chat {"role","content"}."""
    turns: list[Turn] = []
    for item in raw or []:
        if isinstance(item, str):
            turns.append(Turn(question=item))
        elif isinstance(item, dict) and "question" in item:
            turns.append(Turn(question=item["question"], answer=item.get("answer", "")))
        elif isinstance(item, dict) and item.get("role") == "user":
            turns.append(Turn(question=item.get("content", "")))
        elif isinstance(item, dict) and item.get("role") == "assistant" and turns:
            turns[-1] = Turn(turns[-1].question, item.get("content", ""))
    return turns


def load_cases(path: Path) -> list[dict[str, Any]]:
    cases = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            case = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}:{n}: not JSON ({exc.msg})") from exc
        for key in ("id", "question"):
            if key not in case:
                raise ValueError(f"{path}:{n}: missing {key!r}")
        case.setdefault("expected", [])
        case.setdefault("answerable", bool(case["expected"]))
        case.setdefault("must_contain", [])
        case.setdefault("history", [])
        cases.append(case)
    return cases


def discover(paths: list[Path]) -> list[CaseFile]:
    files: list[Path] = []
    for p in paths:
        if p.is_dir():
            files.extend(sorted(p.glob("*.jsonl")))
        else:
            files.append(p)
    out = []
    for f in files:
        mapping_file = f.parent / CORPORA_FILE
        corpus = None
        reason = None
        if mapping_file.exists():
            mapping = json.loads(mapping_file.read_text(encoding="utf-8"))
            if f.name in mapping:
                corpus = (mapping_file.parent / mapping[f.name]).resolve()
                if not corpus.is_dir():
                    reason = (f"its rulebook {mapping[f.name]} is not there "
                              f"(clone the shared corpora beside this repository to run it)")
        out.append(CaseFile(f, load_cases(f), corpus, reason))
    return out


def assistant_factory() -> Callable[[Settings], Any]:
    """`make_assistant` for `run`: one assistant per data dir, one embedding model per setting."""
    from assistant.core import build_assistant
    from assistant.embeddings import make_embedder

    embedders: dict[str, Any] = {}

    def make(local: Settings) -> Any:
        if local.embedding not in embedders:
            embedders[local.embedding] = make_embedder(local.embedding)
        return build_assistant(local, embedder=embedders[local.embedding])

    return make


def corpus_data_dir(settings: Settings, corpus: Path) -> Path:
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", corpus.name).strip("-") or "corpus"
    return Path(settings.data_dir) / "eval" / slug


def run_case(assistant, case: dict[str, Any], file: str) -> CaseResult:  # type: ignore[no-untyped-def]
    history = parse_history(case.get("history", []))
    ans = assistant.answer(case["question"], history)
    d = ans.to_dict()
    return CaseResult(
        id=case["id"], file=file, question=case["question"],
        answerable=bool(case["answerable"]), expected=case["expected"],
        must_contain=case["must_contain"], history=[t.question for t in history],
        grounded=ans.grounded, answer=ans.answer, retrieved=d["retrieved"][:10],
        cited=[{"source": c["source"], "clause": c["clause"], "quote": c["quote"]}
               for c in d["citations"]],
        latency_ms=ans.timings_ms.get("total", 0.0),
        confidence=ans.confidence,
        standalone_question=ans.standalone_question,
        kind=case.get("kind", ""),
        outcome=ans.outcome, checks=list(ans.checks),
        previous_expected=[e for t in case.get("history", []) if isinstance(t, dict)
                           for e in t.get("expected", [])],
    )


def run(paths: list[Path], settings: Settings,
        make_assistant: Callable[[Settings], Any],
        ingest_corpus: Callable[[Path, Settings], None],
        on_case: Callable[[CaseResult], None] | None = None,
        use_data_dir: bool = False) -> EvalRun:
    """Evaluate every case file; `make_assistant`/`ingest_corpus` are injected by the caller."""
    files = discover(paths)
    run_ = EvalRun(files)
    assistants: dict[Path, Any] = {}
    for cf in files:
        name = cf.path.name
        if cf.skip_reason and not use_data_dir:
            run_.skipped[name] = cf.skip_reason
            continue
        if cf.corpus is not None and not use_data_dir:
            local = settings.model_copy(update={"data_dir": corpus_data_dir(settings, cf.corpus)})
            ingest_corpus(cf.corpus, local)
        else:
            local = settings
        key = Path(local.data_dir)
        if key not in assistants:
            assistants[key] = make_assistant(local)
        assistant = assistants[key]
        results = []
        for case in cf.cases:
            r = run_case(assistant, case, name)
            results.append(r)
            if on_case:
                on_case(r)
        run_.results[name] = results
    return run_
