"""Documents → blocks: title, author and the text as headings and paragraphs with section and page.

    python -c "from psyassist.kb.parse import parse_file; d = parse_file('guide.md'); print(d.title, len(d.blocks))"

One function per format (PDF via pypdf, DOCX via python-docx, EPUB via ebooklib, HTML with the
standard library's parser, Markdown, plain text). A file that cannot give text raises `KbFileError`
naming the file and why (encrypted, scanned, corrupt archive, no text); ingest skips it and reports.
"""

from __future__ import annotations

import re
import zipfile
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

from psyassist.data.io import decode
from psyassist.errors import MissingDependency, PsyassistError
from psyassist.optional import require

SUFFIXES = {".pdf": "pdf", ".docx": "docx", ".epub": "epub", ".html": "html", ".htm": "html",
            ".xhtml": "html", ".md": "markdown", ".markdown": "markdown", ".txt": "text", ".text": "text"}
# A DOCX/EPUB is a zip: more than this many times its own size when unpacked is a zip bomb, not a book
# (text-heavy EPUBs unpack to ~2–4×; the ratio of a real bomb is in the thousands).
MAX_UNPACK_RATIO = 50


class KbFileError(PsyassistError):
    """A file that cannot be ingested: `file` and a `reason` a person can act on."""

    def __init__(self, file: str | Path, reason: str):
        self.file, self.reason = str(file), reason
        super().__init__(f"{file}: {reason}")


@dataclass
class Block:
    text: str
    section: str = ""          # heading path, "Chapter 2 › Panic"
    page: int | None = None    # 1-based, PDF only
    heading: bool = False


@dataclass
class Document:
    path: str
    format: str
    title: str
    author: str = ""
    blocks: list[Block] = field(default_factory=list)


def parse_file(path: str | Path) -> Document:
    """Parse one file by its suffix; raises KbFileError for anything that yields no usable text."""
    p = Path(path)
    fmt = SUFFIXES.get(p.suffix.lower())
    if fmt is None:
        raise KbFileError(p, f"unsupported file type '{p.suffix}' (supported: {', '.join(sorted(SUFFIXES))})")
    if fmt in ("docx", "epub"):
        _check_zip(p, fmt)
    doc = PARSERS[fmt](p)
    doc.blocks = [b for b in doc.blocks if b.text.strip()]
    if not any(not b.heading for b in doc.blocks):
        raise KbFileError(p, "no text found in the file")
    return doc


def _check_zip(p: Path, fmt: str) -> None:
    if not zipfile.is_zipfile(p):
        raise KbFileError(p, f"not a valid {fmt.upper()} (a {fmt.upper()} is a zip archive; this one is corrupt "
                             "or truncated)")
    try:
        with zipfile.ZipFile(p) as z:
            unpacked = sum(i.file_size for i in z.infolist())
    except (zipfile.BadZipFile, OSError) as e:
        raise KbFileError(p, f"corrupt {fmt.upper()} archive ({e})") from e
    if unpacked > MAX_UNPACK_RATIO * max(p.stat().st_size, 1) and unpacked > 50_000_000:
        raise KbFileError(p, f"archive unpacks to {unpacked / 1e6:.0f} MB from {p.stat().st_size / 1e6:.1f} MB "
                             "(a zip bomb?); not opened")


# --- text helpers ------------------------------------------------------------------------------

_CJK = r"\u3400-\u9fff\uf900-\ufaff\u3000-\u303f\uff00-\uffef"


def join_lines(lines: list[str]) -> str:
    """Join the hard-wrapped lines of one paragraph: no space between CJK characters, undo hyphenation."""
    out = ""
    for line in (ln.strip() for ln in lines):
        if not line:
            continue
        if not out:
            out = line
        elif out.endswith("-") and len(out) > 1 and out[-2].isalpha():
            out = out[:-1] + line
        elif re.match(f"[{_CJK}]", out[-1]) or re.match(f"[{_CJK}]", line[0]):
            out += line
        else:
            out += " " + line
    return out


def paragraphs(text: str) -> list[str]:
    """Blank-line separated paragraphs, each with its wrapped lines joined."""
    return [p for p in (join_lines(chunk.splitlines()) for chunk in re.split(r"\n\s*\n", text)) if p]


class _Sections:
    """The heading path at the current point of a document (levels 1..6)."""

    def __init__(self):
        self.stack: list[tuple[int, str]] = []

    def push(self, level: int, title: str) -> None:
        self.stack = [(lv, t) for lv, t in self.stack if lv < level] + [(level, title)]

    def __str__(self) -> str:
        return " › ".join(t for _, t in self.stack)


# --- formats -----------------------------------------------------------------------------------


def parse_text(p: Path) -> Document:
    text, _ = decode(p.read_bytes(), p)
    return Document(str(p), "text", p.stem, blocks=[Block(t) for t in paragraphs(text)])


_FRONT = re.compile(r"\A---\s*\n(.*?)\n---\s*\n", re.S)


def parse_markdown(p: Path) -> Document:
    text, _ = decode(p.read_bytes(), p)
    meta = {}
    m = _FRONT.match(text)
    if m:  # YAML front matter: only the flat `key: value` lines matter here
        for line in m.group(1).splitlines():
            k, _, v = line.partition(":")
            meta[k.strip().lower()] = v.strip().strip("\"'")
        text = text[m.end():]
    doc = Document(str(p), "markdown", meta.get("title", ""), meta.get("author", ""))
    sections, para, in_fence = _Sections(), [], False

    def flush():
        if para:
            doc.blocks.append(Block(join_lines(para) if not in_fence else "\n".join(para), str(sections)))
            para.clear()

    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            flush()
            in_fence = not in_fence
            continue
        h = None if in_fence else re.match(r"^(#{1,6})\s+(.*?)\s*#*\s*$", line)
        if h:
            flush()
            title = h.group(2).strip()
            sections.push(len(h.group(1)), title)
            doc.title = doc.title or title
            doc.blocks.append(Block(title, str(sections), heading=True))
        elif not line.strip():
            flush()
        else:
            para.append(re.sub(r"^\s*(?:[-*+]|\d+[.)])\s+", "", line) if not in_fence else line)
    flush()
    doc.title = doc.title or p.stem
    return doc


class _HtmlBlocks(HTMLParser):
    """Headings and text blocks of an HTML page; script/style/nav/header/footer are dropped."""

    BLOCK = {"p", "li", "td", "th", "blockquote", "pre", "dd", "dt", "div", "section", "article", "br", "tr",
             "figcaption", "caption"}
    SKIP = {"script", "style", "nav", "header", "footer", "noscript", "template", "svg"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.blocks: list[Block] = []
        self.sections = _Sections()
        self.title = self.author = ""
        self.buf: list[str] = []
        self.skip = 0
        self.heading: int | None = None
        self.in_title = False

    def _flush(self):
        text = re.sub(r"\s+", " ", "".join(self.buf)).strip()
        self.buf = []
        if not text:
            return
        if self.heading:
            self.sections.push(self.heading, text)
            self.blocks.append(Block(text, str(self.sections), heading=True))
        else:
            self.blocks.append(Block(text, str(self.sections)))

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag in self.SKIP:
            self.skip += 1
        elif tag == "title":
            self.in_title = True
        elif tag == "meta" and (a.get("name") or "").lower() in ("author", "dc.creator"):
            self.author = self.author or (a.get("content") or "").strip()
        elif re.fullmatch(r"h[1-6]", tag):
            self._flush()
            self.heading = int(tag[1])
        elif tag in self.BLOCK:
            self._flush()

    def handle_endtag(self, tag):
        if tag in self.SKIP:
            self.skip = max(0, self.skip - 1)
        elif tag == "title":
            self.in_title = False
        elif re.fullmatch(r"h[1-6]", tag):
            self._flush()
            self.heading = None
        elif tag in self.BLOCK:
            self._flush()

    def handle_data(self, data):
        if self.in_title:
            self.title += data.strip()
        elif not self.skip:
            self.buf.append(data)

    def close(self):
        super().close()
        self._flush()


def _html_blocks(html: str) -> _HtmlBlocks:
    parser = _HtmlBlocks()
    parser.feed(html)
    parser.close()
    return parser


def parse_html(p: Path) -> Document:
    text, _ = decode(p.read_bytes(), p)
    h = _html_blocks(text)
    first_heading = next((b.text for b in h.blocks if b.heading), "")
    return Document(str(p), "html", h.title or first_heading or p.stem, h.author, h.blocks)


def parse_pdf(p: Path) -> Document:
    pypdf = require("pypdf", "reading PDF files in the knowledge library")
    try:
        reader = pypdf.PdfReader(str(p))
        if reader.is_encrypted and not reader.decrypt(""):  # "" opens PDFs with only an owner password
            raise KbFileError(p, "encrypted PDF (password-protected); save an unencrypted copy first, "
                                 "e.g. `qpdf --decrypt --password=PASSWORD in.pdf out.pdf`")
        meta = reader.metadata or {}
        title, author = str(meta.get("/Title") or "").strip(), str(meta.get("/Author") or "").strip()
        blocks = []
        for i, page in enumerate(reader.pages, start=1):
            blocks += [Block(t, page=i) for t in paragraphs(page.extract_text() or "")]
    except KbFileError:
        raise
    except Exception as e:  # pypdf raises many types (PdfReadError, struct errors, …) for a broken file
        raise KbFileError(p, f"not a readable PDF ({type(e).__name__}: {e})") from e
    if not "".join(b.text for b in blocks).strip():
        raise KbFileError(p, f"PDF has {len(reader.pages)} page(s) but no text layer (a scanned PDF?); "
                             "run OCR first, e.g. `ocrmypdf in.pdf out.pdf`")
    return Document(str(p), "pdf", title or p.stem, author, blocks)


def parse_docx(p: Path) -> Document:
    try:  # not require(): its fallback pip name would be 'docx', an unrelated package
        import docx
    except ImportError as e:
        raise MissingDependency("python-docx", "reading DOCX files in the knowledge library") from e
    try:
        d = docx.Document(str(p))
    except Exception as e:  # PackageNotFoundError, KeyError for a missing part, BadZipFile
        raise KbFileError(p, f"not a readable DOCX ({type(e).__name__}: {e})") from e
    sections, blocks = _Sections(), []
    for para in d.paragraphs:
        text, style = para.text.strip(), (para.style.name if para.style is not None else "") or ""
        m = re.match(r"(?:Heading|标题)\s*(\d)", style)
        if text and (m or style == "Title"):
            sections.push(int(m.group(1)) if m else 0, text)
            blocks.append(Block(text, str(sections), heading=True))
        elif text:
            blocks.append(Block(text, str(sections)))
    for table in d.tables:  # tables after the body text: their position in the flow is not kept
        for row in table.rows:
            cells = [c.text.strip() for c in row.cells if c.text.strip()]
            if cells:
                blocks.append(Block(" | ".join(dict.fromkeys(cells)), str(sections)))
    cp = d.core_properties
    first_heading = next((b.text for b in blocks if b.heading), "")
    return Document(str(p), "docx", (cp.title or "").strip() or first_heading or p.stem,
                    (cp.author or "").strip(), blocks)


def parse_epub(p: Path) -> Document:
    ebooklib = require("ebooklib", "reading EPUB files in the knowledge library")
    from ebooklib import epub

    try:
        book = epub.read_epub(str(p), options={"ignore_ncx": True})
    except Exception as e:  # EpubException, BadZipFile, KeyError, lxml errors
        raise KbFileError(p, f"not a readable EPUB ({type(e).__name__}: {e})") from e

    def meta(name):
        vals = book.get_metadata("DC", name)
        return str(vals[0][0]).strip() if vals else ""

    blocks = []
    for item_id, _linear in book.spine:
        item = book.get_item_with_id(item_id)
        if item is None or item.get_type() != ebooklib.ITEM_DOCUMENT:
            continue
        h = _html_blocks(item.get_content().decode("utf-8", errors="replace"))
        blocks += h.blocks
    return Document(str(p), "epub", meta("title") or p.stem, meta("creator"), blocks)


PARSERS = {"pdf": parse_pdf, "docx": parse_docx, "epub": parse_epub, "html": parse_html,
           "markdown": parse_markdown, "text": parse_text}
