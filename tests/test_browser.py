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
    page.wait_for_function("document.querySelector('.msg.answer:last-of-type .actions').innerText.includes('谢谢')")
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
            page.wait_for_selector(".msg.changes")
            assert "还没有可以比较的修订" in page.locator(".msg.changes").last.inner_text()
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
