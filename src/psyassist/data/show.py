"""A readable terminal viewer for counseling dialogues.

    psyassist data show corpus.jsonl --tag 婚恋 --limit 2 --max-chars 300

Selection (one of): --index N (0-based), --id ID, --tag TAG (dialogues carrying
it), --random (seeded by --seed); none of them shows from index 0.  --limit K
dialogues are shown.  Each dialogue: a header (index, id, tags, source, turns),
the system prompt folded to its first SYSTEM_PREVIEW characters with a note
(--system shows it whole), then one coloured panel per turn: 来访者 / User (blue),
咨询师 / Assistant (green).  Rich wraps CJK text by display width.
"""

from __future__ import annotations

import random
from collections import Counter

from psyassist.data.schema import Conversation
from psyassist.errors import PsyassistError
from psyassist.ui import console

SYSTEM_PREVIEW = 120  # characters; PsyDTCorpus's system prompt alone is ~740
LABELS = {"user": ("来访者 / User", "blue"), "assistant": ("咨询师 / Assistant", "green"),
          "system": ("系统 / System", "magenta")}


def select(convs: list[Conversation], *, index: int | None = None, id_: str | None = None,
           tag: str | None = None, rand: bool = False, seed: int = 0, limit: int = 1) -> list[int]:
    """Indices of the dialogues to show; a PsyassistError says what would have matched."""
    n = len(convs)
    if n == 0:
        raise PsyassistError("no dialogues to show: the input is empty")
    if sum(x is not None and x is not False for x in (index, id_, tag, rand or None)) > 1:
        raise PsyassistError("choose one of --index, --id, --tag, --random")
    if limit < 1:
        raise PsyassistError(f"--limit must be >= 1, got {limit}")
    if id_ is not None:
        hits = [i for i, c in enumerate(convs) if c.id == id_]
        if not hits:
            examples = ", ".join(c.id for c in convs[:5])
            raise PsyassistError(f"no dialogue has id {id_!r} ({n:,} dialogues; ids look like: {examples})")
        return hits[:limit]
    if tag is not None:
        hits = [i for i, c in enumerate(convs) if tag in c.tags]
        if not hits:
            counts = Counter(t for c in convs for t in c.tags)
            avail = ", ".join(f"{t} ({k})" for t, k in counts.most_common(20)) or "none — the dialogues have no tags"
            raise PsyassistError(f"no dialogue is tagged {tag!r}; available tags: {avail}")
        return hits[:limit]
    if rand:
        return sorted(random.Random(seed).sample(range(n), min(limit, n)))
    start = 0 if index is None else index
    if not 0 <= start < n:
        raise PsyassistError(f"--index {start} is out of range: valid indices are 0..{n - 1} ({n:,} dialogues)")
    return list(range(start, min(start + limit, n)))


def _clip(text: str, max_chars: int | None) -> str:
    if max_chars is None or len(text) <= max_chars:
        return text
    return text[:max_chars] + f" … [+{len(text) - max_chars:,} characters]"


def show(convs: list[Conversation], indices: list[int], *, max_chars: int | None = None,
         full_system: bool = False) -> None:
    from rich.markup import escape
    from rich.panel import Panel
    from rich.rule import Rule
    from rich.text import Text

    for i in indices:
        c = convs[i]
        n_turns = sum(m.role != "system" for m in c.messages)
        head = f"[bold]#{i}[/]  id={escape(c.id)}  turns={n_turns}"
        if c.tags:
            head += f"  tags={escape(', '.join(c.tags))}"
        if c.source:
            head += f"  source={escape(c.source)}"
        console.print(Rule(head, align="left"))
        for j, m in enumerate(c.messages):
            label, colour = LABELS[m.role]
            text = m.content
            if m.role == "system" and not full_system and len(text) > SYSTEM_PREVIEW:
                note = f"system prompt: {len(text):,} characters, first {SYSTEM_PREVIEW} shown (--system shows all)"
                console.print(Text(text[:SYSTEM_PREVIEW] + " …", style="dim"))
                console.print(Text(note, style="dim italic"))
                continue
            # Text(), not markup: dialogue text may hold "[...]" that Rich would parse as tags.
            body = Text(_clip(text, max_chars)) if text.strip() else Text("(empty turn)", style="dim italic")
            console.print(Panel(body, title=f"{j} {label}", title_align="left",
                                border_style=colour))
