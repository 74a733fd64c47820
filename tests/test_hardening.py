"""Hardening: what an attacker, a careless upload and a long-running server must not be able to do."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ingest.pipeline import ingest

from .conftest import ROOT, make_settings
from .hardening_helpers import Server

# --- 2. a serving process does not grow with index switches ------------------------------------

@pytest.mark.slow
def test_server_resources_stay_flat_across_index_switches(rulebook_copy: Path, warm_data_dir: Path) -> None:
    settings = make_settings(warm_data_dir)
    ingest(rulebook_copy, settings)
    server = Server(warm_data_dir)
    edited = rulebook_copy / "客户服务标准.md"
    original = edited.read_text("utf-8")
    try:
        def switch(i: int) -> None:
            edited.write_text(original + f"\n第九十{i % 10}条 第{i}次修订的补充规定，自发布之日起施行。\n", "utf-8")
            assert ingest(rulebook_copy, settings).changed
            status, d = server.ask("客户咨询多久内要答复？")
            assert status == 200 and d["grounded"], d

        from assistant.core import RETIRE_AFTER_SECONDS

        def settled() -> tuple[int, int, float]:
            # Replaced generations are closed once nobody searches them and a newer one replaced
            # them too, or after a grace period: wait it out, so both ends are measured alike.
            time.sleep(RETIRE_AFTER_SECONDS + 0.5)
            assert server.ask("客户咨询多久内要答复？")[0] == 200
            return server.usage()

        for i in range(3):  # warm up: the first switches load lazily imported code and caches
            switch(i)
        before = settled()
        peak_fds = 0
        for i in range(3, 23):
            switch(i)
            peak_fds = max(peak_fds, server.usage()[0])
        after = settled()
        deleted = server.deleted_fds()
        print(f"\n20 index switches: fds {before[0]} -> {after[0]} (at most {peak_fds} while switching), "
              f"threads {before[1]} -> {after[1]}, RSS {before[2]:.0f} -> {after[2]:.0f} MB, "
              f"descriptors on deleted files {deleted}")
        assert after[0] - before[0] <= 5, (before, after)
        assert after[1] - before[1] <= 3, (before, after)
        # A burst of ingests keeps at most the current and the last replaced generation open (one
        # generation holds about ten descriptors); holding every one for the grace period grew the
        # process by ~3.5 MB per switch, most of which glibc never handed back.
        assert peak_fds - before[0] <= 30, (before, peak_fds)
        assert after[2] - before[2] <= 40, (before, after)
        assert deleted == 0
    finally:
        server.close()


def test_a_generation_being_searched_stays_open_through_a_burst_of_switches(
        rulebook_copy: Path, warm_data_dir: Path) -> None:
    from assistant.core import build_assistant

    settings = make_settings(warm_data_dir)
    ingest(rulebook_copy, settings)
    assistant = build_assistant(settings)
    edited = rulebook_copy / "客户服务标准.md"
    original = edited.read_text("utf-8")

    def switch(i: int) -> None:
        edited.write_text(original + f"\n第九十{i}条 第{i}次修订的补充规定，自发布之日起施行。\n", "utf-8")
        assert ingest(rulebook_copy, settings).changed

    try:
        middle = []
        for i in range(3):
            switch(i)
            middle.append(assistant._current())
        # A replaced generation nobody searches is closed as soon as a newer one is replaced too;
        # the last replaced one keeps its grace period, the current one stays open...
        assert middle[0].closed and not middle[1].closed and not middle[2].closed
        with assistant._searching() as held:  # ...and one a search holds is never closed
            for i in range(3, 5):  # (ingest keeps the last three generations on disk)
                switch(i)
                assistant._current()
            assert not held.closed
            assert held.searcher.search("客户咨询多久内要答复？", 5).hits
        assistant._current()
        assert held.closed
        assert assistant.answer("客户咨询多久内要答复？").grounded
    finally:
        assistant.close()


# --- 1. links are never followed ----------------------------------------------------------------

def test_symlinks_are_not_followed_and_are_reported(tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "考勤.md").write_text("# 考勤制度\n第一条 员工应当在每月5日前确认上月考勤。\n", "utf-8")
    secret = tmp_path / "outside"
    secret.mkdir()
    (secret / "passwd.txt").write_text("root:x:0:0:root:/root:/bin/bash\nwww-data:x:33:33:www-data\n", "utf-8")
    (rules / "rules.txt").symlink_to(secret / "passwd.txt")
    (rules / "linked").symlink_to(secret, target_is_directory=True)
    (rules / "dangling.md").symlink_to(tmp_path / "nowhere.md")
    report = ingest(rules, make_settings(tmp_path / "data"))
    reasons = {s["source"]: s["reason"] for s in report.skipped}
    assert report.added == ["考勤.md"]
    assert {"rules.txt", "linked", "dangling.md"} <= set(reasons)
    assert all("symbolic link" in reasons[k] for k in ("rules.txt", "linked", "dangling.md"))
    from assistant.store import Layout, read_documents

    layout = Layout(tmp_path / "data")
    name = layout.current()
    assert name is not None
    assert set(read_documents(layout.gen_dir(name) / "index.sqlite")) == {"考勤.md"}


def test_loader_refuses_a_file_swapped_for_a_link_after_the_scan(tmp_path: Path) -> None:
    from assistant.errors import UnsupportedFile
    from ingest.loaders import load_file

    (tmp_path / "target.txt").write_text("root:x:0:0:root:/root:/bin/bash\n", "utf-8")
    (tmp_path / "rules.txt").symlink_to(tmp_path / "target.txt")
    with pytest.raises(UnsupportedFile, match="symbolic link"):
        load_file(tmp_path / "rules.txt", tmp_path, 10**6)


# --- 8. surprises while the folder is scanned ---------------------------------------------------

def test_scan_reports_fifos_hidden_files_bad_names_and_survives_deep_trees(tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "考勤.md").write_text("# 考勤制度\n第一条 员工应当在每月5日前确认上月考勤。\n", "utf-8")
    os.mkfifo(rules / "pipe.md")
    (rules / ".hidden.md").write_text("# 隐藏\n第一条 不应被索引。\n", "utf-8")
    (rules / os.fsdecode(b"bad-\xff-name.md")).write_text("# x\n第一条 文件名不是UTF-8。\n", "utf-8")
    deep = rules
    for _ in range(1100):  # deeper than Python's recursion limit
        deep = deep / "d"
        deep.mkdir()
    (deep / "深处.md").write_text("# 深处规定\n第一条 深层文件也要被索引。\n", "utf-8")
    try:
        report = ingest(rules, make_settings(tmp_path / "data"))
    finally:  # shutil.rmtree (pytest's clean-up) recurses once per level: remove the tree here
        (deep / "深处.md").unlink()
        while deep != rules:
            deep.rmdir()
            deep = deep.parent
    reasons = {s["source"]: s["reason"] for s in report.skipped}
    assert "pipe" in reasons["pipe.md"]
    assert "hidden" in reasons[".hidden.md"]
    assert "UTF-8" in reasons["bad-\ufffd-name.md"]
    assert sorted(report.added) == sorted(["考勤.md", "/".join(["d"] * 1100) + "/深处.md"]), reasons
    json.dumps(report.to_dict())  # every reported name is printable


def test_a_file_removed_between_listing_and_hashing_is_reported(tmp_path: Path, monkeypatch) -> None:
    import ingest.pipeline as pipeline

    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "考勤.md").write_text("# 考勤制度\n第一条 员工应当在每月5日前确认上月考勤。\n", "utf-8")
    (rules / "gone.md").write_text("# 临时\n第一条 即将被删除。\n", "utf-8")
    real_scan = pipeline._scan

    def scan_then_delete(directory: Path):  # type: ignore[no-untyped-def]
        listed = real_scan(directory)
        (rules / "gone.md").unlink()  # another process removes the file right after the listing
        return listed

    monkeypatch.setattr(pipeline, "_scan", scan_then_delete)
    report = ingest(rules, make_settings(tmp_path / "data"))
    reasons = {s["source"]: s["reason"] for s in report.skipped}
    assert report.added == ["考勤.md"] and "could not be read" in reasons["gone.md"]


def test_one_invalid_utf8_sequence_is_replaced_and_reported(tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    text = "# 考勤制度\n第一条 员工应当在每月5日前确认上月考勤。\n第二条 迟到超过30分钟的，按半天事假处理。\n"
    data = text.encode("utf-8")
    at = len("# 考勤制度\n第一条 员工".encode())
    (rules / "考勤.md").write_bytes(data[:at] + b"\xff" + data[at:])
    report = ingest(rules, make_settings(tmp_path / "data"))
    assert report.added == ["考勤.md"], report.skipped
    (cut,) = report.cut
    assert cut["source"] == "考勤.md" and "1 invalid UTF-8" in cut["reason"]


# --- 3. pathological small files ----------------------------------------------------------------

def unpunctuated_html(n: int = 1_000_000) -> bytes:
    return ("<html><head><title>规定</title></head><body><p>" + "规则文本" * (n // 4) + "</p></body></html>").encode()


def empty_paragraph_docx(path: Path, n: int, text: str = "") -> None:
    """A real .docx (made by python-docx) whose body is `n` paragraphs holding `text` (none by
    default), each with a paragraph style: tiny compressed."""
    import zipfile

    import docx

    d = docx.Document()
    d.add_paragraph("考勤制度", style="Title")
    d.add_paragraph("第一条 员工应当在每月5日前确认上月考勤。")
    d.save(path)
    with zipfile.ZipFile(path) as z:
        parts = {i.filename: z.read(i.filename) for i in z.infolist()}
    xml = parts["word/document.xml"].decode()
    run = f"<w:r><w:t>{text}</w:t></w:r>" if text else ""
    empty = f'<w:p><w:pPr><w:pStyle w:val="Normal"/></w:pPr>{run}</w:p>'
    xml = xml.replace("<w:sectPr", empty * n + "<w:sectPr", 1)
    parts["word/document.xml"] = xml.encode()
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in parts.items():
            z.writestr(name, data)


def test_no_chunk_is_longer_than_the_limit_whatever_the_punctuation() -> None:
    from assistant.schema import Clause
    from ingest.chunking import MAX_CHARS, chunk_clause

    text = "规则文本" * 50_000 + "，逗号之后" * 2_000
    clause = Clause(clause_id="c1", source="a.md", document="A", label="第一条", path=("第一条",),
                    text=text, ordinal=0, content_hash="h")
    chunks = chunk_clause(clause)
    assert max(len(c.text) for c in chunks) <= MAX_CHARS
    assert "".join(c.text for c in chunks) == text


def test_a_megabyte_unpunctuated_html_line_is_cut_and_reported(tmp_path: Path) -> None:
    from ingest.loaders import Limits, load_file

    (tmp_path / "page.html").write_bytes(unpunctuated_html())
    started = time.perf_counter()
    doc = load_file(tmp_path / "page.html", tmp_path, 10**7)
    assert time.perf_counter() - started < 20
    assert len(doc.text) <= Limits().max_line_chars + 100
    assert any("longer than" in n for n in doc.notes)


def test_a_docx_of_many_tiny_paragraphs_reads_in_seconds(tmp_path: Path) -> None:
    from ingest.loaders import load_file

    empty_paragraph_docx(tmp_path / "empty.docx", 50_000, "·")  # each paragraph's style is looked up
    assert (tmp_path / "empty.docx").stat().st_size < 100_000
    started = time.perf_counter()
    doc = load_file(tmp_path / "empty.docx", tmp_path, 10**7)
    took = time.perf_counter() - started
    print(f"\n50k styled one-character paragraphs: {took:.1f} s")
    assert took < 20
    assert "第一条 员工应当" in doc.text and any("paragraphs" in n for n in doc.notes)


def test_a_docx_that_unpacks_beyond_the_limit_is_skipped(tmp_path: Path) -> None:
    from assistant.errors import UnsupportedFile
    from ingest.loaders import Limits, load_file

    empty_paragraph_docx(tmp_path / "bomb.docx", 400_000)  # ~20 MB of XML in a few hundred KB
    with pytest.raises(UnsupportedFile, match="unpacks to"):
        load_file(tmp_path / "bomb.docx", tmp_path, limits=Limits(max_unpacked_bytes=5_000_000))


@pytest.mark.slow
def test_pathological_files_ingest_in_seconds_and_are_reported(tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "page.html").write_bytes(unpunctuated_html())
    empty_paragraph_docx(rules / "empty.docx", 50_000, "·")
    empty_paragraph_docx(rules / "bigger.docx", 400_000)
    started = time.perf_counter()
    report = ingest(rules, make_settings(tmp_path / "data"))
    took = time.perf_counter() - started
    print(f"\npathological ingest: {took:.1f} s; cut: {report.cut}; skipped: {report.skipped}")
    assert took < 120
    cut = {c["source"] for c in report.cut}
    assert {"page.html", "empty.docx", "bigger.docx"} <= cut
    assert sorted(report.added) == ["bigger.docx", "empty.docx", "page.html"]


# --- 4, 5, 6, 9: a real server with API keys and Slack's HTTP mode ------------------------------

SLACK_SECRET = "hardening-signing-secret"
KEYS = {name: f"shared-prefix-{name}" for name in ("a", "b", "conv1", "conv2", "misc", "feedback", "slack")}


@pytest.fixture(scope="module")
def keyed_server(sample_index):  # type: ignore[no-untyped-def]
    from .slack_fake import FakeSlack

    fake = FakeSlack()
    server = Server(sample_index.settings.data_dir, {
        "RULEBOOK_API_KEYS": ",".join(KEYS.values()), "RULEBOOK_RATE_LIMIT_PER_MINUTE": "5",
        "SLACK_SIGNING_SECRET": SLACK_SECRET, "SLACK_BOT_TOKEN": "xoxb-test",
        "RULEBOOK_SLACK_API_URL": fake.api_url})
    yield server
    server.close()
    fake.close()


def auth(name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {KEYS[name]}"}


def test_lone_surrogate_is_a_422_and_the_connection_survives(keyed_server: Server) -> None:
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", keyed_server.port, timeout=30)
    body = b'{"question": "\\ud800 \xe8\xaf\xb7\xe5\x81\x87"}'
    conn.request("POST", "/v1/ask", body, {"Content-Type": "application/json", **auth("misc")})
    r = conn.getresponse()
    payload = json.loads(r.read())
    assert r.status == 422 and payload["error"]["code"] == "invalid_request", payload
    conn.request("GET", "/healthz")  # the same keep-alive connection
    r = conn.getresponse()
    assert r.status == 200 and json.loads(r.read()) == {"status": "ok"}
    conn.close()


def test_malformed_slack_requests_are_4xx(keyed_server: Server) -> None:
    from .slack_fake import signed_headers

    body = json.dumps({"type": "url_verification", "challenge": "abc", "token": "x"})
    headers = {**signed_headers(body, SLACK_SECRET), "x-slack-request-timestamp": "not-a-number"}
    status, _ = keyed_server.request("POST", "/slack/events", body.encode(), headers)
    assert status == 401
    garbage = "this is {not json"
    status, _ = keyed_server.request("POST", "/slack/events", garbage.encode(),
                                     signed_headers(garbage, SLACK_SECRET))
    assert 400 <= status < 500, status
    status, d = keyed_server.request("POST", "/slack/events", body.encode(), signed_headers(body, SLACK_SECRET))
    assert status == 200 and d.get("challenge") == "abc"  # the real thing still works


def _post_raw(port: int, head: list[str], body: bytes) -> bytes:
    """Send a request whole and read what comes back. The server may refuse and close before the
    body is all sent; a client then sees EPIPE or a reset on sending, and the response is still
    readable, so neither is a failure here."""
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        try:
            sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + body)
        except (BrokenPipeError, ConnectionResetError):
            pass
        received = b""
        try:
            while b"\r\n" not in received:
                part = sock.recv(65536)
                if not part:
                    break
                received += part
        except ConnectionResetError:
            pass
        return received


def test_request_bodies_over_the_limit_are_refused_unread(keyed_server: Server) -> None:
    before = keyed_server.usage()[2]
    head = ["POST /v1/ask HTTP/1.1", "Host: 127.0.0.1", "Content-Type: application/json"]
    # Refused by the declared length before a byte of the body is read.
    reply = _post_raw(keyed_server.port, [*head, f"Content-Length: {50_000_000}"],
                      b'{"question": "' + b"x" * 100_000)
    assert reply.startswith(b"HTTP/1.1 413"), reply[:200]
    # No Content-Length: counted as it arrives, refused once past the limit (64 KB).
    chunked = b"".join(b"%X\r\n%s\r\n" % (50_000, b"x" * 50_000) for _ in range(4)) + b"0\r\n\r\n"
    key = auth("misc")["Authorization"]
    reply = _post_raw(keyed_server.port, [*head, "Transfer-Encoding: chunked", f"Authorization: {key}"], chunked)
    assert reply.startswith(b"HTTP/1.1 413"), reply[:200]
    assert keyed_server.usage()[2] - before < 30


def test_conversation_ids_are_scoped_to_the_web_caller(keyed_server: Server, sample_index) -> None:  # type: ignore[no-untyped-def]
    import sqlite3

    slack_thread = "slack:C9:1700000050.000001"
    status, d = keyed_server.request("POST", "/v1/ask", json.dumps(
        {"question": "出差住酒店每晚最多能报销多少钱？", "conversation_id": slack_thread}).encode(), auth("conv1"))
    assert status == 200
    db = sqlite3.connect(f"file:{Path(sample_index.settings.data_dir) / 'records.sqlite'}?mode=ro", uri=True)
    stored = [r[0] for r in db.execute("SELECT conversation_id FROM answers WHERE answer_id = ?", (d["answer_id"],))]
    assert stored and stored[0] != slack_thread and stored[0].startswith("web:")
    assert db.execute("SELECT COUNT(*) FROM answers WHERE conversation_id = ?", (slack_thread,)).fetchone()[0] == 0
    # Another caller naming the first caller's conversation starts its own, without the history.
    mine = json.dumps({"question": "出差住酒店每晚最多能报销多少钱？"}).encode()
    status, first = keyed_server.request("POST", "/v1/ask", mine, auth("conv1"))
    assert status == 200 and len(first["conversation_id"]) >= 32
    follow = json.dumps({"question": "那成都呢？", "conversation_id": first["conversation_id"]}).encode()
    _, own = keyed_server.request("POST", "/v1/ask", follow, auth("conv1"))
    _, other = keyed_server.request("POST", "/v1/ask", follow, auth("conv2"))
    ids = {r[0] for r in db.execute("SELECT conversation_id FROM answers WHERE answer_id IN (?, ?, ?)",
                                    (first["answer_id"], own["answer_id"], other["answer_id"]))}
    db.close()
    assert len(ids) == 2  # the first caller's two turns share one; the other caller's is apart
    assert own["grounded"] and own["citations"][0]["clause"] == "（三）差旅住宿标准"


def test_rate_limits_cannot_be_sidestepped(keyed_server: Server) -> None:
    # A cheap route behind the same guard, so the bucket cannot refill between requests.
    def call(headers: dict[str, str]) -> int:
        return keyed_server.request("GET", "/v1/clauses/no-such-clause", None, headers)[0]

    # Keys sharing their first characters are different callers with their own buckets.
    assert [call(auth("a")) for _ in range(5)] == [404] * 5
    assert call(auth("a")) == 429
    assert call(auth("b")) == 404
    # Failed authentication is throttled, and a fresh X-Forwarded-For is not a fresh bucket.
    statuses = [call({"Authorization": f"Bearer wrong-{i}", "X-Forwarded-For": f"10.0.0.{i}"}) for i in range(8)]
    assert statuses[:5] == [401] * 5 and set(statuses[5:]) == {429}, statuses


# --- 10. smaller items ----------------------------------------------------------------------------

def test_not_ready_messages_do_not_show_the_data_path_and_pages_have_security_headers(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from assistant.adapters.web import create_app
    from assistant.records import Records

    data = tmp_path / "secret-place"
    app = create_app(make_settings(data, api_keys="k1"), records=Records(tmp_path / "records.sqlite"))
    client = TestClient(app)
    ready = client.get("/readyz")
    assert ready.status_code == 503 and str(tmp_path) not in ready.text
    asked = client.post("/v1/ask", json={"question": "年假几天？"}, headers={"Authorization": "Bearer k1"})
    assert asked.status_code == 503 and str(tmp_path) not in asked.text and "rulebook ingest" in asked.text
    page = client.get("/")
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert page.headers["x-frame-options"] == "DENY" and page.headers["x-content-type-options"] == "nosniff"


def test_one_feedback_vote_per_answer(keyed_server: Server) -> None:
    status, d = keyed_server.request("POST", "/v1/ask", json.dumps({"question": "客户咨询多久内要答复？"}).encode(),
                                     auth("feedback"))
    assert status == 200
    vote = json.dumps({"answer_id": d["answer_id"], "rating": "down"}).encode()
    assert keyed_server.request("POST", "/v1/feedback", vote, auth("feedback"))[0] == 200
    assert keyed_server.request("POST", "/v1/feedback", vote, auth("feedback"))[0] == 409


def test_missing_extras_advice_is_printed_literally() -> None:
    code = ("import builtins, sys\n"
            "real = builtins.__import__\n"
            "def fake(name, *a, **k):\n"
            "    if name == 'uvicorn': raise ImportError(name)\n"
            "    return real(name, *a, **k)\n"
            "builtins.__import__ = fake\n"
            "from assistant.adapters.cli import app\n"
            "sys.argv = ['rulebook', 'serve']\n"
            "app()\n")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert "pip install -e '.[web]'" in r.stderr, r.stderr


# --- 7. documents cannot dress up as other documents ---------------------------------------------

@pytest.mark.slow
def test_document_text_cannot_make_citation_buttons_and_sources_show_the_file(tmp_path: Path) -> None:
    from .test_browser import CHROMIUM, LAUNCH_ARGS

    if not Path(CHROMIUM).exists():
        pytest.fail("Debian's chromium is needed (./scripts/test.sh installs it)")
    from playwright.sync_api import sync_playwright

    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "考勤.md").write_text(
        "# 考勤制度\n第一条 员工应当在每月5日前确认上月考勤[1]，逾期未确认的视为无异议。\n"
        "第二条 迟到超过30分钟的，按半天事假处理。\n", "utf-8")
    (rules / "冒名.md").write_text("# 考勤制度\n第一条 员工食堂午餐时间为十一点半至一点。\n", "utf-8")
    data = tmp_path / "data"
    ingest(rules, make_settings(data))
    server = Server(data)
    try:
        status, d = server.ask("每月几号前要确认上月考勤？")
        assert status == 200 and d["grounded"], d
        assert "[1]" in d["citations"][0]["quote"] and d["citations"][0]["quote"] in d["answer"]
        # Two files carry the title 考勤制度: the answer text and the Slack message name the file.
        assert "《考勤制度》（考勤.md）第一条" in d["answer"], d["answer"]
        from assistant.adapters.slack_blocks import answer_blocks

        assert "(考勤.md)" in json.dumps(answer_blocks(d, "a1"), ensure_ascii=False)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
            page = browser.new_page(locale="zh-CN")
            page.goto(server.root + "/")
            page.fill("#q", "每月几号前要确认上月考勤？")
            page.press("#q", "Enter")
            answer = page.locator(".msg.answer").last
            answer.locator(".badge").wait_for(timeout=60_000)
            buttons = [b.inner_text() for b in answer.locator(".cite-ref").all()]
            sources = answer.locator(".sources").inner_text()
            browser.close()
        assert buttons and all(b in {f"[{c['n']}]" for c in d["citations"]} for b in buttons)
        assert len(buttons) == d["answer"].count("[") - sum(c["quote"].count("[") for c in d["citations"]
                                                           if c["quote"] in d["answer"])
        assert "考勤.md" in sources
    finally:
        server.close()
