"""Verbatim recall: ask with the first 40 characters of every article, expect that article first.

    python -m eval.benchmarks.verbatim [FOLDER] [--chars 40] [--data-dir D]

Defaults to the 15 labour laws of the shared corpora (685 articles). A sanity check of the whole
pipeline (structure, chunking, both retrieval legs, fusion): text copied out of a rule must find
that rule. Prints hit@1 and the misses.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
from pathlib import Path

from assistant.config import load_settings
from assistant.core import build_assistant
from ingest.pipeline import ingest

DEFAULT = Path(__file__).resolve().parents[3] / "shared" / "corpora" / "labour-law"
ARTICLE = re.compile(r"^第[一二三四五六七八九十百千零〇两\d]+条")


def verbatim_recall(folder: Path, data_dir: Path, chars: int = 40) -> tuple[float, list[str], int]:
    settings = load_settings(data_dir=data_dir)
    ingest(folder, settings)
    assistant = build_assistant(settings)
    snapshot = assistant._current().snapshot
    articles = [c for c in snapshot.clauses if ARTICLE.match(c.label)]
    misses = []
    for c in articles:
        hits = assistant._current().searcher.search(c.text[:chars], 10).hits
        if not hits or hits[0].clause.clause_id != c.clause_id:
            top = hits[0].clause if hits else None
            misses.append(f"{c.source} {c.label} → {top.source + ' ' + top.label if top else 'nothing'}")
    return 1 - len(misses) / len(articles), misses, len(articles)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folder", nargs="?", type=Path, default=DEFAULT)
    ap.add_argument("--chars", type=int, default=40)
    ap.add_argument("--data-dir", type=Path, default=None)
    args = ap.parse_args(argv)
    if not args.folder.is_dir():
        print(f"{args.folder} not found", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        rate, misses, n = verbatim_recall(args.folder, args.data_dir or Path(tmp), args.chars)
    print(f"articles {n}  verbatim hit@1 {rate:.4f}  misses {len(misses)}")
    for m in misses:
        print("  miss:", m)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
