"""What a clause is for, and questions about things the rulebook does not list.

Two checks the evidence gate makes besides its scores, both derived from the rulebook itself:

- **Clauses that state no rule.** A preamble that is only an approval line ("2026年3月1日 总经理办公会
  审议通过"), a revision line ("财务部 2026年1月修订"), a signature, a title or a table of contents
  is kept in the index for navigation, but it is never the evidence of an answer: quoted, it looks
  like a verified answer and says nothing.
- **Unlisted kinds.** Rulebooks enumerate kinds of things: leave (年假, 病假, 婚假, 产假 …), fees
  (交通费, 住宿费 …), cards (工资卡 …). A question about a kind the rulebook does not name
  (健身卡, 停车费, 医疗险, 育儿假) is a near miss however close it scores: the rulebook covers the
  category, not the thing asked. A word counts as such a kind when general Chinese knows it as a
  noun, it does not occur in the rulebook, and its head character ends at least `MIN_SIBLINGS`
  nouns of the rulebook, while no shorter tail of it is a rulebook word (假发票 is a kind of 发票,
  which the rulebook does name; 职能部门 is a 部门).
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable
from functools import lru_cache

from assistant.schema import Clause
from assistant.text import normalise

_CJK_WORD = re.compile(r"[\u4e00-\u9fff]{2,}")
_DATE = re.compile(r"\d{4}\s*年(?:\s*\d{1,2}\s*月)?(?:\s*\d{1,2}\s*日)?|\d{4}[-./]\d{1,2}(?:[-./]\d{1,2})?")
_APPROVAL = re.compile(r"审议通过|审定|通过|修订|修正|印发|发布|制定|签发|批准|核准|起草|编制|版本|目录|页码|"
                       r"第\s*\d+\s*页")
_SENTENCE_END = re.compile(r"[。；;！!？?]")
_LABEL_PREFIX = re.compile(r"^第[一二三四五六七八九十百千零〇两\d]+[条章节](?:之[一二三四五六七八九十]+)?[\s\u3000]*")
# A clause body longer than this is a rule (or at least states something) whatever its words.
NAVIGATION_MAX_CHARS = 60
MIN_SIBLINGS = 3
# Names of people, places and organisations are not kinds of things a rulebook lists.
_NAME_TAGS = ("nr", "ns", "nt")
# Nor are nouns of people, places and periods (服务员, 正式工, 女同事, 工作室, 老家, 预产期): in a question
# they are its setting, not the thing asked about. General Chinese word formation (the heads of
# person, place and period nouns), not a list of any rulebook's words.
SETTING_HEADS = frozenset("员工人者师生长事家户主室期")


def states_no_rule(clause: Clause) -> bool:
    """True for a clause that is only a title, date, approval or revision line, signature or table
    of contents: navigation, never the evidence of an answer."""
    body = _LABEL_PREFIX.sub("", clause.text.strip(), count=1).strip()
    title = normalise(clause.document)
    if not body or normalise(body) in {title, normalise(clause.label)}:
        return True
    if len(body) > NAVIGATION_MAX_CHARS or _SENTENCE_END.search(body):
        return False
    if _DATE.search(body) or _APPROVAL.search(body):
        return True
    # Lines of headings only (a table of contents): every line is a numbered heading.
    lines = [ln.strip() for ln in clause.text.splitlines() if ln.strip()]
    return len(lines) >= 3 and all(re.match(r"^(第.{1,6}[章节条]|[一二三四五六七八九十]+、|\d+[.、])", ln)
                                   for ln in lines)


@lru_cache(maxsize=1)
def _tag_table() -> dict[str, str]:
    """jieba's part-of-speech tag for each word of its dictionary (a lookup, no tagging run)."""
    import jieba.posseg

    return jieba.posseg.POSTokenizer().word_tag_tab  # type: ignore[no-any-return]


class UnlistedKinds:
    """Finds words of a question that name a kind of thing the rulebook does not list."""

    def __init__(self, rulebook_words: Iterable[str], corpus_norm: str) -> None:
        tags = _tag_table()
        self.words = {w for w in rulebook_words if _CJK_WORD.fullmatch(w)}
        self.corpus_norm = corpus_norm
        by_head: dict[str, set[str]] = defaultdict(set)
        for w in self.words:
            if tags.get(w, "").startswith("n"):
                by_head[w[-1]].add(w)
        self.heads = {h: ws for h, ws in by_head.items() if len(ws) >= MIN_SIBLINGS}

    def find(self, question_words: Iterable[str]) -> list[str]:
        tags = _tag_table()
        out: list[str] = []
        for w in question_words:
            tag = tags.get(w, "")
            if (len(w) < 3 or not _CJK_WORD.fullmatch(w) or not tag.startswith("n") or tag.startswith(_NAME_TAGS)
                    or w[-1] not in self.heads or w[-1] in SETTING_HEADS or normalise(w) in self.corpus_norm):
                continue
            if any(w[i:] in self.words for i in range(1, len(w) - 1)):
                continue  # a modified rulebook word (假发票 → 发票), not a kind of its own
            out.append(w)
        return out
