"""`rulebook slack` as a real process over Socket Mode, against a local fake of Slack that speaks the
Socket Mode protocol (apps.connections.open, a websocket with hello, envelopes and acks) and the Web
API, while sharing one index with other processes through a real Chroma server: an ingest publishes
a new generation and the Slack worker answers from it without a restart."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from assistant.adapters.slack_blocks import answer_blocks, fallback_text

from .conftest import ROOT
from .slack_socket_fake import FakeSocketModeSlack, mention_envelope
from .test_server_mode import chroma_server, rulebook_ingest  # noqa: F401  (chroma_server is a fixture)

APP_TOKEN = "xapp-1-A1-1-socketmodetest"
BOT_TOKEN = "xoxb-socketmodetest"
QUESTION = "客户咨询多久内要答复？"
EDITED = "客户服务标准.md"
OLD = "一般咨询在24小时内答复"
NEW = "一般咨询在12小时内答复"
HEADING = "（一）咨询受理时限"
# bolt reads SLACK_BOT_TOKEN from the environment although the app is given a client built with it
EXPECTED_WARNINGS = ("As you gave `client` as well, `token` will be unused.",)
PROXY_VARIABLES = {"http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"}


@pytest.fixture
def fake() -> Iterator[FakeSocketModeSlack]:
    f = FakeSocketModeSlack()
    yield f
    f.close()


class SlackWorker:
    """`rulebook slack` as a real process; its stderr goes to a file (a pipe nobody reads could fill up)."""

    def __init__(self, data_dir: Path, env: dict[str, str], log_path: Path) -> None:
        self.log_path = log_path
        self._log = log_path.open("wb")
        base = {k: v for k, v in os.environ.items() if k not in PROXY_VARIABLES and not k.startswith("SLACK_")}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "assistant.adapters.cli", "slack", "--data-dir", str(data_dir)],
            cwd=ROOT, env={**base, **env}, stdout=subprocess.DEVNULL, stderr=self._log)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stderr(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def wait_logged(self, text: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.stderr():
            if time.monotonic() > deadline or not self.alive():
                raise AssertionError(f"the worker did not log {text!r}:\n{self.stderr()[-3000:]}")
            time.sleep(0.1)

    def close(self) -> None:
        if self.alive():
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._log.close()


def rulebook_ask(question: str, data_dir: Path, chroma_url: str) -> dict[str, Any]:
    r = subprocess.run([sys.executable, "-m", "assistant.adapters.cli", "ask", question, "--data-dir", str(data_dir),
                        "--json"], cwd=ROOT, env={**os.environ, "RULEBOOK_CHROMA_URL": chroma_url},
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def section_texts(blocks: list[dict[str, Any]]) -> str:
    return "\n".join(b["text"]["text"] for b in blocks if b["type"] == "section")


def answer_id_of(post: dict[str, Any]) -> str:
    (actions,) = [b for b in post["blocks"] if b["type"] == "actions"]
    return actions["elements"][0]["value"]


def check_reply(post: dict[str, Any], expected: dict[str, Any], ts: str) -> str:
    """The post answers in the question's thread with exactly what `rulebook ask` gives; its answer id."""
    assert expected["grounded"], expected
    assert post["channel"] == "C1" and post["thread_ts"] == ts, post
    answer_id = answer_id_of(post)
    assert post["blocks"] == answer_blocks(expected, answer_id)
    assert post["text"] == fallback_text(expected)
    return answer_id


@pytest.mark.slow
def test_slack_worker_over_socket_mode_follows_ingests_on_a_chroma_server(
        rulebook_copy: Path, warm_data_dir: Path, chroma_server: str,  # noqa: F811
        fake: FakeSocketModeSlack, tmp_path: Path) -> None:
    first = rulebook_ingest(rulebook_copy, warm_data_dir, chroma_server)
    worker = SlackWorker(warm_data_dir, {"SLACK_APP_TOKEN": APP_TOKEN, "SLACK_BOT_TOKEN": BOT_TOKEN,
                                         "RULEBOOK_SLACK_API_URL": fake.api_url,
                                         "RULEBOOK_CHROMA_URL": chroma_server, "RULEBOOK_LOG": "info"},
                         tmp_path / "slack-worker.log")
    try:
        before = rulebook_ask(QUESTION, warm_data_dir, chroma_server)  # while the worker starts
        (cited,) = before["citations"]
        assert cited["source"] == EDITED and cited["clause"] == HEADING and OLD in cited["quote"], cited

        # The worker asked for a websocket URL with the app token and connected to it, once.
        try:
            path = fake.wait_connected(timeout=120, alive=worker.alive)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\nworker stderr:\n{worker.stderr()[-3000:]}") from None
        assert path.startswith("/link/?ticket=")
        assert [a for n, a in fake.auth if n == "apps.connections.open"] == [f"Bearer {APP_TOKEN}"]

        # A mention is acked and answered in its thread with the cited clause, as `rulebook ask` answers.
        ts1 = "1700000000.000100"
        e1 = mention_envelope(QUESTION, ts1, "Ev0001")
        fake.push(e1)
        assert fake.wait_ack(e1["envelope_id"]) == {"envelope_id": e1["envelope_id"]}
        (post1,) = fake.wait_for("chat.postMessage", 1, timeout=90)
        id1 = check_reply(post1, before, ts1)
        texts = section_texts(post1["blocks"])
        assert "客户服务标准" in texts and HEADING in texts and f"> {OLD}" in texts
        fake.wait_for("reactions.remove", 1)
        working = {"channel": "C1", "timestamp": ts1, "name": "eyes"}
        for method in ("reactions.add", "reactions.remove"):
            assert [{k: p[k] for k in working} for p in fake.named(method)] == [working], method

        # Slack redelivers the event (same event id, new envelope): acked, not answered again.
        r1 = mention_envelope(QUESTION, ts1, "Ev0001", retry_attempt=1)
        fake.push(r1)
        assert fake.wait_ack(r1["envelope_id"]) == {"envelope_id": r1["envelope_id"]}
        worker.wait_logged("duplicate delivery of Ev0001 ignored")

        # Another process publishes a new generation: the clause now says 12 hours.
        edited = rulebook_copy / EDITED
        text = edited.read_text(encoding="utf-8")
        assert text.count(OLD) == 1
        edited.write_text(text.replace(OLD, NEW), encoding="utf-8")
        second = rulebook_ingest(rulebook_copy, warm_data_dir, chroma_server)
        assert second.updated == [EDITED] and second.generation != first.generation
        after = rulebook_ask(QUESTION, warm_data_dir, chroma_server)
        assert NEW in after["citations"][0]["quote"] and OLD not in json.dumps(after, ensure_ascii=False)

        # The running worker answers the next mention from it; a redelivery racing it is answered once.
        ts2 = "1700000100.000200"
        e2 = mention_envelope(QUESTION, ts2, "Ev0002")
        r2 = mention_envelope(QUESTION, ts2, "Ev0002", retry_attempt=1)
        fake.push(e2)
        fake.push(r2)
        for e in (e2, r2):
            assert fake.wait_ack(e["envelope_id"]) == {"envelope_id": e["envelope_id"]}
        fake.wait_for("chat.postMessage", 2, timeout=90)
        worker.wait_logged("duplicate delivery of Ev0002 ignored")
        fake.wait_for("reactions.remove", 2)
        post1_again, post2 = fake.named("chat.postMessage")
        assert post1_again == post1
        id2 = check_reply(post2, after, ts2)
        texts = section_texts(post2["blocks"])
        assert HEADING in texts and f"> {NEW}" in texts and OLD not in texts and "24小时内答复" not in post2["text"]
        assert id2 != id1
        assert second.generation in worker.stderr()  # it loaded the new generation ...
        assert worker.alive() and len(fake.connections) == 1  # ... without a restart or a reconnect

        # Every envelope acked exactly once; every Web API call made with the right token.
        assert sorted(a["envelope_id"] for a in fake.acks) == sorted(e["envelope_id"] for e in fake.pushed)
        assert all(a == (f"Bearer {APP_TOKEN}" if n == "apps.connections.open" else f"Bearer {BOT_TOKEN}")
                   for n, a in fake.auth), fake.auth
        assert {n for n, _ in fake.auth} == {"apps.connections.open", "auth.test", "reactions.add",
                                             "reactions.remove", "chat.postMessage"}
        assert len(fake.named("chat.postMessage")) == 2 and len(fake.named("reactions.add")) == 2
    finally:
        worker.close()

    log = worker.stderr()
    problems = [line for line in log.splitlines() if re.search(r" (WARNING|ERROR|CRITICAL) |Traceback", line)
                and not any(expected in line for expected in EXPECTED_WARNINGS)]
    assert not problems, log[-3000:]
