"""A real-question floor: the CI slice of the STARD benchmark's dev split.

The slice (`eval/benchmarks/stard_slice.json`, ids only) is every dev question whose gold articles
all lie in four statute files: real questions from the public, phrased the way people ask, not the
way the rules are written. Those files are ingested cold into a temporary data dir and every
question is asked through the assistant (`python -m eval.benchmarks.stard --slice`). The floors sit
about 0.03 below what the pipeline measured when they were set, so a retrieval regression fails
the build; raise them when the pipeline improves. Skipped when the benchmark is not beside this
checkout.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from .conftest import SHARED, need_shared

STARD = SHARED / "benchmarks" / "stard"
FLOORS = {"hit@5": 0.78, "mrr@10": 0.68}  # measured 0.808 and 0.706 (156 questions)


@pytest.mark.slow
def test_stard_slice_floor(tmp_path: Path) -> None:
    bench = need_shared(STARD)
    from eval.benchmarks.stard import load_slice, run

    result = run(bench, tmp_path / "data", ["dev"], use_slice=True, timings=False)
    m = result["splits"]["dev"]
    assert m["cases"] == len(load_slice()["ids"])
    low = {k: round(m[k], 3) for k, floor in FLOORS.items() if m[k] < floor}
    assert not low, f"STARD slice below its floors {FLOORS}: {low} (all: {m})"
