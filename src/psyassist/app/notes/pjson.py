"""Parse a JSON prefix: what a constrained model has written so far, or a reply cut off by max_tokens.

    python -c "from psyassist.app.notes.pjson import parse_prefix; print(parse_prefix('{\\"a\\":[\\"x\\",\\"y'))"

Constrained decoding guarantees the text is always a PREFIX of valid JSON, not that it ends:
the stream shows a half-written item, and a reply cut by the token limit stops mid-string.
`parse_prefix` closes what is open (the string, then the arrays and objects) and drops what
cannot be closed (a half-written key, a dangling ':' or ',', a half number or literal, a
half escape), so every prefix gives a value; `open_string` says whether the last string was
still being written (that item is not complete yet).
"""

from __future__ import annotations

import json
from dataclasses import dataclass


@dataclass
class Prefix:
    value: object  # the closed JSON value (None when nothing usable was written yet)
    open_string: bool  # the text ended inside a string: its last string leaf is incomplete
    complete: bool  # the text was a whole JSON value already


def _scan(text: str) -> tuple[list[str], bool, list[int]]:
    """(open brackets, ends inside a string, cut points): a cut point is a position where a value or a
    member ends or a container opens, i.e. where the text can be truncated and then closed."""
    stack: list[str] = []
    in_str = esc = False
    cuts = [0]
    for i, ch in enumerate(text):
        if in_str:
            if esc:
                esc = False
            elif ch == "\\":
                esc = True
            elif ch == '"':
                in_str = False
                cuts.append(i + 1)
            continue
        if ch == '"':
            in_str = True
        elif ch in "{[":
            stack.append(ch)
            cuts.append(i + 1)
        elif ch in "}]":
            if stack:
                stack.pop()
            cuts.append(i + 1)
        elif ch == ",":
            cuts.append(i)  # cut before the comma
    return stack, in_str, cuts


def _close(text: str) -> str:
    stack, in_str, _ = _scan(text)
    out = text
    if in_str:
        # Drop a half escape (`\` or `\u12`) so the closing quote is not escaped or the escape invalid.
        tail = out[out.rfind('"'):]
        bs = tail.rfind("\\")
        if bs >= 0 and (len(tail) - bs <= 1 or (tail[bs + 1:bs + 2] == "u" and len(tail) - bs < 6)):
            out = out[:len(out) - (len(tail) - bs)]
        out += '"'
    stripped = out.rstrip()
    if stripped.endswith((",", ":")):
        stripped = stripped[:-1]
    return stripped + "".join("}" if b == "{" else "]" for b in reversed(stack))


def parse_prefix(text: str) -> Prefix:
    text = text.strip()
    if not text:
        return Prefix(None, False, False)
    try:
        return Prefix(json.loads(text), False, True)
    except ValueError:
        pass
    _, in_str, cuts = _scan(text)
    candidates = [text] + [text[:c] for c in sorted(set(cuts), reverse=True) if c < len(text)]
    for n, cand in enumerate(candidates):
        try:
            value = json.loads(_close(cand))
        except ValueError:
            continue
        return Prefix(value, in_str and n == 0, False)
    return Prefix(None, False, False)
