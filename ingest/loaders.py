"""Read rule documents from disk into `SourceDocument`s.

Every loader returns text in which structure is expressed the same way: markdown-style `#` lines
for headings the format marks up (Word heading styles, HTML `<h1>`…), one paragraph per line.
Anything unreadable raises `UnsupportedFile` with a one-line reason; the pipeline skips the file.
"""

from __future__ import annotations

import codecs
import hashlib
import io
import re
from pathlib import Path

from assistant.errors import UnsupportedFile
from assistant.schema import SourceDocument

SUPPORTED = {".md": "md", ".markdown": "md", ".txt": "txt", ".docx": "docx", ".pdf": "pdf",
             ".html": "html", ".htm": "html"}

_MD_HEADING = re.compile(r"^\s{0,3}#{1,6}\s+(.+?)\s*#*\s*$")


def decode_text(data: bytes) -> tuple[str, str]:
    """Decode bytes of a text file: UTF-8 (BOM or not), UTF-16 (BOM or not), GB18030/GBK.

    Returns (text, encoding name). Raises UnsupportedFile when no encoding fits.
    """
    if data.startswith(codecs.BOM_UTF8):
        try:
            return data[3:].decode("utf-8"), "utf-8-sig"
        except UnicodeDecodeError as exc:
            raise UnsupportedFile(f"broken UTF-8 text ({exc.reason})") from exc
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        try:
            return data.decode("utf-16"), "utf-16"
        except UnicodeDecodeError as exc:
            raise UnsupportedFile(f"broken UTF-16 text ({exc.reason})") from exc
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        pass
    # Without a BOM, GB18030 and UTF-16 can both decode the same bytes "successfully"; keep the
    # reading that looks most like real text (CJK, ASCII, common punctuation).
    best: tuple[float, str, str] | None = None
    for encoding in ("gb18030", "utf-16-le", "utf-16-be"):
        if encoding.startswith("utf-16") and len(data) % 2:
            continue
        try:
            text = data.decode(encoding)
        except UnicodeDecodeError:
            continue
        score = _plausibility(text)
        if best is None or score > best[0]:
            best = (score, text, encoding)
    if best is not None and best[0] >= 0.9 and _looks_like_text(best[1]):
        return best[1], best[2]
    from charset_normalizer import from_bytes

    guess = from_bytes(data).best()
    if guess is not None and _looks_like_text(str(guess)):
        return str(guess), codecs.lookup(guess.encoding).name
    raise UnsupportedFile("not readable as text (unknown encoding or binary data)")


_COMMON = re.compile(r"[\u4e00-\u9fff\u3000-\u303f\uff00-\uffef\x20-\x7e\n\r\t\u2010-\u201f]")


def _plausibility(text: str) -> float:
    """Share of characters that are common in rule documents."""
    return len(_COMMON.findall(text)) / len(text) if text else 0.0


def _looks_like_text(text: str) -> bool:
    if not text:
        return False
    bad = sum(1 for ch in text if (ord(ch) < 32 and ch not in "\r\n\t\f") or ch == "\ufffd")
    return bad / len(text) < 0.01


def _title_from(text: str, fallback: str) -> str:
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        m = _MD_HEADING.match(line)
        if m:
            return m.group(1).strip()
        return line if len(line) <= 60 else fallback
    return fallback


def _read_docx(data: bytes) -> str:
    import docx
    from docx.opc.exceptions import PackageNotFoundError

    try:
        document = docx.Document(io.BytesIO(data))
    except (PackageNotFoundError, KeyError, ValueError, OSError) as exc:
        raise UnsupportedFile(f"not a readable Word .docx file ({exc.__class__.__name__})") from exc
    except Exception as exc:  # zipfile.BadZipFile, lxml errors: a corrupt package either way
        raise UnsupportedFile(f"corrupt Word .docx file ({exc.__class__.__name__})") from exc
    lines: list[str] = []
    body = document.element.body
    for child in body.iterchildren():
        tag = child.tag.rsplit("}", 1)[-1]
        if tag == "p":
            lines.append(_docx_paragraph(docx.text.paragraph.Paragraph(child, document)))
        elif tag == "tbl":
            table = docx.table.Table(child, document)
            for row in table.rows:
                cells = [c.text.strip() for c in row.cells]
                if any(cells):
                    lines.append(" | ".join(cells))
    return "\n".join(lines)


def _docx_paragraph(paragraph) -> str:  # type: ignore[no-untyped-def]
    text = paragraph.text.strip()
    if not text:
        return ""
    style = (paragraph.style.name if paragraph.style is not None else "") or ""
    if style == "Title":
        return f"# {text}"
    m = re.match(r"Heading (\d)", style)
    if m:
        return "#" * min(6, int(m.group(1)) + 1) + " " + text
    return text


def _read_pdf(data: bytes) -> str:
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            try:
                reader.decrypt("")
            except Exception as exc:
                raise UnsupportedFile("encrypted PDF; save an unprotected copy") from exc
        pages = [page.extract_text() or "" for page in reader.pages]
    except UnsupportedFile:
        raise
    except (PdfReadError, ValueError, KeyError, OSError) as exc:
        raise UnsupportedFile(f"corrupt PDF ({exc.__class__.__name__})") from exc
    except Exception as exc:  # pypdf raises a variety of errors on damaged files
        raise UnsupportedFile(f"corrupt PDF ({exc.__class__.__name__})") from exc
    text = "\n".join(pages)
    if len(re.sub(r"\s", "", text)) < 10:
        raise UnsupportedFile("PDF has no text layer (scanned?); run OCR on it first")
    return text


def _read_html(data: bytes) -> str:
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(data, "html.parser")  # detects the charset (BOM, <meta>, guessing)
    for tag in soup(["script", "style", "nav", "header", "footer", "noscript", "form", "aside"]):
        tag.decompose()
    lines: list[str] = []
    title = soup.title.get_text(strip=True) if soup.title else ""
    blocks = soup.find_all(["h1", "h2", "h3", "h4", "h5", "h6", "p", "li", "pre", "td", "dt", "dd"])
    for el in blocks:
        # Nested blocks (a <p> inside an <li>) are read once, through the innermost element.
        if el.find(["p", "li", "h1", "h2", "h3", "h4", "h5", "h6", "pre"]):
            continue
        text = re.sub(r"\s+", " ", el.get_text(" ", strip=True)).strip()
        if not text:
            continue
        if el.name and el.name[0] == "h":
            lines.append("#" * int(el.name[1]) + " " + text)
        else:
            lines.append(text)
    if not lines and soup.body:
        lines = [t.strip() for t in soup.body.get_text("\n").splitlines() if t.strip()]
    if title and not (lines and lines[0].startswith("# ")):
        lines.insert(0, f"# {title}")
    return "\n".join(lines)


def load_file(path: Path, root: Path, max_bytes: int) -> SourceDocument:
    """Read one file. Raises UnsupportedFile with a one-line reason when it cannot be used."""
    kind = SUPPORTED.get(path.suffix.lower())
    rel = path.relative_to(root).as_posix()
    if kind is None:
        raise UnsupportedFile(f"unsupported file type {path.suffix or '(none)'!r}")
    size = path.stat().st_size
    if size == 0:
        raise UnsupportedFile("empty file")
    if size > max_bytes:
        raise UnsupportedFile(
            f"too large ({size / 1e6:.1f} MB > {max_bytes / 1e6:.0f} MB; "
            "raise RULEBOOK_MAX_FILE_MB or split it)"
        )
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    encoding = "binary"
    if kind in ("md", "txt"):
        text, encoding = decode_text(data)
    elif kind == "docx":
        text = _read_docx(data)
    elif kind == "pdf":
        text = _read_pdf(data)
    else:
        text = _read_html(data)
        encoding = "html"
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "")
    if not text.strip():
        raise UnsupportedFile("no text in file")
    title = _title_from(text, path.stem)
    return SourceDocument(source=rel, title=title, text=text, sha256=digest, encoding=encoding,
                          kind=kind)
