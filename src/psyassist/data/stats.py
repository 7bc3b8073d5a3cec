"""Corpus statistics: what a dataset looks like before anyone trains on it.

    psyassist data stats corpus.jsonl --tokenizer .cache/tokenizers/qwen3 --json

Counts: dialogues, turns (system prompts not counted as turns) with per-dialogue
percentiles, per-role content length percentiles (p50/p90/p99/max) in characters
and, with --tokenizer, tokens; tag distribution; dialogues that end on a user turn
(their last user turn is never answered, so it teaches nothing), that start with an
assistant turn, that hold consecutive same-role turns (and how many such pairs),
that hold empty turns; duplicates (exact / normalized, as prepare counts them); and,
with --tokenizer, the share of rendered tokens that are supervised (assistant
replies incl. end-of-turn) from the same render_many the trainer uses; crisis
content in USER turns (psyassist.safety.crisis.scan_corpus, the rule engine: levels
none/concern/urgent, categories, and dialogues with a flagged turn) — about 0.1–0.5 ms
per turn, so ~1 minute for SMILECHAT's 314k user turns.

Percentiles are nearest-rank (an actual value of the data, never interpolated).
"""

from __future__ import annotations

import json
import math
from collections import Counter

from psyassist.data import clean
from psyassist.data.schema import ROLES, Conversation
from psyassist.ui import console, track

TOP_TAGS = 30


def percentiles(values: list[int]) -> dict[str, float]:
    """n, mean, p50, p90, p99, max (nearest rank); zeros for an empty list."""
    if not values:
        return {"n": 0, "mean": 0.0, "p50": 0, "p90": 0, "p99": 0, "max": 0}
    s = sorted(values)

    def rank(p: float) -> int:
        return s[max(0, math.ceil(p / 100 * len(s)) - 1)]

    return {"n": len(s), "mean": round(sum(s) / len(s), 1), "p50": rank(50), "p90": rank(90), "p99": rank(99),
            "max": s[-1]}


def compute_stats(convs: list[Conversation], tokenizer: str | None = None) -> dict:
    """All figures as a JSON-ready dict (see the module docstring)."""
    turns = [sum(m.role != "system" for m in c.messages) for c in convs]
    chars: dict[str, list[int]] = {r: [] for r in ROLES}
    tags: Counter = Counter()
    ends_user = starts_assistant = with_runs = run_pairs = with_empty = 0
    for c in convs:
        body = [m for m in c.messages if m.role != "system"]
        for m in c.messages:
            chars[m.role].append(len(m.content))
        tags.update(c.tags)
        ends_user += bool(body) and body[-1].role == "user"
        starts_assistant += bool(body) and body[0].role == "assistant"
        pairs = sum(a.role == b.role for a, b in zip(body, body[1:], strict=False))
        run_pairs += pairs
        with_runs += pairs > 0
        with_empty += any(not m.content.strip() for m in c.messages)
    _, dups = clean.dedup(convs, "normalized")
    n = len(convs)
    stats: dict = {
        "dialogues": n,
        "turns": {"total": sum(turns), "per_dialogue": percentiles(turns)},
        "chars": {r: percentiles(v) for r, v in chars.items() if v},
        "tags": {"tagged_dialogues": sum(bool(c.tags) for c in convs), "distinct": len(tags),
                 "top": dict(tags.most_common(TOP_TAGS))},
        "ends_on_user": {"count": ends_user, "share": round(ends_user / n, 4) if n else 0.0},
        "starts_with_assistant": starts_assistant,
        "same_role_runs": {"dialogues": with_runs, "pairs": run_pairs},
        "dialogues_with_empty_turns": with_empty,
        "duplicates": {"exact": dups["duplicate_exact"], "normalized": dups["duplicate_normalized"]},
    }
    stats["crisis"] = _crisis_stats(convs)
    if tokenizer:
        stats.update(_token_stats(convs, tokenizer))
    return stats


def _crisis_stats(convs: list[Conversation]) -> dict:
    from psyassist.safety.crisis import CATEGORIES, LEVELS, scan_corpus

    turns: Counter = Counter()
    flagged = urgent = 0
    for c in track(convs, "crisis scan (user turns)"):
        k = scan_corpus([c])  # per dialogue, to count dialogues too; the same detect() per turn
        turns.update(k)
        flagged += k["concern"] + k["urgent"] > 0
        urgent += k["urgent"] > 0
    return {"user_turns": sum(turns[lv] for lv in LEVELS), "levels": {lv: turns[lv] for lv in LEVELS},
            "categories": {cat: turns[f"category:{cat}"] for cat in CATEGORIES},
            "dialogues_flagged": flagged, "dialogues_urgent": urgent, "engine": "rules"}


def _token_stats(convs: list[Conversation], tokenizer: str) -> dict:
    from psyassist.render import RenderOptions, count_tokens, load_tokenizer, render_many

    tok = load_tokenizer(tokenizer)
    out: dict = {"tokenizer": tokenizer, "tokens": {}}
    for role in ROLES:
        texts = [m.content for c in convs for m in c.messages if m.role == role]
        if texts:
            out["tokens"][role] = percentiles(count_tokens(tok, texts))
    # render_many needs alternating turns ending on a reply, as prepare produces; raw
    # corpora are cleaned (structure only, no PII/URL edits) for this figure alone.
    opts = clean.CleanOptions(urls="keep", pii=False)
    renderable = [r.conversation for c in convs if (r := clean.clean_conversation(c, opts)).conversation]
    samples, report = render_many(tok, renderable, RenderOptions(enable_thinking=False), show_progress=False)
    out["rendered"] = {
        "dialogues": len(renderable),
        "not_renderable": len(convs) - len(renderable),
        "tokens_per_dialogue": percentiles([s.n_tokens for s in samples]),
        "tokens": report.tokens,
        "supervised_tokens": report.supervised_tokens,
        "supervised_share": round(report.supervised_share, 4),
        "enable_thinking": False,
    }
    return out


def print_stats(stats: dict, as_json: bool = False) -> None:
    if as_json:
        print(json.dumps(stats, ensure_ascii=False, indent=2))
        return
    from rich.table import Table

    n = stats["dialogues"]
    t = Table(title=f"{n:,} dialogues, {stats['turns']['total']:,} turns", title_justify="left",
              header_style="bold")
    for col in ("", "n", "mean", "p50", "p90", "p99", "max"):
        t.add_column(col, justify="left" if not col else "right")

    def row(label: str, p: dict) -> None:
        t.add_row(label, f"{p['n']:,}", f"{p['mean']:,}", *(f"{p[k]:,}" for k in ("p50", "p90", "p99", "max")))

    row("turns / dialogue", stats["turns"]["per_dialogue"])
    for role, p in stats["chars"].items():
        row(f"{role} chars", p)
    for role, p in stats.get("tokens", {}).items():
        row(f"{role} tokens", p)
    if "rendered" in stats:
        row("rendered tokens / dialogue", stats["rendered"]["tokens_per_dialogue"])
    console.print(t)

    e = stats["ends_on_user"]
    lines = [
        f"ends on a user turn: {e['count']:,} ({e['share']:.1%})",
        f"starts with an assistant turn: {stats['starts_with_assistant']:,}",
        f"same-role runs: {stats['same_role_runs']['pairs']:,} pairs in {stats['same_role_runs']['dialogues']:,} dialogues",
        f"dialogues with empty turns: {stats['dialogues_with_empty_turns']:,}",
        f"duplicates: {stats['duplicates']['exact']:,} exact, {stats['duplicates']['normalized']:,} normalized",
    ]
    if "rendered" in stats:
        r = stats["rendered"]
        lines.append(f"supervised tokens: {r['supervised_tokens']:,} of {r['tokens']:,} "
                     f"({r['supervised_share']:.1%}, enable_thinking=False; left out, no reply: {r['not_renderable']:,})")
    if "crisis" in stats:
        c = stats["crisis"]
        lv = c["levels"]
        cats = ", ".join(f"{k} {v:,}" for k, v in c["categories"].items() if v) or "none"
        lines.append(f"crisis in user turns (rules): {lv['urgent']:,} urgent, {lv['concern']:,} concern, "
                     f"{lv['none']:,} none of {c['user_turns']:,}")
        lines.append(f"  dialogues with a flagged user turn: {c['dialogues_flagged']:,} ({c['dialogues_urgent']:,} urgent)")
        lines.append(f"  by category: {cats}")
    for line in lines:
        console.print(line, markup=False)

    tg = stats["tags"]
    if tg["distinct"]:
        tt = Table(title=f"tags: {tg['tagged_dialogues']:,} tagged dialogues, {tg['distinct']:,} distinct"
                   + (f" (top {TOP_TAGS})" if tg["distinct"] > TOP_TAGS else ""),
                   title_justify="left", header_style="bold")
        tt.add_column("tag")
        tt.add_column("dialogues", justify="right")
        tt.add_column("share", justify="right")
        for tag, k in tg["top"].items():
            tt.add_row(tag, f"{k:,}", f"{k / n:.1%}")
        console.print(tt)
