"""Knowledge gaps: what staff ask that the rulebook does not answer.

Refused and 👎 questions grouped by meaning with the embedder the index already uses: each question
joins the first group whose first question it is close to (cosine of the e5 query vectors at least
`SIMILAR`), groups largest first. Greedy and order-dependent, but deterministic and linear in the
number of groups; the owners read the groups, so what matters is that paraphrases land together.
"""

from __future__ import annotations

from typing import Any

import numpy as np

SIMILAR = 0.92  # e5 query cosines are compressed: paraphrases 0.94–0.97, unrelated questions 0.81–0.89


def group_questions(items: list[dict[str, Any]], embed: Any, similar: float = SIMILAR,
                    examples: int = 5) -> list[dict[str, Any]]:
    """Groups of `items` (each with `question` and `answer_id`), largest first: size, the first
    `examples` questions, every answer id, and how many were refused and rated 👎."""
    groups: list[dict[str, Any]] = []
    heads: list[np.ndarray] = []
    for item in items:
        v = np.asarray(embed(item["question"]), dtype=np.float32)
        v = v / max(float(np.linalg.norm(v)), 1e-9)
        best, score = -1, similar
        for i, h in enumerate(heads):
            s = float(v @ h)
            if s >= score:
                best, score = i, s
        if best < 0:
            heads.append(v)
            groups.append({"size": 0, "questions": [], "answer_ids": [], "refused": 0, "down": 0})
            best = len(groups) - 1
        g = groups[best]
        g["size"] += 1
        g["answer_ids"].append(item["answer_id"])
        if len(g["questions"]) < examples and item["question"] not in g["questions"]:
            g["questions"].append(item["question"])
        g["refused"] += int(not item.get("grounded", True))
        g["down"] += int(any(f.get("rating") == "down" for f in item.get("feedback", [])))
    return sorted(groups, key=lambda g: (-g["size"], g["questions"][0]))
