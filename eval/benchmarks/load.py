"""Latency of POST /v1/ask under concurrent clients, against a real server on 127.0.0.1.

    python -m eval.benchmarks.load [--clients 8] [--seconds 30] [--rulebook examples/rulebook]

Starts `rulebook serve`'s app with uvicorn on a free loopback port (the sample rulebook indexed in
a temporary data dir, rate limit off), then runs N client threads asking the sample eval
questions in turn until the time is up. Traffic goes to 127.0.0.1 only and stops by itself.
Prints requests, errors (non-200 or transport failures), throughput and latency p50/p95/max.
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import tempfile
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(rulebook: Path, clients: int, seconds: float, work: Path) -> dict:
    import uvicorn

    from assistant.adapters.web import create_app
    from assistant.config import load_settings
    from ingest.pipeline import ingest

    settings = load_settings(data_dir=work / "data", rate_limit_per_minute=0)
    ingest(rulebook, settings)
    app = create_app(settings)
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    url = f"http://127.0.0.1:{port}/v1/ask"
    questions = [json.loads(x)["question"] for x in
                 (ROOT / "eval" / "cases" / "sample_rulebook.jsonl").read_text("utf-8").splitlines() if x.strip()]
    httpx.post(url, json={"question": "预热"}, timeout=60)

    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def client(n: int) -> None:
        with httpx.Client(timeout=30) as http:
            i = n
            while time.monotonic() < deadline:
                q = questions[i % len(questions)]
                i += clients
                t = time.perf_counter()
                try:
                    r = http.post(url, json={"question": q})
                    ok = r.status_code == 200
                    problem = "" if ok else f"HTTP {r.status_code}"
                except httpx.HTTPError as exc:
                    ok, problem = False, exc.__class__.__name__
                ms = (time.perf_counter() - t) * 1000
                with lock:
                    (latencies.append(ms) if ok else errors.append(problem))

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    server.should_exit = True
    thread.join(timeout=10)
    lat = sorted(latencies)
    return {
        "clients": clients, "seconds": round(elapsed, 1), "requests": len(lat) + len(errors),
        "errors": len(errors), "error_kinds": sorted(set(errors)),
        "throughput_rps": round(len(lat) / elapsed, 1),
        "p50_ms": round(statistics.median(lat), 1) if lat else None,
        "p95_ms": round(lat[min(len(lat) - 1, round(0.95 * (len(lat) - 1)))], 1) if lat else None,
        "max_ms": round(lat[-1], 1) if lat else None,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--rulebook", type=Path, default=ROOT / "examples" / "rulebook")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        result = run(args.rulebook, args.clients, min(args.seconds, 300.0), Path(tmp))
    for k, v in result.items():
        print(f"{k:<16} {v}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
