"""Rendering pieces every chat channel needs: pure functions over the answer JSON, no network.

Slack (Block Kit), Feishu (interactive cards), DingTalk (markdown / ActionCard) and the
OpenAI-compatible endpoint (plain markdown text) each lay an answer out their own way, but they
name a citation, quote it and apologise the same way; those pieces live here so the channels
cannot drift apart.
"""

from __future__ import annotations

from typing import Any

from assistant.text import is_chinese


def citation_heading(citation: dict[str, Any]) -> str:
    """`document › path › clause (file)`: the file too, because two files may share a title."""
    return " › ".join((citation["document"], *citation["path"])) + f" ({citation['source']})"


def quote_lines(text: str, prefix: str = "> ") -> list[str]:
    """The non-empty lines of a quote, each with a block-quote prefix."""
    return [prefix + line.strip() for line in text.splitlines() if line.strip()]


SOURCES_HEADINGS = ("**依据**", "**Sources**")


def markdown_answer(answer: dict[str, Any], *, quotes: bool = True) -> str:
    """The answer text followed by its citations as a numbered markdown list with block quotes.

    Used where a channel shows one markdown text (DingTalk, OpenAI-compatible clients). A refusal
    is its own text: it already names whom to ask.
    """
    text = str(answer["answer"]).strip()
    if not answer.get("grounded") or not answer.get("citations"):
        return text
    zh = is_chinese(answer.get("question") or text)
    parts = [text, "", SOURCES_HEADINGS[0] if zh else SOURCES_HEADINGS[1], ""]
    for c in answer["citations"]:
        parts.append(f"[{c['n']}] {citation_heading(c)}")
        if quotes:
            parts.extend(quote_lines(c["quote"]))
        parts.append("")
    return "\n".join(parts).rstrip()


def strip_sources(text: str) -> str:
    """An earlier reply rendered by `markdown_answer`, without the citation list it appended."""
    for heading in SOURCES_HEADINGS:
        mark = f"\n\n{heading}\n\n"
        if mark in text:
            return text.split(mark, 1)[0]
    return text


def apology(prompts: Any, question: str, reason: str, contact: str) -> str:
    """A short apology in the question's language when a chat question could not be answered."""
    lang = "zh" if is_chinese(question) or not question else "en"
    return prompts.render(f"slack_apology_{lang}", reason=reason, contact=contact)
