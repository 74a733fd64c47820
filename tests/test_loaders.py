"""Reading files: formats, encodings, and a one-line reason for every file that cannot be used."""

from __future__ import annotations

import codecs
from pathlib import Path

import pytest

from assistant.errors import UnsupportedFile
from ingest.loaders import decode_text, load_file

RULE = "第一条 员工应当在每月5日前确认上月考勤。\n第二条 迟到超过30分钟的，按半天事假处理。\n"


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    p = tmp_path / name
    p.write_bytes(data)
    return p


@pytest.mark.parametrize(
    ("encoded", "expected_encoding"),
    [
        (RULE.encode("utf-8"), "utf-8"),
        (codecs.BOM_UTF8 + RULE.encode("utf-8"), "utf-8-sig"),
        (RULE.encode("gb18030"), "gb18030"),
        (RULE.encode("gbk"), "gb18030"),
        (RULE.encode("utf-16"), "utf-16"),  # with BOM
        (RULE.encode("utf-16-le"), "utf-16-le"),
        (RULE.encode("utf-16-be"), "utf-16-be"),
    ],
)
def test_text_encodings_are_detected(encoded: bytes, expected_encoding: str) -> None:
    text, encoding = decode_text(encoded)
    assert text == RULE
    assert encoding == expected_encoding


def test_text_file_keeps_characters_and_title(tmp_path: Path) -> None:
    p = write(tmp_path, "考勤.txt", ("考勤管理办法\n" + RULE).encode("gb18030"))
    doc = load_file(p, tmp_path, 10**6)
    assert doc.title == "考勤管理办法"
    assert doc.source == "考勤.txt"
    assert "迟到超过30分钟的，按半天事假处理。" in doc.text
    assert doc.encoding == "gb18030" and len(doc.sha256) == 64


def test_docx_headings_become_markdown(tmp_path: Path) -> None:
    import docx

    d = docx.Document()
    d.add_paragraph("请假管理规定", style="Title")
    d.add_paragraph("第一章 总则", style="Heading 1")
    d.add_paragraph("第一条 病假超过2天的，应当提供医院证明。")
    table = d.add_table(rows=1, cols=2)
    table.rows[0].cells[0].text = "假别"
    table.rows[0].cells[1].text = "婚假"
    d.save(tmp_path / "请假.docx")
    doc = load_file(tmp_path / "请假.docx", tmp_path, 10**6)
    assert doc.title == "请假管理规定"
    assert "## 第一章 总则" in doc.text.splitlines()
    assert "第一条 病假超过2天的，应当提供医院证明。" in doc.text
    assert "假别 | 婚假" in doc.text


def _pdf(path: Path, lines: list[str]) -> None:
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.cidfonts import UnicodeCIDFont
    from reportlab.pdfgen import canvas

    pdfmetrics.registerFont(UnicodeCIDFont("STSong-Light"))
    c = canvas.Canvas(str(path))
    c.setFont("STSong-Light", 12)
    for i, line in enumerate(lines):
        c.drawString(72, 750 - 20 * i, line)
    if not lines:
        c.rect(72, 600, 200, 100, fill=1)  # a "scan": marks on the page, no text layer
    c.save()


def test_pdf_text_layer_is_read(tmp_path: Path) -> None:
    _pdf(tmp_path / "rules.pdf", ["考勤规定", "第一条 员工应当在每月5日前确认上月考勤。"])
    doc = load_file(tmp_path / "rules.pdf", tmp_path, 10**6)
    assert "第一条 员工应当在每月5日前确认上月考勤。" in doc.text
    assert doc.kind == "pdf"


def test_html_drops_scripts_but_keeps_escaped_rule_text(tmp_path: Path) -> None:
    html = ("<html><head><title>行为准则</title><script>alert(1)</script></head><body>"
            "<nav>首页 | 关于</nav><h1>行为准则</h1><h2>信息安全</h2>"
            "<p>禁止把 &lt;script&gt; 等来历不明的代码粘贴到客户系统。</p></body></html>")
    doc = load_file(write(tmp_path, "conduct.html", html.encode("utf-8")), tmp_path, 10**6)
    assert "alert(1)" not in doc.text and "首页" not in doc.text
    assert "禁止把 <script> 等来历不明的代码粘贴到客户系统。" in doc.text
    assert "## 信息安全" in doc.text.splitlines()


@pytest.mark.parametrize(
    ("name", "data", "reason"),
    [
        ("empty.md", b"", "empty file"),
        ("blank.txt", b"  \n\n ", "no text"),
        ("broken.docx", b"PK\x03\x04 this is not a zip archive", "Word"),
        ("broken.pdf", b"%PDF-1.4\n garbage without objects", "PDF"),
        ("binary.txt", bytes(range(256)) * 40, "not readable as text"),
        ("image.png", b"\x89PNG\r\n\x1a\n", "unsupported file type"),
    ],
)
def test_bad_files_raise_one_line_reasons(tmp_path: Path, name: str, data: bytes,
                                          reason: str) -> None:
    p = write(tmp_path, name, data)
    with pytest.raises(UnsupportedFile) as exc:
        load_file(p, tmp_path, 10**6)
    assert reason in str(exc.value)
    assert "\n" not in str(exc.value)


def test_scanned_pdf_is_refused_with_ocr_hint(tmp_path: Path) -> None:
    _pdf(tmp_path / "scan.pdf", [])
    with pytest.raises(UnsupportedFile, match="no text layer"):
        load_file(tmp_path / "scan.pdf", tmp_path, 10**6)


def test_oversized_file_is_refused(tmp_path: Path) -> None:
    p = write(tmp_path, "big.md", ("第一条 " + "很长的规则。" * 1000).encode("utf-8"))
    with pytest.raises(UnsupportedFile, match="too large"):
        load_file(p, tmp_path, max_bytes=1000)


def test_markdown_front_matter_names_the_document_and_keeps_its_fields(tmp_path: Path) -> None:
    from assistant.effective import stated
    from ingest.loaders import front_matter

    f = tmp_path / "加班.md"
    f.write_text("---\ntitle: 加班管理办法\neffective: 2027-02-01\n---\n\n# 加班规定\n\n第一条 加班应当事先申请。\n",
                 encoding="utf-8")
    doc = load_file(f, tmp_path)
    assert doc.title == "加班管理办法"  # not the `---` line
    fields, rest = front_matter(doc.text)
    assert fields == {"title": "加班管理办法", "effective": "2027-02-01"} and rest.lstrip().startswith("# 加班规定")
    assert stated(doc.text) == [("2027-02-01", False)]
    assert front_matter("# 标题\n---\n") == ({}, "# 标题\n---\n")


def test_docx_effective_date_from_its_properties(tmp_path: Path) -> None:
    import docx

    from assistant.effective import stated

    d = docx.Document()
    d.add_heading("差旅管理办法", level=1)
    d.add_paragraph("第一条 出差应当事先审批。")
    d.core_properties.comments = "生效日期：2026-05-01；由财务部发布"
    path = tmp_path / "差旅.docx"
    d.save(str(path))
    doc = load_file(path, tmp_path)
    assert doc.text.splitlines()[0] == "生效日期：2026-05-01" and stated(doc.text) == [("2026-05-01", False)]
    plain = docx.Document()
    plain.add_paragraph("第一条 出差应当事先审批。")
    plain.save(str(tmp_path / "无日期.docx"))
    assert "生效日期" not in load_file(tmp_path / "无日期.docx", tmp_path).text


def test_docx_effective_date_from_a_custom_property(tmp_path: Path) -> None:
    import zipfile

    import docx

    d = docx.Document()
    d.add_paragraph("第一条 出差应当事先审批。")
    plain = tmp_path / "plain.docx"
    d.save(str(plain))
    custom = ('<?xml version="1.0" encoding="UTF-8" standalone="yes"?><Properties xmlns="http://schemas.openxmlformats.org/'
              'officeDocument/2006/custom-properties" xmlns:vt="http://schemas.openxmlformats.org/officeDocument/2006/'
              'docPropsVTypes"><property fmtid="{D5CDD505-2E9C-101B-9397-08002B2CF9AE}" pid="2" name="生效日期">'
              '<vt:lpwstr>2026年7月1日</vt:lpwstr></property></Properties>')
    with zipfile.ZipFile(plain) as src, zipfile.ZipFile(tmp_path / "custom.docx", "w") as dst:
        for item in src.infolist():
            dst.writestr(item, src.read(item.filename))
        dst.writestr("docProps/custom.xml", custom)
    assert load_file(tmp_path / "custom.docx", tmp_path).text.splitlines()[0] == "生效日期：2026-07-01"
