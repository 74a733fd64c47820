"""The wording gap between how people ask and how rules are written, learned from examples.

Staff ask about situations ("老公借钱不还怎么办"), rules state obligations and consequences
("夫妻一方…债务"). The hand-written dictionary (`resources/synonyms.txt`) bridges that gap for the
rulebooks it was written for; this module learns it from (question, clause) pairs — a benchmark's
`dev` split, or the corrections a rulebook's owners make — so any rulebook can have it.

`rulebook learn PAIRS.jsonl` resolves each pair's expected clause in the served index and writes
one resource file (`DATA_DIR/learned.npz` by default, outside the index generations, so a
re-ingest keeps it). It holds three independent parts:

- **Question memory**: the training questions, their embeddings (made with the configured
  embedder) and the clause keys they were answered by. At query time the question's vector — the
  one the vector leg already computed — is compared with every remembered question; a clause's
  memory score is the best similarity among its questions, a third leg of the fusion. It only
  helps clauses someone already asked about, and less than one would hope: with e5-small two
  questions about the same clause are barely closer than two about different ones.
- **Query adapter**: a linear map of question vectors, trained so that the mapped question is
  closest to the clauses that answered it. The vector leg ranks clauses by the mapped question.
  It learns the register shift (situations → rules) and, mostly, which clauses people ask about:
  the largest gain of the three, on clauses with training questions, a small loss on the others.
- **Term associations**: lay word → rule words, an IBM Model 1 translation table trained on the
  pairs (question words generate the words of the clause that answers them; a NULL word absorbs
  what every clause says). Applied as weighted BM25 query expansion restricted to words of the
  served rulebook, below the question's own words. It needs no pairs for the clauses it helps, so
  it is the part that can carry over to another rulebook.

Clauses are keyed by (file name, clause label), the same key the eval cases use; the searcher
resolves the keys again on every index generation it loads and skips keys that no longer exist.
"""

from __future__ import annotations

import json
import logging
import math
import re
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Protocol

import numpy as np

from assistant.config import Settings
from assistant.errors import RulebookError
from assistant.schema import Clause
from assistant.store import IndexSnapshot
from assistant.text import Tokenizer, normalise_query, stopwords

log = logging.getLogger(__name__)

FORMAT = "rulebook-learned"
VERSION = 1
DEFAULT_FILE = "learned.npz"

# --- query-time weights ------------------------------------------------------------------------


@dataclass(frozen=True)
class LearnedWeights:
    """How much to trust each kind of learned evidence at query time.

    Fitted by 5-fold cross-validation on the stard `dev` split (learn on 4/5 of the questions,
    score the held-out 1/5; `python -m eval.benchmarks.learned_cv`, figures in eval/TUNING.md).
    They are not stored in the resource: they describe the evidence, not whose pairs were learned.
    """

    # Weight of the memory leg in the fused score (BM25 and vectors share 1.0 between them): alone,
    # CV MRR 0.572 → 0.579 (0.1: 0.578, 0.3: 0.574). With an adapter, none: the adapter already
    # carries what the memory knows, and the memory on top double-counts it (MRR 0.649 without,
    # 0.646 at 0.05, 0.638 at 0.2).
    memory: float = 0.2
    memory_with_adapter: float = 0.0
    # Cosine similarity between two questions below which they are unrelated (with e5-small two
    # unrelated Chinese questions still meet at 0.80–0.85); a clause's memory score rises
    # linearly from this floor to 1.0 at the ceiling.
    memory_floor: float = 0.90
    memory_ceiling: float = 1.0
    # Weight of a learned expansion term relative to a word of the question itself (1.0), times
    # the term's association strength (0–1).
    expansion: float = 0.3
    # At most this many expansion terms per question, the strongest.
    expansions_per_question: int = 30


DEFAULT_WEIGHTS = LearnedWeights()

# --- training ------------------------------------------------------------------------------------
IBM1_ITERATIONS = 8
# An association must be seen with at least this many different clauses: one pair alone only says
# which words that one clause has (the memory already knows that), two say something about words.
MIN_CLAUSES = 2
# Rule words whose translation probability is below this are noise of the EM split.
MIN_PROBABILITY = 0.01
# At most this many rule words are kept per lay word, the likeliest.
RULES_PER_WORD = 8
# Query adapter (see `train_adapter`), fitted by CV on stard dev: softmax temperature (e5 cosines
# live in a narrow band), pull towards the identity (0.01 gains more on clauses with training
# questions and loses more on the others; 0.1 gains half as much), Adam steps, hard negatives.
ADAPTER_TEMPERATURE = 0.03
ADAPTER_REGULARISATION = 0.03
ADAPTER_STEPS = 200
ADAPTER_NEGATIVES = 64

ClauseKey = tuple[str, str]

# Numbering inside a rule (第三章, 二节, 十五, 第一款) is in every clause's BM25 text but says nothing
# about what a question means; left in, it soaks up the association mass of rare question words.
_NUMBERING = re.compile(r"^第?[零〇一二三四五六七八九十百千两\d]+[编章节条款项目]?[之]?$|^[编章节条款项]$")


def _is_rule_word(word: str) -> bool:
    """Whether a clause token may be learned as the rule-side of an association."""
    return len(word) >= 2 and not _NUMBERING.match(word) and word not in stopwords()


def clause_key(source: str, label: str) -> ClauseKey:
    """Clauses match when the file name of the source and the clause label are equal (as in eval)."""
    return (PurePosixPath(source.replace("\\", "/")).name, label.strip())


class LearnError(RulebookError):
    """Pairs that cannot be learned from, or a resource that cannot be read."""


class QueryEmbedder(Protocol):
    def query_array(self, text: str) -> np.ndarray: ...


@dataclass(frozen=True)
class Pair:
    """A question and the clauses that answer it."""

    question: str
    expected: tuple[ClauseKey, ...]


def read_pairs(paths: Iterable[Path]) -> list[Pair]:
    """Pairs from eval-case files (`question` + `expected: [{source, clause}]`, one JSON per line).

    Cases without expected clauses (unanswerable ones) teach nothing here and are left out.
    """
    pairs: list[Pair] = []
    for path in paths:
        try:
            lines = Path(path).read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise LearnError(f"Cannot read {path}: {exc.strerror}. Give a .jsonl file of cases.") from exc
        for n, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                pair = case_pair(json.loads(line))
            except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
                raise LearnError(
                    f"{path}:{n}: not a case ({exc.__class__.__name__}); each line needs "
                    '{"question": …, "expected": [{"source": …, "clause": …}]}') from exc
            if pair is not None:
                pairs.append(pair)
    return pairs


def case_pair(case: dict[str, Any]) -> Pair | None:
    """The pair an eval case teaches; None for a case without a question or expected clauses."""
    expected = tuple(clause_key(e["source"], e["clause"]) for e in case.get("expected") or [])
    question = str(case["question"]).strip()
    return Pair(question, expected) if question and expected else None


# --- term associations ---------------------------------------------------------------------------

def train_associations(questions: Sequence[Sequence[str]], clauses: Sequence[Sequence[Sequence[str]]],
                       background: dict[str, float], iterations: int = IBM1_ITERATIONS,
                       min_clauses: int = MIN_CLAUSES, min_probability: float = MIN_PROBABILITY,
                       per_word: int = RULES_PER_WORD) -> dict[str, dict[str, float]]:
    """IBM Model 1 translation table t(rule word | lay word), pruned to what generalises.

    Args:
        questions: the tokens of each training question.
        clauses: for each question, the tokens of each clause that answers it.
        background: for each rule word, the share of the rulebook's clauses that contain it.
    Returns:
        lay word → {rule word: strength}, at most `per_word` rule words each, the strongest 1.0,
        the word itself left out (a question's own words are already in its query).

    Each clause word is explained by one of the question's words or by NULL (the words every
    clause has). EM shares each clause word among the question's words in proportion to how well
    each explains it elsewhere, so a word that appears in both question and clause explains itself
    and frees the others. A question with several answering clauses counts once in total.

    The rule words of a lay word are ranked by t × log(1 + 1 / background share): t alone favours
    the words of every clause (中华人民共和国, 合同, 应当) that BM25 can do nothing with; with the
    background factor 有效 → 无效, 邻居 → 相邻, 偷 → 盗窃 come first (CV on stard dev: MRR +0.004 over t).
    """
    lay_ids: dict[str, int] = {"": 0}  # 0 is NULL
    rule_ids: dict[str, int] = {}
    clause_ids: dict[frozenset[str], int] = {}  # distinct answering clauses, for the support count
    rows_q: list[np.ndarray] = []
    rows_r: list[np.ndarray] = []
    rows_pair: list[np.ndarray] = []
    pair_weight: list[float] = []
    pair_clause: list[int] = []
    for q_tokens, answer_tokens in zip(questions, clauses, strict=True):
        q = np.array([0, *sorted({lay_ids.setdefault(t, len(lay_ids)) for t in q_tokens})], dtype=np.int64)
        answers = [words for c in answer_tokens if (words := frozenset(w for w in c if _is_rule_word(w)))]
        if len(q) == 1 or not answers:
            continue
        for words in answers:
            r = np.array(sorted(rule_ids.setdefault(t, len(rule_ids)) for t in words), dtype=np.int64)
            rows_q.append(np.repeat(q, len(r)))
            rows_r.append(np.tile(r, len(q)))
            rows_pair.append(np.full(len(q) * len(r), len(pair_weight), dtype=np.int64))
            pair_weight.append(1.0 / len(answers))
            pair_clause.append(clause_ids.setdefault(words, len(clause_ids)))
    if not pair_weight:
        return {}
    lay = np.concatenate(rows_q)
    rule = np.concatenate(rows_r)
    pair = np.concatenate(rows_pair)
    n_rule = len(rule_ids)
    # One cell per (lay, rule) that ever co-occur; t lives on the cells.
    cells, cell_of = np.unique(lay * n_rule + rule, return_inverse=True)
    cell_lay = cells // n_rule
    # Each (pair, rule word) position is shared out over the question's words and NULL.
    _, pos_of = np.unique(pair * n_rule + rule, return_inverse=True)
    weight = np.asarray(pair_weight)[pair]
    t = np.ones(len(cells))
    for _ in range(iterations):
        tc = t[cell_of]
        norm = np.bincount(pos_of, weights=tc)
        counts = np.bincount(cell_of, weights=weight * tc / norm[pos_of], minlength=len(cells))
        total = np.bincount(cell_lay, weights=counts)
        t = counts / total[cell_lay]
    # Support: in how many different clauses each (lay, rule) co-occurs.
    clause_row = np.asarray(pair_clause, dtype=np.int64)[pair]
    distinct = np.unique(cell_of * len(clause_ids) + clause_row) // len(clause_ids)
    support = np.bincount(distinct, minlength=len(cells))

    lay_names = {i: w for w, i in lay_ids.items()}
    rule_names = {i: w for w, i in rule_ids.items()}
    rarity = np.array([math.log1p(1.0 / max(background.get(rule_names[i], 0.0), 1e-4)) for i in range(n_rule)])
    strength = t * rarity[cells % n_rule]
    keep = (cell_lay > 0) & (t >= min_probability) & (support >= min_clauses)
    table: dict[str, dict[str, float]] = {}
    for i in np.flatnonzero(keep)[np.argsort(-strength[keep], kind="stable")]:
        q_word, r_word = lay_names[int(cell_lay[i])], rule_names[int(cells[i] % n_rule)]
        if r_word == q_word:
            continue
        row = table.setdefault(q_word, {})
        if len(row) < per_word:
            row[r_word] = float(strength[i])
    return {q: {r: round(v / max(row.values()), 3) for r, v in row.items()} for q, row in table.items()}


# --- query adapter -------------------------------------------------------------------------------

def train_adapter(questions: np.ndarray, answers: Sequence[Sequence[int]], clause_vectors: np.ndarray,
                  temperature: float = ADAPTER_TEMPERATURE, regularisation: float = ADAPTER_REGULARISATION,
                  steps: int = ADAPTER_STEPS, negatives: int = ADAPTER_NEGATIVES,
                  learning_rate: float = 1e-3) -> np.ndarray:
    """A linear map W of question vectors so that normalise(q W) is closest to the clauses that answer q.

    Args:
        questions: the training questions' vectors (m × d, normalised).
        answers: for each question, the rows of `clause_vectors` that answer it.
        clause_vectors: one normalised vector per clause (the mean of its chunks).
    Returns:
        W (d × d), starting from the identity and pulled back towards it by `regularisation`.

    Trained with a softmax over each question's answers and its hardest negatives (the clauses
    closest to the unadapted question that do not answer it), by Adam. The map learns both the
    register shift (situations → rules) and which clauses people ask about; the latter is why it
    gains most on clauses that had training questions (CV on stard dev: MRR 0.517 → 0.618 on
    those, 0.697 → 0.687 on the others).
    """
    rows = [i for i, a in enumerate(answers) if a]
    d = questions.shape[1]
    identity = np.eye(d, dtype=np.float32)
    if not rows:
        return identity
    x = questions[rows].astype(np.float32)
    closest = np.argsort(-(x @ clause_vectors.T), axis=1)
    k = min(negatives, clause_vectors.shape[0])
    candidates = np.zeros((len(rows), k), dtype=np.int64)
    target = np.zeros((len(rows), k), dtype=np.float32)
    for n, i in enumerate(rows):
        gold = list(dict.fromkeys(answers[i]))[: max(1, k // 4)]
        others = [c for c in closest[n, : k + len(gold)] if c not in gold][: k - len(gold)]
        cand = gold + others
        candidates[n, : len(cand)] = cand
        target[n, : len(gold)] = 1.0 / len(gold)
    cand_vectors = clause_vectors[candidates].astype(np.float32)  # m × k × d
    w = identity.copy()
    first = np.zeros_like(w)
    second = np.zeros_like(w)
    m = len(rows)
    for step in range(1, steps + 1):
        z = x @ w
        norm = np.linalg.norm(z, axis=1, keepdims=True)
        zn = z / norm
        logits = np.einsum("md,mkd->mk", zn, cand_vectors) / temperature
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        p /= p.sum(axis=1, keepdims=True)
        g_logits = (p - target) / m
        g_zn = np.einsum("mk,mkd->md", g_logits, cand_vectors) / temperature
        g_z = (g_zn - zn * (g_zn * zn).sum(axis=1, keepdims=True)) / norm
        grad = x.T @ g_z + 2 * regularisation * (w - identity)
        first = 0.9 * first + 0.1 * grad
        second = 0.999 * second + 0.001 * grad * grad
        w -= learning_rate * (first / (1 - 0.9**step)) / (np.sqrt(second / (1 - 0.999**step)) + 1e-8)
    return w


# --- the resource --------------------------------------------------------------------------------

@dataclass
class LearnedResource:
    """What `rulebook learn` writes: question memory and term associations, plus provenance."""

    embedder: str
    questions: list[str] = field(default_factory=list)
    vectors: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), dtype=np.float32))
    # Clause keys the memory points at, and (question index, key index) for each answer.
    keys: list[ClauseKey] = field(default_factory=list)
    answer_question: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int32))
    answer_key: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int32))
    associations: dict[str, dict[str, float]] = field(default_factory=dict)
    # The query adapter W (d × d), or an empty array.
    adapter: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), dtype=np.float32))
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def has_memory(self) -> bool:
        return len(self.questions) > 0

    @property
    def has_adapter(self) -> bool:
        return self.adapter.size > 0

    def without_vectors(self, reason: str) -> LearnedResource:
        """The parts that do not depend on the embedding model (the word associations)."""
        return LearnedResource(embedder=self.embedder, associations=self.associations,
                               info={**self.info, "vectors_ignored": reason})

    def save(self, path: Path) -> None:
        """Write atomically (a half-written file would be read by a serving process)."""
        meta = {"format": FORMAT, "version": VERSION, "embedder": self.embedder,
                "questions": self.questions, "keys": [list(k) for k in self.keys],
                "associations": self.associations, "info": self.info}
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "wb") as fh:
            np.savez_compressed(
                fh, meta=np.frombuffer(json.dumps(meta, ensure_ascii=False).encode("utf-8"), dtype=np.uint8),
                # float16 halves the file; cosine similarities move by < 0.001.
                vectors=self.vectors.astype(np.float16),
                answer_question=self.answer_question.astype(np.int32),
                answer_key=self.answer_key.astype(np.int32), adapter=self.adapter.astype(np.float16))
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> LearnedResource:
        try:
            with np.load(path, allow_pickle=False) as data:
                meta = json.loads(data["meta"].tobytes().decode("utf-8"))
                vectors = data["vectors"].astype(np.float32)
                answer_question = data["answer_question"]
                answer_key = data["answer_key"]
                adapter = data["adapter"].astype(np.float32)
        except (OSError, ValueError, KeyError) as exc:
            raise LearnError(f"{path} is not a learned resource ({exc}); rebuild it with `rulebook learn`.") from exc
        if meta.get("format") != FORMAT or meta.get("version") != VERSION:
            raise LearnError(f"{path} has format {meta.get('format')} v{meta.get('version')}, this version "
                             f"reads {FORMAT} v{VERSION}; rebuild it with `rulebook learn`.")
        return cls(embedder=meta["embedder"], questions=meta["questions"], vectors=vectors,
                   keys=[(k[0], k[1]) for k in meta["keys"]], answer_question=answer_question,
                   answer_key=answer_key, associations=meta["associations"], adapter=adapter,
                   info=meta.get("info", {}))


def build_resource(pairs: Sequence[Pair], clauses: Sequence[Clause], clause_tokens: Callable[[Clause], list[str]],
                   tokenizer: Tokenizer, embedder: QueryEmbedder | None, embedder_name: str,
                   memory: bool = True, associations: bool = True, adapter: bool = True,
                   clause_vectors: np.ndarray | None = None, vectors: np.ndarray | None = None,
                   background: dict[str, float] | None = None) -> tuple[LearnedResource, list[Pair]]:
    """Learn from `pairs` whose clauses are in `clauses`; returns the resource and the pairs left out.

    A pair is left out when none of its expected clauses is in the index; an expected clause that
    is missing while others are found is dropped from that pair. `clause_vectors` (one per clause,
    normalised) are needed for the adapter; `vectors` (one per pair, already embedded) and
    `background` (see `rule_word_shares`) save work when the caller has them.
    """
    by_key: dict[ClauseKey, list[Clause]] = defaultdict(list)
    for c in clauses:
        by_key[clause_key(c.source, c.label)].append(c)
    used: list[tuple[int, Pair]] = []
    left_out: list[Pair] = []
    for i, p in enumerate(pairs):
        found = tuple(k for k in dict.fromkeys(p.expected) if k in by_key)
        if found:
            used.append((i, Pair(p.question, found)))
        else:
            left_out.append(p)
    resource = LearnedResource(embedder=embedder_name)
    qvecs: np.ndarray | None = None
    if (memory or adapter) and used:
        if vectors is not None:
            qvecs = np.asarray(vectors, dtype=np.float32)[[i for i, _ in used]]
        elif embedder is None:
            raise LearnError("The question memory and the adapter need an embedder.")
        else:
            qvecs = np.stack([embedder.query_array(normalise_query(p.question)) for _, p in used])
    if memory and qvecs is not None:
        keys = list(dict.fromkeys(k for _, p in used for k in p.expected))
        key_index = {k: i for i, k in enumerate(keys)}
        resource.questions = [p.question for _, p in used]
        resource.keys = keys
        resource.answer_question = np.array([q for q, (_, p) in enumerate(used) for _ in p.expected], dtype=np.int32)
        resource.answer_key = np.array([key_index[k] for _, p in used for k in p.expected], dtype=np.int32)
        resource.vectors = qvecs
    if adapter and qvecs is not None:
        if clause_vectors is None:
            raise LearnError("The adapter needs the clauses' vectors.")
        row = {c.clause_id: i for i, c in enumerate(clauses)}
        resource.adapter = train_adapter(
            qvecs, [[row[c.clause_id] for k in p.expected for c in by_key[k]] for _, p in used], clause_vectors)
    if associations and used:
        token_cache: dict[str, list[str]] = {}

        def tokens_of(c: Clause) -> list[str]:
            if c.clause_id not in token_cache:
                token_cache[c.clause_id] = clause_tokens(c)
            return token_cache[c.clause_id]

        if background is None:
            background = rule_word_shares([tokens_of(c) for c in clauses])
        resource.associations = train_associations(
            [tokenizer.tokens(normalise_query(p.question)) for _, p in used],
            [[tokens_of(c) for k in p.expected for c in by_key[k]] for _, p in used], background)
    resource.info = {"pairs": len(pairs), "learned_pairs": len(used), "left_out": len(left_out),
                     "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    return resource, left_out


def rule_word_shares(clause_tokens: Iterable[Iterable[str]]) -> dict[str, float]:
    """For each token, the share of clauses that contain it (the background of the associations)."""
    df: dict[str, int] = defaultdict(int)
    n = 0
    for tokens in clause_tokens:
        n += 1
        for t in set(tokens):
            df[t] += 1
    return {t: d / max(1, n) for t, d in df.items()}


def clause_vectors(snapshot: IndexSnapshot) -> np.ndarray:
    """One normalised vector per clause of the snapshot (the mean of its chunks' vectors), in
    `snapshot.clauses` order; read from the vector store in batches."""
    ids = [c.chunk_id for c in snapshot.chunks]
    if not ids:
        return np.zeros((len(snapshot.clauses), 0), dtype=np.float32)
    chunk = np.concatenate([snapshot.vectors.get_vectors(ids[i : i + 1000]) for i in range(0, len(ids), 1000)])
    out = np.zeros((len(snapshot.clauses), chunk.shape[1]), dtype=np.float32)
    np.add.at(out, snapshot.chunk_clause, chunk)
    out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9)
    return out


def resource_path(data_dir: Path, learned_file: Path | None) -> Path:
    """Where the resource is: the configured file, else `learned.npz` in the data dir."""
    return Path(learned_file) if learned_file is not None else Path(data_dir) / DEFAULT_FILE


def load_learned(path: Path, embedder_name: str, required: bool = False) -> LearnedResource | None:
    """The resource at `path` for a searcher using `embedder_name`, or None when there is none.

    A resource made with another embedder keeps its associations (words do not depend on the
    model) but loses its memory and adapter: vectors of different models are not comparable, and
    comparing them would silently rank clauses at random. That is logged as a warning, with the fix.
    """
    if not path.exists():
        if required:
            log.warning("learned resource %s not found; searching without it (run `rulebook learn`)", path)
        return None
    t0 = time.perf_counter()
    resource = LearnedResource.load(path)
    if resource.embedder != embedder_name and (resource.has_memory or resource.has_adapter):
        log.warning("learned resource %s was made with %s, but the index uses %s: its question memory and "
                    "adapter are ignored (re-run `rulebook learn` to rebuild them); its word associations "
                    "still apply", path, resource.embedder, embedder_name)
        resource = resource.without_vectors("embedder")
    log.info("learned resource %s: %d remembered questions, %d lay words (%.0f ms)", path,
             len(resource.questions), len(resource.associations), (time.perf_counter() - t0) * 1000)
    return resource


# --- query time ----------------------------------------------------------------------------------

def _dot(matrix: np.ndarray, vector: np.ndarray) -> np.ndarray:
    """matrix @ vector without BLAS. A multi-threaded BLAS call leaves its threads spinning for a
    while afterwards, and they took the cores from the next question's embedding: search p50 went
    from 45 to 110 ms on two cores. einsum runs in the calling thread (~0.6 ms at 4,400 × 384)."""
    return np.einsum("ij,j->i", matrix, vector)


class LearnedScorer:
    """A resource bound to one index generation: clause keys resolved, rule words restricted."""

    def __init__(self, resource: LearnedResource, snapshot: IndexSnapshot, vocabulary: Iterable[str],
                 weights: LearnedWeights = DEFAULT_WEIGHTS) -> None:
        self.resource = resource
        self.weights = weights
        clauses = snapshot.clauses
        self.n = len(clauses)
        by_key: dict[ClauseKey, list[int]] = defaultdict(list)
        for i, c in enumerate(clauses):
            by_key[clause_key(c.source, c.label)].append(i)
        # Each remembered answer → the clause indices its key resolves to in this generation.
        questions: list[int] = []
        targets: list[int] = []
        missing = 0
        for q, k in zip(resource.answer_question.tolist(), resource.answer_key.tolist(), strict=True):
            found = by_key.get(resource.keys[k], [])
            missing += not found
            for ci in found:
                questions.append(q)
                targets.append(ci)
        if resource.keys and missing:
            log.info("learned memory: %d of %d answers point at clauses not in this index; skipped",
                     missing, len(resource.answer_key))
        live = sorted(set(questions))
        remap = {q: i for i, q in enumerate(live)}
        self.vectors = resource.vectors[live] if live else np.zeros((0, 0), dtype=np.float32)
        self.answer_question = np.array([remap[q] for q in questions], dtype=np.int64)
        self.answer_clause = np.array(targets, dtype=np.int64)
        # Only rule words this rulebook has can be searched for.
        vocab = set(vocabulary)
        stop = stopwords()
        self.expansions: dict[str, tuple[tuple[str, float], ...]] = {}
        for lay, rules in resource.associations.items():
            kept = tuple((r, p) for r, p in rules.items() if r in vocab and r not in stop)
            if kept:
                self.expansions[lay] = kept
        # The adapter scores every chunk itself (a matrix product, ~1 ms at 4,000 chunks) rather
        # than asking the vector store a second time; the vectors are read once per generation.
        self.adapter = resource.adapter if resource.has_adapter else None
        self.chunk_vectors = np.zeros((0, 0), dtype=np.float32)
        self.chunk_clause = snapshot.chunk_clause
        if self.adapter is not None and len(snapshot.chunks):
            ids = [c.chunk_id for c in snapshot.chunks]
            self.chunk_vectors = np.concatenate(
                [snapshot.vectors.get_vectors(ids[i : i + 1000]) for i in range(0, len(ids), 1000)])
            if self.chunk_vectors.shape[1] != self.adapter.shape[0]:
                log.warning("learned adapter is %d-dimensional, the index's vectors %d: adapter ignored",
                            self.adapter.shape[0], self.chunk_vectors.shape[1])
                self.adapter = None

    @property
    def has_memory(self) -> bool:
        return len(self.answer_clause) > 0

    @property
    def has_adapter(self) -> bool:
        return self.adapter is not None

    @property
    def memory_weight(self) -> float:
        if not self.has_memory:
            return 0.0
        return self.weights.memory_with_adapter if self.has_adapter else self.weights.memory

    def adapted_semantic(self, qvec: np.ndarray) -> np.ndarray:
        """Per clause, the best cosine of its chunks with the adapted question vector (the vector
        leg's ranking when an adapter was learned; the evidence gate keeps the plain cosine)."""
        best = np.full(self.n, -1.0, dtype=np.float32)
        if self.adapter is None or not len(self.chunk_vectors):
            return best
        q = np.einsum("i,ij->j", np.asarray(qvec, dtype=np.float32), self.adapter)
        q /= max(float(np.linalg.norm(q)), 1e-9)
        np.maximum.at(best, self.chunk_clause, _dot(self.chunk_vectors, q))
        return best

    def memory_scores(self, qvec: np.ndarray) -> np.ndarray:
        """Per clause, 0–1: how close the question is to the closest question that clause answered."""
        best = np.zeros(self.n, dtype=np.float32)
        if not self.has_memory:
            return best
        sims = _dot(self.vectors, np.asarray(qvec, dtype=np.float32))
        np.maximum.at(best, self.answer_clause, sims[self.answer_question])
        w = self.weights
        return np.clip((best - w.memory_floor) / (w.memory_ceiling - w.memory_floor), 0.0, 1.0)

    def expansion(self, tokens: Sequence[str]) -> dict[str, float]:
        """Rule words for a question's own tokens, with their BM25 weights (below 1.0)."""
        w = self.weights
        own = set(tokens)
        out: dict[str, float] = {}
        for lay in own:
            for rule, p in self.expansions.get(lay, ()):
                if rule not in own:
                    out[rule] = out.get(rule, 0.0) + p
        if len(out) > w.expansions_per_question:
            out = dict(sorted(out.items(), key=lambda kv: -kv[1])[: w.expansions_per_question])
        # A rule word several lay words point at is surer, but never outweighs a word of the question.
        return {r: w.expansion * min(v, 1.0) for r, v in out.items()}

    def expansion_scores(self, bm25: Any, tokens: Sequence[str]) -> np.ndarray:
        """Weighted BM25 scores of the expansion terms of `tokens` (added to the question's own)."""
        scores = np.zeros(self.n, dtype=np.float32)
        for rule, w in self.expansion(tokens).items():
            scores += w * np.asarray(bm25.get_scores([rule]), dtype=np.float32)
        return scores


# --- wiring --------------------------------------------------------------------------------------

def learned_for(settings: Settings, embedder_name: str) -> LearnedResource | None:
    """The resource the settings point at (RULEBOOK_LEARNED_FILE, else DATA_DIR/learned.npz), if any."""
    if not settings.learned:
        return None
    path = resource_path(settings.data_dir, settings.learned_file)
    return load_learned(path, embedder_name, required=settings.learned_file is not None)


@dataclass
class LearnReport:
    """What `rulebook learn` did, for the CLI's table and `--json`."""

    out: str
    embedder: str
    pairs: int
    learned_pairs: int
    left_out: list[dict[str, Any]]
    memory_questions: int
    clauses_remembered: int
    adapter: bool
    lay_words: int
    associations: int
    bytes: int
    seconds: float
    adapter_skipped: str | None = None  # why no adapter was trained although one was allowed

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


# Fewer pairs than this train no query adapter: a linear map fitted to a few dozen questions pulls
# every other question towards their clauses (30 owners' corrections on the sample rulebook: 39
# other eval answers turned wrong, 10 right; without the adapter 0 wrong). It was the largest gain
# with the ~600 pairs of the STARD dev split; the value between is not calibrated.
MIN_ADAPTER_PAIRS = 200


def learn(paths: Sequence[Path], settings: Settings, out: Path | None = None, memory: bool = True,
          associations: bool = True, adapter: bool = True, embedder: QueryEmbedder | None = None,
          curated: bool = True, min_adapter_pairs: int = MIN_ADAPTER_PAIRS) -> LearnReport:
    """`rulebook learn`: learn from case files (and, with `curated`, the owners' corrections in the
    data folder) against the served index and write the resource.

    The clauses come from the index that `CURRENT` names, so the pairs must be about the rulebook
    being served; pairs whose clauses are not in it are reported, not guessed at.
    """
    from assistant.retrieval import HybridSearcher
    from assistant.store import IndexSnapshot, Layout
    from assistant.text import shared_tokenizer
    from ingest.pipeline import embedder_name as name_of

    t0 = time.perf_counter()
    if not (memory or associations or adapter):
        raise LearnError("Nothing to learn: --no-memory, --no-associations and --no-adapter leave nothing.")
    pairs = read_pairs(paths)
    if curated:
        from assistant.curation import open_curations

        store = open_curations(settings.data_dir)
        if store is not None:
            try:
                pairs += [p for p in map(case_pair, store.export_cases()) if p is not None]
            finally:
                store.close()
    if not pairs:
        raise LearnError("No pair to learn from: the files hold no case with `expected` clauses "
                         "(and the data folder no correction naming a clause).")
    pairs = list(dict.fromkeys(pairs))  # a correction exported and also read from the store counts once
    skipped = None
    if adapter and len(pairs) < min_adapter_pairs:
        adapter = False
        skipped = f"{len(pairs)} pairs; the query adapter needs at least {min_adapter_pairs}"
        if not (memory or associations):
            raise LearnError(f"Nothing to learn: {skipped} (--min-adapter-pairs), and memory and associations "
                             "are off.")
    name = name_of(settings.embedding)
    snapshot = IndexSnapshot(Layout(settings.data_dir), settings.chroma_url, name)
    tokenizer = shared_tokenizer((settings.user_dict,) if settings.user_dict else ())
    if (memory or adapter) and embedder is None:
        from assistant.embeddings import make_embedder

        embedder = make_embedder(settings.embedding)
    resource, left_out = build_resource(
        pairs, snapshot.clauses, lambda c: tokenizer.tokens(HybridSearcher._lexical_text(c)), tokenizer,
        embedder, name, memory=memory, associations=associations, adapter=adapter,
        clause_vectors=clause_vectors(snapshot) if adapter else None)
    if resource.info["learned_pairs"] == 0:
        raise LearnError(f"None of the {len(pairs)} pairs names a clause of the index in {settings.data_dir} "
                         "(matched by file name and clause label): learn against the rulebook they are about.")
    resource.info["generation"] = snapshot.generation
    resource.info["sources"] = [Path(p).name for p in paths] + (["curated.sqlite"] if curated else [])
    target = out if out is not None else resource_path(settings.data_dir, settings.learned_file)
    resource.save(target)
    return LearnReport(
        out=str(target), embedder=name, pairs=len(pairs), learned_pairs=resource.info["learned_pairs"],
        left_out=[{"question": p.question, "expected": [list(k) for k in p.expected]} for p in left_out],
        memory_questions=len(resource.questions), clauses_remembered=len(resource.keys),
        adapter=resource.has_adapter, lay_words=len(resource.associations),
        associations=sum(len(v) for v in resource.associations.values()),
        bytes=target.stat().st_size, seconds=time.perf_counter() - t0, adapter_skipped=skipped)
