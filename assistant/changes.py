"""What changed in the rulebook between two moments: a clause-aligned diff built from the history.

Clauses are matched by id first (same document, same place: a new content hash is a modification);
what is left on both sides is matched by text, so a renumbered or relocated clause is one `moved`
change instead of a removal and an addition; the rest are `added` and `removed`. A modification
carries a readable character-level diff.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from datetime import datetime
from difflib import SequenceMatcher
from typing import Any

from assistant.errors import RulebookError
from assistant.history import ClauseHistory, Version

MOVE_SIMILARITY = 0.8  # body similarity at which a removed and an added clause are one moved clause
SAME_PLACE_SIMILARITY = 0.5  # below it, the clause at an unchanged number is another clause (renumbering)
MAX_PAIRS = 250_000  # beyond this many candidate pairs, only identical bodies are matched as moves
_LEAD = re.compile(r"^[\s　:：、，,.．]+")


CHANGE_WORDS = {
    "zh": {"added": "新增", "removed": "删除", "modified": "修改", "moved": "移动"},
    "en": {"added": "added", "removed": "removed", "modified": "changed", "moved": "moved"},
}


class ChangesError(RulebookError):
    """No history yet, or `since` names no known generation or date."""


@dataclass(frozen=True)
class Span:
    """Two moments to compare, with their names."""

    old_at: float
    old_name: str
    new_at: float
    new_name: str


def _body(v: Version) -> str:
    """The clause text without its own label (a renumbered 第十五条 → 第十四条 keeps its body)."""
    text = v.text.strip()
    if text.startswith(v.label):
        text = _LEAD.sub("", text[len(v.label):])
    return text


def _similarity(a: str, b: str) -> float:
    m = SequenceMatcher(None, a, b, autojunk=False)
    return m.ratio() if m.quick_ratio() >= SAME_PLACE_SIMILARITY else m.quick_ratio()


def char_diff(old: str, new: str, context: int = 12) -> str:
    """`…kept[-removed-]{+added+}kept…`, with a little unchanged text around each change."""
    out: list[str] = []
    ops = _readable(SequenceMatcher(None, old, new, autojunk=False).get_opcodes(), old, new)
    for i, (tag, a0, a1, b0, b1) in enumerate(ops):
        if tag == "equal":
            piece = old[a0:a1]
            first, last = i == 0, i == len(ops) - 1
            if len(piece) > 2 * context + 1 or ((first or last) and len(piece) > context):
                head = "" if first else piece[:context]
                tail = "" if last else piece[-context:]
                piece = f"{head}…{tail}"
            out.append(piece)
            continue
        if a1 > a0:
            out.append(f"[-{old[a0:a1]}-]")
        if b1 > b0:
            out.append(f"{{+{new[b0:b1]}+}}")
    return "".join(out)


def _readable(ops: list[tuple[str, int, int, int, int]], old: str,
              new: str) -> list[tuple[str, int, int, int, int]]:
    """Fold an unchanged run of at most two characters (or one that splits a number) between two
    changes into them: 24 → 12 reads `[-24-]{+12+}`, not `{+1+}2[-4-]`."""
    out: list[tuple[str, int, int, int, int]] = []
    for op in ops:
        if out and op[0] != "equal" and len(out) >= 2 and out[-1][0] == "equal" and out[-2][0] != "equal":
            _, a0, a1, _, _ = out[-1]
            between = old[a0:a1]
            if len(between) <= 2 or between.isdigit():
                prev = out[-2]
                out[-2:] = [("replace", prev[1], op[2], prev[3], op[4])]
                continue
        if out and op[0] != "equal" and out[-1][0] != "equal":
            prev = out.pop()
            op = ("replace", prev[1], op[2], prev[3], op[4])
        out.append(op)
    return _whole_numbers(out, old, new)


def _whole_numbers(ops: list[tuple[str, int, int, int, int]], old: str,
                   new: str) -> list[tuple[str, int, int, int, int]]:
    """Widen a change that cuts into a number to the whole number: 10 → 12 reads `[-10-]{+12+}`."""
    out = list(ops)
    for k, (tag, a0, a1, b0, b1) in enumerate(out):
        if tag == "equal":
            continue
        touches_digit = any(ch.isdigit() for ch in old[a0:a1] + new[b0:b1])
        if k > 0 and out[k - 1][0] == "equal" and touches_digit:
            _, e0, e1, f0, f1 = out[k - 1]
            n = 0
            while e1 - n > e0 and old[e1 - n - 1].isdigit():
                n += 1
            if n:
                out[k - 1] = ("equal", e0, e1 - n, f0, f1 - n)
                a0, b0 = a0 - n, b0 - n
        if k + 1 < len(out) and out[k + 1][0] == "equal" and touches_digit:
            _, e0, e1, f0, f1 = out[k + 1]
            n = 0
            while e0 + n < e1 and old[e0 + n].isdigit():
                n += 1
            if n:
                out[k + 1] = ("equal", e0 + n, e1, f0 + n, f1)
                a1, b1 = a1 + n, b1 + n
        out[k] = ("replace", a0, a1, b0, b1)
    return [op for op in out if op[0] != "equal" or op[2] > op[1]]


def diff(old: list[Version], new: list[Version]) -> list[dict[str, Any]]:
    """The changes from `old` to `new` (each the clause versions served at one moment)."""
    old_by_id = {v.clause_id: v for v in old}
    new_by_id = {v.clause_id: v for v in new}
    changes: list[tuple[Version | None, Version | None, str]] = []
    unpaired: set[str] = set()
    for cid, n in new_by_id.items():
        o = old_by_id.get(cid)
        if o is None or o.content_hash == n.content_hash:
            continue
        if _similarity(_body(o), _body(n)) >= SAME_PLACE_SIMILARITY:
            changes.append((o, n, "modified"))
        else:  # another clause now sits at this number (renumbering): match both by text below
            unpaired.add(cid)
    removed = [v for cid, v in old_by_id.items() if cid not in new_by_id or cid in unpaired]
    added = [v for cid, v in new_by_id.items() if cid not in old_by_id or cid in unpaired]
    # Moves: identical bodies first, then the most similar pairs (same file before other files).
    pairs: list[tuple[float, int, int, int]] = []
    bodies_r, bodies_a = [_body(v) for v in removed], [_body(v) for v in added]
    exact: dict[str, list[int]] = {}
    for j, b in enumerate(bodies_a):
        exact.setdefault(b, []).append(j)
    fuzzy = len(removed) * len(added) <= MAX_PAIRS
    for i, rb in enumerate(bodies_r):
        for j in exact.get(rb, []):
            pairs.append((2.0, int(removed[i].source == added[j].source), i, j))
        if not fuzzy or not rb:
            continue
        for j, ab in enumerate(bodies_a):
            if ab == rb or not ab:
                continue
            m = SequenceMatcher(None, rb, ab, autojunk=False)
            if m.real_quick_ratio() < MOVE_SIMILARITY or m.quick_ratio() < MOVE_SIMILARITY:
                continue
            r = m.ratio()
            if r >= MOVE_SIMILARITY:
                pairs.append((r, int(removed[i].source == added[j].source), i, j))
    used_r: set[int] = set()
    used_a: set[int] = set()
    for _, _, i, j in sorted(pairs, key=lambda p: (-p[0], -p[1], p[2], p[3])):
        if i in used_r or j in used_a:
            continue
        used_r.add(i)
        used_a.add(j)
        changes.append((removed[i], added[j], "moved"))
    changes += [(None, v, "added") for j, v in enumerate(added) if j not in used_a]
    changes += [(v, None, "removed") for i, v in enumerate(removed) if i not in used_r]

    def order(change: tuple[Version | None, Version | None, str]) -> tuple[str, int]:
        o, n, _ = change
        v = n or o
        assert v is not None
        return (v.source, v.ordinal)

    return [_change(o, n, kind) for o, n, kind in sorted(changes, key=order)]


def _change(old: Version | None, new: Version | None, kind: str) -> dict[str, Any]:
    main = new or old
    assert main is not None
    d: dict[str, Any] = {
        "kind": kind, "document": main.document, "source": main.source, "clause": main.label,
        "path": list(main.path), "clause_id": main.clause_id,
        "old_source": old.source if old else None, "old_clause": old.label if old else None,
        "old_text": old.text if old else None, "new_text": new.text if new else None,
        "old_content_hash": old.content_hash if old else None,
        "new_content_hash": new.content_hash if new else None,
        "effective": (new.effective if new else None),
    }
    if old is not None and new is not None and old.text != new.text:
        d["diff"] = char_diff(old.text, new.text)
    return d


def span(history: ClauseHistory, since: str | None, now: float | None = None) -> Span:
    """The moments `rulebook changes` compares: the previous generation (or `since`: a generation
    name or a date, YYYY-MM-DD, local time) and now."""
    gens = history.generations()
    if not gens:
        raise ChangesError("no history yet: it starts with the next `rulebook ingest` that changes the index")
    now = time.time() if now is None else now
    current = gens[-1][0]
    if since is None:
        if len(gens) < 2:
            raise ChangesError("only one version of the rulebook has been indexed so far: nothing to compare yet")
        return Span(gens[-2][1], gens[-2][0], now, current)
    at = history.published_at(since)
    if at is not None:
        return Span(at, since, now, current)
    try:
        day = datetime.strptime(since, "%Y-%m-%d")
    except ValueError:
        names = ", ".join(g for g, _ in gens[-5:])
        raise ChangesError(f"--since must be a date (YYYY-MM-DD) or a generation ({names}); got {since!r}") from None
    return Span(day.timestamp(), since, now, current)


def changes(history: ClauseHistory, since: str | None = None) -> dict[str, Any]:
    """The `rulebook changes --json` contract: `{"changes": [...], "since": …, "until": …}`."""
    s = span(history, since)
    return {"since": s.old_name, "until": s.new_name,
            "changes": diff(history.served_at(s.old_at), history.served_at(s.new_at))}


def audit(answer_id: str, payload: dict[str, Any], meta: dict[str, Any], cited: list[dict[str, Any]],
          history: ClauseHistory) -> dict[str, Any]:
    """An earlier answer with the exact text of each clause it quoted, as it stood when it was
    given, and whether that clause has changed since (`unchanged`, `changed`, `moved`, `removed`,
    or `unknown` when the version predates the history)."""
    out = []
    for row in cited:
        then = history.version(str(row["clause_id"]), str(row["content_hash"]))
        now = history.current(str(row["clause_id"]))
        status, current = "unknown", None
        if now is not None and now.content_hash == row["content_hash"]:
            status, current = "unchanged", now
        elif now is not None:
            status, current = "changed", now
        elif then is not None:
            moved = _moved_to(then, history)
            status, current = ("moved", moved) if moved is not None else ("removed", None)
        item: dict[str, Any] = {
            "n": row["n"], "clause_id": row["clause_id"], "source": row["source"], "clause": row["clause"],
            "content_hash": row["content_hash"], "quote": row["quote"], "status": status,
            "text_then": then.text if then else None,
            "current": None if current is None else {
                "source": current.source, "clause": current.label, "clause_id": current.clause_id,
                "content_hash": current.content_hash, "text": current.text},
        }
        if then is not None and current is not None and then.text != current.text:
            item["diff"] = char_diff(then.text, current.text)
        out.append(item)
    return {"answer_id": answer_id, "question": payload.get("question"), "answer": payload.get("answer"),
            "grounded": payload.get("grounded"), "asked_at": meta.get("created"), "channel": meta.get("channel"),
            "generation": meta.get("generation"), "citations": out}


def _moved_to(old: Version, history: ClauseHistory) -> Version | None:
    """Where a clause that left its place went: a clause served now with the same body."""
    if old.removed_at is None:
        return None
    body = _body(old)
    same = [v for v in history.served_at(time.time()) if _body(v) == body]
    return next((v for v in same if v.source == old.source), same[0] if same else None)


_ASKS = re.compile(r"(?:改了|修改了|变了|更新了|调整了|修订了|改动了|变更了)(?:什么|哪些|啥|哪里)|"
                   r"有(?:什么|哪些|啥)(?:变化|改动|变动|调整|修改|更新)|"
                   r"what(?:'s| has| have)? changed|what changes|what is new", re.IGNORECASE)


def asks_what_changed(question: str) -> bool:
    """The question asks what changed in the rules (考勤制度最近改了什么), not what they say."""
    return bool(_ASKS.search(question))


def latest_change(history: ClauseHistory, source: str, depth: int = 20) -> tuple[str, float, list[dict[str, Any]]]:
    """The newest recorded update that changed `source`: (generation, when, its changes); empty
    changes when none of the last `depth` updates touched it."""
    gens = history.generations()
    for i in range(len(gens) - 1, max(0, len(gens) - 1 - depth), -1):
        found = diff(history.served_at(gens[i - 1][1], source), history.served_at(gens[i][1], source))
        if found:
            return gens[i][0], gens[i][1], found
    return "", 0.0, []
