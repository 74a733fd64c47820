"""From ranked clauses to an answer: evidence gate, composer, citation check.

The gate and the check are code, not prompt instructions: below the gate no composer runs and
the user is told whom to ask; above it, every quote that reaches the user has been verified as a
(normalised) substring of the clause it cites.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol

from assistant.prompts import Prompts
from assistant.retrieval import QueryPlan
from assistant.schema import Citation, Hit
from assistant.text import Tokenizer, is_chinese, is_verbatim, sentences

log = logging.getLogger(__name__)

# Calibrated on the eval cases of the sample rulebook and the seed pages (see eval/REPORT.md):
# the threshold that keeps wrongly refused answerable questions at or under 5 %.
DEFAULT_GATE_THRESHOLD = 0.30
# A further clause is cited when its fused score is at least this share of the best one's: a
# second citation costs more precision than it adds recall (sample rulebook: 0.97 gives
# precision 0.72 / any-expected-cited 0.82; one citation only 0.79 / 0.79; 0.90 gives 0.60 / 0.83).
ALSO_CITE_RATIO = 0.97
_LABEL_PREFIX = re.compile(r"^第[一二三四五六七八九十百千零〇两\d]+条(?:之[一二三四五六七八九十]+)?[\s\u3000]*")
SHORT_CLAUSE = 160
MAX_QUOTE = 260
FIGURE_BONUS = 2.0
BIGRAM_WEIGHT = 0.3
_FIGURE = re.compile(
    r"[0-9０-９]|[一二两三四五六七八九十百千万]+(?:个|日|天|周|月|年|小时|分钟|元|倍|次|级|人|%)|百分之"
)
_CJK_RUN = re.compile(r"[\u4e00-\u9fff]{2,}")
_ASKS_FIGURE = re.compile(
    r"多久|多长|多少|几|多大|多快|多高|上限|下限|最多|最少|最长|最短|期限|时限|标准|比例|哪一?年|何时|什么时[候间]|"
    r"how (?:long|many|much|soon|fast|often)|when|deadline|limit|max|minimum|rate|per|within",
    re.IGNORECASE,
)


# A list's lead-in ("按下列规定处理：", "上限如下：") and its items ("（一）", "1.", "一、", "(2)").
_LEAD_IN = re.compile(r"[：:]\s*$")
_ITEM = re.compile(r"^\s*(?:[（(][一二三四五六七八九十\d]+[）)]|[一二三四五六七八九十]+、|\d+[.、．)]|[-•·])")
# A quote that keeps a list with its lead-in may be this much longer than MAX_QUOTE.
MAX_LIST_QUOTE = 420
CONDITION_BONUS = 3.0
_CN_DIGITS = {"零": 0, "一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9}
_UNITS = {"工作日": "天", "天": "天", "日": "天", "小时": "小时", "分钟": "分钟", "周": "周", "个月": "月", "月": "月",
          "年": "年", "元": "元", "块": "元", "万元": "万元", "次": "次", "人": "人"}
_UNIT = "工作日|小时|分钟|个月|万元|天|日|周|月|年|元|块|次|人"
_AMOUNT = re.compile(rf"([0-9]+(?:\.[0-9]+)?|[一二两三四五六七八九十]+)\s*个?\s*({_UNIT})")
_BOUND = re.compile(rf"(不超过|超过|不满|不足|少于|低于|高于|多于|满)?\s*([0-9]+(?:\.[0-9]+)?)\s*个?\s*({_UNIT})"
                    r"(以内|以下|以上|及以上|及以下)?")


# What kind of fact a question asks for, and how a clause states one. A question that asks
# "how long" (多久, 几天) is not answered by a clause that names no duration, however close it is in
# topic: 离职要提前多久 against a conduct clause, 年终奖几月份发 against a clause on bonus coefficients.
# The patterns are the language's question words and units, not any rulebook's vocabulary.
_NUMERAL = r"(?:[0-9０-９]+(?:\.[0-9]+)?|[一二两三四五六七八九十百千万半]+)"
# 几 asks only when no numeral or demonstrative precedes it: 二十几号 and 那几个小时 state amounts.
_WHICH = r"(?<![那这好十百千万一二三四五六七八九两零0-9])几"
ANSWER_KINDS: dict[str, tuple[re.Pattern[str], re.Pattern[str]]] = {
    "duration": (
        re.compile(_WHICH + r"(?:天|个月|年|周|个?小时|个?工作日)|多久|多长时间|多少天|"
                   r"how long|how many (?:days|weeks|months|years|hours)", re.IGNORECASE),
        re.compile(_NUMERAL + r"\s*个?(?:天|日|周|星期|月|年|小时|分钟|秒|工作日|学时|课时)|当[天日]|次日|即时|立即|"
                   r"\d+\s*(?:(?:working|business|calendar) )?(?:seconds?|minutes?|hours?|days?|weeks?|months?|years?)|"
                   r"immediately",
                   re.IGNORECASE),
    ),
    "date": (
        re.compile(_WHICH + r"(?:月份?|号|点)|哪一?天|什么时[候间]|何时|^\s*when\b|"
                   r"\bwhen (?:is|are|do|does|did|will|should|can|must|would)\b|what time|which (?:day|month)",
                   re.IGNORECASE),
        re.compile(_NUMERAL + r"\s*个?(?:月|日|号|点|时|天|周|工作日)|\d:\d|每[年月周日天]|[月年季]底|[月年]初|"
                   r"当[天日]|次[日月年]|\b(?:january|february|march|april|may|june|july|august|september|"
                   r"october|november|december|monday|tuesday|wednesday|thursday|friday|month|year|quarter)\b",
                   re.IGNORECASE),
    ),
    "amount": (
        re.compile(_WHICH + r"个点|多少钱|多少元|多少块|[报扣补发涨]多少|多少个点|多少比例|什么比例|百分之几|how much",
                   re.IGNORECASE),
        # An amount is also stated as a multiple of pay (一个月工资), a way to compute it, or as free.
        re.compile(_NUMERAL + r"\s*(?:元|块|%|％|倍|个点|个百分点|级)|百分之|工资|薪|报酬|不收[取费]|免费|无偿|"
                   r"RMB|CNY|¥|\$|yuan|salary|wage|pay|free", re.IGNORECASE),
    ),
    "count": (
        re.compile(_WHICH + r"次|多少次|how many times", re.IGNORECASE),
        re.compile(_NUMERAL + r"\s*次|\btimes\b", re.IGNORECASE),
    ),
}


def missing_kinds(question: str, texts: Sequence[str]) -> list[str]:
    """The kinds of fact the question asks for (a duration, a date, an amount, a count) that none
    of `texts` states."""
    return [kind for kind, (asks, states) in ANSWER_KINDS.items()
            if asks.search(question) and not any(states.search(t) for t in texts)]


def _number(text: str) -> float | None:
    """An Arabic number, or a small Chinese one (三, 十二, 二十)."""
    if text[0].isdigit():
        return float(text)
    if "十" in text:
        tens, _, ones = text.partition("十")
        return float(_CN_DIGITS.get(tens, 1) * 10 + (_CN_DIGITS.get(ones, 0) if ones else 0))
    return float(_CN_DIGITS[text]) if len(text) == 1 and text in _CN_DIGITS else None


def asked_amounts(question: str) -> list[tuple[float, str]]:
    """Amounts a question states as its condition ("3天事假", "请三天假", "8000元"), unit normalised."""
    out = []
    for m in _AMOUNT.finditer(question):
        n = _number(m.group(1))
        if n is not None:
            out.append((n, _UNITS[m.group(2)]))
    return out


def covers(sentence: str, amount: tuple[float, str]) -> bool:
    """Whether a rule sentence's condition ("超过1天、不超过5天的", "1天以内（含1天）") includes the amount."""
    value, unit = amount
    low, high = float("-inf"), float("inf")
    bounded = False
    for m in _BOUND.finditer(sentence):
        if _UNITS[m.group(3)] != unit:
            continue
        n, before, after = float(m.group(2)), m.group(1) or "", m.group(4) or ""
        if before in {"超过", "高于", "多于", "满"} or after in {"以上", "及以上"}:
            low, bounded = max(low, n - (1e-9 if before == "满" or after else -1e-9)), True
        elif before in {"不超过", "不满", "不足", "少于", "低于"} or after in {"以内", "以下", "及以下"}:
            high, bounded = min(high, n + (1e-9 if before == "不超过" or after else -1e-9)), True
    return bounded and low < value < high


@dataclass(frozen=True)
class Evidence:
    """What a composer may use: the question, the retrieval plan and the gated clauses."""

    question: str
    plan: QueryPlan
    hits: tuple[Hit, ...]
    chinese: bool
    quote: Callable[[str, QueryPlan], str] | None = None  # the offline composer's verified quoting


# What a model composer replies when the evidence does not answer the question (its prompts ask
# for exactly this); never shown to a user.
DECLINE = "NO_ANSWER"
DECLINE_ANYWHERE = re.compile(re.escape(DECLINE), re.IGNORECASE)


def hide_token(pieces: Iterable[str]) -> Iterator[str]:
    """Streamed text with the decline token (in any letter case) taken out, even when it arrives
    split across pieces: the tail that could still become it is held back until the next piece."""
    held = ""
    for piece in pieces:
        held = DECLINE_ANYWHERE.sub("", held + piece)
        keep = next((k for k in range(min(len(DECLINE) - 1, len(held)), 0, -1)
                     if DECLINE.startswith(held[-k:].upper())), 0)
        out, held = held[: len(held) - keep], held[len(held) - keep:]
        if out:
            yield out
    if held:
        yield held


@dataclass(frozen=True)
class Draft:
    text: str
    citations: tuple[Citation, ...]
    composer: str
    notes: tuple[str, ...] = field(default=())
    # The composer read the evidence and found it does not answer the question: a refusal, not a
    # reason to answer offline from the same clauses.
    declined: bool = False


class Composer(Protocol):
    name: str

    def compose(self, evidence: Evidence) -> Draft: ...


class EvidenceGate:
    """Decides whether the best clauses are evidence enough to answer.

    Confidence mixes the two legs: the best cosine similarity of the top clauses (vectors
    understand paraphrase and English) and the IDF-weighted share of the question's terms found
    in the top clause (BM25's view: are the specific things asked about there at all?). Either
    leg alone is fooled — "你好" is close to everything in e5 space, and a near-miss question
    shares its topic words with the rulebook — so both must agree enough.
    """

    # Cosine similarity mapped to 0–1 between a floor and a ceiling. Cross-lingual similarities
    # of e5 are systematically lower (an English question and its Chinese clause meet at
    # 0.78–0.85, Chinese pairs at 0.85–0.93), so English questions get their own scale.
    SEM_SCALE_ZH = (0.84, 0.92)
    SEM_SCALE_EN = (0.78, 0.86)
    SEM_WEIGHT = 0.5

    def __init__(self, threshold: float = DEFAULT_GATE_THRESHOLD) -> None:
        self.threshold = threshold

    def semantic(self, hits: Sequence[Hit], plan: QueryPlan) -> float:
        """The best cosine similarity of the top clauses on the 0–1 scale of the question's language."""
        sem = max((h.semantic for h in hits[:3]), default=0.0)
        floor, ceil = self.SEM_SCALE_ZH if is_chinese(plan.text) else self.SEM_SCALE_EN
        return min(1.0, max(0.0, (sem - floor) / (ceil - floor)))

    def confidence(self, hits: Sequence[Hit], plan: QueryPlan) -> float:
        """0–1; 0 when the question names nothing the rulebook knows (greetings, thanks)."""
        if not hits or plan.known_concepts == 0:
            return 0.0
        cov = max(h.coverage for h in hits[:3])
        return self.SEM_WEIGHT * self.semantic(hits, plan) + (1.0 - self.SEM_WEIGHT) * cov

    def passes(self, hits: Sequence[Hit], plan: QueryPlan) -> bool:
        return self.confidence(hits, plan) >= self.threshold


class ExtractiveComposer:
    """Offline composer: the most relevant sentences of the best clause(s), quoted exactly."""

    name = "extractive"

    def __init__(self, tokenizer: Tokenizer, prompts: Prompts, idf: dict[str, float] | None = None,
                 max_citations: int = 3, shared_titles: frozenset[str] = frozenset()) -> None:
        self.tokenizer = tokenizer
        self.prompts = prompts
        self.idf = idf or {}
        self.max_citations = max_citations
        # Titles that more than one file of the index carries: a citation of one of them names its
        # file too, so that a file copying another's title cannot pass for it.
        self.shared_titles = shared_titles

    def choose(self, hits: tuple[Hit, ...]) -> list[Hit]:
        chosen = [hits[0]]
        for h in hits[1 : self.max_citations]:
            if h.score >= ALSO_CITE_RATIO * hits[0].score:
                chosen.append(h)
        return chosen

    def quote(self, text: str, plan: QueryPlan) -> str:
        """The best contiguous run of sentences of a clause for this question, as written.

        Every window of sentences up to MAX_QUOTE characters is scored by the IDF weight of the
        question's terms it contains (each term once), plus a bonus for a figure when the question
        asks for one. Ties keep the shorter window, so a window grows only while it brings in
        another of the question's terms: a list's lead-in ("上限如下：") comes with the item that
        matches, and a short clause is quoted whole. (A per-character cost was tried: it cut
        CMRC answer-span recall from 0.89 to 0.84 for a few characters saved.)
        """
        body_start = _LABEL_PREFIX.match(text)
        body = text[body_start.end() if body_start else 0 :]
        if len(body) <= SHORT_CLAUSE and "\n" not in body.strip():
            return body.strip()
        spans = sentences(body)
        if not spans:
            return body.strip()
        wanted = set(plan.tokens)
        sent_terms = [set(self.tokenizer.tokens(body[s:e])) & wanted for s, e in spans]
        # Character bigrams catch names and rare words that jieba splits differently on the two
        # sides ("出身于" / "出生于"); each shared bigram adds a little.
        q_grams = _bigrams(plan.text)
        sent_terms = [t | {f"\x00{g}" for g in _bigrams(body[s:e]) & q_grams}
                      for t, (s, e) in zip(sent_terms, spans, strict=True)]
        sent_figure = [bool(_FIGURE.search(body[s:e])) for s, e in spans]
        asks_figure = bool(_ASKS_FIGURE.search(plan.text))
        # The item whose condition the question states (3天 → "超过1天、不超过5天的") wins.
        amounts = asked_amounts(plan.text)
        sent_terms = [t | ({"\x01"} if any(covers(body[s:e], a) for a in amounts) else set())
                      for t, (s, e) in zip(sent_terms, spans, strict=True)]
        best: tuple[float, int, int] | None = None
        for i in range(len(spans)):
            terms: set[str] = set()
            figure = False
            for j in range(i, len(spans)):
                length = spans[j][1] - spans[i][0]
                if j > i and length > MAX_QUOTE:
                    break
                terms |= sent_terms[j]
                figure = figure or sent_figure[j]
                score = sum(BIGRAM_WEIGHT if t[0] == "\x00" else CONDITION_BONUS if t == "\x01"
                            else self.idf.get(t, 1.0) for t in terms)
                score += FIGURE_BONUS * (asks_figure and figure)
                if best is None or score > best[0] + 1e-9:
                    best = (score, i, j)
        assert best is not None
        _, i, j = best
        i, j = _with_list(body, spans, i, j)
        return body[spans[i][0] : spans[j][1]].strip()

    def compose(self, evidence: Evidence) -> Draft:
        parts: list[str] = []
        citations: list[Citation] = []
        for n, hit in enumerate(self.choose(evidence.hits), start=1):
            c = hit.clause
            q = self.quote(c.text, evidence.plan)
            citations.append(Citation(n=n, clause_id=c.clause_id, document=c.document,
                                      source=c.source, clause=c.label, path=c.path, quote=q,
                                      content_hash=c.content_hash))
            label = c.label
            if c.document in self.shared_titles:
                label = f"（{c.source}）{label}" if evidence.chinese else f"({c.source}) {label}"
            parts.append(quote_line(self.prompts, evidence.chinese, n == 1, c.document, label, q, n))
        if len(citations) > 1:
            # The clauses scored within a few percent of each other: say that several may apply
            # (ranked) rather than assert the first.
            parts.insert(0, self.prompts.render(self.prompts.lang("answer_several", evidence.chinese)).strip())
        return Draft(text="\n".join(parts), citations=tuple(citations), composer=self.name)


def _with_list(body: str, spans: list[tuple[int, int]], i: int, j: int) -> tuple[int, int]:
    """Widen a quote of sentences i..j so that a list stays with its lead-in: items chosen without
    the sentence announcing them get it (and the items between), and a quote that ends with a
    lead-in ("包括以下几个方面：") gets the items it announces, within MAX_LIST_QUOTE characters."""
    def text(k: int) -> str:
        return body[spans[k][0] : spans[k][1]]

    if _ITEM.match(text(i)):
        lead = i - 1
        while lead >= 0 and _ITEM.match(text(lead)):
            lead -= 1
        if lead >= 0 and _LEAD_IN.search(text(lead)) and spans[j][1] - spans[lead][0] <= MAX_LIST_QUOTE:
            i = lead
    if _LEAD_IN.search(text(j)):
        k = j
        while k + 1 < len(spans) and _ITEM.match(text(k + 1)) and spans[k + 1][1] - spans[i][0] <= MAX_LIST_QUOTE:
            k += 1
        j = k
    return i, j


def _bigrams(text: str) -> set[str]:
    """Overlapping pairs of Chinese characters."""
    return {run[i : i + 2] for run in _CJK_RUN.findall(text) for i in range(len(run) - 1)}


def _one_line(text: str) -> str:
    return re.sub(r"\s*\n\s*", " ", text)


def quote_line(prompts: Prompts, chinese: bool, first: bool, document: str, clause: str, quote: str, n: int) -> str:
    """One cited clause as answers show it: 根据《…》…：“quote”[n] (另见 … for the ones after the first)."""
    template = prompts.lang("answer_extractive" if first else "answer_also", chinese)
    return prompts.render(template, document=document, clause=clause, quote=_one_line(quote), n=n)


def verify_citations(draft: Draft, hits: tuple[Hit, ...]) -> tuple[Draft, list[str]]:
    """Keep only citations whose clause was in the evidence and whose quote is in that clause."""
    by_id = {h.clause.clause_id: h.clause for h in hits}
    kept: list[Citation] = []
    problems: list[str] = []
    for cit in draft.citations:
        clause = by_id.get(cit.clause_id)
        if clause is None:
            problems.append(f"[{cit.n}] cites a clause outside the evidence")
        elif not is_verbatim(cit.quote, clause.text):
            problems.append(f"[{cit.n}] quote is not in {clause.label}")
        else:
            kept.append(cit)
    for p in problems:
        log.warning("citation dropped: %s", p)
    return replace(draft, citations=tuple(kept), notes=draft.notes + tuple(problems)), problems
