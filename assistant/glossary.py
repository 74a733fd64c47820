"""English words → the rulebook's own Chinese words, through a general English–Chinese dictionary.

The rules are written in Chinese and a fair share of questions come in English. The e5 vectors
bridge the two languages, but BM25 and the evidence gate only see words: without a bridge every
English word the curated dictionary (`resources/synonyms.txt`) does not list is unknown to the
rulebook, and a plain English question ("how many minutes of data could we lose…") looks as empty
to the gate as "thanks, you're great". Here each English word is looked up in the word list of the
`cedict` package (about 100,000 English headwords with Chinese glosses, bundled, no download), and
only the glosses the rulebook itself uses are kept: "database" → 数据库, "sponsor" → 资助 is kept
only where the rulebook says 资助.
"""

from __future__ import annotations

import csv
import re
from functools import lru_cache
from importlib import resources

# Dictionary senses are listed most common first; later ones are rare or technical ("keep" →
# 监狱, 要塞) and bring noise into the query.
MAX_SENSES = 8
_TAG = re.compile(r"\[[^\]]*\]|\([^)]*\)|（[^）]*）")
_CJK_RUN = re.compile(r"[\u4e00-\u9fff]+")
# Irregular forms are glossed by reference: "stolen" → "vbl.steal的过去分词".
_FORM_OF = re.compile(r"([a-z]+)的[过去现在式和分词复数]+")


@lru_cache(maxsize=1)
def _entries() -> dict[str, str]:
    """Headword → its gloss line, read once from the bundled CSV."""
    out: dict[str, str] = {}
    path = resources.files("cedict") / "csv" / "EnWords.csv"
    with path.open(encoding="utf-8") as f:
        rows = csv.reader(f)
        next(rows, None)  # the header: "word","translation"
        for row in rows:
            if len(row) >= 2 and row[0].isascii():
                out.setdefault(row[0].strip().lower(), row[1])
    return out


_ES_PLURAL = re.compile(r"(?:s|x|z|ch|sh|o)es$")


def _lemmas(word: str) -> list[str]:
    """The word and the stems its regular English endings may hide, likeliest first."""
    out = [word]
    if word.endswith("'s"):
        out.append(word[:-2])
    if word.endswith("ies") and len(word) > 4:
        out.append(word[:-3] + "y")
    elif _ES_PLURAL.search(word):  # uses → use, boxes → box; but fees → fee, not fe
        out += [word[:-1], word[:-2]]
    elif word.endswith("s") and not word.endswith("ss") and len(word) > 3:
        out.append(word[:-1])
    for suffix in ("ed", "ing"):  # closed → close, planned → plan, using → use, working → work
        stem = word[: -len(suffix)]
        if word.endswith(suffix) and len(stem) > 2:
            out += [stem + "e", *([stem[:-1]] if stem[-1] == stem[-2] else []), stem]
    return list(dict.fromkeys(out))


def _gloss(entries: dict[str, str], headword: str) -> list[str]:
    gloss = entries.get(headword, "")
    base = _FORM_OF.search(gloss)
    if base and base.group(1) != headword:
        gloss = gloss.replace(base.group(0), "") + "," + entries.get(base.group(1), "")
    return list(dict.fromkeys(_CJK_RUN.findall(_TAG.sub("", gloss))))[:MAX_SENSES]


def senses(word: str) -> list[str]:
    """Chinese renderings of an English word, in dictionary order (empty when not listed).

    An inflected form that is a headword of its own often means something else there ("notes"
    is Lotus Notes, "leaves" are a tree's), so the stem's senses are added after its own.
    """
    entries = _entries()
    lemmas = _lemmas(word.lower())
    out = _gloss(entries, lemmas[0])
    stem = next((lemma for lemma in lemmas[1:] if lemma in entries), None)
    if stem:
        out += [s for s in _gloss(entries, stem) if s not in out]
    return out
