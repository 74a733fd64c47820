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
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
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
    missing_kinds,
    verify_citations,
)
from assistant.changes import asks_what_changed
from assistant.config import Settings
from assistant.curation import Curation, Match, curations_path, open_curations
from assistant.effective import asks_about_the_past
from assistant.errors import ComposerError
from assistant.followup import FollowUp, decide, with_context
from assistant.history import ClauseHistory
from assistant.judge import Judge
from assistant.learned import LearnError, learned_for, resource_path
from assistant.nearmiss import UnlistedKinds, states_no_rule
from assistant.prompts import Prompts, load_prompts
from assistant.retrieval import HybridSearcher, QueryPlan, default_synonym_files, load_synonyms
from assistant.schema import Answer, Citation, Clause, Hit, Turn
from assistant.store import IndexSnapshot, Layout
from assistant.text import Tokenizer, is_chinese, shared_tokenizer, stopwords

log = logging.getLogger(__name__)

# How close in meaning (on the gate's 0–1 cosine scale) a question without a subject must be to a
# clause of another document, asked alone, to count as a new topic rather than a follow-up.
TOPIC_SWITCH_SEMANTIC = 0.55

# How long a replaced index generation stays open after a switch when no request is searching it.
# Searches hold their generation (`Assistant._searching`), so this margin only covers callers that
# picked a generation up without holding it (readiness, clause lookups read memory, not vectors).
RETIRE_AFTER_SECONDS = 10.0


def _release_memory() -> None:
    """Collect the replaced generation's objects and hand freed pages back to the system: without
    it glibc keeps them, and a server that lives through many ingests grows by each index's size."""
    import ctypes
    import ctypes.util
    import gc

    gc.collect()
    try:
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


def _unknown_words(plan: QueryPlan) -> list[str]:
    """The question's own words that the rulebook does not have (dictionary mappings excluded)."""
    return [next(iter(c.alternatives)) for c in plan.concepts if not c.known and len(c.alternatives) == 1]


@dataclass
class _Loaded:
    generation: str
    snapshot: IndexSnapshot
    searcher: HybridSearcher
    extractive: ExtractiveComposer
    unlisted: UnlistedKinds
    navigation: frozenset[str]  # ids of clauses that state no rule (titles, dates, approval lines)
    home: dict[str, str]  # index word → the one document that uses it ("" when several do)
    subject_idf: float  # index words at least this specific name a subject (corrections' guard)
    searching: int = 0  # searches in progress on this generation (guarded by Assistant._lock)
    closed: bool = False  # its vector store is (being) closed (guarded by Assistant._lock)
    learned_stamp: int | None = None  # modification time of the learned resource it uses
    by_key: dict[tuple[str, str], int] = field(default_factory=dict)  # (file, clause label) → position


class Assistant:
    """Answers questions from the index generation that `CURRENT` names, switching when it moves."""

    def __init__(self, settings: Settings, embedder, tokenizer: Tokenizer,  # type: ignore[no-untyped-def]
                 prompts: Prompts, composer: Composer | None = None, judge: Judge | None = None) -> None:
        from ingest.pipeline import embedder_name

        self.settings = settings
        self.embedder = embedder
        self.embedder_name = embedder_name(settings.embedding)
        self.tokenizer = tokenizer
        self.prompts = prompts
        self.synonyms = load_synonyms(default_synonym_files(settings.synonyms_file, settings.bundled_synonyms))
        # What `rulebook learn` wrote; a newer file is picked up on the next question.
        self._learned_path = resource_path(settings.data_dir, settings.learned_file) if settings.learned else None
        self.gate = EvidenceGate(settings.gate_threshold if settings.gate_threshold is not None
                                 else DEFAULT_GATE_THRESHOLD)
        self.composer = composer  # None → the extractive composer of the loaded index
        self.judge = judge  # the model asked whether the first clause answers (RULEBOOK_LLM_JUDGE)
        self.layout = Layout(settings.data_dir)
        self._loaded: _Loaded | None = None
        self._lock = threading.Lock()
        self._history: ClauseHistory | None = None
        self._curations = None  # the owners' corrections, opened once they exist
        # Generations replaced by a newer one, with the time they were replaced: closed once no
        # request that picked them up just before the switch can still be querying them.
        self._retired: list[tuple[float, _Loaded]] = []

    # -- index --------------------------------------------------------------------------
    def _current(self) -> _Loaded:
        """The loaded generation, reloaded when an ingest has published a newer one."""
        loaded = self._loaded
        name = self.layout.current()
        if self._retired:
            self._close_retired()
        if (loaded is not None and (name is None or name == loaded.generation)
                and loaded.learned_stamp == self._learned_stamp()):
            return loaded
        loaded = self._load()
        self._close_retired()  # the generation just replaced may have made an older one closable
        return loaded

    def _load(self) -> _Loaded:
        """Load the generation `CURRENT` names, unless another thread just did."""
        with self._lock:
            stamp = self._learned_stamp()
            if (self._loaded is not None and self._loaded.generation == self.layout.current()
                    and self._loaded.learned_stamp == stamp):
                return self._loaded
            snapshot = IndexSnapshot(self.layout, self.settings.chroma_url, self.embedder_name)
            learned = None
            if stamp is not None:
                try:
                    learned = learned_for(self.settings, self.embedder_name)
                except LearnError as exc:  # a damaged file must not take the index down with it
                    log.error("%s; searching without it", exc)
            searcher = HybridSearcher(snapshot, self.embedder, self.tokenizer, self.synonyms, learned)
            sources_of: dict[str, set[str]] = {}
            for c in snapshot.clauses:
                sources_of.setdefault(c.document, set()).add(c.source)
            extractive = ExtractiveComposer(self.tokenizer, self.prompts, searcher.idf,
                                            self.settings.max_citations,
                                            frozenset(t for t, s in sources_of.items() if len(s) > 1))
            unlisted = UnlistedKinds((w for toks in searcher.clause_token_sets for w in toks),
                                     searcher.corpus_norm)
            navigation = frozenset(c.clause_id for c in snapshot.clauses if states_no_rule(c))
            home: dict[str, str] = {}
            for clause, words in zip(snapshot.clauses, searcher.clause_token_sets, strict=True):
                for w in words:
                    home[w] = clause.source if home.get(w, clause.source) == clause.source else ""
            if self._loaded is not None:  # replaced only once the new one loaded
                self._retired.append((time.monotonic(), self._loaded))
            idf = sorted(searcher.idf.values())
            self._loaded = _Loaded(snapshot.generation, snapshot, searcher, extractive, unlisted, navigation,
                                   home, idf[len(idf) // 2] if idf else 0.0, learned_stamp=stamp)
            log.info("serving index %s (%d clauses)", snapshot.generation, len(snapshot.clauses))
            return self._loaded

    def _learned_stamp(self) -> int | None:
        """The learned resource's modification time, None when there is none (or it is off)."""
        if self._learned_path is None:
            return None
        try:
            return self._learned_path.stat().st_mtime_ns
        except OSError:
            return None

    @contextmanager
    def _searching(self) -> Iterator[_Loaded]:
        """The current generation, held open while the caller searches it."""
        while True:
            loaded = self._current()
            with self._lock:
                if loaded.closed:
                    continue  # replaced and closed between the two lines above: take the new one
                loaded.searching += 1
                break
        try:
            yield loaded
        finally:
            with self._lock:
                loaded.searching -= 1

    def _close_retired(self, grace: float = RETIRE_AFTER_SECONDS) -> None:
        """Close the replaced generations that nobody is searching: at once when a newer one has
        been replaced too (a burst of ingests must not keep a dozen indexes open), else once
        `grace` seconds have passed (all of them with 0)."""
        now = time.monotonic()
        with self._lock:
            newest = self._retired[-1][1] if self._retired else None
            done = [loaded for since, loaded in self._retired
                    if not loaded.searching and (now - since >= grace or loaded is not newest)]
            self._retired = [(since, loaded) for since, loaded in self._retired
                             if not any(loaded is d for d in done)]
            for loaded in done:
                loaded.closed = True
        for loaded in done:
            loaded.snapshot.close()
            log.info("closed index %s", loaded.generation)
        if done:
            _release_memory()

    def history(self) -> ClauseHistory | None:
        """The clause history, opened once (it lives beside the generations, so index switches do
        not replace it); None until an ingest has written one."""
        if self._history is None and self.layout.history.exists():
            with self._lock:
                if self._history is None:
                    self._history = ClauseHistory(self.layout.history)
        return self._history

    def close(self) -> None:
        """Release every loaded generation (the assistant reloads on its next question)."""
        with self._lock:
            loaded, self._loaded = self._loaded, None
            if loaded is not None:
                self._retired.append((time.monotonic(), loaded))
        self._close_retired(grace=0.0)

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

    def standalone(self, question: str, history: Sequence[Turn], loaded: _Loaded | None = None) -> str:
        """The question to search. A complete question is searched as asked, whatever came before;
        an elliptical follow-up is rewritten by the LLM when one is configured, else by rule."""
        if loaded is None:
            with self._searching() as held:
                return self.standalone(question, history, held)
        if decide(question, history, cleared=lambda text: self._cleared(loaded, text),
                  topic=lambda text: self._topic(loaded, text), known=loaded.searcher._known,
                  home=lambda word: loaded.home.get(word) or None) is FollowUp.COMPLETE:
            return question
        rewrite = getattr(self.composer, "rewrite", None)
        if rewrite is not None:
            try:
                return rewrite(question, history, is_chinese(question))
            except ComposerError as exc:
                log.warning("follow-up rewrite by the model failed (%s); using the rule", exc)
        return with_context(question, history)

    def _cleared(self, loaded: _Loaded, text: str) -> str | None:
        """The document of the best clause when `text` alone clears the evidence gate and is close
        to it in meaning (at least midway on the gate's cosine scale), else None. The gate alone is
        too weak a test here: a vague "过了期限怎么办？" covers its one word (期限) in many clauses."""
        found = loaded.searcher.search(text, 10)
        hits = [h for h in found.hits if h.clause.clause_id not in loaded.navigation]
        if not hits or loaded.unlisted.find(_unknown_words(found.plan)):
            return None
        if (self.gate.confidence(hits, found.plan) < self.gate.threshold
                or self.gate.semantic(hits[:1], found.plan) < TOPIC_SWITCH_SEMANTIC):
            return None
        return hits[0].clause.source

    def _topic(self, loaded: _Loaded, text: str) -> str | None:
        """The document of the best clause for `text`."""
        hits = [h for h in loaded.searcher.search(text, 10).hits if h.clause.clause_id not in loaded.navigation]
        return hits[0].clause.source if hits else None

    def _retrieve(self, question: str, history: Sequence[Turn]) -> dict:
        t0 = time.perf_counter()
        with self._searching() as loaded:
            standalone = self.standalone(question, history, loaded)
            result = loaded.searcher.search(standalone, max(self.settings.top_k, 10))
            curated = self._curated(loaded, standalone, result.qvec)
        return {"question": question, "standalone": standalone, "result": result, "curated": curated,
                "loaded": loaded, "t0": t0, "t_retrieved": time.perf_counter()}

    # -- the owners' corrections --------------------------------------------------------
    def curations(self):  # type: ignore[no-untyped-def]
        """The corrections store, opened once it exists (the console or `rulebook curate` creates it)."""
        if self._curations is None and self.settings.curated and curations_path(self.settings.data_dir).exists():
            with self._lock:
                if self._curations is None:
                    self._curations = open_curations(self.settings.data_dir)
        return self._curations

    def _subject_words(self, loaded: _Loaded, text: str) -> set[str]:
        """The words of `text` that the served rulebook uses specifically enough to name a subject."""
        idf, stop = loaded.searcher.idf, stopwords()
        return {w for w in loaded.searcher.plan(text).own_tokens
                if len(w) >= 2 and w not in stop and idf.get(w, 0.0) >= loaded.subject_idf}

    def _curated_clauses(self, loaded: _Loaded, item: Curation) -> list[int]:
        """Positions of a correction's clauses in the served index: by id, else by (file, label)."""
        snap = loaded.snapshot
        if not loaded.by_key:
            loaded.by_key = {(c.source, c.label): i for i, c in enumerate(snap.clauses)}
        by_key = loaded.by_key
        found: list[int] = []
        for c in item.clauses:
            i = snap.by_id.get(c.get("clause_id", ""))
            if i is None:
                i = by_key.get((c.get("source", ""), c.get("clause", "")))
            if i is not None and i not in found:
                found.append(i)
        return found

    def _curated(self, loaded: _Loaded, question: str, qvec: Any) -> tuple[Match, list[int]] | None:
        """The correction this question paraphrases and its clauses' positions, if any. A clause
        correction whose clauses are all gone from the index no longer applies."""
        store = self.curations()
        if store is None or qvec is None:
            return None
        searcher = loaded.searcher

        def words_of(item: Curation) -> set[str]:
            words = self._subject_words(loaded, item.question)
            for i in self._curated_clauses(loaded, item):
                words |= searcher.clause_token_sets[i]
            return words

        try:
            found = store.match(qvec, self._subject_words(loaded, question),
                                lambda text: self.embedder.query_array(searcher.plan(text).embed_text),
                                self.embedder_name, words_of, self.settings.curated_similar)
        except Exception:  # a correction store problem must never cost an answer
            log.exception("corrections not read")
            return None
        if found is None:
            return None
        # The same rules as for retrieved clauses: a title or date line is never evidence, and a
        # repealed document answers only questions about the past.
        repealed = loaded.snapshot.superseded if not asks_about_the_past(question) else {}
        positions = [i for i in self._curated_clauses(loaded, found.curation)
                     if loaded.snapshot.clauses[i].clause_id not in loaded.navigation
                     and loaded.snapshot.clauses[i].source not in repealed]
        if found.curation.covered and not positions:
            log.warning("correction %s names clauses no longer in the index; not applied", found.curation.curation_id)
            return None
        log.info("question follows correction %s (%s, cosine %.3f)", found.curation.curation_id,
                 found.curation.kind, found.similarity)
        return found, positions

    def _gate(self, state: dict) -> Evidence | None:
        """Gate the retrieved clauses; the evidence for a composer, or None below the gate."""
        result = state["result"]
        loaded: _Loaded = state["loaded"]
        # Clauses that state no rule (a preamble's approval line, a title) are listed in
        # `retrieved` for navigation but are never evidence.
        hits = tuple(h for h in result.hits if h.clause.clause_id not in loaded.navigation)
        # A repealed document answers only questions about how things were, and then says so.
        repealed = loaded.snapshot.superseded
        if repealed and not asks_about_the_past(state["question"]):
            hits = tuple(h for h in hits if h.clause.source not in repealed)
        state["chinese"] = is_chinese(state["question"])
        state["draft"] = None
        if state.get("curated"):
            return self._curated_evidence(state)
        # Setting a preamble aside must not make the rest look better than retrieval found it.
        state["confidence"] = min(self.gate.confidence(hits, result.plan),
                                  self.gate.confidence(result.hits, result.plan))
        state["unlisted"] = loaded.unlisted.find(_unknown_words(result.plan))
        if state["unlisted"]:
            # The question asks about a kind of thing (健身卡, 停车费) the rulebook does not list:
            # a near miss, however close the category's clauses score.
            log.info("near miss: the rulebook does not name %s", "、".join(state["unlisted"]))
            state["confidence"] = min(state["confidence"], self.gate.threshold / 2)
        extractive: ExtractiveComposer = state["loaded"].extractive
        if state["confidence"] >= self.gate.threshold and hits:
            # The question asks for a kind of fact (多久, 几月份, 多少钱) that no clause it would
            # cite states: a near miss on the topic, not an answer.
            # (The question as asked: an elliptical one's rewrite carries the previous question's.)
            state["missing"] = missing_kinds(state["question"], [h.clause.text for h in extractive.choose(hits)])
            if state["missing"]:
                log.info("near miss: the clauses found state no %s", ", ".join(state["missing"]))
                state["confidence"] = min(state["confidence"], self.gate.threshold / 2)
        if state["confidence"] < self.gate.threshold:
            return None  # below the gate no composer runs, LLM or not
        return Evidence(question=state["standalone"], plan=result.plan, hits=hits,
                        chinese=state["chinese"], quote=extractive.quote)

    def _curated_evidence(self, state: dict) -> Evidence | None:
        """Evidence as an owner corrected it: the curated clauses (none for "not covered")."""
        found, positions = state["curated"]
        result, loaded = state["result"], state["loaded"]
        state["confidence"] = self.gate.confidence(result.hits, result.plan)
        if not found.curation.covered:
            return None
        state["confidence"] = max(state["confidence"], self.gate.threshold)
        retrieved = {h.clause.clause_id: h for h in result.hits}
        hits = []
        for i in positions:
            clause = loaded.snapshot.clauses[i]
            h = retrieved.get(clause.clause_id)
            hits.append(Hit(clause=clause, score=1.0, lexical=h.lexical if h else 0.0,
                            semantic=h.semantic if h else 0.0,
                            coverage=loaded.searcher.coverage(result.plan, i), best_chunk=h.best_chunk if h else ""))
        state["curated_hits"] = hits  # listed first in `retrieved`: the owner ranked them
        return Evidence(question=state["standalone"], plan=result.plan, hits=tuple(hits),
                        chinese=state["chinese"], quote=loaded.extractive.quote)

    def _compose(self, state: dict) -> dict:
        evidence = self._gate(state)
        if asks_what_changed(state["question"]):
            draft = self._change_log(state)
            if draft is not None:
                state["draft"] = draft
                state["confidence"] = max(state["confidence"], self.gate.threshold)
                return state
        if evidence is not None and self._judged_out(state, evidence):
            evidence = None
        return self._draft(state, evidence)

    def _judged_out(self, state: dict, evidence: Evidence) -> bool:
        """Ask the judge (when configured) whether the clause the answer stands on answers the
        question; True when it does not (the state then holds the refusal). An owner's correction
        is not judged, and a judge that fails changes nothing."""
        judge = self.judge
        if judge is None or state.get("curated"):
            return False
        chosen = state["loaded"].extractive.choose(evidence.hits)
        if not chosen:
            return False
        first = chosen[0].clause
        try:
            verdict = judge.verdict(evidence, first.text, writes=self.composer is not None)
        except ComposerError as exc:
            log.warning("judge failed (%s); answering without it", exc)
            state["checks"] = state.get("checks", ()) + (f"judge failed: {exc}",)
            return False
        state["judge_sure"] = verdict.sure
        if verdict.answers:
            return False
        log.info("judge: %s does not answer %r; refusing", first.label, evidence.question[:80])
        state["checks"] = state.get("checks", ()) + ("the judge found the clause does not answer the question",)
        state["outcome"] = "judged"
        state["draft"] = Draft(text="", citations=(), composer="judge", declined=True)
        return True

    def _change_log(self, state: dict) -> Draft | None:
        """"What changed in X?": the newest recorded update of the document the question is about
        (the best clause's), from the clause history, citing each changed clause as it reads now.
        None when history cannot tell (then the question is answered from the rules as usual)."""
        from assistant.changes import CHANGE_WORDS, latest_change

        hits = state["result"].hits
        history = self.history()
        if not hits or history is None:
            return None
        _, when, found = latest_change(history, hits[0].clause.source)
        if not found:
            return None
        snapshot = state["loaded"].snapshot
        chinese = state["chinese"]
        words = CHANGE_WORDS["zh" if chinese else "en"]
        lines = [self.prompts.render(self.prompts.lang("change_log", chinese), document=found[0]["document"],
                                     date=time.strftime("%Y-%m-%d", time.localtime(when)))]
        citations: list[Citation] = []
        for c in found:
            where = c["clause"] if c["kind"] != "moved" else f"{c['old_clause']} → {c['clause']}"
            line = f"{words[c['kind']]} {where}"
            if c.get("diff") and c["kind"] == "modified":
                line += f"：{c['diff']}" if chinese else f": {c['diff']}"
            i = snapshot.by_id.get(c["clause_id"]) if c["kind"] != "removed" else None
            if i is not None:
                clause = snapshot.clauses[i]
                n = len(citations) + 1
                citations.append(Citation(n=n, clause_id=clause.clause_id, document=clause.document,
                                          source=clause.source, clause=clause.label, path=clause.path,
                                          quote=clause.text[:120], content_hash=clause.content_hash))
                line += f"[{n}]"
            lines.append(line)
        return Draft(text="\n".join(lines), citations=tuple(citations[: max(self.settings.max_citations, 10)]),
                     composer="changes")

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
            state["checks"] = (f"model failed: {exc}",)
            draft = extractive.compose(evidence)
        state["draft"] = self._checked(state, draft, evidence, composer, extractive)
        return state

    def _checked(self, state: dict, draft: Draft, evidence: Evidence, composer: Composer,
                 extractive: ExtractiveComposer) -> Draft:
        """Verify citations; a model answer left with no valid citation is replaced offline. A
        model that declines (the evidence does not answer the question) is a refusal."""
        draft, _problems = verify_citations(draft, evidence.hits)

        def offline() -> Draft:
            return verify_citations(extractive.compose(evidence), evidence.hits)[0]

        state["checks"] = state.get("checks", ()) + draft.notes
        if composer is extractive or draft.composer == extractive.name:
            state["outcome"] = "offline" if composer is extractive else "fallback"
            return draft
        if draft.declined and state.get("judge_sure"):
            # Small models decline questions their evidence answers; the judge, reading the same
            # clause, found that it does: the offline answer is given.
            log.info("%s composer declined where the judge found an answer; answering offline", composer.name)
            state["checks"] = state.get("checks", ()) + ("decline overruled by the judge",)
            state["outcome"] = "overruled"
            return offline()
        if draft.declined:
            overrule = self.settings.llm_overrule_decline
            if overrule is not None and state["confidence"] >= overrule:
                # Small models decline questions their evidence answers (a 1.5B model declined 24 of
                # 33 answerable ones); where the offline gate is this sure, its answer is given.
                log.info("%s composer declined at gate confidence %.2f; answering offline", composer.name,
                         state["confidence"])
                state["checks"] = state.get("checks", ()) + (f"decline overruled at confidence "
                                                             f"{state['confidence']:.2f}",)
                state["outcome"] = "overruled"
                return offline()
            log.info("%s composer found no answer in the evidence; refusing", composer.name)
            state["outcome"] = "declined"
            return draft
        if not draft.citations:
            log.warning("%s answer had no valid citation; answering offline", composer.name)
            state["outcome"] = "fallback"
            return offline()
        first = {h.clause.clause_id for h in extractive.choose(evidence.hits)}
        if not first & {c.clause_id for c in draft.citations}:
            # The model answered from a clause retrieval ranked clearly lower, passing over the one
            # the gate stands on (陪产假 answered from the 产假 clause, 事假 from the sick-leave
            # one). A small model's sense of relevance is weaker than retrieval's: offline answer.
            log.warning("%s answer cites none of the clauses ranked first; answering offline", composer.name)
            state["checks"] = state.get("checks", ()) + ("the model's answer cites none of the clauses ranked first",)
            state["outcome"] = "fallback"
            return offline()
        state["outcome"] = "model"
        return draft

    def answer_stream(self, question: str, history: Sequence[Turn] = ()) -> Iterator[tuple[str, Any]]:
        """("retrieval", hits), then ("delta", text) pieces as they are produced (model tokens with an
        LLM, pieces of the answer offline), then ("done", Answer) — the checked answer."""
        state = self._retrieve(question, history)
        yield "retrieval", state["result"].hits
        stream = getattr(self.composer, "stream_raw", None)
        evidence = self._gate(state)
        if evidence is not None and self._judged_out(state, evidence):
            evidence = None
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
                state["checks"] = (f"model failed: {exc}",)
                draft = extractive.compose(evidence)
            state["draft"] = self._checked(state, draft, evidence, self.composer, extractive)  # type: ignore[arg-type]
            yield "done", self._finish(state)
            return
        answer = self._finish(self._draft(state, evidence))
        for piece in re.findall(r"[^。！？\n]*[。！？\n]?", answer.answer):
            if piece:
                yield "delta", piece
        yield "done", answer

    def _recently_updated(self, clause_ids: list[str]) -> dict[str, str]:
        """Clause id → the date its current text was first served, for clauses changed in the last
        RECENT_DAYS (from the clause history; nothing when there is none)."""
        history = self.history() if clause_ids else None
        if history is None:
            return {}
        try:
            found = history.updated_since(clause_ids, time.time() - RECENT_DAYS * 86400)
        except Exception as exc:  # history is a nicety of the answer, never its failure
            log.warning("clause history not read: %s", exc)
            return {}
        return {cid: time.strftime("%Y-%m-%d", time.localtime(at)) for cid, at in found.items()}

    def _with_notes(self, text: str, citations: tuple[Citation, ...], state: dict) -> str:
        """The answer, with a note for each cited document that has been repealed (only questions
        about the past cite one) and each cited clause whose stated effective date is still ahead:
        such rules are quoted, but never as the rules in force today."""
        chinese = state["chinese"]
        repealed = state["loaded"].snapshot.superseded
        notes: list[str] = []
        for source in dict.fromkeys(c.source for c in citations if c.source in repealed):
            c = next(c for c in citations if c.source == source)
            by = repealed[source]
            shown_by = (f"《{by}》" if chinese else f'"{by}"') if by else "-"
            notes.append(self.prompts.render(self.prompts.lang("superseded", chinese), document=c.document,
                                             by=shown_by))

        def shown(iso: str) -> str:
            y, m, d = iso.split("-")
            return f"{int(y)}年{int(m)}月{int(d)}日" if chinese else iso

        today = _today()
        notes += [self.prompts.render(self.prompts.lang("not_yet_effective", chinese),
                                      document=c.document, clause=c.clause, date=shown(c.effective))
                  for c in citations if c.effective and c.effective > today]
        return "\n\n".join([text, *notes]) if notes else text

    def contact(self, state: dict) -> str:
        """Whom a refusal names: the owner of the closest topic when the clauses found agree on
        one (two of the best three in one document, close enough to be on topic), else the
        configured contact."""
        from ingest.contacts import contact_for

        loaded: _Loaded = state["loaded"]
        if state.get("curated") and state["curated"][0].curation.contact:
            return state["curated"][0].curation.contact
        contacts = loaded.snapshot.meta.get("contacts") or {}
        fallback = contacts.get("", self.settings.contact)
        hits = [h for h in state["result"].hits[:3] if h.clause.clause_id not in loaded.navigation]
        if not contacts or not hits or not state["confidence"]:  # nothing the rulebook knows was asked
            return fallback
        top = hits[0].clause
        floor = self.gate.SEM_SCALE_ZH[0] if state["chinese"] else self.gate.SEM_SCALE_EN[0]
        same = sum(1 for h in hits if h.clause.source == top.source)
        if hits[0].semantic < floor or same < 2:
            return fallback
        return contact_for(contacts, top.source, top.path[:-1], fallback)

    def _finish(self, state: dict) -> Answer:
        result = state["result"]
        draft: Draft | None = state["draft"]
        t_done = time.perf_counter()
        timings = {
            "retrieve": (state["t_retrieved"] - state["t0"]) * 1000,
            "answer": (t_done - state["t_retrieved"]) * 1000,
            "total": (t_done - state["t0"]) * 1000,
        }
        first = state.get("curated_hits") or []
        shown = {h.clause.clause_id for h in first}
        retrieved = tuple([*first, *(h for h in result.hits if h.clause.clause_id not in shown)]
                          [: max(self.settings.top_k, 10)])
        checks = tuple(state.get("checks", ()))
        curated = None
        if state.get("curated"):
            match = state["curated"][0]
            # Not the corrected question itself: that is another employee's words.
            curated = {"id": match.curation.curation_id, "kind": match.curation.kind,
                       "similarity": round(match.similarity, 4)}
        if draft is None or not draft.citations:
            text = self.prompts.render(self.prompts.lang("refusal", state["chinese"]),
                                       contact=self.contact(state))
            outcome = "gate" if draft is None else state.get("outcome", "offline")
            return Answer(question=state["question"], grounded=False, answer=text, citations=(),
                          retrieved=retrieved, timings_ms=timings,
                          standalone_question=state["standalone"],
                          confidence=state["confidence"], generation=state["loaded"].generation,
                          outcome=outcome, checks=checks, curated=curated)
        effective = state["loaded"].snapshot.effective
        updated = self._recently_updated([c.clause_id for c in draft.citations])
        citations = tuple(replace(c, effective=effective.get(c.clause_id), updated=updated.get(c.clause_id))
                          for c in draft.citations)
        return Answer(question=state["question"], grounded=True, answer=self._with_notes(draft.text, citations, state),
                      citations=citations, retrieved=retrieved, timings_ms=timings,
                      standalone_question=state["standalone"], composer=draft.composer,
                      confidence=state["confidence"], generation=state["loaded"].generation,
                      outcome=state.get("outcome", "offline"), checks=checks, curated=curated)


RECENT_DAYS = 30  # a cited clause changed within this many days says when ("updated")


def _today() -> str:
    return time.strftime("%Y-%m-%d")


def build_assistant(settings: Settings, composer: Composer | None = None,
                    embedder=None) -> Assistant:  # type: ignore[no-untyped-def]
    """Construct the assistant and everything it needs from settings (nothing at import time)."""
    from assistant.embeddings import make_embedder

    user_dicts = (settings.user_dict,) if settings.user_dict else ()
    tokenizer = shared_tokenizer(user_dicts)
    prompts = load_prompts(settings.prompts_dir)
    judge = None
    if settings.llm and (composer is None or settings.llm_judge):
        from assistant.llm import LLMComposer, make_chat_model

        model = make_chat_model(settings)
        if composer is None and settings.llm_write:
            composer = LLMComposer(model, prompts, max_evidence=settings.llm_max_evidence)
        if settings.llm_judge:
            from assistant.judge import make_judge

            judge = make_judge(settings, model, prompts)
    embedder = embedder or make_embedder(settings.embedding)
    return Assistant(settings, embedder, tokenizer, prompts, composer, judge)
