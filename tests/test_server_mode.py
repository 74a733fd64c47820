"""Several processes on one index through a real Chroma server (`chroma run`, started here):
two `rulebook serve` processes answer without a single failed request while ingests publish new
generations, and both switch without a restart; the generations share one collection, each ingest
inserts only what changed, and vectors no kept generation uses are deleted."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import urlparse

import pytest

from .conftest import ROOT
from .hardening_helpers import Server, free_port

QUESTIONS = ["年假可以留到明年用吗？", "出差住酒店每晚最多报销多少？", "客户咨询多久内要答复？"]


@pytest.fixture
def chroma_server(tmp_path: Path) -> Iterator[str]:
    chroma = shutil.which("chroma", path=str(Path(sys.executable).parent)) or shutil.which("chroma")
    if chroma is None:
        pytest.skip("the `chroma` command (installed with the chromadb package) is not on PATH")
    port = free_port()
    proc = subprocess.Popen([chroma, "run", "--path", str(tmp_path / "chroma-server"), "--host", "127.0.0.1",
                             "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url + "/api/v2/heartbeat", timeout=2):
                break
        except OSError:
            time.sleep(0.2)
    else:
        proc.kill()
        pytest.fail("chroma run did not start in 60 s")
    yield url
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def rulebook_ingest(corpus: Path, data_dir: Path, chroma_url: str) -> SimpleNamespace:
    r = subprocess.run([sys.executable, "-m", "assistant.adapters.cli", "ingest", str(corpus), "--data-dir",
                        str(data_dir), "--json"], cwd=ROOT, env={**os.environ, "RULEBOOK_CHROMA_URL": chroma_url},
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    return SimpleNamespace(**json.loads(r.stdout))


def stored_ids(chroma_url: str) -> set[str]:
    import chromadb

    from assistant.store import VectorStore

    u = urlparse(chroma_url)
    (col,) = chromadb.HttpClient(host=u.hostname, port=u.port).list_collections()
    return VectorStore.ids_of(col)


def kept_vector_ids(data_dir: Path) -> set[str]:
    """The vector ids of every generation left on disk."""
    import sqlite3

    from assistant.schema import Chunk
    from assistant.store import vector_id

    out: set[str] = set()
    for gen in (data_dir / "generations").iterdir():
        db = sqlite3.connect(gen / "index.sqlite")
        out.update(vector_id(Chunk(chunk_id=a, clause_id="", text="", context=b))
                   for a, b in db.execute("SELECT chunk_id, context FROM chunks"))
        db.close()
    return out


def generation_of(server: Server) -> str:
    status, body = server.get("/readyz")
    assert status == 200, body
    return body["detail"].split(":", 1)[0]


def server_collections(chroma_url: str) -> list[str]:
    import chromadb

    u = urlparse(chroma_url)
    client = chromadb.HttpClient(host=u.hostname, port=u.port)
    return sorted(c.name for c in client.list_collections())


@pytest.mark.slow
def test_two_servers_share_a_chroma_server_through_an_ingest(rulebook_copy: Path, warm_data_dir: Path,
                                                             chroma_server: str) -> None:
    reports = [rulebook_ingest(rulebook_copy, warm_data_dir, chroma_server)]
    env = {"RULEBOOK_CHROMA_URL": chroma_server}
    servers = [Server(warm_data_dir, env), Server(warm_data_dir, env)]
    try:
        first = {generation_of(s) for s in servers}
        assert len(first) == 1
        assert not (warm_data_dir / "generations" / first.pop() / "chroma").exists()  # vectors live on the server

        failures: list[str] = []
        answered = [0, 0]
        stop = threading.Event()

        def load(i: int) -> None:
            n = 0
            while not stop.is_set() and n < 400:
                status, body = servers[i].ask(QUESTIONS[n % len(QUESTIONS)])
                n += 1
                if status != 200 or not body.get("grounded"):
                    failures.append(f"server {i}: {status} {body.get('error') or body.get('answer')}")
                else:
                    answered[i] += 1

        threads = [threading.Thread(target=load, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
        before = generation_of(servers[0])
        edited = rulebook_copy / "客户服务标准.md"
        for k in range(4):  # four generations: the oldest ones must leave the Chroma server as well
            edited.write_text(edited.read_text(encoding="utf-8") + f"\n\n附：第{k + 1}次修订说明。\n", encoding="utf-8")
            reports.append(rulebook_ingest(rulebook_copy, warm_data_dir, chroma_server))
        current = (warm_data_dir / "CURRENT").read_text(encoding="utf-8").strip()
        time.sleep(1.0)  # let each server pick the new generation up on its next question
        stop.set()
        for t in threads:
            t.join(timeout=120)
        assert not failures, failures[:5]
        assert min(answered) >= 5, answered
        for s in servers:  # both switched without a restart
            s.ask(QUESTIONS[0])
            assert generation_of(s) == current != before
        # One collection shared by the generations; each ingest inserted only the edited file's
        # vectors, and vectors no kept generation uses were deleted with the old generations.
        assert len(server_collections(chroma_server)) == 1
        assert all(r.vectors_reused > 0 and r.chunks - r.vectors_reused < r.chunks / 4 for r in reports[1:])
        assert stored_ids(chroma_server) == kept_vector_ids(warm_data_dir)
        assert not (warm_data_dir / "generations" / before).exists()
    finally:
        for s in servers:
            s.close()


@pytest.mark.slow
def test_workers_answer_from_one_index_into_one_records_file(rulebook_copy: Path, warm_data_dir: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from assistant.records import Records
    from ingest.pipeline import ingest

    from .conftest import make_settings

    ingest(rulebook_copy, make_settings(warm_data_dir))
    server = Server(warm_data_dir, args=("--workers", "2"))
    try:
        deadline = time.monotonic() + 120  # /healthz answers as soon as one worker is up
        children: list[str] = []
        while time.monotonic() < deadline:
            children = Path(f"/proc/{server.proc.pid}/task/{server.proc.pid}/children").read_text().split()
            if len(children) >= 2 and all(server.get("/readyz")[0] == 200 for _ in range(4)):
                break
            time.sleep(0.5)
        assert len(children) >= 2, children  # the uvicorn supervisor and its worker processes
        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(lambda i: server.ask(QUESTIONS[i % len(QUESTIONS)]), range(40)))
        assert [status for status, _ in results] == [200] * 40
        assert all(body["grounded"] for _, body in results)
        records = Records(warm_data_dir / "records.sqlite")
        ids = {body["answer_id"] for _, body in results}
        assert all(records.answer_exists(i) for i in ids) and len(ids) == 40  # every worker's writes landed
    finally:
        server.close()
