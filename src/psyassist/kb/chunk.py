"""Blocks → chunks that respect headings, paragraphs and sentence ends, sized in embedding-model tokens.

    python -c "from psyassist.kb.chunk import split_sentences; print(split_sentences('我很难过。你呢？Fine. OK!'))"

A chunk never crosses a heading (a new section starts a new chunk). Inside a section, whole
paragraphs are packed while they fit; a paragraph that would not fit closes the chunk when the chunk
is already at least half full, else it is cut at sentence ends (。！？；!?; and . before a space);
a sentence longer than a whole chunk is cut by length. Consecutive chunks of a section share their
last sentences up to `overlap` tokens, so a passage cut at a boundary is still found whole once.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass

from psyassist.kb.parse import Block

TokenCounter = Callable[[list[str]], list[int]]

# A sentence ends at Chinese or ASCII terminal punctuation (plus closing quotes/brackets); a '.'
# ends one only before whitespace or the end, so 3.5 and e.g.x stay whole.
_END = re.compile(r"[。！？；!?;…]+[”’\"'』」）)\]]*\s*|\.+[”’\"')\]]*(?:\s+|$)")


def split_sentences(text: str) -> list[str]:
    """Sentences with their trailing spaces kept, so ''.join(result) == text."""
    out, start = [], 0
    for m in _END.finditer(text):
        if m.end() > start:
            out.append(text[start:m.end()])
            start = m.end()
    if start < len(text):
        out.append(text[start:])
    return [s for s in out if s.strip()]


@dataclass
class Chunk:
    text: str
    section: str
    page: int | None
    page_end: int | None
    n_tokens: int


@dataclass
class _Unit:  # one sentence
    text: str
    para: int
    page: int | None
    n: int


def _cut_long(text: str, n: int, size: int, count: TokenCounter) -> list[tuple[str, int]]:
    """A sentence of n > size tokens cut into pieces by length (characters ∝ tokens), counted again."""
    k = math.ceil(n / size) + 1  # +1: tokens are not spread evenly over characters
    step = math.ceil(len(text) / k)
    pieces = [text[i:i + step] for i in range(0, len(text), step)]
    return list(zip(pieces, count(pieces), strict=True))


def chunk_blocks(blocks: list[Block], count: TokenCounter, *, size: int = 200, overlap: int = 40) -> list[Chunk]:
    """Chunks of at most ~`size` tokens (by `count`) with up to `overlap` tokens shared between neighbours."""
    if overlap >= size:
        raise ValueError(f"overlap ({overlap}) must be smaller than the chunk size ({size})")
    groups: list[tuple[str, list[Block]]] = []
    for b in blocks:
        if b.heading or not groups or groups[-1][0] != b.section:
            groups.append((b.section, []))
        if not b.heading:
            groups[-1][1].append(b)
    chunks: list[Chunk] = []
    for section, paras in groups:
        if paras:
            chunks += _chunk_section(section, paras, count, size, overlap)
    return chunks


def _chunk_section(section: str, paras: list[Block], count: TokenCounter, size: int, overlap: int) -> list[Chunk]:
    sents = [(i, b.page, s) for i, b in enumerate(paras) for s in split_sentences(b.text)]
    counts = count([s for _, _, s in sents]) if sents else []
    units: list[_Unit] = []
    for (i, page, s), n in zip(sents, counts, strict=True):
        pieces = _cut_long(s, n, size, count) if n > size else [(s, n)]
        units += [_Unit(t, i, page, m) for t, m in pieces]
    para_tokens: dict[int, int] = {}
    for u in units:
        para_tokens[u.para] = para_tokens.get(u.para, 0) + u.n

    chunks: list[Chunk] = []
    cur: list[_Unit] = []
    fresh = 0  # units in `cur` that are not overlap carried from the previous chunk

    def close():
        nonlocal cur, fresh
        if fresh == 0:
            return
        chunks.append(_make(section, cur))
        carry, total = [], 0
        for u in reversed(cur):  # the last sentences, up to `overlap` tokens, start the next chunk
            if total + u.n > overlap:
                break
            carry.insert(0, u)
            total += u.n
        cur, fresh = carry, 0

    for j, u in enumerate(units):
        used = sum(x.n for x in cur)
        starts_para = j == 0 or units[j - 1].para != u.para
        if starts_para and fresh and used + para_tokens[u.para] > size and used >= size // 2:
            close()  # keep the paragraph whole in the next chunk rather than cut it
            used = sum(x.n for x in cur)
        if used + u.n > size:
            close()
            if sum(x.n for x in cur) + u.n > size:
                cur = []
        cur.append(u)
        fresh += 1
    close()
    return chunks


def _make(section: str, units: list[_Unit]) -> Chunk:
    text, prev = "", None
    for u in units:
        if prev is not None and u.para != prev:
            text = text.rstrip() + "\n"
        text += u.text
        prev = u.para
    pages = [u.page for u in units if u.page is not None]
    return Chunk(text.strip(), section, min(pages) if pages else None, max(pages) if pages else None,
                 sum(u.n for u in units))
