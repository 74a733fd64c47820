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
from collections.abc import Iterator, Sequence
from typing import Any

from assistant.answering import DECLINE, DECLINE_ANYWHERE, Draft, Evidence
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
    r"(?:^|\n)\s*(?:依据|问题|Evidence|Question)\s*[：:]|\[\d{1,2}\]\s*《",
    re.IGNORECASE,
)
_SENTENCE = re.compile(r"[^。！？!?\n]+(?:[。！？!?]+|\n|$)")
_CN_NUM = r"[零〇一二两三四五六七八九十百千万]+"
_FIGURE = re.compile(
    rf"\d+(?:[.,]\d+)*|{_CN_NUM}(?=(?:个|日|天|周|月|年|小时|分钟|元|倍|次|级|人|%|％))|百分之{_CN_NUM}"
)


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
        # langchain-openai sends the length cap as `max_completion_tokens`, which self-hosted
        # OpenAI-compatible servers (llama.cpp, vLLM, Ollama) ignore: a small model then writes
        # thousands of tokens. They read the classic `max_tokens`.
        kwargs["extra_body"] = {"max_tokens": settings.llm_max_tokens}
    if settings.llm_api_key:
        kwargs["api_key"] = settings.llm_api_key
    elif settings.llm_base_url:
        kwargs["api_key"] = "not-needed"  # local servers (llama.cpp, vLLM, Ollama) ignore it
    try:
        return init_chat_model(settings.llm, **kwargs)
    except Exception as exc:  # unknown provider, missing provider package
        raise ConfigError(f"Cannot use RULEBOOK_LLM={settings.llm!r}: {exc}") from exc


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


_MARKERS_AFTER_STOP = re.compile(r"([。！？!?]+[ \t]*\n?|\n)[ \t]*((?:\[\d{1,2}\][ \t]*)+)")


def _bare(text: str) -> str:
    return re.sub(r"[\W_]+", "", text).upper()


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

    def __init__(self, model, prompts: Prompts, max_evidence: int = 5) -> None:  # type: ignore[no-untyped-def]
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
        self.max_evidence = max_evidence
        self._chains = {}
        for lang in ("zh", "en"):
            template = ChatPromptTemplate.from_messages([
                ("system", prompts.templates[f"llm_system_{lang}"]),
                ("human", prompts.templates[f"llm_user_{lang}"]),
            ])
            self._chains[lang] = template | model | StrOutputParser()

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
        return self.check(self.raw(evidence), evidence)

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
        for m in _SENTENCE.finditer(text.strip()):
            sentence = m.group(0)
            if not sentence.strip():
                continue
            if _bare(_MARKER.sub("", sentence)) == _bare(DECLINE):  # "NO_ANSWER", "NO_ANSWER [1]。"
                declined = True
                continue
            # Anywhere else the token is never shown (a model reciting its instructions quotes it).
            sentence = DECLINE_ANYWHERE.sub("", sentence)
            refs = [int(x) for x in _MARKER.findall(sentence)]
            valid = [n for n in refs if 1 <= n <= len(hits)]
            for n in set(refs) - set(valid):
                notes.append(f"dropped citation [{n}]: not in the evidence")
                sentence = sentence.replace(f"[{n}]", "")
            body = _MARKER.sub("", sentence)
            if _SCAFFOLDING.search(sentence) or _runs(normalise(body)) & self._prompt_runs:
                notes.append(f"dropped sentence echoing the prompt: {body.strip()[:60]}")
                continue
            figures = _canonical_figures(body)
            if figures:
                supported = set().union(*(_canonical_figures(hits[n - 1].clause.text) for n in valid)) \
                    if valid else set()
                missing = figures - supported
                if missing:
                    notes.append(f"dropped sentence with unsupported figure(s) {sorted(missing)}: {body.strip()[:60]}")
                    continue
            if not body.strip():
                continue  # markers with nothing said (their sentence was dropped) cite nothing
            kept.append(sentence)
            used.extend(n for n in valid if n not in used)
        citations = []
        for n in used:
            c = hits[n - 1].clause
            # The quote is chosen by code from the clause, never copied from the model.
            quote = evidence.quote(c.text, evidence.plan) if evidence.quote else c.text[:200]
            citations.append(Citation(n=n, clause_id=c.clause_id, document=c.document, source=c.source,
                                      clause=c.label, path=c.path, quote=quote))
        answer = "".join(kept).strip()
        for note in notes:
            log.warning("llm answer checked: %s", note)
        if not citations:
            notes.append("the model found no answer in the evidence" if declined
                         else "no valid citation in the model's answer")
        return Draft(text=answer, citations=tuple(citations), composer=self.name, notes=tuple(notes),
                     declined=declined and not citations)

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
