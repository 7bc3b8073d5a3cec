"""The ONE chat rendering used by train, eval, infer, serve and the app.

    psyassist data check prepared/train.jsonl --tokenizer .cache/tokenizers/qwen3

A conversation becomes ONE token sequence in which EVERY assistant turn is
supervised (labels = token ids) and everything else is masked (labels = -100):
system prompt, user turns, role headers.  Each supervised span is the reply
exactly as the model must generate it after the inference prompt, including the
end-of-turn token (`<|im_end|>` for Qwen/ChatML, `<|eot_id|>` for Llama 3).

How (linear in the dialogue, no re-encoding of prefixes):
1. Message contents are replaced by sentinels and the tokenizer's OWN chat
   template renders the skeleton; the skeleton depends only on the role sequence,
   so it is computed once per distinct role sequence and cached.
2. For each assistant turn j the template is also asked for the inference prompt
   P_j = template(messages[:j], add_generation_prompt=True) and the completed turn
   F_j = template(messages[:j+1]).  F_j must start with P_j (else the template
   cannot be supervised exactly and we say so).  The text before reply j in the
   training sequence is replaced by P_j's tail, so the tokens right before every
   supervised span equal the inference prompt's last tokens.
3. The whole text is tokenized once; labels come from character spans through the
   tokenizer's offsets, never from string matching on tokens.

Qwen3 thinking mode (pitfall 2), decided here and tested in tests/test_render.py:
- enable_thinking=False (the default for counseling data, which has no reasoning):
  the real template's generation prompt ends with `<think>\\n\\n</think>\\n\\n`.  Every
  assistant turn — not only the last, as the template alone would do — is preceded
  by that empty block, MASKED, exactly as at inference.  `<think>…</think>` found in
  an assistant's content is removed (counted as `think_removed`): a non-thinking
  model must not learn to think.
- enable_thinking=True: the generation prompt ends at `<|im_start|>assistant\\n`, so
  the think block is part of what the model generates and is SUPERVISED: the empty
  `<think>\\n\\n</think>\\n\\n` for turns without reasoning, `<think>\\nR\\n</think>\\n\\n`
  for turns whose content starts with `<think>R</think>`.  Reasoning of earlier turns
  is kept in the sequence (Qwen's template drops it from inference history; the
  one-pass trade-off is documented in docs/data.md).
- enable_thinking=None passes nothing and uses the template's own default.

Truncation (pitfall 4): over `max_length`, the oldest user/assistant exchanges are
dropped (the system prompt is kept) until it fits; if a single exchange still does
not fit, the sequence is cut on the right.  A sample left with no supervised token
is dropped and counted, never trained on.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from psyassist.data.schema import Conversation, Message
from psyassist.errors import PsyassistError

IGNORE_INDEX = -100

# Private-use code points: never produced by tokenizers' templates nor in real text
# (the cleaning stage removes stray ones).
_C0, _C1, _R0, _R1 = "\ue000", "\ue001", "\ue002", "\ue003"
_SENTINEL_RE = re.compile(f"{_C0}(\\d+){_C1}|{_R0}(\\d+){_R1}")
_THINK_RE = re.compile(r"^\s*<think>(.*?)</think>\s*", re.S)


class TemplateError(PsyassistError):
    """The chat template cannot be supervised exactly (or is missing)."""


@dataclass(frozen=True)
class RenderOptions:
    enable_thinking: bool | None = False  # None: the template's default; see module docstring
    max_length: int | None = None  # tokens; None = no limit
    per_turn: bool = False  # seed-001 behaviour: one sample per assistant turn (comparison only)


@dataclass
class RenderedSample:
    conversation_id: str
    input_ids: np.ndarray  # int32; numpy keeps a 33M-token corpus at ~270 MB instead of ~2.5 GB of lists
    labels: np.ndarray  # int32, IGNORE_INDEX where not supervised
    pairs_dropped: int = 0  # exchanges removed from the front to fit max_length
    cut: bool = False  # still too long after dropping: cut on the right

    @property
    def n_tokens(self) -> int:
        return int(self.input_ids.shape[0])

    @property
    def n_supervised(self) -> int:
        return int(np.count_nonzero(self.labels != IGNORE_INDEX))


@dataclass
class RenderReport:
    conversations: int = 0
    samples: int = 0
    tokens: int = 0
    supervised_tokens: int = 0
    supervised_turns: int = 0
    turns_without_eot: int = 0  # supervised spans whose last token is not an end-of-turn token
    truncated: int = 0  # samples that lost their oldest exchanges
    pairs_dropped: int = 0
    cut: int = 0  # samples cut on the right (a reply lost its end)
    dropped_no_supervision: int = 0  # never trained on: no supervised token left
    think_removed: int = 0
    boundary_straddles: int = 0  # tokens crossing a supervised-span edge (expected 0)
    examples_dropped: list[str] = field(default_factory=list)

    @property
    def supervised_share(self) -> float:
        return self.supervised_tokens / self.tokens if self.tokens else 0.0

    def to_dict(self) -> dict:
        d = {k: v for k, v in self.__dict__.items() if k != "examples_dropped"}
        d["supervised_share"] = round(self.supervised_share, 6)
        d["examples_dropped"] = self.examples_dropped[:20]
        return d


# --- tokenizer ------------------------------------------------------------------------


def load_tokenizer(name_or_path: str, *, chat_template: str | None = None):
    """Load a tokenizer from a local directory, a GGUF file or a hub id (offline-safe).

    `chat_template` is a file path or template text that overrides the tokenizer's own.
    """
    from transformers import AutoTokenizer

    p = Path(name_or_path)
    try:
        if p.is_file() and p.suffix == ".gguf":
            tok = AutoTokenizer.from_pretrained(str(p.parent), gguf_file=p.name)
        else:
            tok = AutoTokenizer.from_pretrained(str(p) if p.exists() else name_or_path)
    except (OSError, ValueError) as e:
        where = "directory" if p.exists() else "hub id (no local directory of that name)"
        raise PsyassistError(
            f"cannot load tokenizer '{name_or_path}' as a {where}: {e}. Pass a local directory with "
            "tokenizer.json + tokenizer_config.json; `make tokenizer` fetches the real Qwen3 one."
        ) from e
    if chat_template:
        tp = Path(chat_template)
        tok.chat_template = tp.read_text(encoding="utf-8") if tp.is_file() else chat_template
    if not tok.chat_template:
        raise TemplateError(f"tokenizer '{name_or_path}' has no chat template; pass one with --chat-template FILE.")
    return tok


def count_tokens(tok, texts: list[str]) -> list[int]:
    """Token counts without special tokens, batched in Rust."""
    encs = tok.backend_tokenizer.encode_batch(list(texts), add_special_tokens=False)
    return [len(e.ids) for e in encs]


# --- rendering plan --------------------------------------------------------------------


@dataclass(frozen=True)
class _Piece:
    kind: str  # "text" | "content" | "reasoning"
    value: str | int  # literal text, or message index
    supervised: bool
    owner: int = -1  # the assistant message a supervised piece belongs to


class ChatRenderer:
    """Renders conversations for one tokenizer and one set of options."""

    def __init__(self, tok, opts: RenderOptions = RenderOptions()):
        self.tok = tok
        self.opts = opts
        self.backend = tok.backend_tokenizer
        self._kw = {} if opts.enable_thinking is None else {"enable_thinking": opts.enable_thinking}
        self._reasoning_field = "reasoning_content" in (tok.chat_template or "")
        self._special = {t for t in tok.all_special_tokens if t} | {
            t.content for t in tok.added_tokens_decoder.values() if t.special
        }
        self._special_re = (
            re.compile("|".join(re.escape(s) for s in sorted(self._special, key=len, reverse=True)))
            if self._special else None
        )
        self.eot_ids: set[int] = set()
        self._plan = lru_cache(maxsize=4096)(self._make_plan)

    # The template sees sentinels only, so a plan depends on (roles, which turns have reasoning).
    def _template(self, roles: tuple[str, ...], reasoning: tuple[bool, ...], gen: bool) -> str:
        msgs = []
        for j, (role, has_r) in enumerate(zip(roles, reasoning, strict=True)):
            m = {"role": role, "content": f"{_C0}{j}{_C1}"}
            if has_r:
                m["reasoning_content"] = f"{_R0}{j}{_R1}"
            msgs.append(m)
        try:
            return self.tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=gen, **self._kw)
        except Exception as e:  # jinja raises TemplateError / exceptions raised by the template itself
            raise TemplateError(f"the chat template refused roles {list(roles)}: {e}") from e

    def _eot_part(self, suffix: str) -> str:
        """The generated part of what follows a reply: up to and including the first special token."""
        if self._special_re is not None:
            m = self._special_re.search(suffix)
            if m and not suffix[: m.start()].strip():
                return suffix[: m.end()]
        return suffix.rstrip()

    def _make_plan(self, roles: tuple[str, ...], reasoning: tuple[bool, ...]) -> tuple[_Piece, ...]:
        skeleton = self._template(roles, reasoning, gen=False)
        glue = _split_on_content(skeleton, len(roles))  # glue[j] precedes content j; glue[n] trails
        pieces: list[_Piece] = []
        pending_eot: str | None = None  # the eot that must open the next glue
        for j, role in enumerate(roles):
            before = glue[j]
            if pending_eot is not None:
                if not before.startswith(pending_eot):
                    raise TemplateError(
                        f"the chat template closes assistant turns with {pending_eot!r} in the completed turn "
                        f"but with {before[:20]!r} inside a dialogue; it cannot be supervised exactly."
                    )
                pieces.append(_Piece("text", pending_eot, True, j - 1))
                before = before[len(pending_eot):]
                pending_eot = None
            if role != "assistant":
                pieces.append(_Piece("text", before, False))
                pieces.append(_Piece("content", j, False))
                continue
            if j == 0 or roles[j - 1] == "assistant":
                raise TemplateError(
                    "an assistant turn must follow a user or system turn (run `psyassist data prepare`, "
                    "which merges consecutive same-role turns)."
                )
            prompt = self._template(roles[:j], reasoning[:j], gen=True)
            full = self._template(roles[: j + 1], reasoning[: j + 1], gen=False)
            if not full.startswith(prompt):
                raise TemplateError(
                    "the chat template renders a reply that does not continue its own generation prompt "
                    f"(prompt ends {prompt[-40:]!r}, turn renders {full[len(prompt) - 40:len(prompt) + 20]!r})."
                )
            tail = prompt[prompt.rindex(f"{_C0}{j - 1}{_C1}") + len(f"{_C0}{j - 1}{_C1}"):]
            reply = full[len(prompt):]
            marker = f"{_C0}{j}{_C1}"
            k = reply.index(marker)
            pieces.append(_Piece("text", tail, False))
            pieces.extend(_pieces_of(reply[:k], owner=j))
            pieces.append(_Piece("content", j, True, j))
            pending_eot = self._eot_part(reply[k + len(marker):])
            self.eot_ids.update(self.backend.encode(pending_eot, add_special_tokens=False).ids[-1:])
        trailing = glue[len(roles)]
        if pending_eot is not None:
            if not trailing.startswith(pending_eot):
                raise TemplateError(f"the chat template does not end the last reply with {pending_eot!r}.")
            pieces.append(_Piece("text", pending_eot, True, len(roles) - 1))
            trailing = trailing[len(pending_eot):]
        pieces.append(_Piece("text", trailing, False))
        return tuple(p for p in pieces if p.kind != "text" or p.value)

    # --- text and spans ---------------------------------------------------------------

    def compose(self, conv: Conversation, report: RenderReport | None = None,
                supervise: str = "all") -> tuple[str, list[tuple[int, int]]]:
        """Text of the whole sequence and the character spans that are supervised.

        supervise="all" supervises every assistant turn, "last" only the final one (per-turn mode).
        """
        roles = tuple(m.role for m in conv.messages)
        contents: list[str] = []
        reasonings: list[str | None] = []
        for m in conv.messages:
            # Surrounding whitespace is stripped: templates either trim it (Llama 3) or expect
            # none, and a sentinel-rendered skeleton cannot see what a template does to content.
            text, reasoning = m.content.strip(), None
            if m.role == "assistant":
                mt = _THINK_RE.match(text)
                if mt:
                    text = text[mt.end():]
                    if self.opts.enable_thinking is False:
                        if report is not None:
                            report.think_removed += 1
                    elif self._reasoning_field:
                        reasoning = mt.group(1).strip("\n")
                    else:
                        text = m.content.strip()
            contents.append(text)
            reasonings.append(reasoning)
        has_r = tuple(r is not None for r in reasonings)
        plan = self._plan(roles, has_r)
        last_assistant = max((j for j, r in enumerate(roles) if r == "assistant"), default=-1)
        parts: list[str] = []
        spans: list[tuple[int, int]] = []
        pos = 0
        for p in plan:
            if p.kind == "content":
                s = contents[p.value]
            elif p.kind == "reasoning":
                s = reasonings[p.value] or ""
            else:
                s = p.value
            if p.supervised and s and (supervise == "all" or p.owner == last_assistant):
                if spans and spans[-1][1] == pos:
                    spans[-1] = (spans[-1][0], pos + len(s))
                else:
                    spans.append((pos, pos + len(s)))
            parts.append(s)
            pos += len(s)
        return "".join(parts), spans

    def _encode(self, enc, spans: list[tuple[int, int]], report: RenderReport) -> tuple[np.ndarray, np.ndarray]:
        """Token ids and labels: a token is supervised when its characters lie inside a span."""
        ids = np.asarray(enc.ids, dtype=np.int32)
        labels = np.full_like(ids, IGNORE_INDEX)
        if not spans or ids.size == 0:
            return ids, labels
        offs = np.asarray(enc.offsets, dtype=np.int64).reshape(-1, 2)
        s, e = offs[:, 0], offs[:, 1]
        a = np.fromiter((x for x, _ in spans), dtype=np.int64, count=len(spans))
        b = np.fromiter((y for _, y in spans), dtype=np.int64, count=len(spans))
        k = np.searchsorted(a, s, side="right") - 1  # the last span starting at or before the token
        kc = np.clip(k, 0, None)
        inside = (k >= 0) & (e <= b[kc]) & (e > s)
        labels[inside] = ids[inside]
        nxt = np.clip(k + 1, 0, len(a) - 1)
        straddle = ((k >= 0) & (s < b[kc]) & (e > b[kc])) | ((k + 1 < len(a)) & (s < a[nxt]) & (e > a[nxt]))
        report.boundary_straddles += int(np.count_nonzero(straddle))
        return ids, labels

    def render(self, conv: Conversation, report: RenderReport | None = None) -> list[RenderedSample]:
        """Render one conversation (several samples in per-turn mode); updates `report`."""
        report = report if report is not None else RenderReport()
        report.conversations += 1
        if self.opts.per_turn:
            convs = [Conversation(f"{conv.id}#{j}", conv.messages[: j + 1], conv.tags, conv.source, conv.meta)
                     for j, m in enumerate(conv.messages) if m.role == "assistant"]
            out = [s for c in convs for s in self._render_one(c, report, supervise="last")]
        else:
            out = self._render_one(conv, report, supervise="all")
        return out

    def _render_one(self, conv: Conversation, report: RenderReport, supervise: str) -> list[RenderedSample]:
        text, spans = self.compose(conv, report, supervise)
        enc = self.backend.encode(text, add_special_tokens=False)
        pairs_dropped, cut = 0, False
        limit = self.opts.max_length
        msgs = conv.messages
        while limit and len(enc.ids) > limit and _n_exchanges(msgs) > 1:
            msgs = _drop_oldest_exchange(msgs)
            pairs_dropped += 1
            text, spans = self.compose(Conversation(conv.id, msgs, conv.tags), None, supervise)
            enc = self.backend.encode(text, add_special_tokens=False)
        ids, labels = self._encode(enc, spans, report)
        if limit and len(ids) > limit:
            ids, labels, cut = ids[:limit], labels[:limit], True
        sample = RenderedSample(conv.id, ids, labels, pairs_dropped, cut)
        if sample.n_supervised == 0:
            report.dropped_no_supervision += 1
            if len(report.examples_dropped) < 20:
                report.examples_dropped.append(conv.id)
            return []
        report.samples += 1
        report.tokens += sample.n_tokens
        report.supervised_tokens += sample.n_supervised
        report.truncated += pairs_dropped > 0
        report.pairs_dropped += pairs_dropped
        report.cut += cut
        turns, no_eot = _supervised_runs(labels, self.eot_ids)
        report.supervised_turns += turns
        report.turns_without_eot += no_eot
        return [sample]

    def end_of_turn_ids(self) -> set[int]:
        """Token ids that close an assistant turn in this template (generation stops on them)."""
        self._plan(("user", "assistant"), (False, False))  # planning records them
        return set(self.eot_ids)

    def inference_prompt(self, messages: list[dict]) -> str:
        """The prompt text for generating the next assistant reply (same rules as training)."""
        conv = Conversation("prompt", [_msg(m) for m in messages])
        if self.opts.enable_thinking is False:
            for m in conv.messages:
                if m.role == "assistant":
                    m.content = _THINK_RE.sub("", m.content, count=1)
        msgs = [m.to_dict() for m in conv.messages]
        return self.tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True, **self._kw)


def render_many(tok, convs: list[Conversation], opts: RenderOptions = RenderOptions(),
                show_progress: bool = True) -> tuple[list[RenderedSample], RenderReport]:
    """Render a corpus; sequences are tokenized in Rust batches (parallel over cores)."""
    from psyassist.ui import track

    renderer = ChatRenderer(tok, opts)
    report = RenderReport()
    if opts.per_turn:
        samples = [s for c in track(convs, "rendering (per turn)") for s in renderer.render(c, report)] \
            if show_progress else [s for c in convs for s in renderer.render(c, report)]
        return samples, report
    samples: list[RenderedSample] = []
    batch = 512
    chunks = range(0, len(convs), batch)
    for start in (track(chunks, "rendering", total=len(chunks)) if show_progress else chunks):
        part = convs[start:start + batch]
        composed = [renderer.compose(c, report) for c in part]
        encs = renderer.backend.encode_batch([t for t, _ in composed], add_special_tokens=False)
        for conv, (_text, spans), enc in zip(part, composed, encs, strict=True):
            report.conversations += 1
            if opts.max_length and len(enc.ids) > opts.max_length:
                samples.extend(renderer._render_one(conv, report, "all"))  # rare: re-render with truncation
                continue
            ids, labels = renderer._encode(enc, spans, report)
            sample = RenderedSample(conv.id, ids, labels)
            n_sup = sample.n_supervised
            if n_sup == 0:
                report.dropped_no_supervision += 1
                if len(report.examples_dropped) < 20:
                    report.examples_dropped.append(conv.id)
                continue
            report.samples += 1
            report.tokens += sample.n_tokens
            report.supervised_tokens += n_sup
            turns, no_eot = _supervised_runs(labels, renderer.eot_ids)
            report.supervised_turns += turns
            report.turns_without_eot += no_eot
            samples.append(sample)
    return samples, report


# --- helpers ---------------------------------------------------------------------------


def _msg(m: dict) -> Message:
    return Message(role=m["role"], content=m["content"])


def _split_on_content(text: str, n: int) -> list[str]:
    """Split a rendered skeleton into n+1 glue strings around content sentinels 0..n-1."""
    glue, pos = [], 0
    for j in range(n):
        marker = f"{_C0}{j}{_C1}"
        k = text.find(marker, pos)
        if k < 0:
            raise TemplateError(f"the chat template dropped message {j} (system/user/assistant content missing).")
        glue.append(text[pos:k])
        pos = k + len(marker)
    glue.append(text[pos:])
    return glue


def _pieces_of(text: str, owner: int) -> list[_Piece]:
    """Supervised literal text of reply `owner` that may hold its reasoning sentinel → pieces."""
    out, pos = [], 0
    for m in _SENTINEL_RE.finditer(text):
        out.append(_Piece("text", text[pos:m.start()], True, owner))
        if m.group(2) is not None:
            out.append(_Piece("reasoning", int(m.group(2)), True, owner))
        pos = m.end()
    out.append(_Piece("text", text[pos:], True, owner))
    return out


def _n_exchanges(msgs) -> int:
    return sum(1 for m in msgs if m.role == "assistant")


def _drop_oldest_exchange(msgs):
    """Remove the first exchange after the system prompt: leading user turns + the first reply."""
    start = 1 if msgs and msgs[0].role == "system" else 0
    k = start
    while k < len(msgs) and msgs[k].role != "assistant":
        k += 1
    return list(msgs[:start]) + list(msgs[k + 1:])


def _supervised_runs(labels: np.ndarray, eot_ids: set[int]) -> tuple[int, int]:
    """(number of contiguous supervised spans, how many do not end on an end-of-turn token)."""
    sup = labels != IGNORE_INDEX
    if not sup.any():
        return 0, 0
    starts = sup & ~np.concatenate(([False], sup[:-1]))
    ends = sup & ~np.concatenate((sup[1:], [False]))
    last = labels[ends]
    return int(starts.sum()), int(np.count_nonzero(~np.isin(last, list(eot_ids))))


def supervised_text(tok, sample: RenderedSample) -> list[str]:
    """Decode each contiguous supervised span (what the model is trained to produce)."""
    out, cur = [], []
    for tid, lab in zip(sample.input_ids.tolist(), sample.labels.tolist(), strict=True):
        if lab != IGNORE_INDEX:
            cur.append(tid)
        elif cur:
            out.append(tok.decode(cur, skip_special_tokens=False))
            cur = []
    if cur:
        out.append(tok.decode(cur, skip_special_tokens=False))
    return out

