"""How far one machine goes: ingest, re-ingest, answer latency, memory and disk at 1k–100k clauses.

    python -m eval.benchmarks.scale [--sizes 1000,10000,100000] [--server-sizes 1000,10000]
                                    [--work DIR] [--questions 50] [--http-questions 20]
                                    [--embed-sample 200] [--cold-limit-min 15] [--out FILE] [--svg FILE]

Synthetic rulebooks are made at run time from real clauses: the 30 statute files of
`../shared/benchmarks/stard/laws` and the 15 labour laws of `../shared/corpora/labour-law` (read
from `../shared`, never copied into the project). The smallest size (~1k clauses) is eleven STARD
statutes; larger sizes are units of all 45 laws, each unit a folder holding whole copies of the
files in its own shuffled order, until the size is reached. The corpora are written under
`--work` (default: a temporary folder), never into the repository.

Embedding is the slow part of an ingest (a 2-core machine embeds a few to a few tens of chunks
per second), so each distinct chunk text is embedded once. A whole-file copy keeps its document
title and headings, so its chunks have the same embedded text (`document › path` + text) as the
original and hit the embedding cache. Each run's data dir is seeded with a copy of a cache that
already holds those vectors: the cache of the STARD index in `.rulebook/bench/stard` (read, never
modified) plus whatever it lacks (the labour laws), embedded once into the seed. Every ingest
reports how many chunks it had to embed. Bare embedding throughput is measured separately
(`--embed-sample` chunk texts, batches of 16 as the ingest does); the smallest size is also
ingested cold (empty cache) when the estimate fits within `--cold-limit-min`, else its cold time
is estimated from that throughput and marked as an estimate.

Per size, with Chroma embedded in the data dir and, for `--server-sizes`, with a `chroma run`
server on 127.0.0.1 (RULEBOOK_CHROMA_URL):
- ingest time with cached vectors, split by phase (scan, reading, embedding, indexing = inserting
  the vectors into Chroma, publish = commit and removal of old generations);
- one-file-changed re-ingest: as a `rulebook ingest --json` process (what an operator waits for)
  and, after a second small edit, in-process with the same phase split;
- answer latency p50/p95 over STARD dev questions through `build_assistant(settings).answer(q)`
  after one warm-up (which loads the index), with the retrieval split (BM25, vector query, fusion)
  and a cProfile of a few answers at the largest size;
- a `rulebook serve` process: time until /readyz, questions over HTTP, VmRSS/VmHWM from /proc;
- disk used by the data dir, per generation and by the embedding cache.

Figures go to `eval/scale-results.json` and the plot to `eval/scale.svg`. Traffic stays on
127.0.0.1; every server started is stopped.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import json
import os
import pstats
import random
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared"
STARD = SHARED / "benchmarks" / "stard"
LABOUR = SHARED / "corpora" / "labour-law"
SEED_CACHE = ROOT / ".rulebook" / "bench" / "stard" / "cache.sqlite"
RESULTS = ROOT / "eval" / "scale-results.json"
SVG = ROOT / "eval" / "scale.svg"

# The ~1k-clause rulebook: STARD statutes that many dev questions concern (1,002 articles).
SMALL_SET = (
    "民法典·物权编.md", "民法典·总则编.md", "民法典·侵权责任编.md", "行政许可法.md", "商标法.md",
    "农村土地承包法.md", "著作权法.md", "民法典·人格权编.md", "民法典·继承编.md",
    "最高人民法院关于审理民间借贷案件适用法律若干问题的规定.md",
    "最高人民法院关于审理旅游纠纷案件适用法律若干问题的规定.md",
)
TARGETS = {  # from the issue: (clauses, figure) → limit
    "reingest_10k_s": 10.0, "p95_10k_ms": 150.0, "p95_100k_ms": 300.0, "rss_100k_mb": 2048.0,
}
SUBPROCESS_TIMEOUT = 3600


# -- small helpers ---------------------------------------------------------------------------
def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    v = sorted(values)
    return round(v[min(len(v) - 1, round(q * (len(v) - 1)))], 1)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def disk_bytes(path: Path) -> int:
    """Bytes allocated on disk under `path` (as du counts them)."""
    if not path.exists():
        return 0
    if path.is_file():
        return path.stat().st_blocks * 512
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(dirpath, f)).st_blocks * 512
            except OSError:
                pass
    return total


def mb(n: float) -> float:
    return round(n / 1e6, 1)


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (kB) of a process and its children summed."""
    pids = [pid]
    try:
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    stat = Path(f"/proc/{entry}/stat").read_text()
                except OSError:
                    continue
                if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                    pids.append(int(entry))
    except OSError:
        pass
    out = {"VmRSS": 0, "VmHWM": 0}
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                key = line.split(":", 1)[0]
                if key in out:
                    out[key] += int(line.split()[1])
        except OSError:
            pass
    return out


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=20)


class Phases:
    """An ingest progress listener that records when each phase starts."""

    def __init__(self) -> None:
        self.marks: list[tuple[str, float]] = [("scan", time.perf_counter())]

    def start(self, phase: str, total: int) -> None:
        name = {"Reading documents": "reading", "Embedding": "embedding", "Indexing": "indexing"}.get(phase, phase)
        self.marks.append((name, time.perf_counter()))

    def advance(self, n: int = 1) -> None:
        if self.marks[-1][0] == "indexing":  # its one step is done: commit and cleanup follow
            self.marks.append(("publish", time.perf_counter()))

    def split(self, end: float) -> dict[str, float]:
        bounds = [t for _, t in self.marks[1:]] + [end]
        return {name: round(b - t, 2) for (name, t), b in zip(self.marks, bounds, strict=True)}


# -- corpora ---------------------------------------------------------------------------------
def inventory() -> dict[str, dict[str, Any]]:
    """Each source law: its path, clause and chunk counts and the texts the ingest embeds."""
    from assistant.config import load_settings
    from ingest.chunking import chunk_clause
    from ingest.loaders import load_file
    from ingest.pipeline import embed_text, file_limits
    from ingest.structure import parse_clauses

    limits = file_limits(load_settings())
    files: dict[str, dict[str, Any]] = {}
    for folder, tag in ((STARD / "laws", "stard"), (LABOUR, "labour")):
        for path in sorted(folder.glob("*.md")):
            doc = load_file(path, folder, limits=limits)
            clauses = parse_clauses(doc)
            chunks = [ch for c in clauses for ch in chunk_clause(c)]
            files[path.name] = {"path": path, "origin": tag, "clauses": len(clauses), "chunks": len(chunks),
                                "texts": [embed_text(ch) for ch in chunks]}
    return files


def plan_corpus(files: dict[str, dict[str, Any]], size: int) -> list[tuple[str, str]]:
    """(relative path in the synthetic rulebook, source file name) until `size` clauses."""
    if size <= sum(files[n]["clauses"] for n in SMALL_SET):
        out, total = [], 0
        for name in SMALL_SET:
            if total >= size:
                break
            out.append((f"unit-000/{name}", name))
            total += files[name]["clauses"]
        return out
    names = sorted(files)
    out, total, unit = [], 0, 0
    while total < size:
        order = names[:]
        random.Random(unit).shuffle(order)
        for i, name in enumerate(order):
            if total >= size:
                break
            out.append((f"unit-{unit:03d}/part-{i:02d}-{name}", name))
            total += files[name]["clauses"]
        unit += 1
    return out


def write_corpus(files: dict[str, dict[str, Any]], plan: list[tuple[str, str]], folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)
    for rel, name in plan:
        dest = folder / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(files[name]["path"], dest)


def edit_one_file(folder: Path, plan: list[tuple[str, str]], n: int) -> str:
    """Change one clause of the n-th file a little (what a routine rule change looks like)."""
    rel = plan[n % len(plan)][0]
    path = folder / rel
    text = path.read_text(encoding="utf-8")
    marker = "。"
    at = text.find(marker, len(text) // 3)  # an article in the body, not the preamble
    path.write_text(text[:at] + f"（第{n + 1}次修订）" + text[at:], encoding="utf-8")
    return rel


# -- embedding -------------------------------------------------------------------------------
def model_name() -> str:
    from assistant.config import load_settings
    from ingest.pipeline import embedder_name

    return embedder_name(load_settings().embedding)


def bare_throughput(texts: list[str], sample: int) -> dict[str, Any]:
    """Chunks per second of the configured embedder alone, in batches of 16 as the ingest does."""
    from assistant.config import load_settings
    from assistant.embeddings import make_embedder

    chosen = random.Random(7).sample(texts, min(sample, len(texts)))
    t = time.perf_counter()
    embedder = make_embedder(load_settings().embedding)
    load_s = time.perf_counter() - t
    t = time.perf_counter()
    for i in range(0, len(chosen), 16):
        embedder.embed_array(chosen[i:i + 16])
    s = time.perf_counter() - t
    return {"chunks": len(chosen), "chars": sum(map(len, chosen)), "seconds": round(s, 1),
            "model_load_s": round(load_s, 1), "chunks_per_s": round(len(chosen) / s, 2),
            "chars_per_s": round(sum(map(len, chosen)) / s)}


def prepare_seed(seed: Path, source: Path, texts: list[str]) -> dict[str, Any]:
    """A cache holding a vector for every distinct text: a copy of `source` (opened read-only)
    plus the texts it lacks, embedded once here."""
    from assistant.config import load_settings
    from assistant.embeddings import EmbeddingCache, make_embedder

    if not seed.exists():
        seed.parent.mkdir(parents=True, exist_ok=True)
        if source.exists():
            src = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
            dst = sqlite3.connect(seed)
            src.backup(dst)
            dst.close()
            src.close()
    unique = list(dict.fromkeys(texts))
    cache = EmbeddingCache(seed)
    t = time.perf_counter()
    try:
        _vectors, embedded = cache.embed(model_name(), unique, load=lambda: make_embedder(load_settings().embedding))
    finally:
        cache.close()
    return {"distinct_texts": len(unique), "already_cached": len(unique) - embedded, "embedded_now": embedded,
            "seconds": round(time.perf_counter() - t, 1)}


# -- measurements ----------------------------------------------------------------------------
def ingest_in_process(rules: Path, data: Path, chroma_url: str | None) -> dict[str, Any]:
    from assistant.config import load_settings
    from ingest.pipeline import ingest

    settings = load_settings(data_dir=data, chroma_url=chroma_url)
    phases = Phases()
    t = time.perf_counter()
    report = ingest(rules, settings, progress=phases)
    end = time.perf_counter()
    gc.collect()
    return {"seconds": round(end - t, 2), "phases_s": phases.split(end), "documents": report.documents,
            "clauses": report.clauses, "chunks": report.chunks, "embedded": report.embedded,
            "changed_files": len(report.added) + len(report.updated), "generation": report.generation}


def ingest_cli(rules: Path, data: Path, env: dict[str, str]) -> dict[str, Any]:
    t = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "assistant.adapters.cli", "ingest", str(rules),
                          "--data-dir", str(data), "--json"], cwd=ROOT, capture_output=True, text=True,
                         check=True, env=env, timeout=SUBPROCESS_TIMEOUT)
    wall = time.perf_counter() - t
    rep = json.loads(out.stdout)
    return {"wall_s": round(wall, 2), "ingest_s": round(rep["seconds"], 2), "embedded": rep["embedded"],
            "changed_files": len(rep["added"]) + len(rep["updated"]), "chunks": rep["chunks"]}


def disk(data: Path, chroma_path: Path | None) -> dict[str, Any]:
    gens = data / "generations"
    per_gen = {}
    if gens.exists():
        for g in sorted(gens.iterdir()):
            per_gen[g.name] = {"total_mb": mb(disk_bytes(g)), "index_sqlite_mb": mb(disk_bytes(g / "index.sqlite")),
                               "chroma_mb": mb(disk_bytes(g / "chroma"))}
    out = {"data_dir_mb": mb(disk_bytes(data)), "cache_sqlite_mb": mb(disk_bytes(data / "cache.sqlite")),
           "generations": per_gen}
    if chroma_path is not None:
        out["chroma_server_mb"] = mb(disk_bytes(chroma_path))
    return out


def latency(data: Path, chroma_url: str | None, questions: list[str], profile: int) -> dict[str, Any]:
    from assistant.config import load_settings
    from assistant.core import build_assistant

    settings = load_settings(data_dir=data, chroma_url=chroma_url)
    t = time.perf_counter()
    assistant = build_assistant(settings)
    build_s = time.perf_counter() - t
    t = time.perf_counter()
    assistant.answer("预热")  # loads the index: tokenising every clause, BM25, the vector store
    load_s = time.perf_counter() - t
    searcher = assistant._current().searcher
    original = searcher.search
    calls: list[dict[str, float]] = []

    def timed_search(question: str, k: int = 10):  # type: ignore[no-untyped-def]
        result = original(question, k)
        calls.append(result.timings_ms)
        return result

    searcher.search = timed_search  # type: ignore[method-assign]
    totals, split = [], {"retrieve": [], "answer": [], "bm25": [], "vector": [], "fuse": []}
    grounded = 0
    for q in questions:
        calls.clear()
        a = assistant.answer(q)
        grounded += a.grounded
        totals.append(a.timings_ms["total"])
        split["retrieve"].append(a.timings_ms["retrieve"])
        split["answer"].append(a.timings_ms["answer"])
        for key in ("bm25", "vector", "fuse"):
            split[key].append(sum(c.get(key, 0.0) for c in calls))
    out: dict[str, Any] = {
        "questions": len(questions), "grounded": grounded, "assistant_build_s": round(build_s, 1),
        "index_load_s": round(load_s, 1), "p50_ms": pct(totals, 0.5), "p95_ms": pct(totals, 0.95),
        "max_ms": pct(totals, 1.0),
        "split_p50_ms": {k: pct(v, 0.5) for k, v in split.items()},
        "split_p95_ms": {k: pct(v, 0.95) for k, v in split.items()},
    }
    # The vector query alone (Chroma, 1000 candidates), apart from embedding the question.
    qvecs = [assistant.embedder.query_array(q) for q in questions[:20]]
    t_embed = []
    for q in questions[:20]:
        t = time.perf_counter()
        assistant.embedder.query_array(q)
        t_embed.append((time.perf_counter() - t) * 1000)
    from assistant.retrieval import VECTOR_CANDIDATES

    t_query = []
    for v in qvecs:
        t = time.perf_counter()
        searcher.snapshot.vectors.query(v, VECTOR_CANDIDATES)
        t_query.append((time.perf_counter() - t) * 1000)
    out["query_embedding_p50_ms"] = pct(t_embed, 0.5)
    out["chroma_query_p50_ms"] = pct(t_query, 0.5)
    out["chroma_query_p95_ms"] = pct(t_query, 0.95)
    if profile:
        prof = cProfile.Profile()
        prof.enable()
        for q in questions[:profile]:
            assistant.answer(q)
        prof.disable()
        buf = io.StringIO()
        stats = pstats.Stats(prof, stream=buf)
        rows = []
        for (file, line, func), (_cc, nc, tt, ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
            rows.append({"function": f"{Path(file).name}:{line}({func})", "calls": nc,
                         "tottime_ms_per_answer": round(tt * 1000 / profile, 1),
                         "cumtime_ms_per_answer": round(ct * 1000 / profile, 1)})
        rows.sort(key=lambda r: -r["tottime_ms_per_answer"])
        out["profile_top_tottime"] = rows[:15]
    searcher.search = original  # type: ignore[method-assign]
    assistant.close()
    del assistant, searcher
    gc.collect()
    return out


def serve_rss(data: Path, env: dict[str, str], questions: list[str], work: Path) -> dict[str, Any]:
    import httpx

    port = free_port()
    log = open(work / f"serve-{port}.log", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen([sys.executable, "-m", "assistant.adapters.cli", "serve", "--data-dir", str(data),
                             "--host", "127.0.0.1", "--port", str(port)], cwd=ROOT, env=env,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        t = time.perf_counter()
        deadline = time.monotonic() + 1200
        ready = False
        with httpx.Client(timeout=600) as http:
            while time.monotonic() < deadline and proc.poll() is None:
                try:
                    if http.get(f"{base}/readyz").status_code == 200:
                        ready = True
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.5)
            ready_s = time.perf_counter() - t
            if not ready:
                return {"error": "server did not become ready", "ready_s": round(ready_s, 1)}
            rss_ready = proc_status(proc.pid)
            http.post(f"{base}/v1/ask", json={"question": "预热"})
            lat, errors = [], 0
            for q in questions:
                t = time.perf_counter()
                r = http.post(f"{base}/v1/ask", json={"question": q})
                lat.append((time.perf_counter() - t) * 1000)
                errors += r.status_code != 200
            st = proc_status(proc.pid)
        return {"ready_s": round(ready_s, 1), "rss_ready_mb": round(rss_ready["VmRSS"] / 1024, 1),
                "rss_mb": round(st["VmRSS"] / 1024, 1), "hwm_mb": round(st["VmHWM"] / 1024, 1),
                "http_questions": len(questions), "http_errors": errors,
                "http_p50_ms": pct(lat, 0.5), "http_p95_ms": pct(lat, 0.95)}
    finally:
        stop(proc)
        log.close()


@contextmanager
def chroma_server(path: Path, work: Path):  # type: ignore[no-untyped-def]
    import httpx

    exe = Path(sys.executable).with_name("chroma")
    port = free_port()
    path.mkdir(parents=True, exist_ok=True)
    log = open(work / f"chroma-{port}.log", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen([str(exe), "run", "--path", str(path), "--host", "127.0.0.1", "--port", str(port)],
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/api/v2/heartbeat", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.3)
        else:
            raise RuntimeError("chroma server did not start")
        yield url, proc
    finally:
        stop(proc)
        log.close()


def measure(size: int, mode: str, files: dict[str, dict[str, Any]], questions: list[str], args: argparse.Namespace,
            work: Path, seed: Path, throughput: dict[str, Any], profile: int) -> dict[str, Any]:
    plan = plan_corpus(files, size)
    rules = work / "corpora" / f"{size}-{mode}"
    write_corpus(files, plan, rules)
    data = work / "data" / f"{size}-{mode}"
    shutil.rmtree(data, ignore_errors=True)
    data.mkdir(parents=True)
    shutil.copyfile(seed, data / "cache.sqlite")
    chroma_path = work / "chroma" / f"{size}" if mode == "server" else None
    if chroma_path is not None:
        shutil.rmtree(chroma_path, ignore_errors=True)
    env = {**os.environ, "RULEBOOK_RATE_LIMIT_PER_MINUTE": "0"}
    env.pop("RULEBOOK_CHROMA_URL", None)
    res: dict[str, Any] = {"size": size, "mode": mode, "files": len(plan),
                           "units": len({rel.split("/")[0] for rel, _ in plan})}
    distinct = {t for _, name in plan for t in files[name]["texts"]}
    res["distinct_chunk_texts"] = len(distinct)

    def run_all(chroma_url: str | None, chroma_proc: subprocess.Popen | None) -> None:
        if chroma_url:
            env["RULEBOOK_CHROMA_URL"] = chroma_url
        print(f"[{size} {mode}] ingest with cached vectors ({len(plan)} files)", flush=True)
        res["ingest"] = ingest_in_process(rules, data, chroma_url)
        res["clauses"], res["chunks"] = res["ingest"]["clauses"], res["ingest"]["chunks"]
        res["disk_after_first"] = disk(data, chroma_path)
        print(f"[{size} {mode}] one-file-changed re-ingest", flush=True)
        res["edited_cli"] = edit_one_file(rules, plan, 0)
        res["reingest_cli"] = ingest_cli(rules, data, env)
        res["edited_in_process"] = edit_one_file(rules, plan, 1)
        res["reingest_in_process"] = ingest_in_process(rules, data, chroma_url)
        res["disk"] = disk(data, chroma_path)
        print(f"[{size} {mode}] answer latency", flush=True)
        res["latency"] = latency(data, chroma_url, questions, profile)
        print(f"[{size} {mode}] serving process", flush=True)
        res["serve"] = serve_rss(data, env, questions[: args.http_questions], work)
        if chroma_proc is not None:
            st = proc_status(chroma_proc.pid)
            res["chroma_server_rss_mb"] = round(st["VmRSS"] / 1024, 1)
            res["chroma_server_hwm_mb"] = round(st["VmHWM"] / 1024, 1)

    if chroma_path is not None:
        with chroma_server(chroma_path, work) as (url, proc):
            run_all(url, proc)
    else:
        run_all(None, None)

    if mode == "embedded" and size == min(args.sizes):
        res["cold"] = cold_ingest(rules.parent / f"{size}-cold", data.parent / f"{size}-cold", files, plan,
                                  throughput, args.cold_limit_min)
    shutil.rmtree(rules, ignore_errors=True)
    if not args.keep:
        shutil.rmtree(data, ignore_errors=True)
        if chroma_path is not None:
            shutil.rmtree(chroma_path, ignore_errors=True)
    return res


def cold_ingest(rules: Path, data: Path, files: dict[str, dict[str, Any]], plan: list[tuple[str, str]],
                throughput: dict[str, Any], limit_min: float) -> dict[str, Any]:
    """Ingest with an empty embedding cache when the estimate fits the limit, else estimate it."""
    distinct = len({t for _, name in plan for t in files[name]["texts"]})
    bare_s = distinct / throughput["chunks_per_s"]
    out: dict[str, Any] = {"distinct_chunk_texts": distinct, "bare_embedding_s_estimate": round(bare_s, 1)}
    if bare_s > limit_min * 60:
        out.update(measured=False, seconds_estimate=round(bare_s, 1),
                   note=f"not run: bare embedding alone would take ~{bare_s / 60:.0f} min")
        return out
    print(f"[cold] ingest with an empty cache (~{bare_s / 60:.1f} min of embedding expected)", flush=True)
    write_corpus(files, plan, rules)
    shutil.rmtree(data, ignore_errors=True)
    try:
        rep = ingest_in_process(rules, data, None)
    finally:
        shutil.rmtree(rules, ignore_errors=True)
    shutil.rmtree(data, ignore_errors=True)
    out.update(measured=True, seconds=rep["seconds"], phases_s=rep["phases_s"], embedded=rep["embedded"],
               chunks=rep["chunks"], ratio_to_bare_embedding=round(rep["seconds"] / bare_s, 2))
    return out


# -- targets, output -------------------------------------------------------------------------
def nearest(results: list[dict[str, Any]], size: int) -> dict[str, Any] | None:
    rows = [r for r in results if r["mode"] == "embedded" and abs(r["clauses"] - size) / size < 0.2]
    return rows[0] if rows else None


def targets(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    r10, r100 = nearest(results, 10_000), nearest(results, 100_000)
    checks = [
        ("10k: one-file-changed re-ingest (CLI wall time) < 10 s", r10, "reingest_cli.wall_s",
         TARGETS["reingest_10k_s"]),
        ("10k: answer p95 < 150 ms", r10, "latency.p95_ms", TARGETS["p95_10k_ms"]),
        ("100k: answer p95 < 300 ms", r100, "latency.p95_ms", TARGETS["p95_100k_ms"]),
        ("100k: serving RSS < 2 GB", r100, "serve.rss_mb", TARGETS["rss_100k_mb"]),
    ]
    for label, row, key, limit in checks:
        value = None
        if row is not None:
            value = row
            for part in key.split("."):
                value = value.get(part) if isinstance(value, dict) else None
        out.append({"target": label, "value": value, "limit": limit,
                    "status": "not measured" if value is None else ("met" if value < limit else "missed")})
    return out


def table(results: list[dict[str, Any]]) -> str:
    head = ("| clauses | chunks | Chroma | ingest (cached vectors) s | embedded | re-ingest 1 file: CLI s "
            "(indexing s) | answer p50 / p95 ms | BM25 / vector / fuse p50 ms | index load s | serve RSS MB "
            "| disk MB (per generation) |")
    lines = [head, "|" + "---:|" * 2 + "---|" + "---:|" * 8]
    for r in results:
        lat, srv, d = r["latency"], r["serve"], r["disk"]
        gens = list(d["generations"].values())
        per_gen = gens[-1]["total_mb"] if gens else 0
        sp = lat["split_p50_ms"]
        chroma = "server" if r["mode"] == "server" else "embedded"
        disk_cell = f"{d['data_dir_mb']} ({per_gen})"
        if r["mode"] == "server":
            disk_cell += f" + server {d.get('chroma_server_mb')}"
        rss = f"{srv.get('rss_mb')}"
        if r.get("chroma_server_rss_mb"):
            rss += f" + chroma {r['chroma_server_rss_mb']}"
        lines.append(
            f"| {r['clauses']:,} | {r['chunks']:,} | {chroma} | {r['ingest']['seconds']} | {r['ingest']['embedded']} "
            f"| {r['reingest_cli']['wall_s']} ({r['reingest_in_process']['phases_s'].get('indexing')}) "
            f"| {lat['p50_ms']} / {lat['p95_ms']} | {sp['bm25']} / {sp['vector']} / {sp['fuse']} "
            f"| {lat['index_load_s']} | {rss} | {disk_cell} |")
    return "\n".join(lines)


def svg_plot(results: list[dict[str, Any]], variants: dict[str, Any] | None = None) -> str:
    """Answer p50/p95 and serving RSS against clause count (log x), two panels, hand-written SVG."""
    import math

    rows = sorted((r for r in results if r["mode"] == "embedded"), key=lambda r: r["clauses"])
    srv = sorted((r for r in results if r["mode"] == "server"), key=lambda r: r["clauses"])
    w, ph, m, gap = 600, 210, 60, 40
    h = 2 * ph + gap + 70
    x0, x1 = 2.8, 5.2

    def px(n: float) -> float:
        return m + (math.log10(n) - x0) / (x1 - x0) * (w - 2 * m)

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" '
             f'font-size="12"><rect width="{w}" height="{h}" fill="white"/>',
             f'<text x="{w / 2}" y="18" text-anchor="middle" font-size="14">rulebook at scale: one 2-core machine'
             f'</text>']

    def panel(top: float, title: str, series: list[tuple[list[tuple[float, float]], str, str, bool]],
              ymax: float, unit: str, limits: list[tuple[float, float, str]]) -> None:
        bottom = top + ph

        def py(y: float) -> float:
            return bottom - y / ymax * ph

        parts.append(f'<text x="{m}" y="{top - 8}" font-size="13">{title}</text>')
        for i in range(5):
            y = ymax * i / 4
            parts.append(f'<line x1="{m}" x2="{w - m}" y1="{py(y):.1f}" y2="{py(y):.1f}" stroke="#eee"/>'
                         f'<text x="{m - 6}" y="{py(y) + 4:.1f}" text-anchor="end">{y:.0f}</text>')
        for n, label in ((1000, "1k"), (10_000, "10k"), (100_000, "100k")):
            parts.append(f'<line x1="{px(n):.1f}" x2="{px(n):.1f}" y1="{top}" y2="{bottom}" stroke="#eee"/>'
                         f'<text x="{px(n):.1f}" y="{bottom + 16}" text-anchor="middle">{label}</text>')
        parts.append(f'<line x1="{m}" x2="{w - m}" y1="{bottom}" y2="{bottom}" stroke="black"/>'
                     f'<line x1="{m}" x2="{m}" y1="{top}" y2="{bottom}" stroke="black"/>'
                     f'<text x="16" y="{(top + bottom) / 2}" transform="rotate(-90 16 {(top + bottom) / 2})" '
                     f'text-anchor="middle">{unit}</text>')
        for n, y, label in limits:
            parts.append(f'<line x1="{px(n) - 18:.1f}" x2="{px(n) + 18:.1f}" y1="{py(y):.1f}" y2="{py(y):.1f}" '
                         f'stroke="black" stroke-dasharray="4 3"/><text x="{px(n) + 22:.1f}" y="{py(y) + 4:.1f}">'
                         f'{label}</text>')
        for i, (pts, color, label, dashed) in enumerate(series):
            if not pts:
                continue
            dash = ' stroke-dasharray="6 4"' if dashed else ""
            coords = " ".join(f"{px(n):.1f},{py(y):.1f}" for n, y in pts)
            parts.append(f'<polyline fill="none" stroke="{color}" stroke-width="2"{dash} points="{coords}"/>')
            for n, y in pts:
                parts.append(f'<circle cx="{px(n):.1f}" cy="{py(y):.1f}" r="3" fill="{color}"/>')
            ly = top + 14 + 15 * i
            parts.append(f'<line x1="{m + 10}" x2="{m + 28}" y1="{ly - 4}" y2="{ly - 4}" stroke="{color}" '
                         f'stroke-width="2"{dash}/><text x="{m + 34}" y="{ly}">{label}</text>')

    def pts(rs: list[dict[str, Any]], *keys: str) -> list[tuple[float, float]]:
        out = []
        for r in rs:
            v: Any = r
            for k in keys:
                v = v.get(k) if isinstance(v, dict) else None
            if v is not None:
                out.append((r["clauses"], float(v)))
        return out

    lat_series = [(pts(rows, "latency", "p50_ms"), "#1f77b4", "answer p50 (embedded Chroma)", False),
                  (pts(rows, "latency", "p95_ms"), "#d62728", "answer p95 (embedded Chroma)", False),
                  (pts(srv, "latency", "p95_ms"), "#d62728", "answer p95 (Chroma server)", True)]
    for name, v in (variants or {}).items():
        vrows = sorted((r for r in v["results"] if r["mode"] == "embedded"), key=lambda r: r["clauses"])
        lat_series.append((pts(vrows, "latency", "p95_ms"), "#ff7f0e", f"answer p95, {' '.join(v['env']) or name}",
                           False))
    ymax = max([y for s in lat_series for _, y in s[0]] + [300.0]) * 1.15
    panel(50, "answer latency, in process (ms)", lat_series, ymax, "ms",
          [(10_000, 150, "target p95 150"), (100_000, 300, "target p95 300")])
    rss_series = [(pts(rows, "serve", "rss_mb"), "#2ca02c", "serving process RSS (embedded Chroma)", False),
                  (pts(srv, "serve", "rss_mb"), "#2ca02c", "serving process RSS (Chroma server, without it)", True)]
    ymax = max([y for s in rss_series for _, y in s[0]] + [2048.0]) * 1.15
    panel(50 + ph + gap + 10, "memory of `rulebook serve` after 20 questions (MB)", rss_series, ymax, "MB",
          [(100_000, 2048, "target 2 GB")])
    parts.append(f'<text x="{w / 2}" y="{h - 8}" text-anchor="middle">clauses in the rulebook (log scale)</text>')
    parts.append("</svg>")
    return "\n".join(parts)


def load_questions(limit: int) -> list[str]:
    """STARD dev questions whose answering articles all lie in the ~1k-clause rulebook, in file order
    (every larger rulebook holds those statutes too)."""
    out = []
    for line in (STARD / "dev.jsonl").read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        case = json.loads(line)
        if all(e["source"] in SMALL_SET for e in case.get("expected", [])) and case.get("expected"):
            out.append(case["question"])
    step = max(1, len(out) // limit)
    return out[::step][:limit]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="1000,10000,100000", help="clause counts, comma-separated")
    ap.add_argument("--server-sizes", default="1000,10000", help="sizes also measured with a Chroma server")
    ap.add_argument("--work", type=Path, help="where corpora and data dirs go (default: a temporary folder)")
    ap.add_argument("--questions", type=int, default=50)
    ap.add_argument("--http-questions", type=int, default=20)
    ap.add_argument("--embed-sample", type=int, default=200)
    ap.add_argument("--cold-limit-min", type=float, default=15.0)
    ap.add_argument("--profile", type=int, default=10, help="answers profiled with cProfile at the largest size")
    ap.add_argument("--keep", action="store_true", help="keep the data dirs under --work")
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--svg", type=Path, default=SVG)
    ap.add_argument("--plot-only", action="store_true", help="redraw the SVG from --out")
    ap.add_argument("--set-env", action="append", default=[], metavar="KEY=VALUE",
                    help="set before anything loads (inherited by the processes started), e.g. "
                         "OMP_WAIT_POLICY=passive for the embedder's OpenMP threads")
    ap.add_argument("--variant", help="store this run under `variants` of --out, beside the main results")
    args = ap.parse_args(argv)
    for item in args.set_env:
        key, _, value = item.partition("=")
        os.environ[key] = value
    if args.plot_only:
        saved = json.loads(args.out.read_text(encoding="utf-8"))
        args.svg.write_text(svg_plot(saved["results"], saved.get("variants", {})) + "\n", encoding="utf-8")
        print(table(saved["results"]))
        for name, v in saved.get("variants", {}).items():
            print(f"\n{name} ({' '.join(v['env'])}):")
            print(table(v["results"]))
        return 0
    args.sizes = sorted(int(s) for s in args.sizes.split(",") if s.strip())
    server_sizes = {int(s) for s in args.server_sizes.split(",") if s.strip()}
    if not (STARD / "laws").is_dir() or not LABOUR.is_dir():
        print(f"{STARD / 'laws'} or {LABOUR} not found", file=sys.stderr)
        return 2
    import logging

    logging.getLogger("chromadb").setLevel(logging.ERROR)
    tmp = None
    if args.work is None:
        tmp = tempfile.TemporaryDirectory(prefix="rulebook-scale-")
        work = Path(tmp.name)
    else:
        work = args.work.resolve()
        if work.is_relative_to(ROOT):
            print("--work must be outside the repository", file=sys.stderr)
            return 2
        work.mkdir(parents=True, exist_ok=True)
    started = time.time()
    try:
        files = inventory()
        small_texts = [t for n in SMALL_SET for t in files[n]["texts"]]
        print(f"bare embedding of {args.embed_sample} chunk texts", flush=True)
        throughput = bare_throughput(small_texts, args.embed_sample)
        print(f"  {throughput}", flush=True)
        seed = work / "seed-cache.sqlite"
        print("seed cache: the STARD index's cache plus any text it lacks", flush=True)
        seed_report = prepare_seed(seed, SEED_CACHE, [t for f in files.values() for t in f["texts"]])
        print(f"  {seed_report}", flush=True)
        questions = load_questions(args.questions)
        results = []
        for size in args.sizes:
            for mode in ("embedded", "server") if size in server_sizes else ("embedded",):
                profile = args.profile if size == max(args.sizes) and mode == "embedded" else 0
                r = measure(size, mode, files, questions, args, work, seed, throughput, profile)
                results.append(r)
                print(json.dumps({k: v for k, v in r.items() if k != "latency"}, ensure_ascii=False), flush=True)
                print(json.dumps(r["latency"], ensure_ascii=False)[:2000], flush=True)
                # Save as we go: a later size may run out of time.
                save(args, results, throughput, seed_report, questions, started)
    finally:
        if tmp is not None:
            tmp.cleanup()
    print(table(results))
    for t in targets(results):
        print(f"{t['status']:<13} {t['target']}: {t['value']}")
    return 0


def save(args: argparse.Namespace, results: list[dict[str, Any]], throughput: dict[str, Any],
         seed_report: dict[str, Any], questions: list[str], started: float) -> None:
    if args.variant:
        doc = json.loads(args.out.read_text(encoding="utf-8")) if args.out.exists() else {"results": []}
        doc.setdefault("variants", {})[args.variant] = {
            "measured": time.strftime("%Y-%m-%d"), "env": args.set_env, "bare_embedding": throughput,
            "run_minutes": round((time.time() - started) / 60, 1), "targets": targets(results), "results": results}
        args.out.write_text(json.dumps(doc, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
        args.svg.write_text(svg_plot(doc["results"], doc["variants"]) + "\n", encoding="utf-8")
        return
    doc = {
        "measured": time.strftime("%Y-%m-%d"), "machine": f"{os.cpu_count()} cores, shared with other work",
        "run_minutes": round((time.time() - started) / 60, 1),
        "embedder": model_name(), "bare_embedding": throughput, "seed_cache": seed_report,
        "questions": {"source": "STARD dev (answering articles inside the ~1k rulebook)", "count": len(questions),
                      "http": min(args.http_questions, len(questions))},
        "cached_vectors": "every ingest except `cold` starts from a cache holding a vector for each distinct "
                          "chunk text; `embedded` counts chunks the ingest had to embed",
        "targets": targets(results), "results": results,
    }
    if args.out.exists():  # keep variants measured earlier
        doc["variants"] = json.loads(args.out.read_text(encoding="utf-8")).get("variants", {})
    args.out.write_text(json.dumps(doc, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    args.svg.write_text(svg_plot(results, doc.get("variants")) + "\n", encoding="utf-8")


if __name__ == "__main__":
    raise SystemExit(main())
