"""Effective dates as the documents state them (自2026年3月1日起施行, 生效日期：2026-03-01).

A statement whose subject is the clause itself (本条、本款…) dates that clause; one about the whole
document (本制度、本办法、本规范…, or no subject, as in a closing 附则 line) dates the document, and
every clause of it without its own date. Only stated dates count: nothing is guessed from file
times.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from assistant.schema import Clause

_DATE = r"(\d{4})\s*[年\-/.]\s*(\d{1,2})\s*[月\-/.]\s*(\d{1,2})\s*日?"
_STATED = re.compile(
    rf"(?P<subject>本(?:条|款|项|节|章)|本[\u4e00-\u9fff]{{1,4}}?)?[^。；;\n]{{0,30}}?"
    rf"(?:自\s*)?{_DATE}\s*(?:起|开始)?\s*(?:施行|执行|实施|生效|启用)")
# A labelled date, also a markdown front-matter field (`effective: 2026-03-01`).
_LABELLED = re.compile(rf"(?:生效日期|施行日期|实施日期|执行日期|修订日期|(?<![\w-])effective(?:[_ -]date)?)\s*[:：]?"
                       rf"\s*{_DATE}", re.IGNORECASE)
# 自发布之日起施行: the date is the publication date, where the document states one.
_ON_PUBLICATION = re.compile(r"自\s*(?:发布|印发|公布|颁布)之日起\s*(?:施行|执行|实施|生效)")
_PUBLISHED = re.compile(rf"(?:发布日期|印发日期|公布日期)\s*[:：]?\s*{_DATE}|"
                        rf"{_DATE}[^。；;\n]{{0,15}}?(?:发布|印发|公布|审议通过|批准)")
_OWN = ("本条", "本款", "本项", "本节", "本章")


def _iso(y: str, m: str, d: str) -> str | None:
    month, day = int(m), int(d)
    if not (1 <= month <= 12 and 1 <= day <= 31):
        return None
    return f"{int(y):04d}-{month:02d}-{day:02d}"


def stated(text: str) -> list[tuple[str, bool]]:
    """(date, about this clause only) for every effective date stated in a clause's text."""
    out: list[tuple[str, bool]] = []
    for m in _STATED.finditer(text):
        iso = _iso(m.group(2), m.group(3), m.group(4))
        if iso:
            out.append((iso, (m.group("subject") or "") in _OWN))
    for m in _LABELLED.finditer(text):
        iso = _iso(m.group(1), m.group(2), m.group(3))
        if iso:
            out.append((iso, False))
    return out


def effective_dates(clauses: Iterable[Clause]) -> dict[str, str]:
    """Clause id → the date it takes effect, for the clauses whose document (or themselves) says."""
    by_doc: dict[str, str] = {}
    own: dict[str, str] = {}
    on_publication: set[str] = set()
    published: dict[str, str] = {}
    clauses = list(clauses)
    for c in clauses:
        for iso, only_this in stated(c.text):
            if only_this:
                own[c.clause_id] = iso
            else:
                by_doc[c.source] = max(by_doc.get(c.source, iso), iso)  # a later revision's date wins
        if _ON_PUBLICATION.search(c.text):
            on_publication.add(c.source)
        for m in _PUBLISHED.finditer(c.text):
            groups = [g for g in m.groups() if g]
            iso = _iso(*groups[:3]) if len(groups) >= 3 else None
            if iso:
                published[c.source] = max(published.get(c.source, iso), iso)
    for source in on_publication:
        if source not in by_doc and source in published:
            by_doc[source] = published[source]
    out: dict[str, str] = {}
    for c in clauses:
        date = own.get(c.clause_id) or by_doc.get(c.source)
        if date:
            out[c.clause_id] = date
    return out


_REPLACES = re.compile(r"《([^》]{2,40})》\s*(?:同时|即行|自即日起|随之)?\s*(?:废止|作废|停止执行|不再执行|失效)")
_SELF = re.compile(r"本(?:制度|办法|规定|规范|细则|准则|标准|守则|条例)\s*(?:已|现已|现|已经)\s*"
                   r"(?:废止|作废|停止执行|失效)")
_PAST = re.compile(r"以前|之前|从前|过去|原来|原先|旧版|老版|旧的|老的|废止前|修订前|改版前|曾经|当时|\d{4}\s*年版")


def superseded(clauses: Iterable[Clause]) -> dict[str, str]:
    """Source → what replaced it ("" when the document says it is repealed), for the documents of
    the index that another document repeals by title (《运营管理办法》同时废止) or that say so of
    themselves (本办法已废止)."""
    clauses = list(clauses)
    titles: dict[str, str] = {}  # source → title
    for c in clauses:
        titles.setdefault(c.source, c.document)
    out: dict[str, str] = {}
    for c in clauses:
        if _SELF.search(c.text):
            out.setdefault(c.source, "")
        for m in _REPLACES.finditer(c.text):
            named = m.group(1).strip()
            n = _plain_title(named)
            for source, title in titles.items():
                t = _plain_title(title)
                if source == c.source or len(n) < 4:
                    continue
                # The same title, or the same with the company's name before it (澄川科技运营管理办法);
                # never a longer one (《著作权法实施条例》 repeals no 著作权法).
                if t == n or t.endswith(n):
                    out[source] = c.document
    return out


_EDITION = re.compile(r"[（(][^）)]*[）)]|^\s*\d{4}\s*年\s*(?:修订|修正)?\s*版?|中华人民共和国|\s")


def _plain_title(title: str) -> str:
    """A title without its edition and country prefix: 运营管理办法（2023年版） → 运营管理办法."""
    return _EDITION.sub("", title)


def asks_about_the_past(question: str) -> bool:
    """The question asks how things were (以前、旧版、2023年版…), not how they are."""
    return bool(_PAST.search(question))
