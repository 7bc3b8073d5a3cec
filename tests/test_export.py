"""Record export: Markdown structure survives any user text; the PDF embeds a subset CJK font, wraps,
breaks pages and extracts back to the same Chinese and English text."""

from __future__ import annotations

import dataclasses
import html
import io
import re

import pypdf
import pytest
from fontTools.ttLib import TTFont
from markdown_it import MarkdownIt

from psyassist.app import export
from psyassist.app.export import (
    ExportNote,
    ExportRecord,
    ExportSection,
    FontNotFound,
    find_font,
    sample_record,
    to_markdown,
    to_pdf,
    wrap,
)

HOSTILE = "# not a heading\n| a | b |\n|---|---|\n*not em* _nor this_\n<script>alert(1)</script>\n1. not a list\n" \
          "- not a bullet\n> not a quote\n---\n    not code\n&amp; [not](a link) back\\slash `tick`"
HOSTILE_LINES = [line.strip() for line in HOSTILE.splitlines()]


def record(notes: list[ExportNote], basic_value: str = "孙某") -> ExportRecord:
    return ExportRecord(
        title="Client record — 孙某",
        meta=[("Exported at", "2026-12-05 10:30"), ("Tags", "睡眠, stress")],
        basic_info_title="Basic information",
        basic_info=[("Name", basic_value), ("Chief complaint", "失眠两个月\n工作压力 work stress")],
        notes_title="Session notes",
        notes=notes,
        labels={"addenda": "Addenda", "page": "Page", "of": "of", "confidential": "CONFIDENTIAL"},
    )


def note(i: int, question: str = "来访者焦虑 anxiety，睡眠不好。", items: list[str] | None = None) -> ExportNote:
    return ExportNote(
        heading=f"Note {i} · 2026-12-{i:02d}",
        meta=[("Status", "signed"), ("Model", "psyassist-qwen3 draft")],
        sections=[ExportSection("咨询问题 Counseling Question", "text", [question]),
                  ExportSection("Interventions", "list", items or ["共情 empathy", "psychoeducation 心理教育"])],
        addenda=[("Addendum · 2026-12-03 · counselor-7", "来电确认 confirmed by phone")],
    )


def markdown_html(text: str) -> str:
    return MarkdownIt("commonmark").enable("table").render(text)


def pdf_text(data: bytes) -> list[str]:
    return [page.extract_text() for page in pypdf.PdfReader(io.BytesIO(data)).pages]


def squash(text: str) -> str:
    return re.sub(r"\s+", "", text)


# ---------------------------------------------------------------- Markdown


def test_markdown_headings_meta_and_numbered_lists():
    md = to_markdown(record([note(2), note(1, items=["one", "two", "three"])]))
    headings = re.findall(r"^(#+) (.*)$", md, flags=re.M)
    assert headings == [
        ("#", "Client record — 孙某"), ("##", "Basic information"), ("##", "Session notes"),
        ("###", "Note 2 · 2026-12-02"), ("####", "咨询问题 Counseling Question"), ("####", "Interventions"),
        ("####", "Addenda"),
        ("###", "Note 1 · 2026-12-01"), ("####", "咨询问题 Counseling Question"), ("####", "Interventions"),
        ("####", "Addenda"),
    ]
    assert "1. one\n2. two\n3. three\n" in md
    assert "- **Chief complaint:** 失眠两个月\\\n  工作压力 work stress\n" in md  # newline = hard break
    page = markdown_html(md)
    assert page.count("<ol>") == 2 and page.count("<h3>") == 2
    assert "<li>失眠两个月<br />\n工作压力 work stress" not in page  # the value stays inside its item:
    assert "<strong>Chief complaint:</strong> 失眠两个月<br />\n工作压力 work stress</li>" in page


@pytest.mark.parametrize("where", ["basic_info", "paragraph", "list_item", "addendum"])
def test_markdown_user_text_stays_text(where):
    rec = record([note(1)])
    if where == "basic_info":
        rec.basic_info[0] = ("Name", HOSTILE)
    elif where == "paragraph":
        rec.notes[0].sections[0].items = [HOSTILE]
    elif where == "list_item":
        rec.notes[0].sections[1].items = [HOSTILE, "second"]
    else:
        rec.notes[0].addenda = [("# Addendum | *x*", HOSTILE)]
    page = markdown_html(to_markdown(rec))
    # No structure from the user text: the only blocks are ours.
    assert page.count("<h1>") == 1 and page.count("<h2>") == 2 and page.count("<h3>") == 1
    for tag in ("<table", "<script", "<em>", "<blockquote>", "<hr", "<pre>", "<code>", "<a "):
        assert tag not in page, tag
    assert page.count("<ol>") == 1 and page.count("<li>") == 2 + 2 + 2 + 2  # meta, basic info, note meta, items
    # ... and every line of it reads back as typed.
    shown = html.unescape(re.sub(r"<[^>]+>", "", page))
    for line in HOSTILE_LINES:
        assert line in shown, line


def test_markdown_blank_line_inside_a_list_item_stays_in_the_item():
    rec = record([note(1, items=["first paragraph\n\nsecond paragraph", "next"])])
    page = markdown_html(to_markdown(rec))
    assert re.search(r"<li>\s*<p>first paragraph</p>\s*<p>second paragraph</p>\s*</li>", page)
    assert page.count("<ol>") == 1


# ---------------------------------------------------------------- line breaking


def width(s: str) -> float:  # a wide (CJK) character is two units, everything else one
    return sum(2 if export._wide(ch) else 1 for ch in s)


def test_wrap_breaks_chinese_anywhere_english_at_spaces_and_respects_punctuation():
    text = "来访者自述近两个月睡眠不好，入睡困难。She says counseling helps（有时）。"
    lines = wrap(text, 20, width)
    assert all(width(line) <= 20 for line in lines)
    assert squash("".join(lines)) == squash(text)  # nothing lost
    assert not any(line[0] in "，。）" for line in lines[1:])  # closing punctuation never starts a line
    assert not any(line.endswith("（") for line in lines)
    for word in ("She", "says", "counseling", "helps"):
        assert any(word in line for line in lines), word  # English words are never split


def test_wrap_breaks_a_word_longer_than_the_line_and_keeps_newlines():
    lines = wrap("see https://example.org/a/very/long/path/without/spaces\n\nend", 12, width)
    assert all(width(line) <= 12 for line in lines)
    assert lines[0] == "see" and "".join(lines[1:-2]) == "https://example.org/a/very/long/path/without/spaces"
    assert lines[-2:] == ["", "end"]


# ---------------------------------------------------------------- PDF


def test_the_pip_font_comes_first():
    path, index = find_font()
    assert path.name == "NotoSansSC-Regular.otf" and index == 0  # pylopdf-fonts-zh-cn


def test_pdf_text_extracts_in_order_with_chinese_and_english_mixed():
    rec = record([note(2, question="第二次：焦虑 anxiety 减轻。"), note(1)])
    pages = pdf_text(to_pdf(rec))
    assert len(pages) == 1
    text = pages[0]
    assert "Client record — 孙某" in text
    assert "第二次：焦虑 anxiety 减轻。" in text  # one mixed line, exactly, no spaces between Chinese characters
    assert "1. 共情 empathy" in text or "1.共情 empathy" in text
    assert text.startswith("Client record — 孙某 CONFIDENTIAL\n")  # the header
    order = ["Exported at", "Basic information", "失眠两个月", "工作压力 work stress",
             "Session notes", "Note 2", "第二次", "Interventions", "psychoeducation 心理教育", "Addenda",
             "来电确认 confirmed by phone", "Note 1", "来访者焦虑 anxiety，睡眠不好。", "Page 1 of 1"]
    positions = [text.index(s) for s in order]
    assert positions == sorted(positions), text


def test_long_note_spans_pages_with_header_and_page_x_of_y():
    long_chinese = "来访者反复描述与母亲的冲突以及由此带来的内疚感和无力感" * 60  # ~1,600 characters, no spaces
    items = [f"第 {i} 条：Intervention {i} with a longwordthatkeepsgoingwithoutanyspacesatall 长词" for i in range(40)]
    rec = record([note(1, question=long_chinese, items=items)])
    pages = pdf_text(to_pdf(rec))
    n = len(pages)
    assert n >= 3
    for i, page in enumerate(pages, 1):
        assert "CONFIDENTIAL" in page and f"Page {i} of {n}" in page
    body = squash("".join(page.split("\n", 1)[1].rsplit("\n", 1)[0] for page in pages))  # minus header, footer
    assert squash(long_chinese) in body  # wrapped across lines and pages, nothing lost
    assert all(squash(item) in body for item in items)
    assert squash("longwordthatkeepsgoingwithoutanyspacesatall") in body


def test_pdf_embeds_a_small_subset_truetype_font():
    rec = record([note(1)])
    data = to_pdf(rec)
    reader = pypdf.PdfReader(io.BytesIO(data))
    fonts = [f.get_object() for f in reader.pages[0]["/Resources"]["/Font"].values()]
    assert len(fonts) == 1
    font = fonts[0]
    assert font["/Subtype"] == "/Type0" and font["/Encoding"] == "/Identity-H" and "/ToUnicode" in font
    assert re.fullmatch(r"/[A-Z]{6}\+NotoSansSC", font["/BaseFont"])  # the subset tag
    descendant = font["/DescendantFonts"][0].get_object()
    assert descendant["/Subtype"] == "/CIDFontType2"
    embedded = descendant["/FontDescriptor"]["/FontFile2"].get_data()
    glyphs = TTFont(io.BytesIO(embedded))["maxp"].numGlyphs
    distinct = len(set("".join(export._texts(dataclasses.astuple(rec)))))
    # only this record's glyphs (+ digits and the few the footer and placeholders need), not the 30,000 of the font
    assert glyphs <= distinct + 24 and len(data) < 100_000, (glyphs, distinct, len(data))


def test_ten_note_record_is_small():
    data = to_pdf(sample_record(10))
    assert len(pypdf.PdfReader(io.BytesIO(data)).pages) >= 5
    assert len(data) < 250_000, len(data)


def test_a_character_the_font_lacks_is_shown_as_its_code_point():
    text = pdf_text(to_pdf(record([note(1, question="心情 😀 good")])))[0]
    assert "心情 [U+1F600] good" in text


def test_font_path_overrides_the_lookup(tmp_path):
    # A TrueType (glyf) font with the characters of this record only, as a user might configure.
    rec = record([note(1)])
    own = tmp_path / "own.ttf"
    text = "".join(export._texts(dataclasses.astuple(rec))) + "中0123456789 []+U."
    export._subset_truetype(*find_font(), text, own)
    assert find_font(own) == (own, 0)
    assert "来访者焦虑 anxiety，睡眠不好。" in pdf_text(to_pdf(rec, font_path=own))[0]
    with pytest.raises(FontNotFound, match="missing.ttf is not a file"):
        to_pdf(rec, font_path=tmp_path / "missing.ttf")


def test_no_cjk_font_fails_with_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setattr(export, "_font_candidates", lambda: iter([(tmp_path / "NotoSansCJK-Regular.ttc", None)]))
    assert find_font() is None
    with pytest.raises(FontNotFound, match=r"pip install pylopdf-fonts-zh-cn.*fonts-noto-cjk.*font_path"):
        to_pdf(record([note(1)]))
    # A record without CJK text still exports, in the PDF core font (nothing to embed).
    latin = ExportRecord("Client record — Sun", [], "Basic information", [("Name", "Sun → S.")], "Notes",
                         [ExportNote("Note 1", [], [ExportSection("Plan", "text", ["Sleep diary."])], [])], {})
    data = to_pdf(latin)
    assert "/FontFile" not in data.decode("latin-1")
    text = pdf_text(data)[0]
    assert "Client record — Sun" in text and "Sun [U+2192] S." in text and "Page 1 of 1" in text


def test_markdown_headings_keep_hashes_and_markup_as_text():
    rec = record([note(1)])
    rec.title, rec.notes[0].heading = "# Client | *x* #", "Note #3 <b>bold</b> #"
    page = markdown_html(to_markdown(rec))
    assert "<h1># Client | *x* #</h1>" in page
    assert "<h3>Note #3 &lt;b&gt;bold&lt;/b&gt; #</h3>" in page
