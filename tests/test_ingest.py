"""Ingest: the index mirrors the folder, survives bad files and crashes, and never half-publishes."""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from assistant.core import build_assistant
from assistant.errors import IndexNotBuilt, RulebookError
from assistant.store import Layout
from ingest.pipeline import ingest

from .conftest import ROOT, make_settings


def sources(data_dir: Path) -> set[str]:
    from assistant.store import read_documents

    layout = Layout(data_dir)
    name = layout.current()
    assert name is not None
    return set(read_documents(layout.gen_dir(name) / "index.sqlite"))


def test_sync_adds_updates_removes_and_skips_unchanged(rulebook_copy: Path,
                                                       warm_data_dir: Path) -> None:
    settings = make_settings(warm_data_dir)
    first = ingest(rulebook_copy, settings)
    assert first.changed and len(first.added) == 8 and not first.skipped
    assert first.documents == 8 and first.clauses >= 150 and first.chunks >= first.clauses

    again = ingest(rulebook_copy, settings)
    assert not again.changed and again.generation == first.generation
    assert len(again.unchanged) == 8 and again.embedded == 0

    (rulebook_copy / "新员工入职指南.md").unlink()
    p = rulebook_copy / "费用报销管理办法.txt"
    p.write_text(p.read_text("utf-8").replace("30日内", "45日内"), "utf-8")
    (rulebook_copy / "sub").mkdir()
    (rulebook_copy / "sub" / "停车规定.md").write_text(
        "# 停车规定\n第一条 员工车辆停放在地下二层员工车位，每月停车费300元。\n", "utf-8")
    third = ingest(rulebook_copy, settings)
    assert third.changed and third.generation != first.generation
    assert third.removed == ["新员工入职指南.md"]
    assert third.updated == ["费用报销管理办法.txt"]
    assert third.added == ["sub/停车规定.md"]
    assert len(third.unchanged) == 6
    assert third.embedded <= 3  # only the changed chunk and the new file's text
    assert "新员工入职指南.md" not in sources(warm_data_dir)

    answer = build_assistant(settings).answer("停车费每月多少钱？")
    assert answer.grounded and answer.citations[0].source == "sub/停车规定.md"


def test_bad_files_are_skipped_with_reasons_and_the_rest_indexed(rulebook_copy: Path,
                                                                 warm_data_dir: Path) -> None:
    (rulebook_copy / "empty.md").write_bytes(b"")
    (rulebook_copy / "broken.docx").write_bytes(b"PK\x03\x04not really a zip")
    (rulebook_copy / "broken.pdf").write_bytes(b"%PDF-1.4 nothing else")
    (rulebook_copy / "photo.jpg").write_bytes(b"\xff\xd8\xff\xe0")
    (rulebook_copy / "noise.bin.txt").write_bytes(bytes(range(256)) * 50)
    (rulebook_copy / "big.md").write_bytes(b"# big\n" + "第一条 很长。".encode() * 400_000)
    settings = make_settings(warm_data_dir, max_file_mb=1)
    report = ingest(rulebook_copy, settings)
    reasons = {s["source"]: s["reason"] for s in report.skipped}
    assert set(reasons) == {"empty.md", "broken.docx", "broken.pdf", "photo.jpg", "noise.bin.txt",
                            "big.md"}
    assert "empty" in reasons["empty.md"]
    assert "Word" in reasons["broken.docx"]
    assert "PDF" in reasons["broken.pdf"]
    assert "unsupported" in reasons["photo.jpg"]
    assert "too large" in reasons["big.md"]
    assert report.documents == 8
    assert build_assistant(settings).answer("客户咨询多久内要答复？").grounded


def test_a_file_that_turns_bad_keeps_its_previous_version(rulebook_copy: Path,
                                                          warm_data_dir: Path) -> None:
    settings = make_settings(warm_data_dir)
    ingest(rulebook_copy, settings)
    (rulebook_copy / "信息系统故障与应急预案.docx").write_bytes(b"PK\x03\x04 truncated upload")
    report = ingest(rulebook_copy, settings)
    (skip,) = report.skipped
    assert skip["source"] == "信息系统故障与应急预案.docx"
    assert "kept the previously indexed version" in skip["reason"]
    assert "信息系统故障与应急预案.docx" in sources(warm_data_dir)


def test_failed_ingest_leaves_the_previous_index_serving(rulebook_copy: Path, warm_data_dir: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    settings = make_settings(warm_data_dir)
    good = ingest(rulebook_copy, settings)
    (rulebook_copy / "新规定.md").write_text("# 新规定\n第一条 每周五下午为无会议时间。\n", "utf-8")

    from assistant.store import IndexWriter

    def explode(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        raise OSError("disk full")

    monkeypatch.setattr(IndexWriter, "add_vectors", explode)
    with pytest.raises(OSError):
        ingest(rulebook_copy, settings)
    layout = Layout(warm_data_dir)
    assert layout.current() == good.generation
    assert sorted(p.name for p in layout.generations.iterdir()) == [good.generation]
    assert build_assistant(settings).answer("客户咨询多久内要答复？").grounded


def test_killed_ingest_leaves_the_previous_index_serving(rulebook_copy: Path,
                                                         warm_data_dir: Path) -> None:
    settings = make_settings(warm_data_dir)
    good = ingest(rulebook_copy, settings)
    # Enough new text that embedding takes a few seconds, then kill the process mid-way.
    for i in range(30):
        (rulebook_copy / f"附加规定{i}.md").write_text(
            f"# 附加规定{i}\n" + "".join(f"第{n}条 第{i}号附加规定的第{n}项要求，编号{i * 100 + k}。\n"
                                        for k, n in enumerate("一二三四五六七八九十")), "utf-8")
    proc = subprocess.Popen(
        [sys.executable, "-m", "assistant.adapters.cli", "ingest", str(rulebook_copy),
         "--data-dir", str(warm_data_dir)],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    layout = Layout(warm_data_dir)
    deadline = time.time() + 60
    while time.time() < deadline and len(list(layout.generations.iterdir())) < 2:
        time.sleep(0.05)
    time.sleep(0.5)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert layout.current() == good.generation
    assert build_assistant(settings).answer("客户咨询多久内要答复？").grounded
    # The next ingest cleans up the unfinished generation and completes.
    report = ingest(rulebook_copy, settings)
    assert report.changed and len(report.added) == 30
    names = sorted(p.name for p in layout.generations.iterdir())
    assert all(layout.is_complete(n) for n in names)


def test_one_writer_at_a_time(rulebook_copy: Path, warm_data_dir: Path) -> None:
    settings = make_settings(warm_data_dir)
    layout = Layout(warm_data_dir)
    with open(layout.lock, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        with pytest.raises(RulebookError, match="Another `rulebook ingest`"):
            ingest(rulebook_copy, settings)


def test_missing_index_and_folder_give_next_steps(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "nothing")
    with pytest.raises(IndexNotBuilt, match="rulebook ingest"):
        build_assistant(settings).answer("年假几天？")
    with pytest.raises(RulebookError, match="not a folder"):
        ingest(tmp_path / "no-such-folder", settings)


def test_hidden_and_lock_files_are_ignored(rulebook_copy: Path, warm_data_dir: Path) -> None:
    (rulebook_copy / ".git").mkdir()
    (rulebook_copy / ".git" / "notes.md").write_text("# 不是规则\n内容。\n", "utf-8")
    (rulebook_copy / "~$信息系统故障与应急预案.docx").write_bytes(b"lock")
    report = ingest(rulebook_copy, make_settings(warm_data_dir))
    assert report.documents == 8
    # Passed over, and said so: nothing a user put in the folder disappears without a word.
    lock = {"source": "~$信息系统故障与应急预案.docx", "reason": "Word's lock file of an open document"}
    assert report.skipped == [{"source": ".git", "reason": "hidden folder"}, lock]


def test_generations_are_garbage_collected(rulebook_copy: Path, warm_data_dir: Path) -> None:
    settings = make_settings(warm_data_dir)
    p = rulebook_copy / "费用报销管理办法.txt"
    for i in range(5):
        p.write_text(p.read_text("utf-8") + f"\n附：第{i}次修订。\n", "utf-8")
        ingest(rulebook_copy, settings)
    layout = Layout(warm_data_dir)
    assert len(list(layout.generations.iterdir())) == 3
    assert layout.current() == sorted(os.listdir(layout.generations))[-1]


def _vectors(data_dir: Path) -> dict[str, list[float]]:
    """Chunk id → vector of the generation being served, read from its Chroma store."""
    import chromadb

    layout = Layout(data_dir)
    name = layout.current()
    assert name is not None
    client = chromadb.PersistentClient(path=str(layout.gen_dir(name) / "chroma"))
    try:
        got = client.get_collection(f"rulebook-{name}").get(include=["embeddings"])
        return {i: list(map(float, v)) for i, v in zip(got["ids"], got["embeddings"], strict=True)}
    finally:
        client.close()


def test_a_one_file_change_reuses_the_other_vectors_and_matches_a_fresh_build(
        rulebook_copy: Path, warm_data_dir: Path, tmp_path: Path) -> None:
    import shutil

    from assistant.store import read_documents

    settings = make_settings(warm_data_dir)
    first = ingest(rulebook_copy, settings)
    assert first.vectors_reused == 0  # nothing to copy from
    edited = rulebook_copy / "客户服务标准.md"
    edited.write_text(edited.read_text(encoding="utf-8").replace("24小时", "12小时"), encoding="utf-8")
    (rulebook_copy / "费用报销管理办法.txt").unlink()
    second = ingest(rulebook_copy, settings)
    assert second.vectors_reused > 0
    inserted = second.chunks - second.vectors_reused
    assert 0 < inserted < second.chunks / 4  # only the edited clauses' chunks went in again
    # The same vectors as a build from scratch: none missing, none left from the deleted file or the
    # old wording.
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    shutil.copy(warm_data_dir / "cache.sqlite", fresh / "cache.sqlite")
    ingest(rulebook_copy, make_settings(fresh))
    reused, rebuilt = _vectors(warm_data_dir), _vectors(fresh)
    assert set(reused) == set(rebuilt)
    assert all(abs(a - b) < 1e-6 for k in rebuilt for a, b in zip(reused[k], rebuilt[k], strict=True))
    answer = build_assistant(settings).answer("客户咨询多久内要答复？")
    assert answer.grounded and "12小时" in answer.answer
    # A title change moves every chunk's context: none of that document's vectors may be reused.
    text = edited.read_text(encoding="utf-8")
    title = text.splitlines()[0]
    edited.write_text(text.replace(title, title + "（修订版）", 1), encoding="utf-8")
    third = ingest(rulebook_copy, settings)
    layout = Layout(warm_data_dir)
    n_doc = read_documents(layout.gen_dir(third.generation) / "index.sqlite")["客户服务标准.md"].n_chunks
    assert third.chunks - third.vectors_reused == n_doc
    assert len(_vectors(warm_data_dir)) == third.chunks
