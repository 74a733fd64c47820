"""Turn a cleaned document into its clause tree.

Recognised headings (any mix, in any document):
- legal numbering: 第X编 › 第X章 › 第X节 › 第X条 (款 and 项 such as `（一）……；` stay in their 条);
- outline numbering: 一、 › （一） › 1. › （1）, as headings when the line is a short title, as items
  of the enclosing unit when the line is a sentence;
- markdown headings (`#`…`######`; Word heading styles and HTML `<h1>`… arrive as these);
- bare heading lines (a short unpunctuated line followed by a paragraph), in documents without 条;
- labelled bullets (`- 客户服务标准：……`) at the top of an answer on a scraped Q&A page.

A 第X条 only starts an article at the beginning of a line and when followed by a space (or when it
is the next article number in sequence and not followed by words that make it a reference), so a
cross-reference like `依照本法第十二条` or a line starting `第十二条规定的……` never becomes one.

One `Clause` is produced per smallest unit that owns text; its path is the heading texts from the
top of the document (title excluded) down to its own label.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field

from assistant.schema import Clause, SourceDocument
from ingest.cleaning import ANSWER_BREAK, clean

NUM = r"[一二三四五六七八九十百千零〇两\d]+"
_MD = re.compile(r"^(#{1,6})\s+(.+?)\s*#*$")
_VOLUME = re.compile(rf"^第{NUM}编(?:[\s\u3000]+|$)(.*)$")
_CHAPTER = re.compile(rf"^第{NUM}章(?:[\s\u3000]+|$)(.*)$")
_SECTION = re.compile(rf"^第{NUM}节(?:[\s\u3000]+|$)(.*)$")
_ARTICLE = re.compile(rf"^(第({NUM})条(?:之[一二三四五六七八九十]+)?)([\s\u3000]*)(.*)$")
_L1 = re.compile(r"^([一二三四五六七八九十百]+)[、．.]\s*(.*)$")
_L2 = re.compile(r"^[（(]([一二三四五六七八九十百]+)[）)]\s*(.*)$")
_L3 = re.compile(r"^(\d{1,3})(?:[、．]|\.(?!\d))\s*(.*)$")
_L4 = re.compile(r"^(?:[（(](\d{1,3})[）)]|(\d{1,3})[)）])\s*(.*)$")
_BULLET = re.compile(r"^[-*+•·]\s+(.*)$")
_LABELLED = re.compile(r"^([^，。；：:,;！？!?\s]{2,16})[：:]\s*(.+)$")
_COMMENT = re.compile(r"^<!--.*-->$")
# A 第X条 directly followed by these is a reference ("第十二条规定的…"), not an article heading.
_REFERENCE_NEXT = tuple("规所的中和或、至及第之（(，,；;。")
_SENTENCE_PUNCT = re.compile(r"[。；！？!?;，,：:]")
_ANY_PUNCT = re.compile(r"[，。；：:！？!?、,;“”\"《》]")

# Numbering families and the rank of each kind inside its family (smaller = higher).
_FAMILY = {
    "编": ("legal", 0), "章": ("legal", 1), "节": ("legal", 2), "条": ("legal", 3),
    "l1": ("outline", 0), "l2": ("outline", 1), "l3": ("outline", 2), "l4": ("outline", 3),
    "bare": ("bare", 0), "bullet": ("bullet", 0),
}

_CN_DIGITS = {"零": 0, "〇": 0, "一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6,
              "七": 7, "八": 8, "九": 9}
_CN_UNITS = {"十": 10, "百": 100, "千": 1000}


def cn_number(text: str) -> int:
    """`十九` → 19, `一百零二` → 102, `12` → 12."""
    if text.isdigit():
        return int(text)
    total, digit = 0, 0
    for ch in text:
        if ch in _CN_DIGITS:
            digit = _CN_DIGITS[ch]
        elif ch in _CN_UNITS:
            total += (digit or 1) * _CN_UNITS[ch]
            digit = 0
        else:
            return -1
    return total + digit


@dataclass
class _Heading:
    kind: str
    label: str
    md_level: int = 0

    def family(self) -> tuple[str, int]:
        if self.kind.startswith("md"):
            return ("md", self.md_level)
        return _FAMILY[self.kind]


@dataclass
class _Unit:
    path: tuple[str, ...]
    label: str
    lines: list[str] = field(default_factory=list)


def _heading_text(rest: str) -> str | None:
    """The title of a numbered line if it reads as a heading, else None (it is an item)."""
    title = rest.rstrip("：: ")
    if len(title) > 40 or _SENTENCE_PUNCT.search(title):
        return None
    return title


def _classify(line: str, in_article: bool, last_article: int) -> _Heading | None:
    """The heading a line opens, or None for body text."""
    md_level = 0
    text = line
    m = _MD.match(line)
    if m:
        md_level, text = len(m.group(1)), m.group(2).strip()

    a = _ARTICLE.match(text)
    if a:
        number = cn_number(a.group(2))
        spaced = bool(a.group(3)) or not a.group(4)
        sequential = number == last_article + 1 and not a.group(4).startswith(_REFERENCE_NEXT)
        if spaced or sequential or md_level:
            return _Heading("条", a.group(1), md_level)
    for kind, pattern in (("编", _VOLUME), ("章", _CHAPTER), ("节", _SECTION)):
        if pattern.match(text):
            return _Heading(kind, text, md_level)
    if md_level:
        return _Heading(f"md{md_level}", text, md_level)
    if in_article:
        return None  # 款 and 项 stay inside their 条
    for kind, pattern in (("l1", _L1), ("l2", _L2), ("l3", _L3)):
        m2 = pattern.match(text)
        if m2:
            title = _heading_text(m2.groups()[-1])
            if title is None or not title:
                return None
            return _Heading(kind, text.rstrip("：: "))
    m4 = _L4.match(text)
    if m4 and m4.group(3) and _heading_text(m4.group(3)):
        return _Heading("l4", text.rstrip("：: "))
    return None


def _is_article_line(line: str) -> bool:
    m = _ARTICLE.match(_MD.sub(r"\2", line))
    return bool(m and m.group(3))


def _is_bare_heading(line: str, prev_line: str | None, next_line: str | None) -> bool:
    """A short unpunctuated line between two paragraphs (not an entry of a one-word-per-line list)."""
    if not 2 <= len(line) <= 20 or _ANY_PUNCT.search(line) or _BULLET.match(line):
        return False
    if prev_line is not None and not re.search(r"[。！？!?；;…）)”]$", prev_line):
        if _classify(prev_line, False, 0) is None:
            return False
    if next_line is None or len(next_line) < max(20, 2 * len(line)):
        return False
    return bool(_SENTENCE_PUNCT.search(next_line))


def _push(stack: list[_Heading], heading: _Heading) -> None:
    """Put a heading on the stack, closing its siblings and everything below them.

    A heading closes the first open heading of its own family at the same or a deeper rank
    (a 章 closes the previous 章 and its 条; a （二） closes the （一）); a markdown heading also
    closes the first open heading written at the same or a deeper `#` level.
    """
    fam, rank = heading.family()
    for i, open_ in enumerate(stack):
        ofam, orank = open_.family()
        same_family = ofam == fam and orank >= rank
        same_md = heading.md_level and open_.md_level >= heading.md_level
        if same_family or same_md:
            del stack[i:]
            break
    stack.append(heading)


def _segments(lines: list[str]) -> list[list[str]]:
    segs: list[list[str]] = [[]]
    for line in lines:
        if line == ANSWER_BREAK:
            segs.append([])
        else:
            segs[-1].append(line)
    return [s for s in segs if any(ln.strip() for ln in s)]


def _strip_front_matter(lines: list[str]) -> list[str]:
    """Drop the title line and metadata above an `<!-- INFO END -->` marker; drop comments."""
    body = list(lines)
    while body and not body[0].strip():
        body.pop(0)
    if body:
        body.pop(0)  # the title
    for i, line in enumerate(body):
        if re.match(r"^<!--\s*INFO END\s*-->$", line.strip()):
            body = body[i + 1:]
            break
    return [ln for ln in body if not _COMMENT.match(ln.strip())]


def parse_units(doc: SourceDocument) -> list[_Unit]:
    lines = _strip_front_matter(clean(doc.text))
    segments = _segments(lines)
    multi = len(segments) > 1
    has_articles = any(_is_article_line(ln) for ln in lines)
    units: list[_Unit] = []
    for n, seg in enumerate(segments, start=1):
        group = f"回答{n}" if multi else ""
        stack: list[_Heading] = []
        lead = _Unit((group,) if group else ("前言",), group or "前言")
        units.append(lead)
        current: _Unit = lead
        last_article = 0
        nonblank = [ln for ln in seg if ln.strip()]
        for i, line in enumerate(nonblank):
            in_article = bool(stack) and stack[-1].kind == "条"
            heading = _classify(line, in_article, last_article)
            if heading is None and not has_articles and not in_article:
                nxt = nonblank[i + 1] if i + 1 < len(nonblank) else None
                prev = nonblank[i - 1] if i > 0 else None
                if _is_bare_heading(line, prev, nxt) and not _classify(nxt or "", False, 0):
                    heading = _Heading("bare", line)
            if heading is None and multi and not stack:
                b = _BULLET.match(line)
                lab = _LABELLED.match(b.group(1)) if b else None
                if lab:
                    path = (group, lab.group(1))
                    units.append(_Unit(path, lab.group(1), [b.group(1)]))  # type: ignore[union-attr]
                    current = lead  # text after the list belongs to the answer again
                    continue
            if heading is None:
                current.lines.append(line)
                continue
            _push(stack, heading)
            if heading.kind == "条":
                last_article = max(last_article, cn_number(_ARTICLE.match(heading.label).group(2)))  # type: ignore[union-attr]
            path = ((group,) if group else ()) + tuple(h.label for h in stack)
            current = _Unit(path, heading.label)
            if heading.kind == "条":
                current.lines.append(_MD.sub(r"\2", line).strip())
            units.append(current)
    return [u for u in units if any(ln.strip() for ln in u.lines)]


def _clause_id(source: str, path: tuple[str, ...], dup: int) -> str:
    key = "\x00".join((source, *path, str(dup)))
    return hashlib.sha1(key.encode("utf-8")).hexdigest()[:16]


def parse_clauses(doc: SourceDocument) -> list[Clause]:
    """All clauses of a document, in document order, with stable ids."""
    clauses: list[Clause] = []
    seen: dict[tuple[str, ...], int] = {}
    for ordinal, unit in enumerate(parse_units(doc)):
        dup = seen.get(unit.path, 0)
        seen[unit.path] = dup + 1
        text = "\n".join(ln for ln in unit.lines if ln.strip())
        clauses.append(
            Clause(
                clause_id=_clause_id(doc.source, unit.path, dup),
                source=doc.source,
                document=doc.title,
                label=unit.label,
                path=unit.path,
                text=text,
                ordinal=ordinal,
                content_hash=hashlib.sha256(text.encode("utf-8")).hexdigest()[:16],
            )
        )
    return clauses
