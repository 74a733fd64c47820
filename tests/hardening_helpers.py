"""Small helpers shared by the hardening and deployment tests."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (at the time of asking)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`rulebook serve` as a real process on a free 127.0.0.1 port."""

    def __init__(self, data_dir: Path, env: dict[str, str] | None = None, args: tuple[str, ...] = ()) -> None:
        self.port = free_port()
        self.root = f"http://127.0.0.1:{self.port}"
        full_env = {**os.environ, "RULEBOOK_RATE_LIMIT_PER_MINUTE": "0", **(env or {})}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "assistant.adapters.cli", "serve", "--data-dir", str(data_dir),
             "--port", str(self.port), *args],
            cwd=ROOT, env=full_env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(self.proc.stderr.read().decode() if self.proc.stderr else "server died")
            try:
                if self.get("/healthz")[0] == 200:
                    return
            except OSError:
                time.sleep(0.2)
        self.close()
        raise RuntimeError("server did not start in 90 s")

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, dict]:
        req = urllib.request.Request(self.root + path, data=body, method=method,
                                     headers={"Content-Type": "application/json", **(headers or {})})
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                return r.status, json.loads(r.read() or b"{}")
        except urllib.error.HTTPError as e:
            raw = e.read()
            try:
                return e.code, json.loads(raw or b"{}")
            except ValueError:
                return e.code, {"raw": raw.decode("utf-8", "replace")}

    def get(self, path: str) -> tuple[int, dict]:
        return self.request("GET", path)

    def ask(self, question: str, **extra: object) -> tuple[int, dict]:
        return self.request("POST", "/v1/ask", json.dumps({"question": question, **extra}).encode())

    def usage(self) -> tuple[int, int, float]:
        """(open descriptors, threads, RSS in MB) of the server process, from /proc."""
        pid = self.proc.pid
        fds = len(os.listdir(f"/proc/{pid}/fd"))
        status = Path(f"/proc/{pid}/status").read_text()
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        return fds, int(fields["Threads"]), int(fields["VmRSS"].split()[0]) / 1024

    def deleted_fds(self) -> int:
        pid = self.proc.pid
        n = 0
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                n += os.readlink(f"/proc/{pid}/fd/{fd}").endswith("(deleted)")
            except OSError:
                pass
        return n

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
