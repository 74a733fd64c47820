"""The assistant: retrieval → evidence gate → composer → citation check, over the served index.

`build_assistant(settings)` is the one factory; adapters (CLI, web, Slack) call
`assistant.answer(question, history)` and render the `Answer`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

from langchain_core.runnables import Runnable, RunnableLambda

from assistant.answering import (
    DEFAULT_GATE_THRESHOLD,
    Composer,
    Draft,
    Evidence,
    EvidenceGate,
    ExtractiveComposer,
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
        return self.chain(history).invoke(question)

    def _retrieve(self, question: str, history: Sequence[Turn]) -> dict:
        t0 = time.perf_counter()
        loaded = self._current()
        standalone = standalone_question(question, history)
        result = loaded.searcher.search(standalone, max(self.settings.top_k, 10),
                                        focus=question if standalone != question else None)
        return {"question": question, "standalone": standalone, "result": result,
                "loaded": loaded, "t0": t0, "t_retrieved": time.perf_counter()}

    def _compose(self, state: dict) -> dict:
        result = state["result"]
        hits = tuple(result.hits)
        chinese = is_chinese(state["question"])
        state["chinese"] = chinese
        state["draft"] = None
        state["confidence"] = self.gate.confidence(hits, result.plan)
        if state["confidence"] < self.gate.threshold:
            return state  # below the gate no composer runs, LLM or not
        evidence = Evidence(question=state["standalone"], plan=result.plan, hits=hits,
                            chinese=chinese)
        extractive: ExtractiveComposer = state["loaded"].extractive
        composer = self.composer or extractive
        try:
            draft = composer.compose(evidence)
        except ComposerError as exc:
            log.warning("%s composer failed (%s); answering offline", composer.name, exc)
            draft = extractive.compose(evidence)
        draft, _problems = verify_citations(draft, hits)
        if not draft.citations and composer is not extractive:
            log.warning("%s answer had no valid citation; answering offline", composer.name)
            draft, _ = verify_citations(extractive.compose(evidence), hits)
        state["draft"] = draft
        return state

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
    embedder = embedder or make_embedder(settings.embedding)
    return Assistant(settings, embedder, tokenizer, prompts, composer)
