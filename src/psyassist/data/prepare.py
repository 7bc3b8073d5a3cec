"""Read → validate → clean → deduplicate → split → write, as one atomic step.

    psyassist data prepare corpus.jsonl --out prepared/ --val-ratio 0.05 --seed 42

Writes into DIR (swapped in only when complete: a crash leaves the old DIR or nothing):
  train.jsonl, validation.jsonl   one Conversation.to_dict() per line
  dataset_dict/                   datasets.load_from_disk(DIR/"dataset_dict") → DatasetDict
                                  (train, validation; `meta` stored as a JSON string, with the
                                  messages' own meta as `message_meta` when there is any)
  report.json, report.md          counts in/out, every drop and modification by rule
                                  (see psyassist.data.clean), PII per type, split sizes
                                  per first tag, the options used, input sha256s

Order: clean each conversation → dedup (first occurrence wins, across all inputs, so
a duplicate never lands on both sides of the split) → token limit → unique ids →
split → --max-train-items/--max-eval-items subsample.  Deterministic for a given
input and seed; preparing a prepared train.jsonl again changes nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

from psyassist import __version__
from psyassist.data import clean, split
from psyassist.data.io import atomic_dir
from psyassist.data.schema import Conversation
from psyassist.errors import PsyassistError
from psyassist.ui import console, track, warn

UNTAGGED = "(untagged)"


@dataclass(frozen=True)
class PrepareOptions:
    fmt: str = "auto"
    mapping: dict | None = None  # the keys of --format mapped (readers.parse_map)
    skip_invalid: bool = False
    val_ratio: float = 0.05
    val_size: int | None = None
    seed: int = 42
    stratify: bool = True
    max_chars: int | None = None
    max_tokens: int | None = None
    tokenizer: str | None = None
    same_role: str = "merge"
    trim_trailing_user: bool = True
    urls: str = "strip"
    pii: bool = True
    pii_names: str | None = None  # file with one name per line, replaced by [NAME]
    max_train_items: int | None = None
    max_eval_items: int | None = None
    dedup: str = "normalized"

    def __post_init__(self):
        checks = [
            (0.0 <= self.val_ratio < 1.0, f"--val-ratio must be in [0, 1), got {self.val_ratio}"),
            (self.val_size is None or self.val_size >= 0, f"--val-size must be >= 0, got {self.val_size}"),
            (self.same_role in clean.SAME_ROLE_MODES, f"--same-role must be merge or drop, got {self.same_role!r}"),
            (self.urls in clean.URL_MODES, f"urls must be strip, drop or keep, got {self.urls!r}"),
            (self.dedup in clean.DEDUP_MODES, f"--dedup must be normalized, exact or none, got {self.dedup!r}"),
            (self.max_tokens is None or self.tokenizer, "--max-tokens needs --tokenizer (tokens depend on it)"),
        ]
        for name in ("max_chars", "max_tokens", "max_train_items", "max_eval_items"):
            v = getattr(self, name)
            checks.append((v is None or v > 0, f"--{name.replace('_', '-')} must be > 0, got {v}"))
        for ok, msg in checks:
            if not ok:
                raise PsyassistError(msg)

    def clean_options(self) -> clean.CleanOptions:
        names = None
        if self.pii_names:
            from psyassist.safety.pii import load_names

            names = load_names(self.pii_names)
        return clean.CleanOptions(same_role=self.same_role, trim_trailing_user=self.trim_trailing_user,
                                  urls=self.urls, pii=self.pii, max_chars=self.max_chars, pii_names=names)


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def first_tag_counts(convs: list[Conversation]) -> dict[str, int]:
    return dict(sorted(Counter(c.tags[0] if c.tags else UNTAGGED for c in convs).items()))


def _token_lengths(convs: list[Conversation], tokenizer: str) -> list[int]:
    """Length of each conversation rendered by the tokenizer's own chat template (non-thinking),
    i.e. exactly what training sees before truncation."""
    from psyassist.render import ChatRenderer, RenderOptions, count_tokens, load_tokenizer

    tok = load_tokenizer(tokenizer)
    renderer = ChatRenderer(tok, RenderOptions(enable_thinking=False))
    texts = [renderer.compose(c)[0] for c in track(convs, "rendering for --max-tokens")]
    return count_tokens(tok, texts)


def prepare(sources: list[str], out: str | Path, opts: PrepareOptions = PrepareOptions(),
            show_progress: bool = True) -> dict:
    """Run the whole pipeline and write DIR atomically; returns the report dict."""
    from psyassist.data.readers import read_conversations

    res = read_conversations(sources, opts.fmt, skip_invalid=opts.skip_invalid, show_progress=show_progress,
                             mapping=opts.mapping)
    if not res.files:
        raise PsyassistError(f"no input files found for {sources}")
    for w in res.warnings:
        warn(w)

    dropped: Counter = Counter()
    modified: Counter = Counter()
    pii: Counter = Counter()
    cleaned: list[Conversation] = []
    copts = opts.clean_options()
    for conv in track(res.conversations, "cleaning"):
        r = clean.clean_conversation(conv, copts)
        modified.update(r.modified)
        pii.update(r.pii)
        if r.conversation is None:
            dropped[r.drop_reason] += 1
        else:
            cleaned.append(r.conversation)

    kept, dup = clean.dedup(cleaned, opts.dedup)
    dropped.update(dup)
    if opts.max_tokens is not None and kept:
        lengths = _token_lengths(kept, opts.tokenizer)
        dropped["too_long_tokens"] += sum(n > opts.max_tokens for n in lengths)
        kept = [c for c, n in zip(kept, lengths, strict=True) if n <= opts.max_tokens]
    modified["id_renamed"] += clean.unique_ids(kept)
    if not kept:
        raise PsyassistError(
            f"nothing left to write: read {len(res.conversations)} conversations, dropped {dict(dropped)}"
            + (f", skipped invalid {dict(res.skipped)}" if res.skipped else ""))

    train, val = split.split(kept, val_ratio=opts.val_ratio, val_size=opts.val_size, seed=opts.seed,
                             stratify=opts.stratify)
    n_train_full, n_val_full = len(train), len(val)
    train = split.subsample(train, opts.max_train_items, opts.seed)
    val = split.subsample(val, opts.max_eval_items, opts.seed + 1)

    report = {
        "psyassist_version": __version__,
        "sources": [str(s) for s in sources],
        "options": asdict(opts),
        "inputs": [{"file": f, "format": res.formats.get(f, ""), "bytes": Path(f).stat().st_size,
                    "sha256": sha256_file(f)} for f in res.files],
        "counts": {
            "read": len(res.conversations),
            "skipped_invalid": sum(res.skipped.values()),
            "dropped": sum(dropped.values()),
            "out": len(kept),
            "train": len(train),
            "validation": len(val),
            "train_before_limit": n_train_full,
            "validation_before_limit": n_val_full,
        },
        "skipped_invalid": dict(sorted(res.skipped.items())),
        "dropped": dict(sorted(dropped.items())),
        "modified": {k: v for k, v in sorted(modified.items()) if v},
        "pii": dict(sorted(pii.items())),
        "split": {"stratified_by": "first tag" if opts.stratify else None,
                  "train": first_tag_counts(train), "validation": first_tag_counts(val)},
        "warnings": list(res.warnings),
    }
    with atomic_dir(out) as tmp:
        umask = os.umask(0)
        os.umask(umask)
        tmp.chmod(0o777 & ~umask)  # mkdtemp makes it 0700; the output is an ordinary directory
        _write_jsonl(tmp / "train.jsonl", train)
        _write_jsonl(tmp / "validation.jsonl", val)
        _write_dataset_dict(tmp / "dataset_dict", train, val)
        (tmp / "report.json").write_text(json.dumps(report, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
        (tmp / "report.md").write_text(report_markdown(report), encoding="utf-8")
    return report


def _write_jsonl(path: Path, convs: list[Conversation]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for c in convs:
            f.write(json.dumps(c.to_dict(), ensure_ascii=False) + "\n")


def _write_dataset_dict(path: Path, train: list[Conversation], val: list[Conversation]) -> None:
    import datasets

    features = datasets.Features({
        "id": datasets.Value("string"),
        "messages": [{"role": datasets.Value("string"), "content": datasets.Value("string")}],
        "tags": [datasets.Value("string")],
        "source": datasets.Value("string"),
        "meta": datasets.Value("string"),  # JSON text: per-record meta has no common schema
    })

    def columns(convs: list[Conversation]) -> dict[str, list]:
        return {
            "id": [c.id for c in convs],
            "messages": [[m.to_dict() for m in c.messages] for c in convs],
            "tags": [list(c.tags) for c in convs],
            "source": [c.source for c in convs],
            # per-turn labels (ESConv strategies) ride in the meta JSON, one entry per message
            "meta": [json.dumps({**c.meta, "message_meta": [m.meta for m in c.messages]}
                                if any(m.meta for m in c.messages) else c.meta, ensure_ascii=False)
                     for c in convs],
        }

    dd = datasets.DatasetDict({
        "train": datasets.Dataset.from_dict(columns(train), features=features),
        "validation": datasets.Dataset.from_dict(columns(val), features=features),
    })
    was_on = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()  # our own progress goes through psyassist.ui
    try:
        dd.save_to_disk(str(path))
    finally:
        if was_on:
            datasets.enable_progress_bars()


def _table(title: str, counts: dict, key: str = "rule") -> list[str]:
    if not counts:
        return [f"**{title}:** none", ""]
    lines = [f"**{title}**", "", f"| {key} | count |", "|---|---:|"]
    lines += [f"| {k} | {v:,} |" for k, v in counts.items()]
    return lines + [""]


def report_markdown(r: dict) -> str:
    c = r["counts"]
    lines = [
        "# Data preparation report",
        "",
        f"psyassist {r['psyassist_version']}; sources: {', '.join(r['sources'])}",
        "",
        f"Read {c['read']:,} conversations, skipped {c['skipped_invalid']:,} invalid, dropped "
        f"{c['dropped']:,}, kept {c['out']:,}: train {c['train']:,} (of {c['train_before_limit']:,}), "
        f"validation {c['validation']:,} (of {c['validation_before_limit']:,}).",
        "",
    ]
    lines += _table("Skipped invalid records", r["skipped_invalid"], "reason")
    lines += _table("Dropped conversations", r["dropped"], "reason")
    lines += _table("Modifications", r["modified"])
    lines += _table("PII replaced", r["pii"], "type")
    tags = sorted(set(r["split"]["train"]) | set(r["split"]["validation"]))
    lines += [f"**Split by first tag** (stratified: {'yes' if r['split']['stratified_by'] else 'no'})", "",
              "| tag | train | validation |", "|---|---:|---:|"]
    lines += [f"| {t} | {r['split']['train'].get(t, 0):,} | {r['split']['validation'].get(t, 0):,} |" for t in tags]
    lines += ["", "**Inputs**", "", "| file | format | bytes | sha256 |", "|---|---|---:|---|"]
    lines += [f"| {i['file']} | {i['format']} | {i['bytes']:,} | `{i['sha256']}` |" for i in r["inputs"]]
    lines += ["", "**Options**", "", "```json", json.dumps(r["options"], ensure_ascii=False, indent=2), "```", ""]
    if r["warnings"]:
        lines += ["**Warnings**", ""] + [f"- {w}" for w in r["warnings"]] + [""]
    return "\n".join(lines)


def print_summary(r: dict, out: str | Path) -> None:
    from rich.table import Table

    c = r["counts"]
    console.print(f"[bold]prepared[/] {out}: read {c['read']:,} → kept {c['out']:,} "
                  f"(train {c['train']:,}, validation {c['validation']:,}); "
                  f"skipped invalid {c['skipped_invalid']:,}, dropped {c['dropped']:,}")
    rows = [("dropped", k, v) for k, v in r["dropped"].items()] + \
           [("modified", k, v) for k, v in r["modified"].items()] + \
           [("pii", k, v) for k, v in r["pii"].items()] + \
           [("skipped", k, v) for k, v in r["skipped_invalid"].items()]
    if rows:
        t = Table(show_header=True, header_style="bold")
        for col in ("what", "rule", "count"):
            t.add_column(col, justify="right" if col == "count" else "left")
        for what, k, v in rows:
            t.add_row(what, k, f"{v:,}")
        console.print(t)
    console.print(f"report: {Path(out) / 'report.md'}")
