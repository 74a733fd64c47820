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
        for row in csv.reader(f):
            if len(row) >= 2 and row[0].isascii():
                out.setdefault(row[0].strip().lower(), row[1])
    return out


def _lemmas(word: str) -> list[str]:
    """The word and the stems its regular English endings may hide, in that order."""
    out = [word]
    if word.endswith("'s"):
        out.append(word[:-2])
    if word.endswith("ies") and len(word) > 4:
        out.append(word[:-3] + "y")
    if word.endswith("es") and len(word) > 3:
        out.append(word[:-2])
    if word.endswith("s") and not word.endswith("ss") and len(word) > 3:
        out.append(word[:-1])
    if word.endswith("ed") and len(word) > 4:
        out += [word[:-2], word[:-1], word[:-3] if word[-3:-2] == word[-4:-3] else word[:-2]]
    if word.endswith("ing") and len(word) > 5:
        out += [word[:-3], word[:-3] + "e", word[:-4] if word[-4:-3] == word[-5:-4] else word[:-3]]
    return list(dict.fromkeys(out))


def senses(word: str) -> list[str]:
    """Chinese renderings of an English word, most common first (empty when not listed)."""
    entries = _entries()
    for lemma in _lemmas(word.lower()):
        gloss = entries.get(lemma)
        base = _FORM_OF.search(gloss or "")
        if base and base.group(1) != lemma:
            gloss = gloss.replace(base.group(0), "") + "," + entries.get(base.group(1), "")
        if gloss:
            runs = _CJK_RUN.findall(_TAG.sub("", gloss))
            return list(dict.fromkeys(runs))[:MAX_SENSES]
    return []
