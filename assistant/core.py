"""The assistant: retrieval → evidence gate → composer → citation check, over the served index.

`build_assistant(settings)` is the one factory; adapters (CLI, web, Slack) call
`assistant.answer(question, history)` and render the `Answer`.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from langchain_core.runnables import Runnable, RunnableLambda

from assistant.answering import (
    DEFAULT_GATE_THRESHOLD,
    Composer,
    Draft,
    Evidence,
    EvidenceGate,
    ExtractiveComposer,
    hide_token,
    verify_citations,
)
from assistant.config import Settings
from assistant.errors import ComposerError
from assistant.followup import standalone_question
from assistant.prompts import Prompts, load_prompts
from assistant.retrieval import HybridSearcher, default_synonym_files, load_synonyms
from assistant.schema import Answer, Clause, Turn
from assistant.store import IndexSnapshot, Layout
from assistant.text import Tokenizer, is_chinese, shared_tokenizer

log = logging.getLogger(__name__)


@dataclass
class _Loaded:
    generation: str
    snapshot: IndexSnapshot
    searcher: HybridSearcher
    extractive: ExtractiveComposer


class Assistant:
    """Answers questions from the index generation that `CURRENT` names, switching when it moves."""

    def __init__(self, settings: Settings, embedder, tokenizer: Tokenizer,  # type: ignore[no-untyped-def]
                 prompts: Prompts, composer: Composer | None = None) -> None:
        from ingest.pipeline import embedder_name

        self.settings = settings
        self.embedder = embedder
        self.embedder_name = embedder_name(settings.embedding)
        self.tokenizer = tokenizer
        self.prompts = prompts
        self.synonyms = load_synonyms(default_synonym_files(settings.synonyms_file))
        self.gate = EvidenceGate(settings.gate_threshold if settings.gate_threshold is not None
                                 else DEFAULT_GATE_THRESHOLD)
        self.composer = composer  # None → the extractive composer of the loaded index
        self.layout = Layout(settings.data_dir)
        self._loaded: _Loaded | None = None
        self._lock = threading.Lock()

    # -- index --------------------------------------------------------------------------
    def _current(self) -> _Loaded:
        """The loaded generation, reloaded when an ingest has published a newer one."""
        loaded = self._loaded
        name = self.layout.current()
        if loaded is not None and (name is None or name == loaded.generation):
            return loaded
        with self._lock:
            if self._loaded is not None and self._loaded.generation == self.layout.current():
                return self._loaded
            snapshot = IndexSnapshot(self.layout, self.settings.chroma_url, self.embedder_name)
            searcher = HybridSearcher(snapshot, self.embedder, self.tokenizer, self.synonyms)
            extractive = ExtractiveComposer(self.tokenizer, self.prompts, searcher.idf,
                                            self.settings.max_citations)
            self._loaded = _Loaded(snapshot.generation, snapshot, searcher, extractive)
            log.info("serving index %s (%d clauses)", snapshot.generation, len(snapshot.clauses))
            return self._loaded

    def ready(self) -> tuple[bool, str]:
        try:
            loaded = self._current()
        except Exception as exc:  # IndexNotBuilt, IndexMismatch, a damaged index
            return False, str(exc)
        return True, f"{loaded.generation}: {len(loaded.snapshot.clauses)} clauses"

    @property
    def generation(self) -> str:
        return self._current().generation

    def clause(self, clause_id: str) -> tuple[Clause, Clause | None, Clause | None] | None:
        snap = self._current().snapshot
        if clause_id not in snap.by_id:
            return None
        clause = snap.clauses[snap.by_id[clause_id]]
        prev, nxt = snap.neighbours(clause_id)
        return clause, prev, nxt

    # -- answering ----------------------------------------------------------------------
    def chain(self, history: Sequence[Turn] = ()) -> Runnable:
        """The answer pipeline as LCEL: retrieve | gate+compose | verify, question in, Answer out."""
        return (
            RunnableLambda(lambda q: self._retrieve(q, history))
            | RunnableLambda(self._compose)
            | RunnableLambda(self._finish)
        )

    def answer(self, question: str, history: Sequence[Turn] = ()) -> Answer:
        """Answer one question; `history` holds the earlier turns of the conversation."""
        return self.chain(history).invoke(question)

    def standalone(self, question: str, history: Sequence[Turn]) -> str:
        """The question to search: rewritten by the LLM when one is configured, else by rule."""
        rewrite = getattr(self.composer, "rewrite", None)
        if history and rewrite is not None:
            try:
                return rewrite(question, history, is_chinese(question))
            except ComposerError as exc:
                log.warning("follow-up rewrite by the model failed (%s); using the rule", exc)
        return standalone_question(question, history)

    def _retrieve(self, question: str, history: Sequence[Turn]) -> dict:
        t0 = time.perf_counter()
        loaded = self._current()
        standalone = self.standalone(question, history)
        result = loaded.searcher.search(standalone, max(self.settings.top_k, 10))
        return {"question": question, "standalone": standalone, "result": result,
                "loaded": loaded, "t0": t0, "t_retrieved": time.perf_counter()}

    def _gate(self, state: dict) -> Evidence | None:
        """Gate the retrieved clauses; the evidence for a composer, or None below the gate."""
        result = state["result"]
        hits = tuple(result.hits)
        state["chinese"] = is_chinese(state["question"])
        state["draft"] = None
        state["confidence"] = self.gate.confidence(hits, result.plan)
        if state["confidence"] < self.gate.threshold:
            return None  # below the gate no composer runs, LLM or not
        extractive: ExtractiveComposer = state["loaded"].extractive
        return Evidence(question=state["standalone"], plan=result.plan, hits=hits,
                        chinese=state["chinese"], quote=extractive.quote)

    def _compose(self, state: dict) -> dict:
        return self._draft(state, self._gate(state))

    def _draft(self, state: dict, evidence: Evidence | None) -> dict:
        """Compose and check an answer from gated evidence (nothing when below the gate)."""
        if evidence is None:
            return state
        extractive: ExtractiveComposer = state["loaded"].extractive
        composer = self.composer or extractive
        try:
            draft = composer.compose(evidence)
        except ComposerError as exc:
            log.warning("%s composer failed (%s); answering offline", composer.name, exc)
            draft = extractive.compose(evidence)
        state["draft"] = self._checked(draft, evidence, composer, extractive)
        return state

    def _checked(self, draft: Draft, evidence: Evidence, composer: Composer,
                 extractive: ExtractiveComposer) -> Draft:
        """Verify citations; a model answer left with no valid citation is replaced offline,
        unless the model declined (the evidence does not answer the question): that is a refusal."""
        draft, _problems = verify_citations(draft, evidence.hits)
        if draft.declined:
            log.info("%s composer found no answer in the evidence; refusing", composer.name)
            return draft
        if not draft.citations and composer is not extractive:
            log.warning("%s answer had no valid citation; answering offline", composer.name)
            draft, _ = verify_citations(extractive.compose(evidence), evidence.hits)
        return draft

    def answer_stream(self, question: str, history: Sequence[Turn] = ()) -> Iterator[tuple[str, Any]]:
        """("retrieval", hits), then ("delta", text) pieces as they are produced (model tokens with an
        LLM, pieces of the answer offline), then ("done", Answer) — the checked answer."""
        state = self._retrieve(question, history)
        yield "retrieval", state["result"].hits
        stream = getattr(self.composer, "stream_raw", None)
        evidence = self._gate(state)
        if evidence is not None and stream is not None:
            extractive: ExtractiveComposer = state["loaded"].extractive
            pieces: list[str] = []
            def raw() -> Iterator[str]:
                for piece in stream(evidence):
                    pieces.append(piece)
                    yield piece

            try:
                # A model that declines says so with a token no user should see mid-stream.
                for shown in hide_token(raw()):
                    yield "delta", shown
                draft = self.composer.check("".join(pieces), evidence)  # type: ignore[union-attr]
            except ComposerError as exc:
                log.warning("%s composer failed while streaming (%s); answering offline", self.composer.name, exc)
                draft = extractive.compose(evidence)
            state["draft"] = self._checked(draft, evidence, self.composer, extractive)  # type: ignore[arg-type]
            yield "done", self._finish(state)
            return
        answer = self._finish(self._draft(state, evidence))
        for piece in re.findall(r"[^。！？\n]*[。！？\n]?", answer.answer):
            if piece:
                yield "delta", piece
        yield "done", answer

    def _finish(self, state: dict) -> Answer:
        result = state["result"]
        draft: Draft | None = state["draft"]
        t_done = time.perf_counter()
        timings = {
            "retrieve": (state["t_retrieved"] - state["t0"]) * 1000,
            "answer": (t_done - state["t_retrieved"]) * 1000,
            "total": (t_done - state["t0"]) * 1000,
        }
        retrieved = tuple(result.hits[: max(self.settings.top_k, 10)])
        if draft is None or not draft.citations:
            text = self.prompts.render(self.prompts.lang("refusal", state["chinese"]),
                                       contact=self.settings.contact)
            return Answer(question=state["question"], grounded=False, answer=text, citations=(),
                          retrieved=retrieved, timings_ms=timings,
                          standalone_question=state["standalone"],
                          confidence=state["confidence"], generation=state["loaded"].generation)
        return Answer(question=state["question"], grounded=True, answer=draft.text,
                      citations=draft.citations, retrieved=retrieved, timings_ms=timings,
                      standalone_question=state["standalone"], composer=draft.composer,
                      confidence=state["confidence"], generation=state["loaded"].generation)


def build_assistant(settings: Settings, composer: Composer | None = None,
                    embedder=None) -> Assistant:  # type: ignore[no-untyped-def]
    """Construct the assistant and everything it needs from settings (nothing at import time)."""
    from assistant.embeddings import make_embedder

    user_dicts = (settings.user_dict,) if settings.user_dict else ()
    tokenizer = shared_tokenizer(user_dicts)
    prompts = load_prompts(settings.prompts_dir)
    if composer is None and settings.llm:
        from assistant.llm import LLMComposer, make_chat_model

        composer = LLMComposer(make_chat_model(settings), prompts)
    embedder = embedder or make_embedder(settings.embedding)
    return Assistant(settings, embedder, tokenizer, prompts, composer)
