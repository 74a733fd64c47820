"""Shared fixtures: settings in temporary folders, the sample rulebook, the shared corpora."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from assistant.config import Settings, load_settings

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "examples" / "rulebook"
SHARED = ROOT.parent / "shared"
LABOUR_LAW = SHARED / "corpora" / "labour-law"
SEEDS = SHARED / "corpora" / "seeds"
CMRC = SHARED / "benchmarks" / "cmrc2018"


def need_shared(path: Path) -> Path:
    """Skip (with the reason) when the shared corpora are not beside this checkout."""
    if not path.exists():
        pytest.skip(f"{path} not found: clone the shared corpora next to this repository "
                    "to run this test (CI has them)")
    return path


@pytest.fixture
def labour_law_dir() -> Path:
    return need_shared(LABOUR_LAW)


@pytest.fixture
def seeds_dir() -> Path:
    return need_shared(SEEDS)


def make_settings(data_dir: Path, **overrides: object) -> Settings:
    return load_settings(data_dir=data_dir, **overrides)


class IndexedCorpus:
    """A data dir holding an ingested copy of a corpus (shared by the tests of a session)."""

    def __init__(self, corpus: Path, data_dir: Path) -> None:
        from ingest.pipeline import ingest

        self.corpus = corpus
        self.settings = make_settings(data_dir)
        self.report = ingest(corpus, self.settings)
        self._assistant = None

    @property
    def assistant(self):  # type: ignore[no-untyped-def]
        if self._assistant is None:
            from assistant.core import build_assistant

            self._assistant = build_assistant(self.settings)
        return self._assistant


@pytest.fixture(scope="session")
def sample_index(tmp_path_factory: pytest.TempPathFactory) -> IndexedCorpus:
    return IndexedCorpus(SAMPLE, tmp_path_factory.mktemp("sample-index"))


@pytest.fixture
def rulebook_copy(tmp_path: Path) -> Path:
    """A writable copy of the sample rulebook."""
    dest = tmp_path / "rules"
    shutil.copytree(SAMPLE, dest)
    return dest


@pytest.fixture
def warm_data_dir(sample_index: IndexedCorpus, tmp_path: Path) -> Path:
    """An empty data dir whose embedding cache already knows the sample rulebook's chunks,
    so tests that ingest copies of it do not spend seconds re-embedding the same text."""
    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(Path(sample_index.settings.data_dir) / "cache.sqlite", data / "cache.sqlite")
    return data
