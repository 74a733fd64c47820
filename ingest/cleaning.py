"""Remove site boilerplate from scraped pages while keeping rule text character for character.

Scraped Q&A pages (the seed pages) carry answer chrome — `已被采纳为最佳回答`, `1年前 -`,
`共4条回复 我来回复`, `站长微信`, `分享本页`, `返回顶部`, user-name lines — and several independent
answers. Cleaning drops the chrome and marks where one answer ends and the next begins with
`ANSWER_BREAK`, so the structure parser can keep the answers apart.
"""

from __future__ import annotations

import re

ANSWER_BREAK = "\x1e"  # a line of its own between two answers of a Q&A page

_BULLET = re.compile(r"^[•·●▪◦]\s*")
_ACCEPTED = re.compile(r"^(已被采纳为最佳回答|最佳答案|已采纳|采纳率[:：]?\s*\d+%?)$")
_TIME_AGO = re.compile(r"\d+\s*(秒|分钟|小时|天|周|个月|月|年)前")
_CHROME_PHRASES = [
    re.compile(p)
    for p in (
        r"\d+\s*(秒|分钟|小时|天|周|个月|月|年)前",
        r"共\s*\d+\s*条(回复|回答|评论)",
        r"\d+\s*条评论",
        r"我来回复",
        r"我来回答",
        r"站长微信",
        r"分享本页",
        r"返回顶部",
        r"举报",
        r"收藏",
        r"点赞",
        r"赞同\s*\d*",
        r"扫码关注",
        r"相关推荐",
        r"阅读全文",
        r"展开全部",
        r"^回复$",
        r"^评论$",
        r"^.{1,20}的头像$",
        r"^这个人很懒.*$",
        r"-",
    )
]
_MARKERS = ("已被采纳为最佳回答", "我来回复", "条回复", "站长微信", "返回顶部", "分享本页")


def _is_chrome(line: str) -> tuple[bool, bool]:
    """(line is only site chrome, it marks the end of an answer)."""
    rest = line
    ends_answer = bool(_TIME_AGO.search(line))
    for pattern in _CHROME_PHRASES:
        rest = pattern.sub(" ", rest).strip()
    return (rest == "", ends_answer)


def is_qa_page(text: str) -> bool:
    """Whether text looks like a scraped Q&A page (answer badges, "1年前 -" stamps, share links)."""
    stamps = sum(1 for line in text.split("\n") if _is_chrome(line.strip()) == (True, True))
    return sum(text.count(m) for m in _MARKERS) + stamps >= 2


def clean(text: str) -> list[str]:
    """Lines of rule text with chrome removed; `ANSWER_BREAK` lines between answers.

    Text that is not a scraped Q&A page is returned line by line, trimmed, unchanged otherwise.
    """
    lines = [ln.strip() for ln in text.split("\n")]
    if not is_qa_page(text):
        return _join_dash_bullets(lines)

    out: list[str] = []
    seen_answer = False
    title_kept = False
    avatar_name = None
    for raw in lines:
        line = _BULLET.sub("", raw)
        if not line:
            out.append("")
            continue
        if not title_kept:
            out.append(line)  # the page title (the question)
            title_kept = True
            continue
        if _ACCEPTED.match(line):
            out.append(ANSWER_BREAK)
            seen_answer = True
            continue
        if line == avatar_name:
            continue  # the user name printed under an avatar
        avatar_name = line[: -len("的头像")] if line.endswith("的头像") else avatar_name
        chrome, ends_answer = _is_chrome(line)
        if line == "-":
            last = next((x for x in reversed(out) if x), "")
            if seen_answer and last != ANSWER_BREAK:
                out.append("-")  # a bullet marker: the item is on the next line
            continue
        if chrome:
            if ends_answer:
                out.append(ANSWER_BREAK)
                seen_answer = True
            continue
        if not seen_answer:
            # Between the page title and the first answer sit the asker's name, counters and
            # "回复" buttons; a bullet (•) opens the first answer when no accepted-answer badge does.
            if _BULLET.match(raw):
                seen_answer = True
            else:
                continue
        out.append(line)
    return _join_dash_bullets(out)


def _join_dash_bullets(lines: list[str]) -> list[str]:
    """`-` on a line of its own followed by the item text → one line `- item`."""
    out: list[str] = []
    pending = False
    for line in lines:
        if line == "-":
            pending = True
            continue
        if pending and line and line != ANSWER_BREAK:
            out.append(f"- {line}")
            pending = False
            continue
        if line:
            pending = pending and not line
        out.append(line)
    return out
