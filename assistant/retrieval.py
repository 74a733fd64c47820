"""Hybrid clause retrieval: BM25 over jieba tokens + e5 vectors in Chroma, fused per clause.

Both legs score clauses, not chunks: BM25 sees a clause with its heading path and document title
(chapter titles carry the topic words that articles leave out); the vector leg scores a clause by
its best-matching chunk, so a long article is not diluted by its own length. Lay wording is
mapped to rule wording before BM25 (`resources/synonyms.txt`), which is where most of the gap
between how staff ask and how rules are written is closed.
"""

from __future__ import annotations

import bisect
import logging
import math
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from pydantic import ConfigDict

from assistant.glossary import senses
from assistant.learned import LearnedResource, LearnedScorer
from assistant.schema import Clause, Hit
from assistant.store import IndexSnapshot
from assistant.text import RESOURCES, Tokenizer, normalise, normalise_query, stopwords
from assistant.typos import HomophoneMender

# Chunks asked from the vector store per query: for a rulebook of up to this many chunks every
# chunk is scored, so the min-max normalisation of the vector leg sees the whole rulebook and a
# clause strong in BM25 but middling in vectors still gets its vector share. With 200 candidates
# labour-law MRR was 0.595, with 1,000 it is 0.618; the query costs 1–2 ms more.
VECTOR_CANDIDATES = 1000
# Weight of the keyword leg in the fused score (the vector leg has 1 - this). Linear fusion of
# max-normalised BM25 and min-max-normalised cosine beat reciprocal-rank fusion on all three eval
# sets (sample rulebook MRR 0.738 → 0.783, labour law 0.489 → 0.520, seeds 0.879 → 0.935):
# RRF throws away how far ahead the best clause is, which is most of what BM25 knows.
LEXICAL_WEIGHT = 0.3
# Exact-phrase leg: a question that repeats a rule's own wording (a sentence pasted from the rule,
# a manager checking which clause says this) finds the clause holding it. The question is cut into
# windows of EXACT_WINDOW characters; a clause holding at least EXACT_MIN_SHARE of them gets
# EXACT_WEIGHT × that share added to its fused score (which is at most 1 without it), so a clause
# holding the whole question comes first. Verbatim hit@1 on the labour laws: 0.978 without, 0.9985
# at weight 0.5, 1.0 at 1.0.
EXACT_WINDOW = 8
EXACT_MIN_SHARE = 0.5
EXACT_WEIGHT = 1.0
# Share of the gate's coverage weight for an English word the curated dictionary does not map,
# whether unknown or rendered through the general glossary (`assistant/glossary.py`). At full
# weight, noisy senses ("note" → 笔记) pulled answerable English questions under the gate.
UNMAPPED_ENGLISH_WEIGHT = 0.25


@dataclass(frozen=True)
class Expansion:
    triggers: tuple[str, ...]
    terms: tuple[str, ...]


def load_synonyms(paths: list[Path]) -> list[Expansion]:
    """Lines `lay term, lay term => rule term rule term`; `#` starts a comment."""
    out: list[Expansion] = []
    for path in paths:
        for raw in path.read_text(encoding="utf-8").splitlines():
            line = raw.split("#", 1)[0].strip()
            if "=>" not in line:
                continue
            left, right = line.split("=>", 1)
            triggers = tuple(t.strip().lower() for t in re.split(r"[,，]", left) if t.strip())
            terms = tuple(t for t in right.split() if t)
            if triggers and terms:
                out.append(Expansion(triggers, terms))
    return out


_EN_WORD = re.compile(r"[a-z0-9]+")


def _en_key(text: str) -> str:
    """English words of `text` joined by single spaces ("doctor's note" → "doctor s note")."""
    return " ".join(_EN_WORD.findall(text.lower()))


def _en_ngrams(text: str, n: int = 5) -> set[str]:
    words = _EN_WORD.findall(text.lower())
    return {" ".join(words[i : i + k]) for k in range(1, n + 1) for i in range(len(words) - k + 1)}


# Where one clause of a question ends, for gapped triggers: Chinese and ASCII punctuation (not the
# point or comma inside a number such as 1.5 or 1,500), and spaces between Chinese characters
# (colloquial questions use them as commas). Other spaces are dropped.
_SEGMENT_BREAK = re.compile(
    r"[，。？！；：、?!;]+|(?<!\d)[.,:]|[.,:](?!\d)|(?<=[\u3400-\u9fff])\s+(?=[\u3400-\u9fff])")
# Extra characters a Chinese trigger may have between its words: "报销谁批" also fires for
# "报销8000块要谁批", "加班要批" for "加班的话要不要批".
TRIGGER_GAP = 6
# Gapped triggers are looked for in this much of a question (a pasted document is not a question,
# and the search grows with length times the number of triggers).
GAPPED_SCAN_CHARS = 500


_NEGATIONS = frozenset("不没未无别非勿莫")


def _trigger_units(words: list[str]) -> tuple[str, ...]:
    """The words of a trigger as the pieces a gap may fall between. A run of one-character words is
    one piece (年假, 白事, 谁批), and a negation joins what it negates (不 + 加班): else 今年…请个假
    would fire 年假, 明白这事 白事, and 我不知道加班费 不加班."""
    units: list[str] = []
    run = False  # the last unit is a run of one-character words
    negation = False  # … and it is a lone negation, which joins the next word whatever its length
    for w in words:
        if units and (negation or (len(w) == 1 and run)):
            units[-1] += w
        else:
            units.append(w)
        run = len(w) == 1 and (run or len(units[-1]) == 1)
        negation = units[-1] in _NEGATIONS
    return tuple(units)


# Between a negation and its verb only helpers may come: 不肯签合同 is 不签合同, 我不知道签合同 is not.
_NEGATION_FILLER = "[肯想愿意能会敢要给让跟和与同替帮我你他她它们再还也都就]{0,3}"


def _unit_pattern(unit: str) -> str | re.Pattern[str]:
    """How a unit of a trigger is looked for: as it is, or a negation with helpers after it."""
    if len(unit) > 1 and unit[0] in _NEGATIONS:
        return re.compile(re.escape(unit[0]) + _NEGATION_FILLER + re.escape(unit[1:]))
    return unit


def _find(seg: str, unit: str | re.Pattern[str], pos: int) -> tuple[int, int]:
    if isinstance(unit, str):
        at = seg.find(unit, pos)
        return at, at + len(unit)
    m = unit.search(seg, pos)
    return (m.start(), m.end()) if m else (-1, -1)


def _gapped_hit(units: tuple[str | re.Pattern[str], ...], length: int, segments: list[str]) -> bool:
    """All `units` in order inside one segment of the question, spanning at most
    `length + TRIGGER_GAP` characters."""
    for seg in segments:
        start, end = _find(seg, units[0], 0)
        while start >= 0:
            for unit in units[1:]:
                at, end = _find(seg, unit, end)
                if at < 0:
                    break
            else:
                if end - start <= length + TRIGGER_GAP:
                    return True
            start, end = _find(seg, units[0], start + 1)
    return False


@dataclass(frozen=True)
class Concept:
    """One thing the question asks about: a term of its own, or a dictionary mapping that fired
    (its lay trigger stands for any of the rule terms)."""

    alternatives: frozenset[str]
    weight: float
    known: bool  # some alternative occurs in the rulebook at all


@dataclass
class QueryPlan:
    text: str  # normalised question
    tokens: list[str]  # BM25 tokens, expansions included
    own_tokens: list[str]  # tokens of the question itself
    expansions: list[str]
    embed_text: str
    concepts: list[Concept] = field(default_factory=list)

    @property
    def known_concepts(self) -> int:
        return sum(1 for c in self.concepts if c.known)


@dataclass
class SearchResult:
    hits: list[Hit]
    plan: QueryPlan
    timings_ms: dict[str, float]
    qvec: np.ndarray | None = None  # the question's query vector (what corrections are matched by)


class HybridSearcher:
    """`search(question, k)` over one index snapshot."""

    def __init__(self, snapshot: IndexSnapshot, embedder, tokenizer: Tokenizer,  # type: ignore[no-untyped-def]
                 synonyms: list[Expansion], learned: LearnedResource | None = None) -> None:
        import bm25s

        # bm25s sets its own logger to DEBUG when imported, which floods the CLI's stderr.
        logging.getLogger("bm25s").setLevel(logging.WARNING)
        self.snapshot = snapshot
        self.embedder = embedder
        self.tokenizer = tokenizer
        self.synonyms = synonyms
        # Each trigger as it is looked for: English ones as whole words (their key among the
        # question's word n-grams); Chinese ones as substrings, or gapped (see `_gapped`), and
        # only when every character of theirs is in the question at all — a set test that skips
        # most of them.
        self.triggers = [(exp, [(t, _en_key(t), None, frozenset()) if t.isascii()
                                else (t, None, self._gapped(t), frozenset(t)) for t in exp.triggers])
                         for exp in synonyms]
        clauses = snapshot.clauses
        self.clause_tokens = [tokenizer.tokens(self._lexical_text(c)) for c in clauses]
        self.clause_token_sets = [set(t) for t in self.clause_tokens]
        # Normalised text per clause and for the whole rulebook: Chinese concepts are matched as
        # substrings, since jieba may cut "假" out of a question but only ever "请假" out of a rule.
        self.clause_norm = [normalise(self._lexical_text(c)) for c in clauses]
        self.corpus_norm = "\x00".join(self.clause_norm)
        self.clause_starts = list(np.cumsum([0] + [len(t) + 1 for t in self.clause_norm[:-1]]))
        self.bm25 = bm25s.BM25()
        if clauses:
            self.bm25.index(self.clause_tokens, show_progress=False)
        df: dict[str, int] = {}
        for toks in self.clause_token_sets:
            for t in toks:
                df[t] = df.get(t, 0) + 1
        n = max(1, len(clauses))
        self.idf = {t: math.log(1 + (n - d + 0.5) / (d + 0.5)) for t, d in df.items()}
        self.max_idf = math.log(1 + (n + 0.5) / 0.5)
        self.mender = HomophoneMender(self.idf, self._known, tokenizer)
        # What `rulebook learn` learned, with its clause keys resolved in this generation.
        self.learned = LearnedScorer(learned, snapshot, self.idf) if learned is not None else None

    def _gapped(self, trigger: str) -> tuple[str | re.Pattern[str], ...] | None:
        """The units of a Chinese trigger that may also match with characters between them:
        one of two or more units, or a negation with its word (不签合同 for 不肯签合同)."""
        units = tuple(_unit_pattern(u) for u in _trigger_units(self.tokenizer.words(trigger)))
        return units if len(units) > 1 or not isinstance(units[0], str) else None

    @staticmethod
    def _lexical_text(c: Clause) -> str:
        return " ".join((c.document, *c.path[:-1], c.text))

    def plan(self, question: str) -> QueryPlan:
        text = normalise_query(question)
        text = self.mender.mend(text[:GAPPED_SCAN_CHARS]) + text[GAPPED_SCAN_CHARS:]
        low = text.lower()
        own = self.tokenizer.tokens(text)
        extra: list[str] = []
        concepts: list[Concept] = []
        fired_all: list[str] = []
        grams = _en_ngrams(low)
        segments = [re.sub(r"\s+", "", seg) for seg in _SEGMENT_BREAK.split(low[:GAPPED_SCAN_CHARS])]
        segments = [seg for seg in segments if seg]
        chars = set(low)
        for exp, triggers in self.triggers:
            fired = [t for t, key, units, need in triggers
                     if (key in grams if key is not None
                         else need <= chars and (t in low or (
                             units is not None and _gapped_hit(units, len(t), segments))))]
            if not fired:
                continue
            fired_all.extend(fired)
            extra.extend(t for t in exp.terms if t not in extra)
            alts = frozenset(tok for term in exp.terms for tok in self.tokenizer.tokens(term))
            known = [self.idf[a] for a in alts if a in self.idf]
            concepts.append(Concept(alts, max(known) if known else self.max_idf, bool(known)))
        stop = stopwords()
        words = [w for w in self.tokenizer.words(text) if w not in stop]
        # Words inside a fired trigger are stood for by that mapping's concept.
        explained = {w for w in words if any(w in f for f in fired_all)}
        gloss_tokens: list[str] = []
        for tok in dict.fromkeys(words):
            if tok in explained:
                continue
            known = self._known(tok)
            weight = self.idf.get(tok, self.max_idf)
            if not known and tok.isascii():
                # An English word the dictionary does not map says little either way: the rules
                # are in Chinese, so its absence is not evidence that the topic is missing. When
                # the general glossary renders it in words the rulebook uses, those words stand
                # for it in BM25 and in the coverage, with the same small weight.
                weight *= UNMAPPED_ENGLISH_WEIGHT
                glosses = self._glosses(tok) if tok.isalpha() else ()
                if glosses:
                    gloss_tokens.extend(g for g in glosses if g not in gloss_tokens)
                    weight = UNMAPPED_ENGLISH_WEIGHT * max(self.idf[g] for g in glosses)
                    concepts.append(Concept(frozenset((tok, *glosses)), weight, True))
                    continue
            concepts.append(Concept(frozenset((tok,)), weight, known))
        tokens = list(own)
        for term in extra:
            tokens.extend(self.tokenizer.tokens(term))
        tokens.extend(gloss_tokens)
        return QueryPlan(text=text, tokens=tokens, own_tokens=own, expansions=extra,
                         embed_text=text, concepts=concepts)

    def _glosses(self, word: str) -> tuple[str, ...]:
        """The rulebook's own words among the Chinese renderings of an English word."""
        out: list[str] = []
        stop = stopwords()
        for run in senses(word):
            for w in (run, *self.tokenizer.words(run)):
                if len(w) >= 2 and w in self.idf and w not in stop and w not in out:
                    out.append(w)
        return tuple(out)

    def _known(self, term: str) -> bool:
        if term.isascii():
            return term in self.idf
        return normalise(term) in self.corpus_norm

    def coverage(self, plan: QueryPlan, clause_index: int) -> float:
        """Weighted share of the question's concepts that the clause mentions (0–1)."""
        total = sum(c.weight for c in plan.concepts)
        if not total:
            return 0.0
        have = self.clause_token_sets[clause_index]
        text = self.clause_norm[clause_index]

        def mentioned(c: Concept) -> bool:
            return bool(c.alternatives & have) or any(
                not a.isascii() and normalise(a) in text for a in c.alternatives)

        return sum(c.weight for c in plan.concepts if mentioned(c)) / total

    def _semantic(self, text: str, qvec: np.ndarray | None = None) -> tuple[np.ndarray, dict[int, str]]:
        """Best cosine of each clause's chunks among the vector candidates, and that chunk."""
        n = len(self.snapshot.clauses)
        if qvec is None:
            qvec = self.embedder.query_array(text)
        semantic = np.zeros(n, dtype=np.float32)
        best_chunk: dict[int, str] = {}
        for chunk_id, sim in self.snapshot.vectors.query(qvec, VECTOR_CANDIDATES):
            ci = self.snapshot.chunk_index.get(chunk_id)
            if ci is None:
                continue
            c = int(self.snapshot.chunk_clause[ci])
            if sim > semantic[c]:
                semantic[c] = sim
                best_chunk[c] = chunk_id
        return semantic, best_chunk

    def search(self, question: str, k: int = 10) -> SearchResult:
        """Clauses for `question`, best first."""
        timings: dict[str, float] = {}
        n = len(self.snapshot.clauses)
        t0 = time.perf_counter()
        plan = self.plan(question)
        lexical = np.zeros(n, dtype=np.float32)
        if plan.tokens and n:
            lexical = np.asarray(self.bm25.get_scores(plan.tokens), dtype=np.float32)
            if self.learned is not None:
                lexical += self.learned.expansion_scores(self.bm25, plan.own_tokens)
        t1 = time.perf_counter()
        timings["bm25"] = (t1 - t0) * 1000
        # One embedding of the question serves the vector leg and the learned question memory.
        qvec = self.embedder.query_array(plan.embed_text)
        semantic, best_chunk = self._semantic(plan.embed_text, qvec)
        t2 = time.perf_counter()
        timings["vector"] = (t2 - t1) * 1000

        ranking = semantic
        if self.learned is not None and self.learned.has_adapter:
            # Ranked by the adapted vector; `Hit.semantic` (what the evidence gate reads) stays
            # the plain cosine, whose scale the gate was calibrated on.
            ranking = self.learned.adapted_semantic(qvec)
        fused = self._fuse(lexical, ranking)
        exact = self.exact_share(question)
        if exact is not None:
            fused += EXACT_WEIGHT * exact
        if self.learned is not None and self.learned.memory_weight > 0:
            fused += self.learned.memory_weight * self.learned.memory_scores(qvec)
        order = np.argsort(-fused, kind="stable")[: max(k, 1)]
        hits = []
        for i in order:
            i = int(i)
            if fused[i] <= 0:
                break
            hits.append(Hit(
                clause=self.snapshot.clauses[i],
                score=float(fused[i]),
                lexical=float(lexical[i]),
                semantic=float(semantic[i]),
                coverage=self.coverage(plan, i),
                best_chunk=best_chunk.get(i, ""),
            ))
        timings["fuse"] = (time.perf_counter() - t2) * 1000
        return SearchResult(hits=hits, plan=plan, timings_ms=timings, qvec=qvec)

    def exact_share(self, question: str) -> np.ndarray | None:
        """Per clause, the share of the question's EXACT_WINDOW-character windows it holds word for
        word (0 below EXACT_MIN_SHARE); None for a question too short to repeat a rule."""
        q = normalise(question)
        n = len(q) // EXACT_WINDOW
        if n < 2 or not self.clause_norm:
            return None
        found = np.zeros(len(self.clause_norm), dtype=np.float32)
        for w in (q[i * EXACT_WINDOW:(i + 1) * EXACT_WINDOW] for i in range(n)):
            holders: set[int] = set()
            pos = self.corpus_norm.find(w)
            while pos >= 0:
                holders.add(bisect.bisect_right(self.clause_starts, pos) - 1)
                pos = self.corpus_norm.find(w, pos + 1)
            for c in holders:
                found[c] += 1
        share = found / n
        share[share < EXACT_MIN_SHARE] = 0.0
        return share if share.any() else None

    @staticmethod
    def _fuse(lexical: np.ndarray, semantic: np.ndarray) -> np.ndarray:
        """Fused score in [0, 1]: weighted max-normalised BM25 + min-max-normalised cosine."""
        lex = lexical / lexical.max() if lexical.size and lexical.max() > 0 else np.zeros_like(lexical)
        sem = np.zeros_like(lexical)
        seen = semantic > 0  # clauses outside the vector candidates have no similarity
        if seen.any():
            lo, hi = semantic[seen].min(), semantic[seen].max()
            sem[seen] = (semantic[seen] - lo) / (hi - lo) if hi > lo else 1.0
        return LEXICAL_WEIGHT * lex + (1.0 - LEXICAL_WEIGHT) * sem


class RulebookRetriever(BaseRetriever):
    """LangChain face of the hybrid search: one `Document` per clause, best first."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    searcher: object
    k: int = 10

    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun
    ) -> list[Document]:
        result = self.searcher.search(query, self.k)  # type: ignore[attr-defined]
        return [hit_to_document(h) for h in result.hits]


def hit_to_document(hit: Hit) -> Document:
    c = hit.clause
    return Document(
        page_content=c.text,
        id=c.clause_id,
        metadata={"clause_id": c.clause_id, "source": c.source, "document": c.document,
                  "clause": c.label, "path": list(c.path), "score": hit.score,
                  "semantic": hit.semantic, "lexical": hit.lexical, "coverage": hit.coverage},
    )


def default_synonym_files(extra: Path | None, bundled: bool = True) -> list[Path]:
    """The bundled dictionary (unless turned off, to measure what it adds) and a company's own."""
    files = [RESOURCES / "synonyms.txt"] if bundled else []
    if extra is not None:
        files.append(extra)
    return files
