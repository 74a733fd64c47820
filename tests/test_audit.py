"""The dependency audit: it fails loudly when it cannot check, instead of reporting nothing found."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from .conftest import ROOT
from .hardening_helpers import free_port
from .loopback import LoopbackServer, QuietHandler

SCRIPT = ROOT / "scripts" / "audit.py"


class FakeOsv(LoopbackServer):
    """OSV's querybatch on 127.0.0.1: `vulnerable` maps package name → advisory ids."""

    def __init__(self, vulnerable: dict[str, list[str]], drop_last: bool = False) -> None:
        fake = self
        self.vulnerable, self.drop_last, self.queries = vulnerable, drop_last, []

        class Handler(QuietHandler):
            def do_POST(self) -> None:
                queries = json.loads(self.rfile.read(int(self.headers["content-length"])))["queries"]
                fake.queries.extend(queries)
                results = [{"vulns": [{"id": i} for i in fake.vulnerable.get(q["package"]["name"], [])]}
                           for q in queries]
                data = json.dumps({"results": results[:-1] if fake.drop_last else results}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        super().__init__(Handler)


def audit(url: str, constraints: Path = ROOT / "constraints.txt") -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), str(constraints)], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "AUDIT_OSV_URL": url})


def test_audit_checks_every_pin_and_reports_advisories() -> None:
    fake = FakeOsv({"aiohttp": ["GHSA-test-0001"]})
    try:
        r = audit(fake.root + "/v1/querybatch")
    finally:
        fake.close()
    pins = [line for line in (ROOT / "constraints.txt").read_text().splitlines() if "==" in line.split("#")[0]]
    assert len(fake.queries) == len(pins)
    assert r.returncode == 1 and "aiohttp==" in r.stdout and "GHSA-test-0001" in r.stdout


def test_audit_fails_loudly_when_it_cannot_check(tmp_path: Path) -> None:
    unreachable = audit(f"http://127.0.0.1:{free_port()}/v1/querybatch")
    assert unreachable.returncode == 2 and "could not check" in unreachable.stderr
    assert "no known" not in unreachable.stdout.lower()
    fake = FakeOsv({}, drop_last=True)
    try:
        incomplete = audit(fake.root + "/v1/querybatch")
        clean = FakeOsv({})
        try:
            ok = audit(clean.root + "/v1/querybatch")
        finally:
            clean.close()
    finally:
        fake.close()
    assert incomplete.returncode == 2 and "could not check" in incomplete.stderr
    assert ok.returncode == 0 and "no known advisories" in ok.stdout
    loose = tmp_path / "constraints.txt"
    loose.write_text("requests>=2\n")
    assert audit(clean.root, loose).returncode == 2
