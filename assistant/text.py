"""Text helpers shared by ingest, retrieval and answering: normalisation, sentences, tokens."""

from __future__ import annotations

import re
import threading
import unicodedata
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path

RESOURCES = Path(__file__).with_name("resources")

_WS = re.compile(r"\s+")
# Sentence ends: Chinese and Western terminators, semicolons (items of a 条 end in ；), line breaks.
_SENT_END = re.compile(r"[。！？!?；;]+[”’」』）)]*|\n+")
_CJK = re.compile(r"[\u3400-\u9fff]")
_WORDISH = re.compile(r"[\w\u3400-\u9fff]", re.UNICODE)
_LATIN = re.compile(r"[A-Za-z]")


# Chinese modal verbs (能愿动词), a closed class of the grammar: a word jieba's HMM glues together
# from one of them and a verb (能补, 可报, 能请假) is a verb phrase, not a new noun such as 年会.
MODAL_VERBS = frozenset("能可会要该应得肯敢愿")


def normalise(text: str) -> str:
    """Canonical form for comparing quotes with clause text.

    NFKC folds full-width letters, digits and punctuation to half width; whitespace is dropped
    (PDF and Word extraction put line breaks and spaces in different places); case is folded.
    """
    return _WS.sub("", unicodedata.normalize("NFKC", text)).lower()


def is_verbatim(quote: str, clause_text: str) -> bool:
    """True when `quote` is really in the clause, up to normalisation."""
    q = normalise(quote)
    return bool(q) and q in normalise(clause_text)


@lru_cache(maxsize=4096)
def to_simplified(text: str) -> str:
    """Traditional → simplified Chinese (questions from Hong Kong and Taiwan colleagues)."""
    if not _CJK.search(text):
        return text
    import zhconv

    return zhconv.convert(text, "zh-hans")


def normalise_query(text: str) -> str:
    """Full/half width, traditional/simplified and spacing of a question, before retrieval."""
    text = unicodedata.normalize("NFKC", text)
    text = to_simplified(text)
    return _WS.sub(" ", text).strip()


def sentences(text: str) -> list[tuple[int, int]]:
    """Spans (start, end) of the sentences of `text`, ends included, whitespace trimmed."""
    spans: list[tuple[int, int]] = []
    start = 0
    for m in _SENT_END.finditer(text):
        spans.append((start, m.end()))
        start = m.end()
    if start < len(text):
        spans.append((start, len(text)))
    out = []
    for s, e in spans:
        while s < e and text[s].isspace():
            s += 1
        while e > s and text[e - 1].isspace():
            e -= 1
        if e > s and _WORDISH.search(text[s:e]):
            out.append((s, e))
    return out


def is_chinese(text: str) -> bool:
    """Whether a question is (mostly) Chinese; decides the language of the reply."""
    cjk = len(_CJK.findall(text))
    latin = len(_LATIN.findall(text))
    return cjk > 0 and cjk * 2 >= latin


def _load_word_list(path: Path) -> set[str]:
    words = set()
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            words.add(line)
    return words


@lru_cache(maxsize=1)
def stopwords() -> frozenset[str]:
    return frozenset(_load_word_list(RESOURCES / "stopwords.txt"))


class Tokenizer:
    """jieba `cut_for_search` tokens with punctuation and stopwords dropped.

    Each instance owns its jieba dictionary so user dictionaries do not leak between indexes.
    """

    def __init__(self, user_dicts: Iterable[Path] = ()) -> None:
        import jieba

        jieba.setLogLevel(60)
        self._jieba = jieba.Tokenizer()
        self._jieba.initialize()
        for path in [RESOURCES / "userdict.txt", *user_dicts]:
            self._jieba.load_userdict(str(path))
        self._stop = stopwords()
        self._lock = threading.Lock()  # jieba's lazy state is not thread-safe on first use

    def add_words(self, words: Iterable[str]) -> None:
        for w in words:
            self._jieba.add_word(w, freq=2000)

    def frequency(self, word: str) -> int:
        """How common `word` is in general Chinese (jieba's dictionary count; 0 when not a word)."""
        return self._jieba.FREQ.get(word, 0) or 0

    def plausibility(self, text: str) -> float:
        """Log-probability of `text` under jieba's word-frequency model, best segmentation."""
        route: dict[int, tuple[float, int]] = {}
        with self._lock:
            self._jieba.calc(text, self._jieba.get_DAG(text), route)
        return route[0][0]

    def boundaries(self, text: str) -> set[int]:
        """Offsets in `text` where jieba's plain cut puts a word boundary (0 and len included)."""
        with self._lock:
            return {0, *(end for _, _, end in self._jieba.tokenize(text))}

    def tokens(self, text: str) -> list[str]:
        text = unicodedata.normalize("NFKC", text)
        with self._lock:
            raw = list(self._jieba.cut_for_search(text))
        out = []
        for r in raw:
            t = r.strip()
            # A lone lowercase letter is the tail of an English contraction ("what's", "don't");
            # capitals stay: in rules they are grades and levels ("D级", "P1").
            if not t or (len(t) == 1 and "a" <= t <= "z"):
                continue
            t = t.lower()
            if _WORDISH.search(t) and t not in self._stop:
                out.append(t)
        return out

    def words(self, text: str) -> list[str]:
        """Plain `cut` (no overlapping sub-words), punctuation and stray letters dropped."""
        text = unicodedata.normalize("NFKC", text)
        with self._lock:
            raw = list(self._jieba.cut(text))
        return [t.lower() for t in (r.strip() for r in raw)
                if t and _WORDISH.search(t) and not (len(t) == 1 and "a" <= t <= "z")]


@lru_cache(maxsize=8)
def shared_tokenizer(user_dicts: tuple[Path, ...] = ()) -> Tokenizer:
    return Tokenizer(user_dicts)
