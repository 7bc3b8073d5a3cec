"""Cleaning and deduplication rules applied by `psyassist data prepare`.

    psyassist data prepare corpus.jsonl --out prepared/ --same-role merge --urls strip

Each rule is counted by name in the prepare report.  Turn-level text fixes
(`modified` counts, one per turn or per removed item):
  crlf_normalized     \\r\\n and lone \\r → \\n
  junk_chars          C0/C1 control characters other than \\n and \\t, zero-width
                      characters, BOM, U+FFFD replacement characters, private-use
                      code points (removed; each character counted)
  special_tokens      chat-template tokens inside text (<|im_end|>, <|endoftext|>,
                      </s>, <s>, [INST], <<SYS>>, ...): left in, they would end a
                      turn early or fake a role once rendered (removed, counted)
  urls_stripped       http(s)/www links (with --urls strip, the default)
  whitespace_trimmed  leading/trailing whitespace of a turn
  pii_*               see psyassist.safety.pii (counted per type in the report)
Turn-level structure fixes (counted per turn removed or merged):
  empty_turns, misplaced_system (system not at position 0), leading_assistant,
  same_role_merged (joined with "\\n"), trailing_user_trimmed
Conversation drops (`dropped` counts): has_url (--urls drop), same_role
(--same-role drop), no_assistant, too_long_chars, too_long_tokens (prepare),
duplicate_exact, duplicate_normalized.

Every rule is idempotent: cleaning cleaned data changes nothing (tested).
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass

from psyassist.data.schema import Conversation, Message

URL_MODES = ("strip", "drop", "keep")
SAME_ROLE_MODES = ("merge", "drop")
DEDUP_MODES = ("normalized", "exact", "none")

# C0 except \t \n (\r is handled as a line ending first), DEL, C1, zero-width and
# bidi marks, word joiner, BOM, private use (BMP), U+FFFD.
JUNK_RE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2060-\u2064"
                     "\ufeff\ue000-\uf8ff\ufffd]")
# ChatML/Llama-3 style <|...|>, SentencePiece <s></s>, Llama-2 [INST]/<<SYS>>.
SPECIAL_TOKEN_RE = re.compile(r"<\|[A-Za-z0-9_]{1,40}\|>|</?s>|\[/?INST\]|<</?SYS>>|<unk>|<pad>")
# Stops at whitespace, CJK and full-width punctuation (Chinese text often runs straight on after a link).
# A link's trailing ASCII punctuation (".", ")") belongs to the sentence; one space before it goes with it.
URL_RE = re.compile(r"[ \t]?(?:https?://|www\.)[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]*[A-Za-z0-9/#=_~&%+-]",
                    re.IGNORECASE)
_NON_WORD_RE = re.compile(r"[\W_]+")


@dataclass(frozen=True)
class CleanOptions:
    same_role: str = "merge"  # merge consecutive same-role turns with "\n", or drop the conversation
    trim_trailing_user: bool = True  # a dialogue must end on the reply being trained
    urls: str = "strip"  # strip | drop | keep
    pii: bool = True
    max_chars: int | None = None  # all message contents together, system prompt included
    pii_names: object = None  # psyassist.safety.pii.Names: a supplied list of names → [NAME]


@dataclass
class CleanResult:
    conversation: Conversation | None  # None = dropped
    drop_reason: str | None
    modified: Counter
    pii: Counter


def clean_text(text: str, opts: CleanOptions, modified: Counter, pii: Counter) -> tuple[str, bool]:
    """Fix one turn's text; returns (text, had_url). Counts go into `modified` and `pii`."""
    if "\r" in text:
        modified["crlf_normalized"] += 1
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    text, n = JUNK_RE.subn("", text)
    modified["junk_chars"] += n
    while True:  # "<|im_<|im_end|>end|>" hides a second token behind the first
        text, n = SPECIAL_TOKEN_RE.subn("", text)
        if not n:
            break
        modified["special_tokens"] += n
    had_url = False
    if opts.urls != "keep":
        if opts.urls == "drop":
            had_url = URL_RE.search(text) is not None
        else:
            text, n = URL_RE.subn("", text)
            modified["urls_stripped"] += n
    if opts.pii:
        from psyassist.safety.pii import scrub

        text, found = scrub(text, names=opts.pii_names)
        pii.update(found)
    stripped = text.strip()
    if stripped != text:
        modified["whitespace_trimmed"] += 1
    return stripped, had_url


def clean_conversation(conv: Conversation, opts: CleanOptions = CleanOptions()) -> CleanResult:
    """Apply every rule to one conversation; the input object is not changed."""
    modified: Counter = Counter()
    pii: Counter = Counter()

    def drop(reason: str) -> CleanResult:
        return CleanResult(None, reason, modified, pii)

    msgs: list[Message] = []
    any_url = False
    for i, m in enumerate(conv.messages):
        if m.role == "system" and i != 0:
            modified["misplaced_system"] += 1
            continue
        text, had_url = clean_text(m.content, opts, modified, pii)
        any_url |= had_url
        if not text:
            modified["empty_turns"] += 1
            continue
        msgs.append(Message(m.role, text, m.meta))
    if any_url:
        return drop("has_url")

    start = 1 if msgs and msgs[0].role == "system" else 0
    while start < len(msgs) and msgs[start].role == "assistant":
        del msgs[start]
        modified["leading_assistant"] += 1

    merged: list[Message] = msgs[:start]
    for m in msgs[start:]:
        if len(merged) > start and merged[-1].role == m.role:
            if opts.same_role == "drop":
                return drop("same_role")
            merged[-1] = Message(m.role, merged[-1].content + "\n" + m.content,
                                 _merge_meta(merged[-1].meta, m.meta))
            modified["same_role_merged"] += 1
        else:
            merged.append(m)
    msgs = merged

    if opts.trim_trailing_user:
        while msgs and msgs[-1].role == "user":
            msgs.pop()
            modified["trailing_user_trimmed"] += 1
    if not any(m.role == "assistant" for m in msgs):
        return drop("no_assistant")
    if opts.max_chars is not None and sum(len(m.content) for m in msgs) > opts.max_chars:
        return drop("too_long_chars")
    out = Conversation(conv.id, msgs, list(conv.tags), conv.source, dict(conv.meta))
    return CleanResult(out, None, modified, pii)


def _merge_meta(a: dict | None, b: dict | None) -> dict | None:
    """Per-turn labels of two merged turns: lists are joined (ESConv strategies), else the first value stays."""
    if not a or not b:
        return a or b
    out = dict(a)
    for k, v in b.items():
        if k not in out:
            out[k] = v
        elif isinstance(out[k], list) and isinstance(v, list):
            out[k] = out[k] + v
    return out


# --- deduplication -------------------------------------------------------------------


def normalize_text(text: str) -> str:
    """NFKC, lower case, whitespace/punctuation/symbols removed: the key for near-duplicates
    and n-gram overlap.  CJK characters and digits are kept."""
    return _NON_WORD_RE.sub("", unicodedata.normalize("NFKC", text).lower())


def exact_key(conv: Conversation) -> str:
    payload = json.dumps([[m.role, m.content] for m in conv.messages], ensure_ascii=False)
    return hashlib.sha1(payload.encode("utf-8")).hexdigest()


def normalized_key(conv: Conversation) -> str:
    payload = "\x1f".join(f"{m.role[0]}:{normalize_text(m.content)}" for m in conv.messages)
    return hashlib.sha1(payload.encode("utf-8")).hexdigest()


def dedup(convs: list[Conversation], mode: str = "normalized") -> tuple[list[Conversation], Counter]:
    """Keep the first of each duplicate group. Counts `duplicate_exact` (identical messages)
    separately from `duplicate_normalized` (identical only after normalize_text)."""
    dropped: Counter = Counter()
    if mode == "none":
        return list(convs), dropped
    seen_exact: set[str] = set()
    seen_norm: set[str] = set()
    kept: list[Conversation] = []
    for c in convs:
        ek = exact_key(c)
        if ek in seen_exact:
            dropped["duplicate_exact"] += 1
            continue
        seen_exact.add(ek)
        if mode == "normalized":
            nk = normalized_key(c)
            if nk in seen_norm:
                dropped["duplicate_normalized"] += 1
                continue
            seen_norm.add(nk)
        kept.append(c)
    return kept, dropped


def unique_ids(convs: list[Conversation]) -> int:
    """Make ids unique in place (`id~2`, `id~3`, ...) — merged sources often reuse 0, 1, 2...
    Returns how many ids were changed."""
    seen: set[str] = {c.id for c in convs}
    used: set[str] = set()
    changed = 0
    for c in convs:
        if c.id in used:
            k = 2
            while f"{c.id}~{k}" in seen:
                k += 1
            c.id = f"{c.id}~{k}"
            seen.add(c.id)
            changed += 1
        used.add(c.id)
    return changed
