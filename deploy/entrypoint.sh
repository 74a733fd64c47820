#!/bin/sh
# One entrypoint for every role of a rulebook deployment (the container image and compose.yaml use
# it; so can a plain machine or a process supervisor):
#   entrypoint.sh serve     the web API and chat page (RULEBOOK_WORKERS worker processes)
#   entrypoint.sh ingest    make the index mirror RULEBOOK_RULES_DIR once, then exit
#   entrypoint.sh chroma    a Chroma server on CHROMA_PORT with its data in CHROMA_PATH
#   entrypoint.sh slack | feishu | dingtalk    a chat channel's long-lived connection
# Settings come from RULEBOOK_* variables (README: Configuration). With RULEBOOK_CHROMA_URL set,
# every role but `chroma` waits until that server answers.
set -eu

PYTHON=${PYTHON:-python}
role=${1:-serve}
[ "$#" -gt 0 ] && shift

wait_for_chroma() {
    [ -n "${RULEBOOK_CHROMA_URL:-}" ] || return 0
    tries=0
    until "$PYTHON" -c "import sys, urllib.request; urllib.request.urlopen(sys.argv[1] + '/api/v2/heartbeat', timeout=2)" \
            "$RULEBOOK_CHROMA_URL" 2>/dev/null; do
        tries=$((tries + 1))
        if [ "$tries" -ge "${CHROMA_WAIT_SECONDS:-60}" ]; then
            echo "entrypoint: the Chroma server at $RULEBOOK_CHROMA_URL did not answer" >&2
            exit 1
        fi
        sleep 1
    done
}

case "$role" in
    serve)
        wait_for_chroma
        exec "$PYTHON" -m assistant.adapters.cli serve --host "${RULEBOOK_HOST:-0.0.0.0}" \
            --port "${RULEBOOK_PORT:-8000}" --workers "${RULEBOOK_WORKERS:-1}" "$@"
        ;;
    ingest)
        wait_for_chroma
        exec "$PYTHON" -m assistant.adapters.cli ingest "${RULEBOOK_RULES_DIR:-/rules}" "$@"
        ;;
    chroma)
        exec chroma run --path "${CHROMA_PATH:-/data/chroma}" --host "${CHROMA_HOST:-0.0.0.0}" \
            --port "${CHROMA_PORT:-8000}" "$@"
        ;;
    slack | feishu | dingtalk)
        wait_for_chroma
        exec "$PYTHON" -m assistant.adapters.cli "$role" "$@"
        ;;
    *)
        echo "entrypoint: unknown role '$role' (serve, ingest, chroma, slack, feishu, dingtalk)" >&2
        exit 2
        ;;
esac
