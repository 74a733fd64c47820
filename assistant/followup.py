"""Turn a follow-up question into one that can be searched on its own.

Without an LLM this is a deterministic rule: a short or elliptical follow-up ("那试用期呢？",
"what about sick leave?", "需要谁批准？") is searched together with the previous question, so the
subject it leaves out is still there. A question that stands on its own is searched as it is.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from assistant.schema import Turn

_ELLIPTICAL_START = re.compile(
    r"^(那|那么|那如果|如果|要是|还有|另外|再问|还|也|并且|而且|然后|那要|那么要|"
    r"and\b|what about\b|how about\b|and if\b|what if\b|also\b|then\b)",
    re.IGNORECASE,
)
_REFERRING = re.compile(
    r"(它|这个|那个|这种|那种|这样|这些|那些|上述|该项|该条|此事|这事|这条|那条|这项|"
    r"\bit\b|\bthat\b|\bthis\b|\bthose\b|\bthese\b|\bthey\b|\bthem\b)",
    re.IGNORECASE,
)
_ELLIPTICAL_END = re.compile(r"(呢|的话)[？?。！!\s]*$")
# Length alone marks a follow-up only when the question is too short to name a subject of its
# own ("需要谁批准？", "到期以后怎么处理"); "今天杭州天气怎么样？" is short but complete, and must not be
# answered from the previous question's topic. A heuristic: with an LLM configured, it rewrites.
_SHORT_ZH = 8
_SHORT_EN = 3


def is_follow_up(question: str) -> bool:
    q = question.strip()
    if _ELLIPTICAL_START.search(q) or _ELLIPTICAL_END.search(q) or _REFERRING.search(q):
        return True
    if re.search(r"[\u3400-\u9fff]", q):
        return len(re.sub(r"[\s\W]", "", q)) <= _SHORT_ZH
    return len(q.split()) <= _SHORT_EN


def standalone_question(question: str, history: Sequence[Turn]) -> str:
    """The text to search for `question`, given earlier turns (oldest first)."""
    if not history or not is_follow_up(question):
        return question
    previous = history[-1].question.strip()
    return f"{previous} {question.strip()}"
