"""Feishu interactive cards (card JSON 2.0) for answers: pure functions, no network.

Feishu limits respected: a card message at most 30 KB of JSON (long texts are clipped, and when
the card is still too big the last citations are left out, keeping the answer and the feedback
buttons); `&`, `<`, `>`, `*` and `~` escaped in every piece of text that comes from questions,
rules or answers, so rule text cannot turn into markup.
"""

from __future__ import annotations

import json
from typing import Any

from assistant.adapters.rendering import citation_heading, quote_lines
from assistant.text import is_chinese

CARD_LIMIT = 28_000  # bytes of card JSON; Feishu refuses cards over 30 KB
ANSWER_LIMIT = 3000
QUOTE_LIMIT = 1000
CLAUSE_LIMIT = 5000
CITATION_LIMIT = 10

ACTION_FULL_CLAUSE = "full_clause"
ACTION_FEEDBACK = "feedback"

_ESCAPES = {"&": "&amp;", "<": "&lt;", ">": "&gt;", "*": "&#42;", "~": "&#126;"}


def escape(text: str) -> str:
    """Markdown and HTML control characters of card rich text as character references."""
    return "".join(_ESCAPES.get(ch, ch) for ch in text)


def clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _markdown(content: str) -> dict[str, Any]:
    return {"tag": "markdown", "content": content}


def _button(label: str, value: dict[str, str], kind: str = "default") -> dict[str, Any]:
    return {"tag": "button", "text": {"tag": "plain_text", "content": label}, "type": kind, "size": "small",
            "behaviors": [{"type": "callback", "value": value}]}


def _quote(text: str, limit: int) -> str:
    return "\n".join(quote_lines(escape(clip(text, limit))))


def _card(elements: list[dict[str, Any]], summary: str, header: dict[str, Any] | None = None) -> dict[str, Any]:
    card: dict[str, Any] = {"schema": "2.0", "config": {"update_multi": True, "summary": {"content": summary}},
                            "body": {"elements": elements}}
    if header:
        card["header"] = header
    return card


def size(card: dict[str, Any]) -> int:
    """Bytes of the card as it is sent."""
    return len(json.dumps(card, ensure_ascii=False).encode("utf-8"))


def answer_card(answer: dict[str, Any], answer_id: str, *, expanded: dict[str, str] | None = None) -> dict[str, Any]:
    """The answer (the answer JSON); each citation as `document › path › clause (file)` with its quote and
    a full-clause button; 👍 / 👎 buttons. `expanded` maps clause ids to whole clause texts shown in
    place of their quotes (after the full-clause button was pressed)."""
    expanded = expanded or {}
    feedback = {"tag": "column_set", "flex_mode": "none", "columns": [
        {"tag": "column", "width": "auto", "elements": [
            _button("👍", {"action": ACTION_FEEDBACK, "rating": "up", "answer_id": answer_id})]},
        {"tag": "column", "width": "auto", "elements": [
            _button("👎", {"action": ACTION_FEEDBACK, "rating": "down", "answer_id": answer_id})]},
    ]}
    text = escape(clip(str(answer["answer"]).strip(), ANSWER_LIMIT))
    summary = clip(str(answer["answer"]).strip(), 100)
    zh = is_chinese(answer.get("question") or text)
    if not answer.get("grounded"):
        title = "规章里没有找到答案" if zh else "Not covered by the rulebook"
        header = {"template": "orange", "title": {"tag": "plain_text", "content": title}}
        return _card([_markdown("⚠️ " + text), {"tag": "hr"}, feedback], summary, header)

    citations: list[list[dict[str, Any]]] = []
    for c in answer.get("citations", [])[:CITATION_LIMIT]:
        heading = f"**[{c['n']}] {escape(citation_heading(c))}**"
        if c["clause_id"] in expanded:
            parts = [_markdown(f"{heading}\n全文：\n{_quote(expanded[c['clause_id']], CLAUSE_LIMIT)}")]
        else:
            parts = [_markdown(f"{heading}\n{_quote(c['quote'], QUOTE_LIMIT)}"),
                     _button("全文", {"action": ACTION_FULL_CLAUSE, "clause_id": c["clause_id"],
                                      "answer_id": answer_id})]
        citations.append(parts)

    def build(cited: list[list[dict[str, Any]]]) -> dict[str, Any]:
        elements = [_markdown(text)]
        if cited:
            elements.append({"tag": "hr"})
            elements.append(_markdown("**依据**" if zh else "**Sources**"))
        for parts in cited:
            elements.extend(parts)
        elements += [{"tag": "hr"}, feedback]
        return _card(elements, summary)

    card = build(citations)
    while citations and size(card) > CARD_LIMIT:  # keep the answer, the first citations and the buttons
        citations.pop()
        card = build(citations)
    return card


def text_content(text: str) -> str:
    """The `content` of a plain text message."""
    return json.dumps({"text": text}, ensure_ascii=False)


def card_content(card: dict[str, Any]) -> str:
    """The `content` of an interactive message."""
    return json.dumps(card, ensure_ascii=False)
