"""Dependency audit: every version pinned in constraints.txt against the OSV advisory database.

    python scripts/audit.py [constraints.txt]

Exit codes: 0 every pin was checked and none has a known advisory; 1 advisories found (listed);
2 the audit could not check (advisory service unreachable, an answer missing for some pin, a
constraints line it cannot read). "Could not check" is never reported as "nothing found".

AUDIT_OSV_URL points it at another OSV-compatible service (a mirror reachable from CI);
AUDIT_IGNORE takes comma-separated advisory ids that were reviewed and accepted.
"""

from __future__ import annotations

import json
import os
import re
import sys
import urllib.error
import urllib.request
from pathlib import Path

OSV_URL = "https://api.osv.dev/v1/querybatch"
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;#]+)")


def read_pins(path: Path) -> list[tuple[str, str]]:
    pins = []
    for n, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        m = PIN.match(line)
        if not m:
            raise ValueError(f"{path}:{n}: not an exact pin (NAME==VERSION): {raw!r}")
        pins.append((m.group(1), m.group(2)))
    return pins


def query(url: str, pins: list[tuple[str, str]], timeout: float = 30.0) -> list[list[str]]:
    """Advisory ids per pin, in order. Raises OSError/ValueError when the answer is not complete."""
    body = json.dumps({"queries": [{"package": {"name": name, "ecosystem": "PyPI"}, "version": version}
                                   for name, version in pins]}).encode()
    req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        data = json.loads(r.read())
    results = data.get("results")
    if not isinstance(results, list) or len(results) != len(pins):
        raise ValueError(f"the service answered for {len(results or [])} of {len(pins)} packages")
    if any(r.get("next_page_token") for r in results):
        raise ValueError("the service paged its answer; this audit does not follow pages")
    return [[v["id"] for v in r.get("vulns") or []] for r in results]


def main(argv: list[str]) -> int:
    path = Path(argv[1] if len(argv) > 1 else Path(__file__).resolve().parents[1] / "constraints.txt")
    url = os.environ.get("AUDIT_OSV_URL", OSV_URL)
    ignored = {x.strip() for x in os.environ.get("AUDIT_IGNORE", "").split(",") if x.strip()}
    try:
        pins = read_pins(path)
        if not pins:
            raise ValueError(f"{path} pins no package")
        found = query(url, pins)
    except (OSError, ValueError) as exc:  # URLError and timeouts are OSErrors
        print(f"audit FAILED: could not check {path.name} against {url}: {exc}", file=sys.stderr)
        print("Nothing was verified. Make the advisory service reachable (or set AUDIT_OSV_URL to a "
              "mirror) and run the audit again.", file=sys.stderr)
        return 2
    bad = [(name, version, [i for i in ids if i not in ignored]) for (name, version), ids in zip(pins, found,
                                                                                                strict=True)]
    bad = [b for b in bad if b[2]]
    for name, version, ids in bad:
        print(f"{name}=={version}: {', '.join(ids)}")
    if bad:
        print(f"audit: {len(bad)} of {len(pins)} pinned packages have known advisories", file=sys.stderr)
        return 1
    print(f"audit: {len(pins)} pinned packages checked against {url}; no known advisories")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
