"""Block Kit rendering of answers for Slack: pure functions, no network.

Slack limits respected: a section's text at most 3,000 characters, a message at most 50 blocks;
`&`, `<` and `>` escaped in every piece of text that comes from questions, rules or answers.
"""

from __future__ import annotations

from typing import Any

from assistant.adapters.rendering import citation_heading
from assistant.schema import Clause

SECTION_LIMIT = 3000
BLOCK_LIMIT = 50

ACTION_FULL_CLAUSE = "rulebook_full_clause"
ACTION_FEEDBACK_UP = "rulebook_feedback_up"
ACTION_FEEDBACK_DOWN = "rulebook_feedback_down"
ACTION_SHARE = "rulebook_share"


def escape(text: str) -> str:
    """Slack mrkdwn control characters (https://api.slack.com/reference/surfaces/formatting)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _clip(text: str, limit: int = SECTION_LIMIT) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": _clip(text)}}


def quote_block(text: str) -> str:
    """Each line of the quote as a Slack block quote."""
    return "\n".join("> " + escape(line) for line in text.splitlines() if line.strip())


def answer_blocks(answer: dict[str, Any], answer_id: str, *, share: bool = False) -> list[dict[str, Any]]:
    """The answer (the answer JSON); each citation as `document › path › clause (file)` with its quote and
    a full-clause button; feedback buttons; optionally a share-in-channel button."""
    blocks: list[dict[str, Any]] = []
    if not answer["grounded"]:
        blocks.append(_section(":warning: " + escape(answer["answer"])))
    else:
        blocks.append(_section(escape(answer["answer"])))
        for c in answer["citations"]:
            heading = f"*[{c['n']}]* " + escape(citation_heading(c))
            if c.get("updated"):
                heading += f"  _更新于 updated {escape(c['updated'])}_"
            blocks.append({
                "type": "section",
                "text": {"type": "mrkdwn", "text": _clip(f"{heading}\n{quote_block(c['quote'])}")},
                "accessory": {"type": "button", "action_id": f"{ACTION_FULL_CLAUSE}_{c['n']}",
                              "text": {"type": "plain_text", "text": "查看全文 Full clause"},
                              "value": c["clause_id"]},
            })
    elements: list[dict[str, Any]] = [
        {"type": "button", "action_id": ACTION_FEEDBACK_UP, "text": {"type": "plain_text", "text": "👍"},
         "value": answer_id},
        {"type": "button", "action_id": ACTION_FEEDBACK_DOWN, "text": {"type": "plain_text", "text": "👎"},
         "value": answer_id},
    ]
    if share:
        elements.insert(0, {"type": "button", "action_id": ACTION_SHARE, "style": "primary",
                            "text": {"type": "plain_text", "text": "分享到频道 Share in channel"},
                            "value": answer_id})
    blocks.append({"type": "actions", "block_id": f"rulebook_answer_{answer_id}", "elements": elements})
    if len(blocks) > BLOCK_LIMIT:  # keep the answer, the first citations and the buttons
        blocks = blocks[: BLOCK_LIMIT - 1] + blocks[-1:]
    return blocks


def clause_blocks(clause: Clause) -> list[dict[str, Any]]:
    """A whole clause, split over sections of at most 3,000 characters."""
    heading = "*" + escape(" › ".join((clause.document, *clause.path))) + f"*  ({escape(clause.source)})"
    blocks = [_section(heading)]
    text = escape(clause.text)
    for i in range(0, len(text), SECTION_LIMIT - 10):
        blocks.append(_section(text[i : i + SECTION_LIMIT - 10]))
    return blocks[:BLOCK_LIMIT]


def fallback_text(answer: dict[str, Any]) -> str:
    """Plain text for notifications and clients that do not show blocks."""
    return _clip(str(answer["answer"]), 3000)


CHANGE_KINDS = {"added": "新增 added", "removed": "删除 removed", "modified": "修改 changed", "moved": "移动 moved"}


def changes_blocks(result: dict[str, Any], limit: int = 40) -> list[dict[str, Any]]:
    """What changed (the `rulebook changes --json` object), one section per document."""
    items = result["changes"]
    blocks = [_section(f"*最近更新 What changed*  {escape(result['since'])} → {escape(result['until'])}"
                       + ("" if items else "\n这次更新没有改动条款。 No clause changed."))]
    by_doc: dict[str, list[str]] = {}
    for c in items[:limit]:
        where = c["clause"] if c["kind"] != "moved" else f"{c['old_clause']} → {c['clause']}"
        detail = c.get("diff") or (c["new_text"] if c["kind"] == "added" else
                                   c["old_text"] if c["kind"] == "removed" else "")
        line = f"• _{CHANGE_KINDS[c['kind']]}_ {escape(where)}"
        if detail:
            line += "\n" + quote_block(_clip(detail, 300))
        by_doc.setdefault(f"*{escape(c['document'])}*  ({escape(c['source'])})", []).append(line)
    for heading, lines in by_doc.items():
        blocks.append(_section(heading + "\n" + "\n".join(lines)))
    if len(items) > limit:
        blocks.append(_section(f"…及另外 {len(items) - limit} 处改动 and {len(items) - limit} more"))
    return blocks[:BLOCK_LIMIT]
