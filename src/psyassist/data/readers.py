"""Readers: every supported corpus layout → list[Conversation].  (MINIMAL PLACEHOLDER:
only OpenAI-messages JSON/JSONL; the full set of readers replaces this file.)

    psyassist data formats
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from psyassist.data.io import read_text
from psyassist.data.schema import Conversation
from psyassist.errors import DataError

FORMATS = {"openai": "OpenAI messages: {id?, messages:[{role, content}]} as JSONL or a JSON array"}


@dataclass
class ReadResult:
    conversations: list[Conversation] = field(default_factory=list)
    skipped: Counter = field(default_factory=Counter)  # reason -> count
    warnings: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    formats: dict[str, str] = field(default_factory=dict)  # file -> detected format


def expand_sources(sources: Sequence[str | Path]) -> list[Path]:
    out: list[Path] = []
    for s in sources:
        p = Path(s)
        if p.is_dir():
            out.extend(sorted(q for q in p.rglob("*") if q.is_file() and q.suffix in (".json", ".jsonl", ".gz")))
        elif any(c in str(s) for c in "*?["):
            out.extend(sorted(Path().glob(str(s))))
        else:
            out.append(p)
    return out


def read_conversations(sources, fmt: str = "auto", *, skip_invalid: bool = False,
                       counsel_chat: str = "top", show_progress: bool = True) -> ReadResult:
    res = ReadResult()
    for path in expand_sources(sources):
        text, warning = read_text(path)
        if warning:
            res.warnings.append(warning)
        res.files.append(str(path))
        res.formats[str(path)] = "openai"
        stripped = text.lstrip()
        if stripped.startswith("["):
            rows = [(None, i, r) for i, r in enumerate(json.loads(text))]
        else:
            rows = []
            for ln, line in enumerate(text.splitlines(), 1):
                if line.strip():
                    rows.append((ln, len(rows), json.loads(line)))
        for ln, idx, row in rows:
            try:
                res.conversations.append(Conversation.from_dict(row, file=str(path), line=ln, record=idx,
                                                                default_id=f"{path.stem}-{idx}"))
            except DataError as e:
                if not skip_invalid:
                    raise
                res.skipped[e.reason] += 1
    return res


def describe_formats() -> None:
    for k, v in FORMATS.items():
        print(f"{k}: {v}")
