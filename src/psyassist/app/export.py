"""A client's record as Markdown and as PDF (A4, Chinese and English, subset CJK font embedded).

    python -m psyassist.app.export /tmp/record     # writes /tmp/record.md and /tmp/record.pdf of a sample

The caller (the app) decrypts and localizes; this module only lays out an `ExportRecord`:
`to_markdown(rec) -> str` and `to_pdf(rec, font_path=None) -> bytes`.

Markdown: user text never changes the structure.  Inline markup characters (`\\ * _ ` [ ] < > | & ~`)
are backslash-escaped everywhere, block markers (`#`, `>`, `-`, `+`, `=`, `1.`) at line starts, and a
newline inside a value is a hard line break (`\\` at the line end), a blank line a new paragraph.

PDF (fpdf2): one font for Chinese and Latin (Noto Sans SC covers both), so a mixed line needs no
font switching.  The font is found in this order:
1. `font_path` (a .ttf/.otf/.ttc/.otc file; a collection's Simplified Chinese face is picked by name);
2. the pip package `pylopdf-fonts-zh-cn` (Noto Sans SC Regular, SIL OFL 1.1), in the `app` extra;
3. fontconfig: `fc-match :lang=zh-cn` (e.g. Debian's fonts-noto-cjk or fonts-wqy-microhei);
4. common system paths (`SYSTEM_FONTS`).
A record with no CJK text falls back to the PDF core font Helvetica; one with CJK text and no
font raises `FontNotFound` naming what to install — never tofu.

The chosen face is cut down to the record's characters and rebuilt as a TrueType font
(CFF cubic outlines → quadratic, error ≤ 1 font unit of 1000) before fpdf2 embeds it.  Why: fpdf2
embeds a CID-keyed CFF font (every Noto/Source Han CJK OTF) with a custom CMap encoding whose
codes are not the CIDs, and pypdf (among other extractors) then reads wrong widths and puts a
space between every Chinese character.  TrueType with Identity-H is the path every reader knows.
Cost: ~0.3 s per 800 distinct characters; the 10-note `sample_record(10)` is 5 pages, 38 KB, 0.3 s.

Line breaking is ours (fpdf2 breaks at spaces only): a break is allowed at spaces and next to
any wide (CJK) character, except before closing punctuation (，。）」…) and after opening
punctuation (（「“…); a word longer than the line is broken between characters.
"""

from __future__ import annotations

import dataclasses
import re
import shutil
import subprocess
import sys
import tempfile
import unicodedata
from dataclasses import dataclass
from itertools import zip_longest
from pathlib import Path

from psyassist.errors import MissingDependency, PsyassistError


@dataclass
class ExportSection:
    title: str  # e.g. "Counseling Question" / "咨询问题"
    kind: str  # "text" (one paragraph, items has one element) or "list" (numbered items)
    items: list[str]


@dataclass
class ExportNote:
    heading: str  # e.g. "Note 3 · 2026-12-01"
    meta: list[tuple[str, str]]  # (label, value): status, version, signed by/at, model provenance
    sections: list[ExportSection]
    addenda: list[tuple[str, str]]  # (heading like "Addendum · 2026-12-03 · counselor-7", text)


@dataclass
class ExportRecord:
    title: str  # "Client record — 孙某"
    meta: list[tuple[str, str]]  # exported at / by, tags, client since
    basic_info_title: str
    basic_info: list[tuple[str, str]]  # the five fields (label, value), values may be multi-line
    notes_title: str
    notes: list[ExportNote]  # newest first, as the app shows them
    labels: dict[str, str]  # localized small words: "addenda", "page", "of", "confidential"; LABELS fills gaps


# The small words the layout uses; the caller's `labels` override them.  The footer reads
# "{page} 3 {of} 12{pages_end}": "Page 3 of 12", or for Chinese page="第", of="页，共", pages_end=" 页"
# gives "第 3 页，共 12 页".
LABELS = {"addenda": "Addenda", "page": "Page", "of": "of", "pages_end": "", "confidential": "CONFIDENTIAL"}

FONT_INSTALL_HINT = (
    "pip install pylopdf-fonts-zh-cn (Noto Sans SC, SIL OFL; part of pip install 'psyassist[app]'), "
    "or apt-get install fonts-noto-cjk, or pass font_path= a .ttf/.otf/.ttc font with Chinese glyphs"
)
# Free CJK fonts where Debian/Ubuntu and Fedora put them; tried after fontconfig.
SYSTEM_FONTS = (
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/google-noto-cjk/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
    "/usr/share/fonts/wqy-microhei/wqy-microhei.ttc",
)


class FontNotFound(PsyassistError):
    """The record has CJK text and no font with CJK glyphs was found."""


def _labels(rec: ExportRecord) -> dict[str, str]:
    return {**LABELS, **rec.labels}


# ---------------------------------------------------------------- Markdown

_INLINE = re.compile(r"([\\`*_\[\]<>|&~])")
_LINE_START = re.compile(r"^([#>+=-])")  # heading, quote, bullet, setext underline
_ORDERED = re.compile(r"^(\d+)([.)])")  # "1." / "1)" would start a numbered list


def _md_line(line: str) -> str:
    """One line of user text, escaped so it stays plain text wherever it lands."""
    line = _INLINE.sub(r"\\\1", line.strip())  # strip: 4 leading spaces would open a code block
    return _ORDERED.sub(r"\1\\\2", _LINE_START.sub(r"\\\1", line))


def _md_text(text: str, indent: str = "") -> str:
    """User text as Markdown: newline → hard break, blank line → new paragraph (indented to stay
    inside a list item)."""
    paragraphs = [p for p in re.split(r"\n\s*\n", text.strip()) if p.strip()]
    return ("\n\n" + indent).join(
        ("\\\n" + indent).join(_md_line(line) for line in p.splitlines() if line.strip()) for p in paragraphs
    )


def _md_heading(level: int, text: str) -> str:
    # Heading content is inline only, so no line-start escapes; `#` is escaped too: a heading
    # ending in " #" would lose it as a closing sequence.
    return "#" * level + " " + re.sub(r"([\\`*_\[\]<>|&~#])", r"\\\1", " ".join(text.split()))


def _md_pairs(pairs: list[tuple[str, str]]) -> list[str]:
    return [f"- **{_md_line(' '.join(label.split()))}:** {_md_text(value, '  ')}" for label, value in pairs]


def to_markdown(rec: ExportRecord) -> str:
    labels = _labels(rec)
    out = [_md_heading(1, rec.title), ""]
    if rec.meta:
        out += [*_md_pairs(rec.meta), ""]
    out += [_md_heading(2, rec.basic_info_title), "", *_md_pairs(rec.basic_info), ""]
    out += [_md_heading(2, rec.notes_title), ""]
    for note in rec.notes:
        out += [_md_heading(3, note.heading), ""]
        if note.meta:
            out += [*_md_pairs(note.meta), ""]
        for section in note.sections:
            out += [_md_heading(4, section.title), ""]
            if section.kind == "list":
                for i, item in enumerate(section.items, 1):
                    prefix = f"{i}. "
                    out.append(prefix + _md_text(item, " " * len(prefix)))
            else:
                out.append(_md_text("\n\n".join(section.items)))
            out.append("")
        if note.addenda:
            out += [_md_heading(4, labels["addenda"]), ""]
            for heading, text in note.addenda:
                out += [f"**{_md_line(' '.join(heading.split()))}**", "", _md_text(text), ""]
    return "\n".join(out).rstrip() + "\n"


# ---------------------------------------------------------------- font lookup and preparation

_HAN_PROBE = 0x4E2D  # 中: a font without it is no CJK font (fc-match falls back to DejaVu)
_CJK = re.compile(r"[\u2e80-\u9fff\uac00-\ud7af\uf900-\ufaff\uff00-\uffef\U00020000-\U0003134f]")


def _face_index(path: Path) -> int:
    """In a .ttc/.otc collection, the Simplified Chinese face ("Noto Sans CJK SC"), else the first."""
    if path.suffix.lower() not in (".ttc", ".otc"):
        return 0
    from fontTools.ttLib import TTCollection

    for i, face in enumerate(TTCollection(path, lazy=True).fonts):
        if re.search(r"\b(SC|CN|GB)\b", face["name"].getBestFamilyName() or ""):
            return i
    return 0


def _has_han(path: Path, index: int) -> bool:
    from fontTools.ttLib import TTFont

    try:
        return _HAN_PROBE in (TTFont(path, fontNumber=index, lazy=True).getBestCmap() or {})
    except Exception:  # not a font fontTools can read: try the next place
        return False


def _font_candidates():
    """(path, face index or None) in lookup order after `font_path`; tests point this at nothing."""
    try:
        import pylopdf_fonts_zh_cn

        yield pylopdf_fonts_zh_cn.sans_path(), 0
    except ImportError:
        pass
    if shutil.which("fc-match"):
        done = subprocess.run(
            ["fc-match", "--format=%{file}\n%{index}", ":lang=zh-cn"], capture_output=True, text=True, timeout=20
        )
        file, _, index = done.stdout.partition("\n")
        if done.returncode == 0 and file:
            yield Path(file), int(index or 0)
    for path in SYSTEM_FONTS:
        yield Path(path), None


def find_font(font_path: str | Path | None = None) -> tuple[Path, int] | None:
    """The CJK font to use as (file, face index), or None when there is none."""
    if font_path is not None:
        path = Path(font_path)
        if not path.is_file():
            raise FontNotFound(f"font_path {path} is not a file. Fix the path, or leave it unset and {FONT_INSTALL_HINT}.")
        index = _face_index(path)
        if not _has_han(path, index):
            raise FontNotFound(f"font_path {path} has no Chinese glyphs (no 中). {FONT_INSTALL_HINT}.")
        return path, index
    for path, index in _font_candidates():
        if path.is_file():
            index = _face_index(path) if index is None else index
            if _has_han(path, index):
                return path, index
    return None


def _subset_truetype(path: Path, index: int, text: str, out: Path) -> set[int]:
    """Write to `out` a TrueType font with only the glyphs `text` needs; return the code points it covers."""
    from fontTools.fontBuilder import FontBuilder
    from fontTools.pens.cu2quPen import Cu2QuPen
    from fontTools.pens.recordingPen import DecomposingRecordingPen
    from fontTools.pens.ttGlyphPen import TTGlyphPen
    from fontTools.ttLib import TTFont

    src = TTFont(path, fontNumber=index, lazy=True)
    cmap = src.getBestCmap()
    covered = {ord(ch) for ch in text} & cmap.keys()
    names = [".notdef", *sorted({cmap[c] for c in covered} - {".notdef"})]
    glyph_set = src.getGlyphSet(location={"wght": 400} if "fvar" in src else None)  # a variable font: Regular
    glyphs, metrics = {}, {}
    for name in names:
        recording = DecomposingRecordingPen(glyph_set)  # components inlined: the subset may lack their bases
        glyph_set[name].draw(recording)
        pen = TTGlyphPen(None)
        recording.replay(Cu2QuPen(pen, max_err=1.0, reverse_direction=True))
        glyph = glyphs[name] = pen.glyph()
        glyph.recalcBounds(None)
        metrics[name] = (round(glyph_set[name].width), glyph.xMin if glyph.numberOfContours else 0)
    os2, hhea = src["OS/2"], src["hhea"]
    builder = FontBuilder(src["head"].unitsPerEm, isTTF=True)
    builder.setupGlyphOrder(names)
    builder.setupCharacterMap({c: cmap[c] for c in covered})
    builder.setupGlyf(glyphs)
    builder.setupHorizontalMetrics(metrics)
    builder.setupHorizontalHeader(ascent=hhea.ascent, descent=hhea.descent, lineGap=hhea.lineGap)
    family = re.sub(r"[^A-Za-z0-9]", "", src["name"].getBestFamilyName() or "") or "CJK"
    builder.setupNameTable({"familyName": family, "styleName": "Regular", "psName": family + "-Regular"})
    builder.setupOS2(
        sTypoAscender=os2.sTypoAscender, sTypoDescender=os2.sTypoDescender, sTypoLineGap=os2.sTypoLineGap,
        usWinAscent=os2.usWinAscent, usWinDescent=os2.usWinDescent,
        sxHeight=os2.sxHeight if os2.version >= 2 else 0, sCapHeight=os2.sCapHeight if os2.version >= 2 else 0,
        fsType=os2.fsType,  # the source's embedding permission, kept
    )
    builder.setupPost()
    builder.save(out)
    return covered


def _visible(text: str, covered) -> str:
    """Characters the font lacks become "[U+1F600]": shown, never a silent box."""
    text = text.replace("\t", "    ").replace("\r", "")
    return "".join(ch if ch == "\n" or ch in covered else f"[U+{ord(ch):04X}]" for ch in text)


def _texts(obj) -> list[str]:
    if isinstance(obj, str):
        return [obj]
    return [s for x in (obj.values() if isinstance(obj, dict) else obj) for s in _texts(x)]


class _Cp1252:
    """What the core font Helvetica can show (fpdf2 encodes it as cp1252)."""

    def __contains__(self, ch: str) -> bool:
        try:
            ch.encode("cp1252")
            return True
        except UnicodeEncodeError:
            return False


# ---------------------------------------------------------------- line breaking

# May not begin a line (closing punctuation) / may not end one (opening punctuation).
_NO_START = set("，。、；：？！）」』】〉》〕…‥—～’”%,.;:?!)]}·・ー々")
_NO_END = set("（「『【〈《〔‘“([{")


def _wide(ch: str) -> bool:
    return unicodedata.east_asian_width(ch) in "WF"


def _breakable(prev: str, ch: str) -> bool:
    """May a line break fall between two non-space characters?"""
    return (_wide(prev) or _wide(ch)) and ch not in _NO_START and prev not in _NO_END


def _atoms(text: str) -> list[str]:
    """Unbreakable pieces: a run of spaces, a word, or a CJK character with its bound punctuation."""
    atoms: list[str] = []
    for ch in text:
        prev = atoms[-1][-1] if atoms else ""
        if prev and ch.isspace() == prev.isspace() and (ch.isspace() or not _breakable(prev, ch)):
            atoms[-1] += ch
        else:
            atoms.append(ch)
    return atoms


def wrap(text: str, width: float, measure) -> list[str]:
    """Lines of `text` no wider than `width` by `measure(str) -> float`; "\\n" starts a new line."""
    lines: list[str] = []
    for paragraph in text.split("\n"):
        line, used = "", 0.0
        for atom in _atoms(paragraph):
            w = measure(atom)
            if atom.isspace():
                if line:
                    line, used = line + atom, used + w
                continue
            if w > width:  # a word longer than the line: on a line of its own, broken between characters
                if line:
                    lines.append(line.rstrip())
                line, used = "", 0.0
                for ch in atom:
                    cw = measure(ch)
                    if line and used + cw > width:
                        lines.append(line)
                        line, used = "", 0.0
                    line, used = line + ch, used + cw
                continue
            if line and used + w > width:
                lines.append(line.rstrip())
                line, used = "", 0.0
            line, used = line + atom, used + w
        lines.append(line.rstrip())
    return lines


# ---------------------------------------------------------------- PDF

MARGIN, TOP, BOTTOM = 18.0, 20.0, 18.0  # mm; the header sits in TOP, the footer in BOTTOM
BODY_PT = 10.5  # CJK at 10.5 pt (五号, the usual Chinese body size) reads well on A4
LEADING = 1.55  # line height / font size: CJK needs more than Latin's ~1.2
INK, GREY, ACCENT = (20, 20, 20), (105, 105, 105), (30, 60, 110)
PT = 25.4 / 72  # mm per point


def _fpdf():
    try:
        import fpdf
    except ImportError as e:
        raise MissingDependency("fpdf2", "PDF export", "app") from e
    return fpdf


class _Writer:
    """Draws blocks top to bottom and breaks pages itself (fpdf2's auto break is off), so a heading
    is never left alone at a page end and two-column rows break line by line."""

    def __init__(self, pdf, family: str, covered):
        self.pdf, self.family, self.covered = pdf, family, covered
        self.limit = pdf.h - BOTTOM

    def font(self, size: float, color=INK) -> float:
        self.pdf.set_font(self.family, size=size)
        self.pdf.set_text_color(*color)
        self.pdf.set_draw_color(*color)  # the stroke of fake bold
        return size * LEADING * PT

    def need(self, height: float) -> None:
        if self.pdf.get_y() + height > self.limit:
            self.pdf.add_page()

    def lines(self, text: str, w: float) -> list[str]:
        return wrap(_visible(text, self.covered), w, self.pdf.get_string_width)

    def write_line(self, x: float, w: float, h: float, text: str, bold: bool = False) -> None:
        self.need(h)
        self.pdf.set_xy(x, self.pdf.get_y())
        # Regular-only font: bold is the outline stroked 3% of the size wide (0.3 pt at 10.5 pt);
        # the text stays text, extractable.
        self.pdf.text_mode = "FILL_STROKE" if bold else "FILL"
        self.pdf.set_line_width(0.03 * self.pdf.font_size_pt * PT)
        self.pdf.cell(w=w, h=h, text=text)
        self.pdf.text_mode = "FILL"
        self.pdf.set_y(self.pdf.get_y() + h)

    def heading(self, text: str, size: float, color=ACCENT, space_before: float = 3.0, keep: int = 3) -> None:
        """A bold heading kept on one page with the `keep` body lines that follow it."""
        h = self.font(size, color)
        lines = self.lines(" ".join(text.split()), self.pdf.epw)
        if self.pdf.get_y() > TOP:
            self.pdf.set_y(self.pdf.get_y() + space_before)
        self.need(h * len(lines) + keep * BODY_PT * LEADING * PT)
        for line in lines:
            self.write_line(MARGIN, self.pdf.epw, h, line, bold=True)

    def paragraph(self, text: str, x: float, w: float, size: float = BODY_PT, color=INK) -> None:
        h = self.font(size, color)
        for line in self.lines(text, w):
            self.write_line(x, w, h, line)

    def pairs(self, pairs: list[tuple[str, str]], label_w: float, size: float, value_color=INK) -> None:
        """Label | value rows; both columns wrap, a row breaks across pages line by line."""
        h = self.font(size)
        x, w = MARGIN, self.pdf.epw
        for label, value in pairs:
            self.font(size, GREY)
            left = self.lines(label, label_w - 3)
            self.font(size, value_color)
            right = self.lines(value, w - label_w)
            for lt, rt in zip_longest(left, right, fillvalue=""):
                self.need(h)
                y = self.pdf.get_y()
                self.font(size, GREY)
                self.pdf.set_xy(x, y)
                self.pdf.cell(w=label_w - 3, h=h, text=lt)
                self.font(size, value_color)
                self.pdf.set_xy(x + label_w, y)
                self.pdf.cell(w=w - label_w, h=h, text=rt)
                self.pdf.set_y(y + h)
            self.pdf.set_y(self.pdf.get_y() + 0.6)

    def numbered(self, items: list[str]) -> None:
        h = self.font(BODY_PT)
        gutter = self.pdf.get_string_width(f"{len(items)}.") + 2.5
        x, w = MARGIN + 1.5, self.pdf.epw - 1.5
        for i, item in enumerate(items, 1):
            for j, line in enumerate(self.lines(item, w - gutter)):
                self.need(h)
                y = self.pdf.get_y()
                if j == 0:
                    self.pdf.set_xy(x, y)
                    self.pdf.cell(w=gutter - 1.5, h=h, text=f"{i}.", align="R")
                self.pdf.set_xy(x + gutter, y)
                self.pdf.cell(w=w - gutter, h=h, text=line)
                self.pdf.set_y(y + h)
            self.pdf.set_y(self.pdf.get_y() + 0.8)

    def rule(self, color=(200, 200, 200), width: float = 0.2) -> None:
        y = self.pdf.get_y() + 1.0
        self.pdf.set_draw_color(*color)
        self.pdf.set_line_width(width)
        self.pdf.line(MARGIN, y, self.pdf.w - MARGIN, y)
        self.pdf.set_y(y + 2.0)


def to_pdf(rec: ExportRecord, font_path: str | Path | None = None) -> bytes:
    fpdf = _fpdf()
    labels = _labels(rec)
    footer = f"{labels['page']} 0123456789 {labels['of']} "  # every character the footer can print
    text = "".join(_texts(dataclasses.astuple(rec))) + "".join(labels.values()) + footer + "[U+ABCDEF]."
    found = find_font(font_path)
    if found is None and _CJK.search(text):
        raise FontNotFound(f"No font with Chinese glyphs found for the PDF export of {rec.title!r}. {FONT_INSTALL_HINT}.")
    with tempfile.TemporaryDirectory(prefix="psyassist-export-") as tmp:
        subset = Path(tmp) / "cjk.ttf"  # fpdf2 reads it again at output(), so it lives until then
        if found is None:
            family, covered = "helvetica", _Cp1252()
        else:
            family, covered = "cjk", {chr(c) for c in _subset_truetype(*found, text, subset)}

        def visible(s: str) -> str:
            return _visible(" ".join(s.split()), covered)

        header_left, header_right = visible(rec.title), visible(labels["confidential"])
        page_words = visible(labels["page"]), visible(labels["of"]), visible(labels["pages_end"])

        class Doc(fpdf.FPDF):
            def header(self):
                self.set_font(family, size=8)
                self.set_text_color(*GREY)
                self.set_xy(MARGIN, 9)
                right_w = self.get_string_width(header_right) + 2
                left = wrap(header_left, self.epw - right_w - 4, self.get_string_width)[0]
                self.cell(w=self.epw - right_w, h=4, text=left)
                self.set_text_color(160, 30, 30)
                self.cell(w=right_w, h=4, text=header_right, align="R")
                self.set_draw_color(200, 200, 200)
                self.set_line_width(0.2)
                self.line(MARGIN, 14, self.w - MARGIN, 14)
                self.set_y(TOP)

            def footer(self):
                self.set_font(family, size=8)
                self.set_text_color(*GREY)
                self.set_xy(MARGIN, self.h - 12)
                # {nb} is fpdf2's alias for the page count, filled in at output().
                self.cell(w=self.epw, h=4, text=f"{page_words[0]} {self.page_no()} {page_words[1]} {{nb}}{page_words[2]}", align="C")

        pdf = Doc(format="A4", unit="mm")
        pdf.set_margins(MARGIN, TOP, MARGIN)
        pdf.set_auto_page_break(False)
        pdf.c_margin = 0  # text starts at the margin, flush with the rules
        pdf.set_title(rec.title)
        pdf.set_creator("psyassist")
        if found is not None:
            pdf.add_font(family, fname=str(subset))
        else:
            pdf.core_fonts_encoding = "cp1252"
        pdf.add_page()
        out = _Writer(pdf, family, covered)
        epw = pdf.epw

        out.heading(rec.title, 17, INK, space_before=0)
        pdf.set_y(pdf.get_y() + 1)
        out.pairs(rec.meta, 34, 8.5, GREY)
        out.heading(rec.basic_info_title, 13)
        out.rule()
        out.pairs(rec.basic_info, 34, BODY_PT)
        out.heading(rec.notes_title, 13, space_before=5)
        out.rule()
        for n, note in enumerate(rec.notes):
            # keep a note's heading with its meta lines, the first section's title and two of its lines
            out.heading(note.heading, 12, space_before=6 if n else 1, keep=len(note.meta) + 4)
            out.pairs(note.meta, 34, 8.5, GREY)
            for section in note.sections:
                out.heading(section.title, BODY_PT, INK, space_before=2)
                if section.kind == "list":
                    out.numbered(section.items)
                else:
                    for item in section.items:
                        out.paragraph(item, MARGIN, epw)
            if note.addenda:
                out.heading(labels["addenda"], BODY_PT, INK, space_before=2)
                for heading, addendum in note.addenda:
                    out.paragraph(heading, MARGIN + 4, epw - 4, 8.5, GREY)
                    out.paragraph(addendum, MARGIN + 4, epw - 4)
                    pdf.set_y(pdf.get_y() + 1)
            if n + 1 < len(rec.notes):
                out.rule((225, 225, 225), 0.15)
        return bytes(pdf.output())


# ---------------------------------------------------------------- the sample behind the docstring command


def sample_record(n_notes: int = 3) -> ExportRecord:
    """A made-up record (no real client) mixing Chinese and English, for the demo and the size check."""
    notes = [
        ExportNote(
            heading=f"第 {i} 次会谈 · Session {i} · 2026-12-{i:02d}",
            meta=[("状态 Status", "已签署 signed"), ("版本 Version", "2"), ("签署 Signed by", "counselor-7 · 2026-12-03"),
                  ("模型 Model", "psyassist-qwen3-1.7b-lora (draft), edited by the counselor")],
            sections=[
                ExportSection("咨询问题 Counseling Question", "text", [
                    "来访者自述近两个月睡眠不好，入睡困难，早醒；工作压力大（季度考核），与伴侣的沟通减少。"
                    "She says “I just can't switch off at night” and mentions CBT-I as something she read about."]),
                ExportSection("干预 Interventions", "list", [
                    "共情与正常化：说明压力下的睡眠变化很常见。",
                    "Psychoeducation on sleep hygiene; agreed on a fixed wake-up time of 07:00.",
                    "布置作业：睡眠日记一周（sleep diary, 7 days）。"]),
                ExportSection("计划 Plan", "text", ["下次会谈回顾睡眠日记；评估是否需要转介精神科。"]),
            ],
            addenda=[("补充 Addendum · 2026-12-04 · counselor-7", "来访者来电确认下次时间。")] if i % 2 else [],
        )
        for i in range(n_notes, 0, -1)
    ]
    return ExportRecord(
        title="来访者档案 Client record — 孙某",
        meta=[("导出 Exported", "2026-12-05 10:30 · counselor-7"), ("标签 Tags", "睡眠, 压力"), ("建档 Client since", "2026-10-02")],
        basic_info_title="基本信息 Basic information",
        basic_info=[("姓名 Name", "孙某"), ("性别/年龄 Sex/Age", "女, 34"), ("职业 Occupation", "软件工程师 software engineer"),
                    ("来源 Referral", "自行预约 self-referred"), ("主诉 Chief complaint", "失眠两个月\n工作压力")],
        notes_title="会谈记录 Session notes",
        notes=notes,
        labels={"addenda": "补充记录 Addenda", "page": "第", "of": "页 / 共", "confidential": "保密 CONFIDENTIAL"},
    )


if __name__ == "__main__":
    stem = Path(sys.argv[1] if len(sys.argv) > 1 else "record")
    stem.parent.mkdir(parents=True, exist_ok=True)
    record = sample_record()
    stem.with_suffix(".md").write_text(to_markdown(record), encoding="utf-8")
    stem.with_suffix(".pdf").write_bytes(to_pdf(record))
    print(f"wrote {stem.with_suffix('.md')} and {stem.with_suffix('.pdf')}")
