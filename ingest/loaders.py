"""Read rule documents from disk into `SourceDocument`s.

Every loader returns text in which structure is expressed the same way: markdown-style `#` lines
for headings the format marks up (Word heading styles, HTML `<h1>`…), one paragraph per line.
Anything unreadable raises `UnsupportedFile` with a one-line reason; the pipeline skips the file.
"""

from __future__ import annotations

import codecs
import errno
import hashlib
import io
import os
import re
import stat
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from assistant.errors import UnsupportedFile
from assistant.schema import SourceDocument

SUPPORTED = {".md": "md", ".markdown": "md", ".txt": "txt", ".docx": "docx", ".pdf": "pdf",
             ".html": "html", ".htm": "html"}

_MD_HEADING = re.compile(r"^\s{0,3}#{1,6}\s+(.+?)\s*#*\s*$")


@dataclass(frozen=True)
class Limits:
    """The most work one file may cost; what goes beyond is cut and reported, or the file skipped.

    The defaults keep the worst case per file to about `seconds` of reading plus the embedding of
    `max_chars` characters, while leaving room for the longest real rule documents (a civil code
    is ~110,000 characters in ~3,000 paragraphs).
    """

    max_bytes: int = 20_000_000  # the file on disk; larger files are skipped
    max_unpacked_bytes: int = 100_000_000  # a .docx after decompression; larger ones are skipped
    max_chars: int = 300_000  # text kept per file; the rest is cut
    max_line_chars: int = 10_000  # text kept per line (paragraph); the rest of the line is cut
    max_paragraphs: int = 20_000  # paragraphs (lines, table rows, HTML blocks) read per file
    seconds: float = 30.0  # reading and parsing one file; slower files are skipped


class _Budget:
    """Counts paragraphs and time while a file is read; notes what was cut."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.deadline = time.monotonic() + limits.seconds
        self.paragraphs = 0
        self.notes: list[str] = []

    def more(self) -> bool:
        """False once the paragraph limit is reached; raises when the time limit is."""
        self.check_time()
        self.paragraphs += 1
        if self.paragraphs > self.limits.max_paragraphs:
            self.notes.append(f"cut after {self.limits.max_paragraphs:,} paragraphs (RULEBOOK_MAX_PARAGRAPHS)")
            return False
        return True

    def check_time(self) -> None:
        if time.monotonic() > self.deadline:
            raise UnsupportedFile(f"reading took longer than {self.limits.seconds:g} s "
                                  "(RULEBOOK_MAX_SECONDS_PER_FILE); split the file or simplify it")


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
    mended = _mostly_utf8(data)
    if mended is not None:
        return mended, "utf-8"
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


def _mostly_utf8(data: bytes) -> str | None:
    """UTF-8 text with a few broken sequences (a bad copy-paste, a truncated download), decoded
    with U+FFFD in their place; None when the bytes are not UTF-8 text at all (e.g. GB18030,
    where almost no multi-byte character is also valid UTF-8)."""
    text = data.decode("utf-8", errors="replace")
    bad = text.count("\ufffd")
    good = sum(1 for ch in text if ord(ch) > 127) - bad
    if bad and good >= 20 and bad <= max(4, good // 50):
        return text
    return None


_COMMON = re.compile(r"[\u4e00-\u9fff\u3000-\u303f\uff00-\uffef\x20-\x7e\n\r\t\u2010-\u201f]")


def _plausibility(text: str) -> float:
    """Share of characters that are common in rule documents."""
    return len(_COMMON.findall(text)) / len(text) if text else 0.0


def _looks_like_text(text: str) -> bool:
    if not text:
        return False
    bad = sum(1 for ch in text if (ord(ch) < 32 and ch not in "\r\n\t\f") or ch == "\ufffd")
    return bad / len(text) < 0.01


def front_matter(text: str) -> tuple[dict[str, str], str]:
    """A markdown file's leading `---` block of `key: value` lines (title, effective, …) and the
    text after it; no block: ({}, text)."""
    lines = text.lstrip("\ufeff").splitlines()
    if not lines or lines[0].strip() != "---":
        return {}, text
    for end in range(1, min(len(lines), 60)):
        if lines[end].strip() in ("---", "..."):
            fields = {}
            for line in lines[1:end]:
                key, sep, value = line.partition(":")
                if sep and key.strip():
                    fields[key.strip().lower()] = value.strip().strip("\"'")
            return fields, "\n".join(lines[end + 1 :])
    return {}, text


def _title_from(text: str, fallback: str) -> str:
    fields, text = front_matter(text)
    if fields.get("title"):
        return fields["title"][:200]
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        m = _MD_HEADING.match(line)
        if m:
            return m.group(1).strip()
        return line if len(line) <= 60 else fallback
    return fallback


def _check_unpacked(data: bytes, limit: int) -> None:
    """A .docx is a zip: a small file can unpack to gigabytes. Check the sizes it declares (zipfile
    stops reading a member at its declared size)."""
    import zipfile

    try:
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            unpacked = sum(info.file_size for info in z.infolist())
    except zipfile.BadZipFile as exc:
        raise UnsupportedFile(f"corrupt Word .docx file ({exc.__class__.__name__})") from exc
    if unpacked > limit:
        raise UnsupportedFile(f"unpacks to {unpacked / 1e6:.0f} MB (> {limit / 1e6:.0f} MB, "
                              "RULEBOOK_MAX_UNPACKED_MB); split the document")


def _read_docx(data: bytes, budget: _Budget | None = None) -> str:
    import docx
    from docx.opc.exceptions import PackageNotFoundError

    budget = budget or _Budget(Limits())
    _check_unpacked(data, budget.limits.max_unpacked_bytes)
    try:
        document = docx.Document(io.BytesIO(data))
    except (PackageNotFoundError, KeyError, ValueError, OSError) as exc:
        raise UnsupportedFile(f"not a readable Word .docx file ({exc.__class__.__name__})") from exc
    except Exception as exc:  # zipfile.BadZipFile, lxml errors: a corrupt package either way
        raise UnsupportedFile(f"corrupt Word .docx file ({exc.__class__.__name__})") from exc
    lines: list[str] = []
    body = document.element.body
    styles: dict[str | None, str] = {}  # style id → name, resolved once per document, not per paragraph
    for child in body.iterchildren():
        if not budget.more():
            break
        tag = child.tag.rsplit("}", 1)[-1]
        if tag == "p":
            lines.append(_docx_paragraph(docx.text.paragraph.Paragraph(child, document), styles))
        elif tag == "tbl":
            table = docx.table.Table(child, document)
            for row in table.rows:
                if not budget.more():
                    break
                cells = [c.text.strip() for c in row.cells]
                if any(cells):
                    lines.append(" | ".join(cells))
    effective = _docx_effective(document, data)
    if effective:  # stated in the file's properties only: a first line that says so (not a rule)
        lines.insert(0, f"生效日期：{effective}")
    return "\n".join(lines)


_EFFECTIVE_NAME = re.compile(r"^(?:effective(?:[ _-]?date)?|生效日期|施行日期|实施日期|执行日期)$", re.IGNORECASE)
_ISO_DAY = re.compile(r"(\d{4})\s*[-年/.]\s*(\d{1,2})\s*[-月/.]\s*(\d{1,2})")


def _docx_effective(document: Any, data: bytes) -> str | None:
    """An effective date kept in a Word file's properties: a custom property named 生效日期 /
    Effective (File › Properties › Custom), or 生效日期：… in its subject, keywords, comments or
    category. YYYY-MM-DD, or None."""
    import zipfile

    found: list[str] = []
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            if "docProps/custom.xml" in z.namelist():
                info = z.getinfo("docProps/custom.xml")
                if info.file_size <= 1_000_000:
                    xml = z.read(info).decode("utf-8", "replace")
                    for name, value in re.findall(r'name="([^"]+)"[^>]*>\s*<vt:\w+>([^<]+)<', xml):
                        if _EFFECTIVE_NAME.match(name.strip()):
                            found.append(value)
    except zipfile.BadZipFile:
        return None
    props = document.core_properties
    for text in (props.subject, props.keywords, props.comments, props.category):
        if text and re.search(r"生效日期|施行日期|实施日期|effective", text, re.IGNORECASE):
            found.append(text)
    for text in found:
        m = _ISO_DAY.search(text)
        if m and 1 <= int(m.group(2)) <= 12 and 1 <= int(m.group(3)) <= 31:
            return f"{int(m.group(1)):04d}-{int(m.group(2)):02d}-{int(m.group(3)):02d}"
    return None


def _docx_paragraph(paragraph, styles: dict[str | None, str]) -> str:  # type: ignore[no-untyped-def]
    text = paragraph.text.strip()
    if not text:
        return ""
    style_id = paragraph._p.style
    if style_id not in styles:
        styles[style_id] = (paragraph.style.name if paragraph.style is not None else "") or ""
    style = styles[style_id]
    if style == "Title":
        return f"# {text}"
    m = re.match(r"Heading (\d)", style)
    if m:
        return "#" * min(6, int(m.group(1)) + 1) + " " + text
    return text


def _read_pdf(data: bytes, budget: _Budget | None = None) -> str:
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            try:
                reader.decrypt("")
            except Exception as exc:
                raise UnsupportedFile("encrypted PDF; save an unprotected copy") from exc
        budget = budget or _Budget(Limits())
        pages = []
        for page in reader.pages:
            budget.check_time()
            pages.append(page.extract_text() or "")
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


def _read_html(data: bytes, budget: _Budget | None = None) -> str:
    from bs4 import BeautifulSoup

    budget = budget or _Budget(Limits())

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
        if not budget.more():
            break
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


def load_file(path: Path, root: Path, max_bytes: int | None = None, limits: Limits | None = None) -> SourceDocument:
    """Read one file within `limits`. Raises UnsupportedFile with a one-line reason when it cannot
    be used; what was cut to stay within the limits is listed in the document's `notes`."""
    limits = limits or Limits(**({"max_bytes": max_bytes} if max_bytes is not None else {}))
    kind = SUPPORTED.get(path.suffix.lower())
    rel = path.relative_to(root).as_posix()
    if kind is None:
        raise UnsupportedFile(f"unsupported file type {path.suffix or '(none)'!r}")
    data = _read_regular(path, limits.max_bytes)
    budget = _Budget(limits)
    digest = hashlib.sha256(data).hexdigest()
    encoding = "binary"
    if kind in ("md", "txt"):
        text, encoding = decode_text(data)
        replaced = text.count("\ufffd") - data.count("\ufffd".encode()) if encoding == "utf-8" else 0
        if replaced > 0:
            budget.notes.append(f"{replaced} invalid UTF-8 sequence(s) replaced by \ufffd; re-save it as UTF-8")
    elif kind == "docx":
        text = _read_docx(data, budget)
    elif kind == "pdf":
        text = _read_pdf(data, budget)
    else:
        text = _read_html(data, budget)
        encoding = "html"
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "")
    text = _cut(text, budget)
    if not text.strip():
        raise UnsupportedFile("no text in file")
    title = _title_from(text, path.stem)
    return SourceDocument(source=rel, title=title, text=text, sha256=digest, encoding=encoding,
                          kind=kind, notes=tuple(budget.notes))


def _read_regular(path: Path, max_bytes: int) -> bytes:
    """The bytes of a regular file, never through a link (the scan skips links; this closes the
    window in which a file could be swapped for one) and never blocking on a pipe."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UnsupportedFile("symbolic link, not followed; copy the file into the folder instead") from exc
        raise UnsupportedFile(f"could not be read ({exc.strerror or exc})") from exc
    with os.fdopen(fd, "rb") as fh:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise UnsupportedFile("not a regular file (pipe, socket or device)")
        if st.st_size == 0:
            raise UnsupportedFile("empty file")
        if st.st_size > max_bytes:
            raise UnsupportedFile(
                f"too large ({st.st_size / 1e6:.1f} MB > {max_bytes / 1e6:.0f} MB; "
                "raise RULEBOOK_MAX_FILE_MB or split it)"
            )
        return fh.read(max_bytes + 1)[:max_bytes]


def _cut(text: str, budget: _Budget) -> str:
    """Bound lines and the whole text; an unpunctuated megabyte line is not a rule."""
    limits = budget.limits
    lines = text.split("\n")
    if len(lines) > limits.max_paragraphs:
        lines = lines[: limits.max_paragraphs]
        budget.notes.append(f"cut after {limits.max_paragraphs:,} lines (RULEBOOK_MAX_PARAGRAPHS)")
    long_lines = sum(1 for line in lines if len(line) > limits.max_line_chars)
    if long_lines:
        lines = [line[: limits.max_line_chars] for line in lines]
        budget.notes.append(f"{long_lines} line(s) longer than {limits.max_line_chars:,} characters cut to "
                            "that length (RULEBOOK_MAX_LINE_CHARS)")
    text = "\n".join(lines)
    if len(text) > limits.max_chars:
        budget.notes.append(f"cut after {limits.max_chars:,} of {len(text):,} characters "
                            "(RULEBOOK_MAX_CHARS_PER_FILE); split the file")
        text = text[: limits.max_chars]
    return text
