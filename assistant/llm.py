"""LLM composer: natural answers from an OpenAI-compatible endpoint, held to the same grounding.

The chain is LangChain LCEL: prompt (from prompts/, evidence numbered and fenced as data) | chat
model | string parser. What comes back is checked in code, never trusted:
- `[n]` markers that point outside the evidence are removed;
- a sentence stating a number, deadline or amount must cite a clause that contains that figure,
  or the sentence is dropped;
- each citation carries a quote chosen by code from the cited clause (verified like any quote);
- with no valid citation left, the caller answers offline instead (and logs it);
- `NO_ANSWER` on its own (the prompt asks for it when the evidence does not answer the question) is
  the model declining: the caller refuses instead of answering offline from the same clauses.
  This is the check the offline gate cannot make — a question near a rule but not answered by it.
Any endpoint failure (timeout, 429, 5xx, malformed output) raises ComposerError: the offline
composer answers.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from collections.abc import Iterator, Sequence
from typing import Any

from assistant.answering import DECLINE, DECLINE_ANYWHERE, Draft, Evidence, _bigrams, missing_kinds, quote_line
from assistant.config import Settings
from assistant.errors import ComposerError, ConfigError
from assistant.prompts import Prompts
from assistant.schema import Citation, Turn
from assistant.text import normalise

log = logging.getLogger(__name__)

_MARKER = re.compile(r"\[(\d{1,2})\]")
# The prompt's own structure echoed back (chat-template tokens, the evidence fences and headers):
# a sentence carrying any of it is prompt text, not an answer, whatever it cites.
_SCAFFOLDING = re.compile(
    r"<<\s*/?SYS\s*>>|\[/?INST\]|<\|[a-z_]+\|>|<start_of_turn>|<end_of_turn>|\"\"\"|"
    r"(?:^|\n)\s*(?:依据|问题|条款|员工的问题|Evidence|Question|Clauses|The employee's question)\s*[：:]|"
    r"\[\d{1,2}\]\s*《",
    re.IGNORECASE,
)
_SENTENCE = re.compile(r"[^。！？!?\n]+(?:[。！？!?]+|\n|$)")
_CN_NUM = r"[零〇一二两三四五六七八九十百千万]+"
_FIGURE = re.compile(
    rf"\d+(?:[.,]\d+)*|{_CN_NUM}(?=(?:个|日|天|周|月|年|小时|分钟|元|倍|次|级|人|%|％))|百分之{_CN_NUM}"
)


def classic_length(max_tokens: int, self_hosted: bool) -> dict[str, Any]:
    """Bind/constructor arguments that also send the length cap as the classic `max_tokens`.

    langchain-openai sends it as `max_completion_tokens`, which self-hosted OpenAI-compatible
    servers (llama.cpp, vLLM, Ollama) ignore: a small model then writes thousands of tokens. They
    read `max_tokens`. Hosted APIs take the modern field alone: their `extra_body` is empty, which
    also clears one a model was constructed with when this is bound over it."""
    return {"extra_body": {"max_tokens": max_tokens} if self_hosted else {}}


def make_chat_model(settings: Settings):  # type: ignore[no-untyped-def]
    """The chat model named by RULEBOOK_LLM (any provider `init_chat_model` supports)."""
    try:
        from langchain.chat_models import init_chat_model
    except ImportError as exc:
        raise ConfigError("RULEBOOK_LLM is set but LangChain's model support is not installed: "
                          "pip install -e '.[llm]'") from exc
    kwargs: dict[str, Any] = {"temperature": settings.llm_temperature, "timeout": settings.llm_timeout,
                              "max_retries": settings.llm_max_retries, "max_tokens": settings.llm_max_tokens}
    if settings.llm_base_url:
        kwargs["base_url"] = settings.llm_base_url
        kwargs.update(classic_length(settings.llm_max_tokens, self_hosted=True))
    if settings.llm_api_key:
        kwargs["api_key"] = settings.llm_api_key
    elif settings.llm_base_url:
        kwargs["api_key"] = "not-needed"  # local servers (llama.cpp, vLLM, Ollama) ignore it
    try:
        return init_chat_model(settings.llm, **kwargs)
    except Exception as exc:  # unknown provider, missing provider package
        raise ConfigError(f"Cannot use RULEBOOK_LLM={settings.llm!r}: {exc}") from exc


# "一个月", "一次", "一天" say "per month", "a time" as often as they state the figure 1 (the clause
# then says 每月, 每次): written in Chinese before a unit, "一" is not checked as a figure.
_ONE_PER = re.compile(r"(?<![零〇一二两三四五六七八九十百千万])一(?=个|次|天|日|周|年|月|小时)")


def _canonical_figures(text: str) -> set[str]:
    """Figures in a text, Chinese numerals as digits ("六个月" and "6个月" are the same figure)."""
    from ingest.structure import cn_number

    out = set()
    for m in _FIGURE.finditer(normalise(text)):
        f = m.group(0).replace(",", "")
        if f.startswith("百分之"):
            n = cn_number(f[3:])
            out.add(str(n) if n >= 0 else f)
        elif f.isdigit() or re.fullmatch(r"\d+\.\d+", f):
            out.add(f)
        else:
            n = cn_number(f)
            out.add(str(n) if n >= 0 else f)
    return out


PROMPT_RUN = 10


def _runs(text: str) -> set[str]:
    return {text[i : i + PROMPT_RUN] for i in range(len(text) - PROMPT_RUN + 1)}


_EXAMPLE_BREAK = re.compile(r"^---[ \t]*$", re.M)


def examples(template: str) -> tuple[str, list[tuple[str, str]]]:
    """The worked exchanges of an `llm_examples_*` template: its evidence and (question, answer)
    pairs. Blocks are separated by lines of `---`: the evidence as the model is shown it, then a
    question, its answer, the next question… An empty template has none."""
    if not template.strip():
        return "", []
    blocks = [b.strip() for b in _EXAMPLE_BREAK.split(template)]
    if len(blocks) < 3 or len(blocks) % 2 == 0 or not all(blocks):
        raise ConfigError("An llm_examples prompt must hold the evidence, then a question and its answer (and "
                          "more pairs if wanted), each block separated by a line of ---.")
    return blocks[0], list(zip(blocks[1::2], blocks[2::2], strict=True))


def _literal(text: str) -> str:
    """Text for a chat prompt template that takes no variables."""
    return text.replace("{", "{{").replace("}", "}}")


_MARKERS_AFTER_STOP = re.compile(r"([。！？!?]+[ \t]*\n?|\n)[ \t]*((?:\[\d{1,2}\][ \t]*)+)")


def _bare(text: str) -> str:
    return re.sub(r"[\W_]+", "", text).upper()


# Share of a sentence's words (CJK character bigrams, English words) that must occur in the clauses
# it cites; below it the sentence says something its clause does not. A sentence that another
# evidence clause supports at SUPPORT_RELABEL or more, and SUPPORT_GAP better than the one it
# cites, is given that clause's number instead (clauses on one topic share many words).
SUPPORT_MIN = 0.3
SUPPORT_RELABEL = 0.6
SUPPORT_GAP = 0.3
# Citation words (根据, 规定, 第十条 …) are not content: left out of the share.
_CITING = re.compile(r"《[^》]{1,60}》|第[零〇一二两三四五六七八九十百千\d]+[条章节款项]|"
                     r"[（(][一二三四五六七八九十\d]+[）)]|根据|依据|按照|规定|条款|制度|办法")


def _grams(text: str) -> set[str]:
    """CJK character bigrams and Latin words of three letters or more. The words are read before
    `normalise` drops the spaces: glued together, a whole English sentence made two or three "words",
    too few to judge, and no English answer was ever checked against its clause."""
    words = set(re.findall(r"[a-z]{3,}", _CITING.sub(" ", unicodedata.normalize("NFKC", text).lower())))
    return _bigrams(_CITING.sub(" ", normalise(text))) | words


def support(sentence: str, clause_texts: Sequence[str]) -> float:
    """Share of the sentence's words found in the clauses (1.0 for a sentence too short to judge)."""
    grams = _grams(sentence)
    if len(grams) < 4:
        return 1.0
    source = normalise("\n".join(clause_texts))
    return sum(1 for g in grams if g in source) / len(grams)


# Clause words (CJK bigrams, English words) an answer must state beyond the question's own words.
ADDS_MIN = 2


def adds_from_clauses(answer: str, question: str, clause_texts: Sequence[str]) -> bool:
    """Whether the answer states something of its clauses that the question did not already say:
    ADDS_MIN of the clauses' words, or a figure the clauses hold and the question does not."""
    source = normalise("\n".join(clause_texts))
    grams = _grams(answer) - _grams(question)
    if sum(1 for g in grams if g in source) >= ADDS_MIN:
        return True
    figures = _canonical_figures(_ONE_PER.sub("", answer)) - _canonical_figures(question)
    return bool(figures & set().union(*(_canonical_figures(t) for t in clause_texts)))


# Commas, semicolons and colons between the parts of a sentence; not a colon or comma inside a
# figure (12:00, 1,500元), which would come back from the parts as another number.
_PART_BREAK = re.compile(r"[，；;]|(?<!\d)[,:：]|[,:：](?!\d)")


def _claims(body: str, question: str, clause_texts: Sequence[str]) -> str:
    """The parts of a sentence (between commas) that say something about the rules: a part made of
    the question's words that its clauses do not hold is the asker's situation, left out. Empty
    when nothing else is left."""
    parts = [p for p in _PART_BREAK.split(body) if p.strip()]
    situation = [support(p, [question]) >= SUPPORT_RELABEL and support(p, clause_texts) < SUPPORT_MIN
                 and len(_grams(p)) >= 2 for p in parts]
    if all(situation):
        return "" if any(situation) else body
    return "，".join(p for p, s in zip(parts, situation, strict=True) if not s) if any(situation) else body


_NAMED_CLAUSE = re.compile(r"第[零〇一二两三四五六七八九十百千\d]+条(?:[（(][一二三四五六七八九十\d]+[）)])?")
_TITLE = re.compile(r"《([^》]{1,60})》")


def named_refs(sentence: str, hits: Sequence[Any]) -> list[int]:
    """Evidence numbers a sentence names the way people cite: 《文档》第十条, 第二十八条（二）, or the
    heading label of an evidence clause (二、报销时限). A label that several evidence clauses share
    counts only with the document named beside it."""
    titles = {normalise(t) for t in _TITLE.findall(sentence)}
    labels = {normalise(re.sub(r"[（(][^）)]*[）)]$", "", m)) for m in _NAMED_CLAUSE.findall(sentence)}
    text = normalise(sentence)
    out: list[int] = []
    for n, hit in enumerate(hits, start=1):
        c = hit.clause
        label = normalise(c.label)
        if not label:
            continue
        named = label in labels or (len(label) >= 4 and not _NAMED_CLAUSE.fullmatch(label) and label in text)
        if not named:
            continue
        same_label = [h for h in hits if normalise(h.clause.label) == label]
        if len(same_label) > 1 and normalise(c.document) not in titles:
            continue
        if titles and normalise(c.document) not in titles and not any(t in normalise(c.document) for t in titles):
            continue
        out.append(n)
    return out


def _article_markers(sentence: str, hits: Sequence[Any], notes: list[str]) -> str:
    """A marker beyond the evidence that is an article's number: "迟到30分钟以上按旷工处理[8]" written
    over evidence whose clause 第八条 is [1]. Small models mix up the evidence's numbering with the
    articles'. Read as that clause when exactly one evidence clause is 第n条; otherwise left as it is
    (and dropped as not in the evidence)."""
    from ingest.structure import NUM, cn_number

    def article(label: str) -> int:
        m = re.fullmatch(rf"第({NUM})条", normalise(label))
        return cn_number(m.group(1)) if m else -1

    def read(m: re.Match[str]) -> str:
        n = int(m.group(1))
        if 1 <= n <= len(hits):
            return m.group(0)
        same = [i for i, h in enumerate(hits, start=1) if article(h.clause.label) == n]
        if len(same) != 1:
            return m.group(0)
        notes.append(f"read citation [{n}] as {hits[same[0] - 1].clause.label} [{same[0]}]")
        return f"[{same[0]}]"

    return _MARKER.sub(read, sentence)


def _first_clause_says(body: str, hits: Sequence[Any]) -> bool:
    """Whether an uncited sentence is what the best evidence clause [1] says — the clause the gate
    and the offline answer stand on: [1] holds it word for word, or holds its words (support at
    least SUPPORT_RELABEL, SUPPORT_GAP above every other clause) — figures included.
    A bare fact another clause holds ("48小时内" when [1] says 24) is not attributed: it may be the
    right figure of the wrong rule."""
    text = re.sub(r"[\s。！？!?，,；;：:、.]+", "", normalise(body))
    if not text or not hits:
        return False
    if text not in re.sub(r"\s+", "", normalise(hits[0].clause.text)):
        if len(_grams(body)) < 4:
            return False  # too short to tell by its words
        each = [support(body, [h.clause.text]) for h in hits]
        if each[0] < SUPPORT_RELABEL or each[0] - max(each[1:], default=0.0) < SUPPORT_GAP:
            return False
    return not _canonical_figures(_ONE_PER.sub("", body)) - _canonical_figures(hits[0].clause.text)


def _with_markers(sentence: str, refs: Sequence[int]) -> str:
    """The sentence with `[n]` markers before its closing punctuation."""
    marks = "".join(f"[{n}]" for n in refs)
    m = re.search(r"[。！？!?\n]*$", sentence)
    end = m.start() if m else len(sentence)
    return sentence[:end].rstrip() + marks + sentence[end:]


_NAME_FILLER = re.compile(r"[\s›>»\-—:：,，、;；。.《》“”\"'（）()\[\]]")


def names_only(body: str, hits: Sequence[Any]) -> bool:
    """True for a sentence that only names evidence clauses, the way the evidence header shows them
    ("第五章 假期 › 第一节 年休假 › 第十六条", "第十五条"): a heading recited, not an answer."""
    rest = body
    names = {part for h in hits for part in (h.clause.document, h.clause.label, *h.clause.path) if part}
    for name in sorted(names, key=len, reverse=True):
        rest = rest.replace(name, "")
    return rest != body and not _NAME_FILLER.sub("", rest)


def _paragraphs(text: str) -> list[str]:
    return [p for p in re.split(r"\n\s*\n", text) if p.strip()]


def render_evidence(evidence: Evidence) -> str:
    """Numbered clauses, each fenced as data so instructions inside rule text stay text."""
    parts = []
    for n, hit in enumerate(evidence.hits, start=1):
        c = hit.clause
        parts.append(f"[{n}] 《{c.document}》 {' › '.join(c.path)}\n\"\"\"\n{c.text}\n\"\"\"")
    return "\n\n".join(parts)


class LLMComposer:
    """Composer seam implementation over a LangChain chat model."""

    name = "llm"

    def __init__(self, model, prompts: Prompts, max_evidence: int) -> None:  # type: ignore[no-untyped-def]
        from langchain_core.output_parsers import StrOutputParser
        from langchain_core.prompts import ChatPromptTemplate

        self.model = model
        self.prompts = prompts
        # Every 10-character run of the instructions: a sentence containing one is the prompt
        # recited back (small models do this), not an answer, even when it carries a marker.
        self._prompt_runs = {
            run for name in ("llm_system_zh", "llm_system_en", "llm_user_zh", "llm_user_en")
            for run in _runs(normalise(re.sub(r"\{\w+\}", "", prompts.templates[name])))
        }
        # The worked examples' answers and clauses: a sentence repeating one is the example
        # recited, unless the served rulebook's evidence says the same (`_recites_example`).
        self._example_runs: set[str] = set()
        self.max_evidence = max_evidence
        self._chains = {}
        for lang in ("zh", "en"):
            messages = [("system", prompts.templates[f"llm_system_{lang}"])]
            shown, exchanges = examples(prompts.templates[f"llm_examples_{lang}"])
            for question, answer in exchanges:
                user = prompts.render(f"llm_user_{lang}", evidence=shown, question=question)
                messages += [("human", _literal(user)), ("ai", _literal(answer))]
                self._example_runs |= _runs(normalise(_MARKER.sub("", answer)))
            if exchanges:
                self._example_runs |= _runs(normalise(shown))
            messages.append(("human", prompts.templates[f"llm_user_{lang}"]))
            self._chains[lang] = ChatPromptTemplate.from_messages(messages) | model | StrOutputParser()

    def _inputs(self, evidence: Evidence) -> tuple[str, dict[str, str]]:
        shown = Evidence(evidence.question, evidence.plan, evidence.hits[: self.max_evidence], evidence.chinese,
                         evidence.quote)
        return ("zh" if evidence.chinese else "en"), {"evidence": render_evidence(shown),
                                                       "question": evidence.question}

    def raw(self, evidence: Evidence) -> str:
        lang, inputs = self._inputs(evidence)
        try:
            text = self._chains[lang].invoke(inputs)
        except Exception as exc:  # openai.APITimeoutError, RateLimitError, APIStatusError, bad JSON …
            raise ComposerError(f"{exc.__class__.__name__}: {str(exc)[:200]}") from exc
        if not isinstance(text, str) or not text.strip():
            raise ComposerError("empty answer from the model")
        return text

    def stream_raw(self, evidence: Evidence) -> Iterator[str]:
        lang, inputs = self._inputs(evidence)
        try:
            for piece in self._chains[lang].stream(inputs):
                if piece:
                    yield piece
        except Exception as exc:
            raise ComposerError(f"{exc.__class__.__name__}: {str(exc)[:200]}") from exc

    def compose(self, evidence: Evidence) -> Draft:
        text = self.raw(evidence)
        log.info("llm reply to %r: %r", evidence.question[:80], text)
        return self.check(text, evidence)

    def _recites_example(self, runs: set[str], hits: Sequence[Any]) -> bool:
        shared = runs & self._example_runs
        if not shared:
            return False
        said = set().union(*(_runs(normalise(h.clause.text)) for h in hits))
        return bool(shared - said)

    def check(self, text: str, evidence: Evidence) -> Draft:
        """Ground the model's text in the evidence (see the module docstring)."""
        hits = evidence.hits[: self.max_evidence]
        notes: list[str] = []
        kept: list[str] = []
        used: list[int] = []
        declined = False
        # Markers written after the full stop or on the next line ("…答复。[1]", "…答复\n[1]")
        # belong to the sentence they close.
        text = _MARKERS_AFTER_STOP.sub(lambda m: m.group(2).rstrip() + m.group(1), text)
        for paragraph in _paragraphs(text.strip()):
            # (sentence, the evidence numbers it names, whether it carried any marker at all)
            sentences: list[tuple[str, list[int], bool]] = []
            for m in _SENTENCE.finditer(paragraph):
                sentence = m.group(0)
                if not sentence.strip():
                    continue
                if _bare(_MARKER.sub("", sentence)) == _bare(DECLINE):  # "NO_ANSWER", "NO_ANSWER [1]。"
                    declined = True
                    continue
                # Anywhere else the token is never shown (a model reciting its instructions quotes it).
                sentence = DECLINE_ANYWHERE.sub("", sentence)
                sentence = _article_markers(sentence, hits, notes)
                refs = [int(x) for x in _MARKER.findall(sentence)]
                valid = [n for n in refs if 1 <= n <= len(hits)]
                for n in set(refs) - set(valid):
                    notes.append(f"dropped citation [{n}]: not in the evidence")
                    sentence = sentence.replace(f"[{n}]", "")
                body = _MARKER.sub("", sentence)
                runs = _runs(normalise(body))
                if _SCAFFOLDING.search(sentence) or runs & self._prompt_runs or self._recites_example(runs, hits):
                    notes.append(f"dropped sentence echoing the prompt: {body.strip()[:60]}")
                    continue
                if not body.strip():
                    continue  # markers with nothing said (their sentence was dropped) cite nothing
                if names_only(body, hits):
                    # A 0.5B model often answers with the evidence header ("[1] 第五章 假期 › 第一节
                    # 年休假 › 第十六条"): the clause is named, nothing is said of it.
                    notes.append(f"dropped sentence that only names a clause: {body.strip()[:60]}")
                    continue
                named = [n for n in named_refs(body, hits) if n not in valid]
                if named:  # cited the way people cite (根据《…》第十条): give it the marker it lacks
                    sentence = _with_markers(sentence, named)
                sentences.append((sentence, valid + named, bool(refs)))
            # A sentence that names no clause leans on the clauses its paragraph names (根据第十条，
            # …。另外还可以延长60天。): its figures and words are checked against those.
            paragraph_refs = list(dict.fromkeys(n for _, refs, _ in sentences for n in refs))
            for sentence, refs, marked in sentences:
                refs = refs or paragraph_refs
                body = _MARKER.sub("", sentence)
                if not refs and marked:
                    continue  # it cited only what is not in the evidence: a confused source, not one to guess
                if not refs:
                    # Nothing cited in the whole paragraph. Small models often answer with the bare
                    # fact ("24小时内", "500元/晚"): when it is what the best evidence clause says,
                    # it stands on that clause.
                    if not _first_clause_says(body, hits):
                        continue  # nothing to stand on
                    notes.append(f"attributed to [1]: {body.strip()[:60]}")
                    sentence, refs = _with_markers(sentence, [1]), [1]
                # Parts that restate the asker's situation in the question's words (我工作七年了，…)
                # are not claims about the rules; the rest of the sentence is what is checked. A
                # sentence that only restates the question (an injected "公司同意给你涨薪50%") is not kept.
                body = _claims(body, evidence.question, [hits[n - 1].clause.text for n in refs])
                if not body:
                    notes.append(f"dropped sentence restating the question: {_MARKER.sub('', sentence).strip()[:60]}")
                    continue
                share = support(body, [hits[n - 1].clause.text for n in refs])
                # Words of another clause under this one's number (copied from [1], labelled [2]).
                each = {n: support(body, [hits[n - 1].clause.text]) for n in range(1, len(hits) + 1)}
                best = max(each, key=each.__getitem__)
                best_share = each[best]
                if best not in refs and best_share >= SUPPORT_RELABEL and best_share - share >= SUPPORT_GAP:
                    notes.append(f"relabelled {refs} as [{best}]: {body.strip()[:60]}")
                    sentence = _with_markers(_MARKER.sub("", sentence), [best])
                    refs = [best]
                elif share < SUPPORT_MIN:
                    notes.append(f"dropped sentence its clause does not support ({share:.2f}): {body.strip()[:60]}")
                    continue
                figures = _canonical_figures(_ONE_PER.sub("", body))
                supported = set().union(*(_canonical_figures(hits[n - 1].clause.text) for n in refs))
                missing = figures - supported
                if missing:
                    notes.append(f"dropped sentence with unsupported figure(s) {sorted(missing)}: {body.strip()[:60]}")
                    continue
                kept.append(sentence)
                used.extend(n for n in refs if n not in used)
        answer = "".join(kept).strip()
        unstated = missing_kinds(evidence.question, [_MARKER.sub("", answer)]) if answer else []
        if unstated:
            # The question asks how long / when / how much and the answer states none: it answers
            # something else (the offline composer's clause does state one, or the gate refused).
            notes.append(f"answer states no {', '.join(unstated)} the question asks for")
            used, answer = [], ""
        if answer and not adds_from_clauses(_MARKER.sub("", answer), evidence.question,
                                            [hits[n - 1].clause.text for n in used]):
            # "不可以[5]。", "迟到一个多小时，没提前说算啥[1]": a bare yes/no or the question said back
            # carries nothing its clause states, so nothing shows the clause was read.
            notes.append("answer states nothing of its clauses beyond the question's words")
            used, answer = [], ""
        citations = []
        for n in used:
            c = hits[n - 1].clause
            # The quote is chosen by code from the clause, never copied from the model.
            quote = evidence.quote(c.text, evidence.plan) if evidence.quote else c.text[:200]
            citations.append(Citation(n=n, clause_id=c.clause_id, document=c.document, source=c.source,
                                      clause=c.label, path=c.path, quote=quote, content_hash=c.content_hash))
        if citations:
            answer = self._with_quotes(answer, citations, evidence.chinese)
        for note in notes:
            log.warning("llm answer checked: %s", note)
        if not citations:
            notes.append("the model found no answer in the evidence" if declined
                         else "no valid citation in the model's answer")
        return Draft(text=answer, citations=tuple(citations), composer=self.name, notes=tuple(notes),
                     declined=declined and not citations)

    def _with_quotes(self, answer: str, citations: Sequence[Citation], chinese: bool) -> str:
        """The model's short answer first, then the verified quote of each clause it cites (the
        offline answer's wording) — unless the model already wrote that quote out."""
        said = re.sub(r"\s+", "", normalise(_MARKER.sub("", answer)))
        lines = []
        for i, c in enumerate(citations):
            if re.sub(r"\s+", "", normalise(c.quote)) in said:
                continue
            lines.append(quote_line(self.prompts, chinese, i == 0, c.document, c.clause, c.quote, c.n))
        return "\n\n".join([answer, "\n".join(lines)]) if lines else answer

    def rewrite(self, question: str, history: Sequence[Turn], chinese: bool) -> str:
        """A standalone version of a follow-up question; raises ComposerError on failure."""
        from langchain_core.output_parsers import StrOutputParser
        from langchain_core.prompts import ChatPromptTemplate

        lang = "zh" if chinese else "en"
        chain = ChatPromptTemplate.from_messages([("human", self.prompts.templates[f"rewrite_{lang}"])]) \
            | self.model | StrOutputParser()
        try:
            text = chain.invoke({"history": "\n".join(t.question for t in history[-3:]), "question": question})
        except Exception as exc:
            raise ComposerError(f"{exc.__class__.__name__}: {str(exc)[:200]}") from exc
        text = text.strip().strip('"“”').splitlines()[0].strip() if text.strip() else ""
        if not text or len(text) > 4 * len(question) + 200:
            raise ComposerError("unusable rewrite")
        return text
