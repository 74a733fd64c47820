"""Clause structure: golden tests on the sample rulebook and the shared corpora, plus the rules."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from assistant.schema import SourceDocument
from ingest.loaders import load_file
from ingest.structure import cn_number, parse_clauses

from .conftest import ROOT, SAMPLE

ARTICLE_LINE = re.compile(r"^(第[一二三四五六七八九十百千零]+条)[\s\u3000]")
BOILERPLATE = ("已被采纳为最佳回答", "年前 -", "个月前", "周前", "条评论", "站长微信", "分享本页",
               "返回顶部", "我来回复", "条回复", "的头像", "这个人很懒", "\x1e")


def doc(text: str, source: str = "rules.md") -> SourceDocument:
    title = text.strip().splitlines()[0].lstrip("# ")
    return SourceDocument(source=source, title=title, text=text, sha256="x", encoding="utf-8",
                          kind="md")


def paths(text: str) -> list[str]:
    return [" › ".join(c.path) for c in parse_clauses(doc(text))]


# --- golden: the bundled sample rulebook --------------------------------------------------------

def test_sample_rulebook_matches_golden() -> None:
    golden = json.loads((ROOT / "tests" / "golden" / "sample_rulebook.json").read_text("utf-8"))
    from ingest.contacts import CONTACTS_FILE

    files = sorted(p.name for p in SAMPLE.iterdir() if p.name != CONTACTS_FILE)
    assert files == sorted(golden)
    for name, want in golden.items():
        d = load_file(SAMPLE / name, SAMPLE, 10**7)
        assert d.title == want["title"], name
        assert [" › ".join(c.path) for c in parse_clauses(d)] == want["clauses"], name


# --- golden: 15 labour laws, 685 articles -------------------------------------------------------

def reference_articles(path: Path) -> list[tuple[str, ...]]:
    """An independent reading of the LawRefBook markdown: ## 章, ### 节, `第X条 ` paragraphs."""
    chapter = section = None
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("## "):
            chapter, section = line[3:].strip(), None
        elif line.startswith("### "):
            section = line[4:].strip()
        else:
            m = ARTICLE_LINE.match(line)
            if m:
                out.append(tuple(x for x in (chapter, section, m.group(1)) if x))
    return out


def test_labour_law_gives_one_clause_per_article(labour_law_dir: Path) -> None:
    total = 0
    for path in sorted(labour_law_dir.glob("*.md")):
        clauses = parse_clauses(load_file(path, labour_law_dir, 10**7))
        articles = [c for c in clauses if c.label.endswith("条")]
        others = [c for c in clauses if not c.label.endswith("条")]
        assert [c.path for c in articles] == reference_articles(path), path.name
        # The only other clause a law may have is the preamble before its first article.
        assert all(c.label == "前言" and c.ordinal == 0 for c in others), path.name
        for c in articles:
            assert c.text.startswith(c.label), (path.name, c.label)
        assert len({c.clause_id for c in clauses}) == len(clauses)
        total += len(articles)
    assert total == 685


def test_cross_references_stay_inside_their_article(labour_law_dir: Path) -> None:
    path = labour_law_dir / "劳动合同法.md"
    clauses = {c.label: c for c in parse_clauses(load_file(path, labour_law_dir, 10**7))}
    # 第三十九条 lists grounds and 第四十条 refers back to articles by number.
    assert "第四十条" in clauses and "（一）" in clauses["第四十条"].text
    refs = [c for c in clauses.values() if re.search(r"依照本法第[一二三四五六七八九十百]+条", c.text)]
    assert refs, "the corpus has cross-references"
    assert all(c.label.endswith("条") for c in refs)


# --- golden: the five scraped seed pages --------------------------------------------------------

NUMBERED = re.compile(r"^\s*(?:[•]\s*)?([一二三四五六七八九十]+、\S{1,30}|\d+[.．]\s*[^，。：:；]{1,20})\s*[:：]?\s*$")


def test_seed_pages_give_numbered_sections_without_boilerplate(seeds_dir: Path) -> None:
    for path in sorted(seeds_dir.glob("*.txt")):
        raw_lines = path.read_text(encoding="utf-8").splitlines()
        d = load_file(path, seeds_dir, 10**7)
        assert d.title == raw_lines[0].strip()
        clauses = parse_clauses(d)
        labels = {c.label for c in clauses}
        for line in raw_lines:
            m = NUMBERED.match(line)
            if m:
                assert m.group(1).rstrip(":： ") in labels, (path.name, line)
        for c in clauses:
            assert c.document == d.title
            for marker in BOILERPLATE:
                assert marker not in c.text, (path.name, c.label, marker)
            assert c.text.strip()


def test_seed_page_answers_are_kept_apart(seeds_dir: Path) -> None:
    d = load_file(seeds_dir / "003_aae8f5016c96a838.txt", seeds_dir, 10**7)
    clauses = parse_clauses(d)
    by_label = {c.label: c for c in clauses}
    assert "15分钟" in by_label["服务标准"].text  # a bare heading line
    assert [c.path for c in clauses if c.label == "1.财务管理"] == [("回答3", "1.财务管理")]
    assert ("回答2", "员工权益保障") in {c.path for c in clauses}  # a labelled bullet


# --- the rules, one by one ----------------------------------------------------------------------

def test_cn_numbers() -> None:
    assert [cn_number(x) for x in ("一", "十", "十九", "二十", "一百零二", "九十八", "12")] == \
        [1, 10, 19, 20, 102, 98, 12]


def test_article_needs_line_start_and_space_or_sequence() -> None:
    text = ("# 规定\n第一条 本规定适用于全体员工。\n第二条 依照本规定第一条执行。\n"
            "第一条规定的情形，不适用本条。\n第三条违反本规定的，予以警告。\n")
    got = parse_clauses(doc(text))
    assert [c.label for c in got] == ["第一条", "第二条", "第三条"]
    assert "第一条规定的情形" in got[1].text  # a paragraph, not a new article


def test_items_stay_inside_their_article() -> None:
    text = "# 规定\n## 第一章 总则\n第一条 有下列情形之一的，可以请假：\n（一）生病；\n（二）结婚。\n1. 其他情形。\n"
    got = parse_clauses(doc(text))
    assert [c.path for c in got] == [("第一章 总则", "第一条")]
    assert "（二）结婚。" in got[0].text and "1. 其他情形。" in got[0].text


def test_outline_numbering_headings_and_items() -> None:
    text = ("# 客服标准\n一、响应时限\n（一）咨询\n1. 一般咨询在24小时内答复。\n2. 紧急咨询在2小时内答复。\n"
            "（二）投诉\n投诉在1个工作日内受理。\n二、服务用语\n应当使用礼貌用语。\n")
    assert paths(text) == ["一、响应时限 › （一）咨询", "一、响应时限 › （二）投诉", "二、服务用语"]
    first = parse_clauses(doc(text))[0]
    assert "1. 一般咨询在24小时内答复。" in first.text


def test_markdown_and_bare_headings() -> None:
    text = ("# 入职指南\n欢迎加入。\n## 第一天\n### 报到\n请九点到前台报到，携带身份证。\n"
            "## 网络\n办公室无线网络\n连接名为 staff 的网络，用工号和密码登录，首次登录需要修改密码。\n")
    assert paths(text) == ["前言", "第一天 › 报到", "网络 › 办公室无线网络"]


def test_chapters_and_sections_nest() -> None:
    text = ("# 制度\n## 第一章 总则\n第一条 目的。\n## 第二章 假期\n### 第一节 年假\n第二条 年假五天。\n"
            "### 第二节 病假\n第三条 病假需证明。\n## 第三章 附则\n第四条 自发布之日起施行。\n")
    assert paths(text) == ["第一章 总则 › 第一条", "第二章 假期 › 第一节 年假 › 第二条",
                           "第二章 假期 › 第二节 病假 › 第三条", "第三章 附则 › 第四条"]


def test_clause_ids_are_stable_and_content_hash_tracks_text() -> None:
    a = parse_clauses(doc("# 规定\n第一条 年假五天。\n第二条 病假需证明。\n"))
    b = parse_clauses(doc("# 规定\n第一条 年假十天。\n第二条 病假需证明。\n"))
    assert [c.clause_id for c in a] == [c.clause_id for c in b]
    assert a[0].content_hash != b[0].content_hash and a[1].content_hash == b[1].content_hash


@pytest.mark.parametrize("source", ["a.md", "sub/b.md"])
def test_clause_ids_differ_between_files(source: str) -> None:
    x = parse_clauses(doc("# 规定\n第一条 年假五天。\n", source))
    y = parse_clauses(doc("# 规定\n第一条 年假五天。\n", "other.md"))
    assert x[0].clause_id != y[0].clause_id
