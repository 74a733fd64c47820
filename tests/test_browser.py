"""The chat page in a real headless Chromium (Debian's), driven by Playwright, against a real
server on 127.0.0.1. Screenshots are saved to test-artifacts/."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from assistant.records import Records

from .conftest import ROOT, IndexedCorpus, make_settings
from .loopback import serving

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = ROOT / "test-artifacts"
LAUNCH_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
               "--disable-component-update", "--disable-sync"]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(sample_index: IndexedCorpus, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Records]]:
    from assistant.adapters.web import create_app

    records = Records(tmp_path_factory.mktemp("records") / "records.sqlite")
    settings = make_settings(sample_index.settings.data_dir, rate_limit_per_minute=0)
    with serving(create_app(settings, assistant=sample_index.assistant, records=records)) as root:
        yield root + "/", records


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed (./scripts/test.sh installs it)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (no browser download)")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        yield b
        b.close()


def test_ask_cite_open_clause_feedback_and_refusal(server: tuple[str, Records], browser) -> None:  # type: ignore[no-untyped-def]
    from playwright.sync_api import expect

    url, records = server
    page = browser.new_page(viewport={"width": 390, "height": 844}, locale="zh-CN")  # phone width
    page.goto(url)
    assert page.locator("#examples button").count() >= 3

    page.fill("#q", "客户咨询多久内要答复？")
    page.press("#q", "Enter")
    answer = page.locator(".msg.answer").last
    answer.locator(".badge").wait_for(timeout=30_000)
    assert "24小时" in answer.inner_text()
    assert answer.locator(".cite-ref").count() >= 1

    answer.locator(".sources button").first.click()
    panel = page.locator("#panel.open")
    panel.wait_for(timeout=10_000)
    assert "（一）咨询受理时限" in page.locator("#p-title").inner_text()
    mark = page.locator("#p-text mark")
    assert mark.count() == 1 and "24小时" in mark.inner_text()
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "chat-clause.png"))
    page.locator("#panel .close").click()

    answer.locator(".actions button[aria-label=up]").click()
    expect(answer.locator(".actions")).to_contain_text("谢谢", timeout=30_000)  # no eval: the page's CSP forbids it
    newest = records.recent(1)[0]
    assert newest["question"] == "客户咨询多久内要答复？"
    assert [f.rating for f in records.feedback(str(newest["answer_id"]))] == ["up"]

    page.fill("#q", "今天杭州天气怎么样？")
    page.press("#q", "Enter")
    refusal = page.locator(".msg.refusal").last
    refusal.locator(".badge").wait_for(timeout=30_000)
    assert "人力资源部" in refusal.inner_text() and refusal.locator(".sources").count() == 0
    page.screenshot(path=str(ARTIFACTS / "chat.png"), full_page=True)
    page.close()


def test_user_and_rule_text_are_escaped(server: tuple[str, Records], browser) -> None:  # type: ignore[no-untyped-def]
    url, _ = server
    page = browser.new_page(locale="zh-CN")
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.goto(url)
    page.fill("#q", "<img src=x onerror=alert(1)>能粘贴来历不明的代码到客户系统吗？")
    page.press("#q", "Enter")
    page.locator(".msg .badge").last.wait_for(timeout=30_000)
    assert page.locator("#log img").count() == 0 and dialogs == []
    assert "<img src=x onerror=alert(1)>" in page.locator(".msg.user").last.inner_text()
    answer = page.locator(".msg.answer").last
    answer.locator(".sources button").first.click()
    page.locator("#panel.open").wait_for(timeout=10_000)
    text = page.locator("#p-text").inner_text()
    assert "<script>" in text  # the rule's own words, shown as text
    assert page.locator("#p-text script, #log script").count() == 0
    page.close()


def test_english_interface(server: tuple[str, Records], browser) -> None:  # type: ignore[no-untyped-def]
    url, _ = server
    page = browser.new_page(locale="en-US")
    page.goto(url)
    assert page.locator("h1").inner_text() == "Rulebook assistant"
    page.click("#lang")
    assert page.locator("h1").inner_text() == "规章制度助手"
    page.close()



def test_what_changed_view(browser, rulebook_copy: Path, warm_data_dir: Path) -> None:  # type: ignore[no-untyped-def]
    from playwright.sync_api import expect

    from assistant.adapters.web import create_app
    from ingest.pipeline import ingest

    settings = make_settings(warm_data_dir, rate_limit_per_minute=0)
    ingest(rulebook_copy, settings)
    app = create_app(settings, records=Records(warm_data_dir / "records.sqlite"))
    with serving(app) as root:
        page = browser.new_page(locale="zh-CN")
        try:
            page.goto(root + "/")
            page.click("#changes")  # one version only: nothing to compare yet
            # The view is added first and filled when the reply arrives: wait for the text itself.
            expect(page.locator(".msg.changes").last).to_contain_text("还没有可以比较的修订")
            service = rulebook_copy / "客户服务标准.md"
            revised = service.read_text(encoding="utf-8").replace("一般咨询在24小时内答复", "一般咨询在12小时内答复", 1)
            service.write_text(revised, encoding="utf-8")
            ingest(rulebook_copy, settings)
            page.click("#changes")
            page.wait_for_selector(".msg.changes .change.modified")
            view = page.locator(".msg.changes").last
            text = view.inner_text()
            assert "客户服务标准" in text and "修改" in text
            assert view.locator("del").first.inner_text() == "24" and view.locator("ins").first.inner_text() == "12"
            view.locator(".change.modified button").click()  # opens the clause as it reads now
            page.wait_for_selector("#panel.open")
            assert "12小时" in page.locator("#p-text").inner_text()
            page.screenshot(path=str(ARTIFACTS / "changes.png"), full_page=True)
        finally:
            page.close()


def test_owners_console(browser, rulebook_copy: Path, warm_data_dir: Path) -> None:  # type: ignore[no-untyped-def]
    """Log in with the admin key, filter the questions, open a knowledge gap, correct a wrong answer
    by picking the right clause, upload a revised document and see it served — at phone width."""
    import httpx
    from playwright.sync_api import expect

    from assistant.adapters.web import create_app
    from ingest.pipeline import ingest

    settings = make_settings(warm_data_dir, rate_limit_per_minute=0, api_keys="ask-key", admin_keys="admin-key")
    ingest(rulebook_copy, settings)
    app = create_app(settings, records=Records(warm_data_dir / "records.sqlite"))
    asked = ("我在财务部，能不能每天十点再到公司？", "食堂几点开饭？", "食堂什么时候开门吃饭？",
             "客户咨询多久内要答复？")
    with serving(app) as root:
        ask = httpx.Client(base_url=root, headers={"Authorization": "Bearer ask-key"}, timeout=60)
        for q in asked:
            assert ask.post("/v1/ask", json={"question": q}).status_code == 200
        wrong = ask.post("/v1/ask", json={"question": asked[0]}).json()
        assert all(c["clause"] != "第五条" for c in wrong["citations"])  # the answer to correct

        page = browser.new_page(viewport={"width": 390, "height": 844}, locale="zh-CN")
        try:
            page.goto(root + "/admin")
            page.fill("#key", "ask-key")  # an ask key is not an admin key
            page.click("#login button[type=submit]")
            page.wait_for_selector("#login-msg:has-text('管理密钥不正确')")
            page.fill("#key", "admin-key")
            page.click("#login button[type=submit]")
            page.wait_for_selector("#app:not([hidden]) #questions .item")
            assert page.locator("#questions .item").count() == 5

            page.check("#f-refused")
            page.click("#f-apply")
            expect(page.locator("#questions .item")).to_have_count(2, timeout=30_000)  # no eval: the CSP forbids it
            assert {t.strip() for t in page.locator("#questions .item .q").all_inner_texts()} == set(asked[1:3])
            page.screenshot(path=str(ARTIFACTS / "console-questions.png"), full_page=True)

            page.click("nav.tabs button[data-tab=gaps]")
            group = page.locator("#gaps .group").filter(has_text="食堂").first
            group.locator("button.open").click()
            assert group.locator(".members .item").count() == 2  # the two canteen questions, together
            page.screenshot(path=str(ARTIFACTS / "console-gaps.png"), full_page=True)

            page.click("nav.tabs button[data-tab=questions]")
            page.uncheck("#f-refused")
            page.fill("#f-q", "财务部")
            page.click("#f-apply")
            expect(page.locator("#questions .item")).to_have_count(2, timeout=30_000)
            page.locator("#questions .item button.correct").first.click()
            page.fill("#fix-search", "弹性上班")
            choice = page.locator("#fix-results .result").filter(has_text="第五条").first
            choice.locator("input").check()
            page.click("#fix-save-clauses")
            page.wait_for_selector("#fix-msg:has-text('已保存')")
            page.screenshot(path=str(ARTIFACTS / "console-correct.png"), full_page=True)
            page.click("#fix-close")
            fixed = ask.post("/v1/ask", json={"question": "财务这边的同事可以上午10点才打卡吗？"}).json()
            assert fixed["citations"][0]["clause"] == "第五条" and fixed["curated"]["kind"] == "clauses"
            page.click("nav.tabs button[data-tab=curations]")
            page.wait_for_selector("#curations .item:has-text('第五条')")

            page.click("nav.tabs button[data-tab=usage]")
            page.wait_for_selector("#u-chart svg rect")
            assert page.locator("#u-totals .card[data-key=questions] .v").inner_text() == "6"
            page.screenshot(path=str(ARTIFACTS / "console-usage.png"), full_page=True)

            page.click("nav.tabs button[data-tab=documents]")
            page.wait_for_selector("#docs tbody tr[data-source='考勤与休假制度.md']")
            rules = rulebook_copy / "考勤与休假制度.md"
            revised = rules.read_text(encoding="utf-8").replace("8:30至10:00", "8:30至10:30", 1)
            page.set_input_files("#up-file", files=[{"name": "考勤与休假制度.md", "mimeType": "text/markdown",
                                                    "buffer": revised.encode("utf-8")}])
            page.click("#up-send")
            page.wait_for_selector("#ingest[data-state=done]", timeout=120_000)
            page.screenshot(path=str(ARTIFACTS / "console-documents.png"), full_page=True)
            assert page.evaluate("document.documentElement.scrollWidth") <= 390  # no sideways scrolling

            page.goto(root + "/")  # the chat page answers from the revised rule
            page.evaluate("sessionStorage.setItem('rulebook-key', 'ask-key')")
            page.reload()
            page.fill("#q", "弹性上班最晚几点到？")
            page.press("#q", "Enter")
            answer = page.locator(".msg.answer").last
            answer.locator(".badge").wait_for(timeout=30_000)
            assert "10:30" in answer.inner_text()
        finally:
            page.close()
