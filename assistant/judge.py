"""The model as a judge: does the clause the answer stands on answer the question?

Asked outright, small models say yes to everything (Qwen2.5-1.5B said 是 to all 13 near misses and
to 你好). Their first-token probabilities still rank well: log P(是) − log P(否), with the clause
and the question in the prompt, separates answerable questions from near misses better than any
offline signal measured (`eval/TUNING.md`). The judge reads that log-odds against a threshold
without needing log-probabilities from the endpoint: it asks for one token at temperature 0 with
a logit bias of −threshold on the "yes" token (and the same large lift on both answer tokens, so
that one of the two is chosen). The reply is "yes" exactly when log P(yes) − log P(no) ≥ threshold.
Any OpenAI-compatible endpoint that honours `logit_bias` will do (OpenAI, llama.cpp, vLLM); the
token ids of the two answer words are configured or looked up on a llama.cpp server. The same
prompt asked a second time with another bias is served from the server's prompt cache.

Two readings are used (`assistant.core`):
- below RULEBOOK_LLM_JUDGE_REFUSE_BELOW the clause does not answer the question: a refusal;
- at or above RULEBOOK_LLM_JUDGE_OVERRULE_ABOVE, a model that then declines to write an answer
  (NO_ANSWER) is overruled: the offline answer is given.
"""

from __future__ import annotations

import json
import logging
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from assistant.answering import Evidence
from assistant.errors import ComposerError, ConfigError
from assistant.llm import classic_length
from assistant.prompts import Prompts

log = logging.getLogger(__name__)

# Both answer tokens are lifted by this much, so that the reply is one of them whatever else the
# model would have said ("不是", "Yes", a quote mark); OpenAI accepts biases up to 100.
LIFT = 50.0
# The clause shown to the judge is cut here (the prompt stays short: one prompt evaluation).
CLAUSE_CHARS = 600


@dataclass(frozen=True)
class Verdict:
    answers: bool  # log-odds at or above the refusal threshold (True when that reading is off)
    sure: bool  # log-odds at or above the overrule threshold (False when that reading is off)


def token_ids(base_url: str, words: tuple[str, str], timeout: float) -> tuple[int, int]:
    """The ids of the two answer words in the served model's vocabulary, from the server's
    tokenizer (llama-cpp-python: POST /extras/tokenize; llama.cpp's server: POST /tokenize)."""
    root = base_url.rstrip("/")
    root = root[: -len("/v1")] if root.endswith("/v1") else root
    errors = []
    for path, key, field in (("/extras/tokenize", "input", "tokens"), ("/tokenize", "content", "tokens")):
        ids = []
        try:
            for word in words:
                req = urllib.request.Request(root + path, data=json.dumps({key: word}).encode(),
                                             headers={"content-type": "application/json"})
                with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 (operator's URL)
                    tokens = json.loads(resp.read())[field]
                if len(tokens) != 1:
                    raise ConfigError(f"the judge's answer word {word!r} is {len(tokens)} tokens for this model, "
                                      "not one: set RULEBOOK_LLM_JUDGE_WORDS")
                ids.append(int(tokens[0]))
        except ConfigError:
            raise
        except Exception as exc:  # not this kind of server
            errors.append(f"{path}: {exc.__class__.__name__}")
            continue
        return ids[0], ids[1]
    raise ConfigError("cannot look up the judge's answer tokens on the server (" + "; ".join(errors) +
                      "): set RULEBOOK_LLM_JUDGE_TOKEN_IDS")


class Judge:
    """One-token verdicts from a chat model (a LangChain chat model speaking the OpenAI protocol)."""

    def __init__(self, model: Any, prompts: Prompts, ids: tuple[int, int] | Callable[[], tuple[int, int]],
                 refuse_below: float | None, overrule_above: float | None, yes_word: str = "是",
                 self_hosted: bool = True) -> None:
        from langchain_core.output_parsers import StrOutputParser
        from langchain_core.prompts import ChatPromptTemplate

        self.model = model
        # The token ids, or how to look them up (on first use: the server may start after us).
        self._ids = ids
        self.yes_word = yes_word
        self._length = classic_length(1, self_hosted)
        self.refuse_below = refuse_below
        self.overrule_above = overrule_above
        self._template = ChatPromptTemplate.from_messages([
            ("system", prompts.templates["judge_system"]), ("human", prompts.templates["judge_user"])])
        self._parser = StrOutputParser()

    def _says_yes(self, inputs: dict[str, str], threshold: float) -> bool:
        """Whether log P(yes) − log P(no) ≥ threshold for this prompt."""
        if callable(self._ids):
            try:
                self._ids = self._ids()
            except ConfigError as exc:
                raise ComposerError(str(exc)) from exc
        yes, no = self._ids
        bias = {str(yes): LIFT - threshold, str(no): LIFT}
        model = self.model.bind(logit_bias=bias, max_tokens=1, temperature=0.0, **self._length)
        try:
            reply = (self._template | model | self._parser).invoke(inputs)
        except Exception as exc:  # timeouts, 4xx/5xx, malformed output
            raise ComposerError(f"judge: {exc.__class__.__name__}: {str(exc)[:200]}") from exc
        return reply.strip().startswith(self.yes_word)

    def verdict(self, evidence: Evidence, clause_text: str, writes: bool) -> Verdict:
        """Judge the clause the answer stands on; `writes`: whether a model will then write the
        answer (only then is the overrule reading needed). Raises ComposerError on endpoint failure."""
        inputs = {"clause": clause_text[:CLAUSE_CHARS], "question": evidence.question}
        answers = True
        if self.refuse_below is not None:
            answers = self._says_yes(inputs, self.refuse_below)
        sure = False
        if answers and writes and self.overrule_above is not None:
            sure = self._says_yes(inputs, self.overrule_above)
        return Verdict(answers=answers, sure=sure)


def make_judge(settings: Any, model: Any, prompts: Prompts) -> Judge:
    """The judge the settings ask for (RULEBOOK_LLM_JUDGE=true), over the answering model."""
    words = tuple(w.strip() for w in settings.llm_judge_words.split(","))
    if len(words) != 2 or not all(words):
        raise ConfigError("RULEBOOK_LLM_JUDGE_WORDS must be two words, yes first: e.g. 是,否")
    if settings.llm_judge_token_ids:
        try:
            a, b = (int(x) for x in settings.llm_judge_token_ids.split(","))
        except ValueError as exc:
            raise ConfigError("RULEBOOK_LLM_JUDGE_TOKEN_IDS must be two token ids, yes first: e.g. 20412,32376") \
                from exc
        ids: tuple[int, int] | Callable[[], tuple[int, int]] = (a, b)
    elif settings.llm_base_url:
        base_url = settings.llm_base_url
        ids = lambda: token_ids(base_url, (words[0], words[1]), settings.llm_timeout)  # noqa: E731
    else:
        raise ConfigError("RULEBOOK_LLM_JUDGE needs RULEBOOK_LLM_JUDGE_TOKEN_IDS for a hosted model")
    return Judge(model, prompts, ids, settings.llm_judge_refuse_below, settings.llm_judge_overrule_above,
                 yes_word=words[0], self_hosted=bool(settings.llm_base_url))
