"""Drafts: the context a draft sees, the prompts, the model's JSON → editable items, regeneration.

    python -c "from psyassist.app.notes.draft import empty_content; from psyassist.app.notes.templates import load_templates; print(empty_content(load_templates()['seed004']))"

A draft's content (stored encrypted) is
    {"sections": {key: [item, ...]}, "basic_info": {field: item or None}, "section_comments": {key: [comment]}}
    item = {"id", "text", "origin", "model_text", "comments": [{"id", "by", "at", "text"}], "deleted"}
origin: "model" (as generated), "regenerated" (the model rewrote it), "edited" (the counselor changed
a model item), "counselor" (written by hand).  `model_text` is the model's last text for the item
(None for hand-written items) and deleted items are kept with `deleted: true`: the pairs (what the
model proposed → what the counselor kept) are what per-client adapters learn from.

Context (seed 004: the assistant sees the client's history, about 3,000–5,000 characters): the
basic information, then earlier notes newest first, whole while they fit the token budget; older
notes that do not fit whole are summarized (date, question, symptom type / first line of each
section, cut to ~160 characters) while those fit; the rest are dropped.  The page shows which
notes were used whole, summarized and dropped.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field

from psyassist.app.notes.pjson import parse_prefix
from psyassist.app.notes.templates import BASIC_INFO, BASIC_KEYS, BASIC_MAX_CHARS, Template

HAND = ("counselor", "edited")  # items a regeneration must keep as they are
SUMMARY_CHARS = 160


def _id() -> str:
    return secrets.token_hex(6)


def new_item(text: str, origin: str, model_text: str | None = None) -> dict:
    return {"id": _id(), "text": text, "origin": origin, "model_text": model_text, "comments": [], "deleted": False}


def empty_content(t: Template) -> dict:
    return {"sections": {s.key: ([new_item("", "counselor")] if s.kind == "text" else []) for s in t.sections},
            "basic_info": {k: None for k in BASIC_KEYS}, "section_comments": {s.key: [] for s in t.sections}}


def _clean(text, cap: int) -> str:
    return str(text).strip()[:cap] if isinstance(text, str) else ""


def content_from_model(t: Template, value) -> tuple[dict, list[str]]:
    """Editable draft content from the model's (closed) JSON; problems lists what had to be repaired."""
    content, problems = empty_content(t), []
    obj = value if isinstance(value, dict) else {}
    if not isinstance(value, dict):
        problems.append("the model wrote no JSON object")
    for s in t.sections:
        raw = obj.get(s.key)
        texts = [raw] if s.kind == "text" else (raw if isinstance(raw, list) else [])
        texts = [x for x in (_clean(v, s.max_chars) for v in texts) if x][:s.max_items]
        if raw is None:
            problems.append(f"section {s.key} is missing")
        if s.kind == "text":
            text = texts[0] if texts else ""
            content["sections"][s.key] = [new_item(text, "model" if text else "counselor", text or None)]
        else:
            content["sections"][s.key] = [new_item(x, "model", x) for x in texts]
    updates = obj.get("basic_info_updates") if isinstance(obj.get("basic_info_updates"), dict) else {}
    for k in BASIC_KEYS:
        text = _clean(updates.get(k, ""), BASIC_MAX_CHARS)
        content["basic_info"][k] = new_item(text, "model", text) if text else None
    return content, problems


def parse_draft(t: Template, text: str) -> tuple[dict, list[str]]:
    """The model's whole reply → content; a reply cut by the token limit is closed, never lost."""
    pre = parse_prefix(text)
    content, problems = content_from_model(t, pre.value)
    if not pre.complete and pre.value is not None:
        problems.insert(0, "the reply was cut off before the JSON ended; what was written is kept")
    return content, problems


def live_items(content: dict, key: str) -> list[dict]:
    return [i for i in content["sections"].get(key, []) if not i.get("deleted")]


def final_sections(t: Template, content: dict) -> dict[str, list[str]]:
    """What a saved note version holds: {section key: [item text, ...]} (no empty or deleted items)."""
    return {s.key: [i["text"].strip() for i in live_items(content, s.key) if i["text"].strip()] for s in t.sections}


def basic_updates(content: dict) -> dict[str, str]:
    return {k: it["text"].strip() for k, it in content["basic_info"].items()
            if it and not it.get("deleted") and it["text"].strip()}


def find_item(content: dict, item_id: str) -> tuple[str, str, dict] | None:
    """(where: 'section'|'basic', key, item) of an item id, or None."""
    for key, items in content["sections"].items():
        for it in items:
            if it["id"] == item_id:
                return "section", key, it
    for key, it in content["basic_info"].items():
        if it and it["id"] == item_id:
            return "basic", key, it
    return None


# --- context ---------------------------------------------------------------------------------


@dataclass
class PastNote:
    id: str
    date: str
    template: Template
    sections: dict[str, list[str]]


@dataclass
class Context:
    text: str
    whole: list[str] = field(default_factory=list)  # note ids used whole
    summarized: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    tokens: int = 0

    def describe(self) -> dict:
        return {"whole": self.whole, "summarized": self.summarized, "dropped": self.dropped, "tokens": self.tokens}


def basic_info_text(info: dict[str, str]) -> str:
    lines = [f"- {en}: {info.get(k, '').strip() or '(not recorded)'}" for k, en, _, _ in BASIC_INFO]
    return "\n".join(lines)


def note_text(n: PastNote) -> str:
    out = [f"### Session {n.date}"]
    for s in n.template.sections:
        items = n.sections.get(s.key, [])
        if not items:
            continue
        if s.kind == "text":
            out.append(f"{s.title('en')}: {items[0]}")
        else:
            out.append(f"{s.title('en')}:")
            out += [f"{i}. {x}" for i, x in enumerate(items, 1)]
    return "\n".join(out)


def note_summary(n: PastNote) -> str:
    parts = []
    for s in n.template.sections:
        items = n.sections.get(s.key, [])
        if items:
            parts.append(f"{s.title('en')}: {items[0]}")
    text = "; ".join(parts)
    return f"- {n.date}: " + (text[:SUMMARY_CHARS - 1] + "…" if len(text) > SUMMARY_CHARS else text)


def select_context(info: dict[str, str], notes: list[PastNote], budget: int, count: Callable[[str], int]) -> Context:
    """Basic information + earlier notes (newest first) within `budget` tokens, as described above."""
    head = "## Personal basic information\n" + basic_info_text(info)
    used = count(head)
    ctx = Context(head)
    whole, summaries = [], []
    for n in notes:
        if not ctx.summarized and not ctx.dropped:
            t = note_text(n)
            c = count(t)
            if used + c <= budget:
                whole.append(t)
                ctx.whole.append(n.id)
                used += c
                continue
        s = note_summary(n)
        c = count(s)
        if used + c <= budget:
            summaries.append(s)
            ctx.summarized.append(n.id)
            used += c
        else:
            ctx.dropped.append(n.id)
    parts = [head]
    if whole:
        parts.append("## Earlier session notes (newest first)\n" + "\n\n".join(whole))
    if summaries:
        parts.append("## Older sessions (summaries)\n" + "\n".join(summaries))
    if ctx.dropped:
        parts.append(f"({len(ctx.dropped)} older session notes are not shown.)")
    ctx.text = "\n\n".join(parts)
    ctx.tokens = used
    return ctx


# --- prompts ---------------------------------------------------------------------------------

SYSTEM = ("You are PhyAssist, an assistant to a professional psychological counselor. You help the counselor; "
          "you never speak to the client. Work only from what the counselor wrote and the client's record; do not "
          "invent facts. Write in the language of the counselor's input (Chinese or English). If anything suggests "
          "a risk of suicide, self-harm or harm to others, say so first in the analysis and advise a risk "
          "assessment and safety plan.")


def _format_spec(t: Template) -> str:
    lines = []
    for s in t.sections:
        shape = "a string" if s.kind == "text" else f"a list of {s.min_items} to {s.max_items} strings"
        lines.append(f'- "{s.key}" ({s.title("en")}): {shape}: {s.guide}')
    keys = ", ".join(f'"{k}"' for k in BASIC_KEYS)
    lines.append(f'- "basic_info_updates": an object with {keys}: new facts this session adds to the client\'s '
                 'basic information, one short phrase each; "" when the session adds nothing')
    return "\n".join(lines)


def _with_library(library: str) -> str:
    """The library passages block (app.library.passages_text), placed between the record and this session."""
    return f"{library.strip()}\n\n" if library.strip() else ""


def draft_messages(t: Template, context: Context, counselor_input: str, library: str = "") -> list[dict]:
    user = (f"{context.text}\n\n{_with_library(library)}"
            f"## This session: the counselor's notes\n{counselor_input.strip()}\n\n"
            f"Write the draft of this session's note as one JSON object with these keys:\n{_format_spec(t)}")
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]


def _draft_text(t: Template, content: dict, mark: str | None = None) -> str:
    out = []
    for s in t.sections:
        items = live_items(content, s.key)
        out.append(f"{s.title('en')}:")
        for n, it in enumerate(items, 1):
            tag = "  <-- rewrite this item" if it["id"] == mark else (
                "  (written by the counselor: keep)" if it["origin"] in HAND else "")
            out.append(f"{n}. {it['text'] or '(empty)'}{tag}")
            out += [f"   counselor's comment: {c['text']}" for c in it["comments"]]
        out += [f"   counselor's comment on this section: {c['text']}"
                for c in content.get("section_comments", {}).get(s.key, [])]
    return "\n".join(out)


def item_messages(t: Template, context: Context, counselor_input: str, content: dict, item_id: str,
                  library: str = "") -> list[dict]:
    where, key, item = find_item(content, item_id)
    if where == "basic":
        label = next(en for k, en, _, _ in BASIC_INFO if k == key)
        what = f'the client\'s "{label}" (basic information)'
    else:
        what = f'one item of the "{t.section(key).title("en")}" section'
    comments = "\n".join(f"- {c['text']}" for c in item["comments"]) or "- (none)"
    user = (f"{context.text}\n\n{_with_library(library)}"
            f"## This session: the counselor's notes\n{counselor_input.strip()}\n\n"
            f"## The current draft\n{_draft_text(t, content, item_id)}\n\n"
            f"Rewrite {what}. The current text is: {item['text'] or '(empty)'}\n"
            f"The counselor's comments on it:\n{comments}\n"
            'Follow the comments. Answer with a JSON object {"text": "..."} holding only the new text.')
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]


def item_schema(max_chars: int) -> dict:
    return {"type": "object", "properties": {"text": {"type": "string", "maxLength": max_chars}},
            "required": ["text"], "additionalProperties": False}


def section_messages(t: Template, context: Context, counselor_input: str, content: dict, key: str,
                     n_new: int, library: str = "") -> list[dict]:
    s = t.section(key)
    kept = [i["text"] for i in live_items(content, key) if i["origin"] in HAND]
    keep = "\n".join(f"- {x}" for x in kept) or "- (none)"
    comments = "\n".join(f"- {c['text']}" for c in content.get("section_comments", {}).get(key, [])) or "- (none)"
    user = (f"{context.text}\n\n{_with_library(library)}"
            f"## This session: the counselor's notes\n{counselor_input.strip()}\n\n"
            f"## The current draft\n{_draft_text(t, content)}\n\n"
            f'Rewrite the "{s.title("en")}" section ({s.guide}). The counselor wrote these items and keeps them; '
            f"do not repeat them:\n{keep}\nThe counselor's comments on the section:\n{comments}\n"
            f'Answer with a JSON object {{"items": [...]}} holding {n_new} new item(s).')
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]


def section_schema(max_chars: int, n_new: int) -> dict:
    return {"type": "object", "additionalProperties": False, "required": ["items"],
            "properties": {"items": {"type": "array", "items": {"type": "string", "maxLength": max_chars},
                                     "minItems": 1, "maxItems": max(1, n_new)}}}


def prompt_hash(messages: list[dict], schema: dict | None) -> str:
    blob = json.dumps({"messages": messages, "schema": schema}, ensure_ascii=False, sort_keys=True)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]


def apply_section(t: Template, content: dict, key: str, texts: list[str]) -> None:
    """Replace a list section's model items by `texts`, keeping the counselor's items (a text section is
    regenerated as its one item)."""
    s = t.section(key)
    assert s.kind == "list", s
    old = content["sections"][key]
    kept = [i for i in old if i["origin"] in HAND or i.get("deleted")]
    room = s.max_items - len([i for i in kept if not i.get("deleted")])
    new = [new_item(x, "regenerated", x) for x in (y.strip()[:s.max_chars] for y in texts) if x][:max(room, 0)]
    for i in old:  # the replaced model items stay as deleted: the counselor asked for them to be redone
        if i not in kept:
            i["deleted"] = True
            kept.append(i)
    content["sections"][key] = kept + new


def keep_hand_items(t: Template, old: dict | None, new: dict) -> dict:
    """A regenerated whole draft keeps what the counselor wrote: hand-written and edited items (and
    basic-information fields) of `old` win over the model's new ones; their comments come along."""
    if not old:
        return new
    for s in t.sections:
        hand = [i for i in live_items(old, s.key) if i["origin"] in HAND and i["text"].strip()]
        if not hand:
            continue
        if s.kind == "text":
            new["sections"][s.key] = hand[:1]
        else:
            room = max(s.max_items - len(hand), 0)
            new["sections"][s.key] = hand + live_items(new, s.key)[:room]
    for k, it in old.get("basic_info", {}).items():
        if it and it["origin"] in HAND and not it.get("deleted"):
            new["basic_info"][k] = it
    new["section_comments"] = old.get("section_comments", new["section_comments"])
    return new
