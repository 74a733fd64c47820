"""Decide whether a question in a conversation is elliptical or complete, and what to search.

An *elliptical* follow-up leaves out its subject and only makes sense with the previous question
("那成都呢？", "要谁审批？", "what about contractors?"): it is searched together with the previous
question. A *complete* question names its own subject ("食堂几点开饭？", "停车位怎么申请？",
"报销发票丢了怎么办？") and is searched and judged exactly as asked, whatever came before: carrying
the previous clause into it is how an unrelated question gets a confident wrong answer.

The decision is a rule over the question's own words, from general language resources only
(jieba's word list with its parts of speech, the stopword list), so it works on any rulebook:
- explicit markers make a follow-up: "那…呢", "…的话呢", a referring word (这个, 上述, it, that);
- otherwise a Chinese question with a noun of its own (a person, thing, place, time, or a term of
  the rulebook's user dictionary) is complete; one made only of verbs, question words and helpers
  ("要谁审批？", "超过了怎么办？", "多久能批下来？") is elliptical;
- greetings, thanks and other small talk are complete (and refused): they ask nothing of the
  previous topic.
A question with no subject and no explicit marker ("迟到怎么算？" after a question on complaints) is
ambiguous by words alone; the assistant settles it by retrieval (see `Assistant.standalone`). With
an LLM configured the model rewrites elliptical follow-ups; it is never asked to rewrite a complete
question.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from enum import StrEnum

from assistant.schema import Turn
from assistant.text import MODAL_VERBS, stopwords


class FollowUp(StrEnum):
    ELLIPTICAL = "elliptical"
    COMPLETE = "complete"


# A question that opens by pointing back ("那…", "what about …") and closes with 呢 is the classic
# elliptical follow-up; opening words alone are not enough ("另外，报销发票丢了怎么办？" is complete).
_OPENS_BACK = re.compile(r"^(那么?|那如果|那要是|如果是|要是|还有|另外|再问一?下?|那要|那个)")
_ENDS_BACK = re.compile(r"(呢|的话)[？?。！!\s]*$")
_REFERRING_ZH = re.compile(r"(它|这种情况|那种情况|这种|那种|这样的话|这样|这些|那些|上述|该项|该条|此事|这事|"
                           r"这条|那条|这项|那项|这个|那个|这笔|那笔|这次|上面|刚才|前面说的|同样)")
_EN_OPENS_BACK = re.compile(r"^(and|what about|how about|what if|same for|is that|does that|do they|is it|does it|"
                            r"can it)\b", re.IGNORECASE)
_EN_REFERRING = re.compile(r"\b(it|that|this|those|these|they|them|there|same)\b", re.IGNORECASE)
_EN_WORD = re.compile(r"[A-Za-z0-9']+")
_CJK = re.compile(r"[\u3400-\u9fff]")
# Parts of speech (jieba's ICTCLAS tags) that name a subject: nouns of all kinds (names, places,
# organisations), place words, abbreviations, set phrases ("今天天气"), English words inside a Chinese
# question ("VPN", "P1"). Time words (明年, 今天) are not: "没休完能留到明年吗？" has no subject.
_SUBJECT_TAGS = ("n", "s", "eng", "j", "i")
# Nouns that name nobody in particular: "员工" or "公司" alone do not make a question about a topic.
_GENERIC = frozenset({"人", "我们", "事情", "东西", "问题", "情况", "时候", "时间", "多少", "什么", "办法", "方面",
                      "部分", "地方", "意思", "话", "次", "天"})
# An English question of more words than this with no pointing word names its own subject.
_EN_SHORT = 2
# A referring word (it, those, there) makes an English question of at most this many words a follow-up.
_EN_REFERRING_WORDS = 12
# … likewise when it does not clear the gate on its own.
_EN_NO_SUBJECT = _EN_SHORT


def _tag(question: str) -> list[tuple[str, str]]:
    """The question's words (jieba's plain cut) with their dictionary part of speech; a word jieba
    found but its dictionary does not tag (a user-dictionary term, a new word such as 年会) gets
    "x"."""
    from assistant.nearmiss import _tag_table
    from assistant.text import shared_tokenizer

    table = _tag_table()
    return [(w, table.get(w) or "x") for w in shared_tokenizer().words(question)]


def _nouns(question: str) -> list[str]:
    """The words of a question that can name its subject: nouns, and words jieba's dictionary does
    not tag (a term of a user dictionary, a new word such as 年会), small talk and generic ones
    left out."""
    stop = stopwords()
    out = []
    for word, flag in _tag(question):
        w = word.strip().lower()
        if not w or w in stop or w in _GENERIC:
            continue
        if flag.startswith(_SUBJECT_TAGS) or (flag in {"vn", "an"} and len(w) >= 3) or (
                flag == "x" and len(w) >= 2 and _CJK.search(w) and w[0] not in MODAL_VERBS):
            out.append(w)
    return out


def has_subject(question: str) -> bool:
    """Whether a Chinese question names a subject of its own (a noun that is not small talk)."""
    return bool(_nouns(question))


def _is_small_talk(question: str) -> bool:
    """Nothing but stopwords (greetings, thanks, acknowledgements) and punctuation, or a request
    for a task rather than a question."""
    if _REQUEST.search(question.strip()):
        return True
    from assistant.text import shared_tokenizer

    words = shared_tokenizer().words(question)
    stop = stopwords()
    return not words or all(w in stop for w in words)


def points_back(question: str) -> bool:
    """An explicit sign of a follow-up: 那…呢, a short …呢, a referring word, what about / it."""
    q = question.strip()
    if _CJK.search(q):
        body = re.sub(r"[\s\W]", "", q)
        if _ENDS_BACK.search(q) and (_OPENS_BACK.search(q) or len(body) <= 12):
            return True
        return bool(_REFERRING_ZH.search(q) and not re.search(r"这个月|那个月|这周|这些年", q))
    words = _EN_WORD.findall(q)
    return bool(_EN_OPENS_BACK.search(q) or (_EN_REFERRING.search(q) and len(words) <= _EN_REFERRING_WORDS))


# A request for a task ("帮我写一封邮件", "translate this") asks nothing of the previous topic.
_REQUEST = re.compile(r"^(请|麻烦)?(帮我|帮忙|替我|给我)(写|翻译|总结|起草|生成|改|做|查|订|画)|"
                      r"^(please )?(write|translate|summari[sz]e|draft|generate|tell me a)\b", re.IGNORECASE)


def classify(question: str) -> FollowUp:
    """ELLIPTICAL when the question needs the previous question's subject, else COMPLETE."""
    q = question.strip()
    if _is_small_talk(q):
        return FollowUp.COMPLETE
    if points_back(q):
        return FollowUp.ELLIPTICAL
    if _CJK.search(q):
        return FollowUp.COMPLETE if has_subject(q) else FollowUp.ELLIPTICAL
    return FollowUp.COMPLETE if len(_EN_WORD.findall(q)) > _EN_SHORT else FollowUp.ELLIPTICAL


def decide(question: str, history: Sequence[Turn], *, cleared: Callable[[str], str | None],
           topic: Callable[[str], str | None], known: Callable[[str], bool],
           home: Callable[[str], str | None] = lambda word: None) -> FollowUp:
    """Elliptical or complete, using the served rulebook as well as the words.

    Small talk is complete and an explicit marker (那…呢, 这个, what about) elliptical, as in
    `classify`. Otherwise the question is asked alone: if it clears the evidence gate, close to a
    clause of another document than the one the conversation was about, it opens a new topic
    ("迟到怎么算？" after a question on complaints); close to one of the same document, it continues
    the topic ("要谁审批？" after a question on leave). If it does not clear the gate, it is complete
    when it names a thing the rulebook never mentions
    (食堂, 停车位: a new topic, to be refused on its own) or a thing only another document
    mentions (兼职 after a question on leave), else elliptical ("过了期限怎么办？").

    `cleared(text)` is the document of the best clause when `text` alone clears the gate, else
    None; `topic(text)` the document of its best clause; `known(word)` whether the rulebook has
    it; `home(word)` the one document that uses the word, if only one does.
    """
    q = question.strip()
    if not history or _is_small_talk(q):
        return FollowUp.COMPLETE
    if points_back(q):
        return FollowUp.ELLIPTICAL
    document = cleared(q)
    if document is not None:
        return FollowUp.COMPLETE if document != topic(" ".join(context(history))) else FollowUp.ELLIPTICAL
    if not _CJK.search(q):
        return FollowUp.COMPLETE if len(_EN_WORD.findall(q)) > _EN_NO_SUBJECT else FollowUp.ELLIPTICAL
    if new_subject(q, known):
        return FollowUp.COMPLETE
    homes = {home(w) for w in _subjects(q)} - {None}
    if homes and topic(" ".join(context(history))) not in homes:
        return FollowUp.COMPLETE
    return FollowUp.ELLIPTICAL


def _subjects(question: str) -> list[str]:
    """The words of a Chinese question that could be its subject: nouns, and verbs of two or more
    characters (兼职, 迟到, 报销 name topics in rules)."""
    stop = stopwords()
    verbs = [w for w, flag in _tag(question) if flag in {"v", "vn"} and len(w) >= 2 and w not in stop]
    return _nouns(question) + verbs


def new_subject(question: str, known: Callable[[str], bool]) -> bool:
    """Whether a Chinese question names a thing (a noun) that the rulebook never mentions."""
    return any(not known(w) for w in _nouns(question))


def is_follow_up(question: str) -> bool:
    return classify(question) is FollowUp.ELLIPTICAL


def standalone_question(question: str, history: Sequence[Turn]) -> str:
    """The text to search for `question`, given earlier turns (oldest first)."""
    if not history or not is_follow_up(question):
        return question
    return with_context(question, history)


def with_context(question: str, history: Sequence[Turn]) -> str:
    """An elliptical follow-up with the earlier questions it continues, to search as one."""
    return " ".join([*context(history), question.strip()])


def context(history: Sequence[Turn]) -> list[str]:
    """The earlier questions an elliptical one continues: back to the latest that names its own
    subject, so a chain (事假怎么请？ → 要谁审批？ → 超过三天呢？) keeps the subject of the first."""
    out: list[str] = []
    for turn in reversed(history):
        out.insert(0, turn.question.strip())
        if classify(turn.question) is FollowUp.COMPLETE:
            break
    return out
