"""The labelled crisis evaluation set: loading, validation and scoring.

    psyassist safety eval --split test

The set (`resources/crisis_eval.jsonl`, written for psyassist, see docs/safety.md)
has one JSON object per line:

    {"id": "en-001", "text": "...", "lang": "en"|"zh", "level": "none"|"concern"|"urgent",
     "categories": ["suicide", ...], "constructs": ["preparatory", "timeframe", ...] (optional),
     "hard": "negative"|"positive"|null, "note": "...", "split": "dev"|"test"}

Scores: precision/recall/F1 per level (one level against the rest) and per category
(an item counts for a category when the category is in its label; predictions of
level none carry no category), a 3×3 confusion matrix (rows = gold, columns =
predicted), the list of errors (level wrong, or categories wrong), false urgent on
the hard negatives, and — when items carry `constructs` — per construct the recall of
urgent (among its urgent items) and of concern-or-above (among its flagged items).
An item labelled `counselor_note` is run with `detect(..., context="counselor_note")`,
as the counselor app calls it; every other item with the default context "self".
"""

from __future__ import annotations

import json
from collections.abc import Callable
from importlib import resources
from pathlib import Path

from psyassist.data.io import read_text
from psyassist.errors import DataError
from psyassist.eval.stats import wilson
from psyassist.safety.crisis import CATEGORIES, CONSTRUCTS, LEVELS, Detection, detect

SPLITS = ("dev", "test")
HARD = ("negative", "positive", None)
# Targets from issues 6 and 13: urgent recall ≥ 0.95 with precision ≥ 0.85; any-risk (concern or urgent) recall ≥ 0.90.
TARGETS = {"urgent_recall": 0.95, "urgent_precision": 0.85, "flagged_recall": 0.90}


def default_path() -> Path:
    return Path(str(resources.files("psyassist") / "resources" / "crisis_eval.jsonl"))


def load_evalset(path: str | Path | None = None, split: str | None = None) -> list[dict]:
    """Read and validate the set; `split` keeps only 'dev' or 'test' items."""
    p = Path(path) if path is not None else default_path()
    if split not in (None, *SPLITS):
        raise DataError(str(p), f"--split to be one of {', '.join(SPLITS)}", got=split, reason="bad_split", hint="")
    text, _ = read_text(p)
    items, seen = [], set()
    for ln, raw in enumerate(text.splitlines(), 1):
        if not raw.strip():
            continue

        def bad(expected: str, fld: str | None, got: object = None, reason: str = "invalid", ln: int = ln) -> DataError:
            return DataError(str(p), expected, line=ln, field=fld, got=got, reason=reason, hint="")

        try:
            it = json.loads(raw)
        except json.JSONDecodeError as e:
            raise bad(f"one JSON object per line ({e.msg})", None, raw[:40], "bad_json") from e
        if not isinstance(it, dict):
            raise bad("a JSON object", None, type(it).__name__, "not_an_object")
        for key, ok, what in (
            ("id", lambda v: isinstance(v, str) and v, "a non-empty string"),
            ("text", lambda v: isinstance(v, str) and v.strip(), "a non-empty string"),
            ("lang", lambda v: v in ("zh", "en"), "'zh' or 'en'"),
            ("level", lambda v: v in LEVELS, "one of " + ", ".join(LEVELS)),
            ("categories", lambda v: isinstance(v, list) and all(c in CATEGORIES for c in v),
             "a list drawn from " + ", ".join(CATEGORIES)),
            ("hard", lambda v: v in HARD, "'negative', 'positive' or null"),
            ("constructs", lambda v: v is None or isinstance(v, list) and all(c in CONSTRUCTS for c in v),
             "absent, or a list drawn from " + ", ".join(CONSTRUCTS)),
            ("split", lambda v: v in SPLITS, "'dev' or 'test'"),
        ):
            if not ok(it.get(key)):
                raise bad(what, key, it.get(key), f"bad_{key}")
        if (it["level"] == "none") != (not it["categories"]):
            raise bad("categories empty exactly when level is none", "categories", it["categories"], "bad_categories")
        if it["id"] in seen:
            raise bad("a unique id", "id", it["id"], "duplicate_id")
        seen.add(it["id"])
        if split is None or it["split"] == split:
            items.append(it)
    return items


def _prf(tp: int, fp: int, fn: int) -> dict:
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return {"precision": round(p, 4), "recall": round(r, 4), "f1": round(f, 4), "support": tp + fn,
            "tp": tp, "fp": fp, "fn": fn}


def _frac(k: int, n: int) -> dict:
    lo, hi = wilson(k, n)
    return {"k": k, "n": n, "rate": round(k / n, 4) if n else None, "ci95": [round(lo, 4), round(hi, 4)]}


def evaluate(items: list[dict], run: Callable[..., Detection] = detect) -> dict:
    """Score `run` (text -> Detection; called with context="counselor_note" for items labelled so)
    on the items; returns a JSON-ready report."""
    confusion = {g: {p: 0 for p in LEVELS} for g in LEVELS}
    cat = {c: [0, 0, 0] for c in CATEGORIES}  # tp, fp, fn
    cons: dict[str, list[int]] = {}  # construct -> [items, urgent items, found urgent, flagged items, found flagged]
    hard_neg = [0, 0]  # hard negatives, of them predicted urgent
    errors = []
    for it in items:
        labelled = it.get("constructs") or []
        d = run(it["text"], context="counselor_note") if "counselor_note" in labelled else run(it["text"])
        for c in labelled:
            row = cons.setdefault(c, [0, 0, 0, 0, 0])
            row[0] += 1
            if it["level"] == "urgent":
                row[1] += 1
                row[2] += d.level == "urgent"
            if it["level"] != "none":
                row[3] += 1
                row[4] += d.level != "none"
        if it["hard"] == "negative":
            hard_neg[0] += 1
            hard_neg[1] += d.level == "urgent"
        confusion[it["level"]][d.level] += 1
        gold, pred = set(it["categories"]), set(d.categories) if d.level != "none" else set()
        for c in CATEGORIES:
            cat[c][0] += c in gold and c in pred
            cat[c][1] += c not in gold and c in pred
            cat[c][2] += c in gold and c not in pred
        if d.level != it["level"] or gold != pred:
            errors.append({"id": it["id"], "text": it["text"], "gold": it["level"], "pred": d.level,
                           "gold_categories": sorted(gold), "pred_categories": sorted(pred),
                           "gold_constructs": labelled, "pred_constructs": list(d.constructs),
                           "hard": it["hard"], "note": it.get("note", ""), "reasons": d.reasons})
    per_level = {}
    for lv in LEVELS:
        tp = confusion[lv][lv]
        fp = sum(confusion[g][lv] for g in LEVELS if g != lv)
        fn = sum(confusion[lv][p] for p in LEVELS if p != lv)
        per_level[lv] = _prf(tp, fp, fn)
    # "flagged" = concern or urgent against none: does the alert show at all?
    flag_tp = sum(confusion[g][p] for g in LEVELS[1:] for p in LEVELS[1:])
    flag_fp = sum(confusion["none"][p] for p in LEVELS[1:])
    flag_fn = sum(confusion[g]["none"] for g in LEVELS[1:])
    correct = sum(confusion[lv][lv] for lv in LEVELS)
    u = per_level["urgent"]
    flagged = _prf(flag_tp, flag_fp, flag_fn)
    return {
        "n": len(items),
        "accuracy": round(correct / len(items), 4) if items else 0.0,
        "levels": per_level,
        "flagged": flagged,
        "intervals": {"urgent_recall": _frac(u["tp"], u["tp"] + u["fn"]),
                      "urgent_precision": _frac(u["tp"], u["tp"] + u["fp"]),
                      "flagged_recall": _frac(flagged["tp"], flagged["tp"] + flagged["fn"])},
        "categories": {c: _prf(*v) for c, v in cat.items()},
        "per_construct": {c: {"n": v[0], "urgent_recall": _frac(v[2], v[1]), "flagged_recall": _frac(v[4], v[3])}
                          for c, v in sorted(cons.items(), key=lambda kv: CONSTRUCTS.index(kv[0]))},
        "false_urgent_on_hard_negatives": _frac(hard_neg[1], hard_neg[0]),
        "confusion": confusion,
        "targets": {**TARGETS, "met": u["recall"] >= TARGETS["urgent_recall"]
                    and u["precision"] >= TARGETS["urgent_precision"]
                    and flagged["recall"] >= TARGETS["flagged_recall"]},
        "errors": errors,
    }


def print_report(report: dict, *, title: str, max_errors: int = 30) -> None:
    """Tables for levels, categories and the confusion matrix, then the errors."""
    from rich.markup import escape
    from rich.table import Table

    from psyassist.ui import console

    def prf_table(name: str, rows: dict) -> Table:
        t = Table(title=name, title_justify="left")
        for col in ("", "precision", "recall", "F1", "support"):
            t.add_column(col, justify="left" if not col else "right")
        for k, v in rows.items():
            t.add_row(k, f"{v['precision']:.3f}", f"{v['recall']:.3f}", f"{v['f1']:.3f}", str(v["support"]))
        return t

    console.print(f"[bold]{escape(title)}[/]: {report['n']} items, level accuracy {report['accuracy']:.3f}")
    console.print(prf_table("per level", {**report["levels"], "flagged (any)": report["flagged"]}))
    console.print(prf_table("per category", report["categories"]))
    cm = Table(title="confusion (rows gold, columns predicted)", title_justify="left")
    cm.add_column("gold \\ pred")
    for lv in LEVELS:
        cm.add_column(lv, justify="right")
    for g in LEVELS:
        cm.add_row(g, *(str(report["confusion"][g][p]) for p in LEVELS))
    console.print(cm)
    if report["per_construct"]:
        t = Table(title="per construct (recall; k/n, 95% Wilson interval)", title_justify="left")
        for col in ("construct", "items", "urgent recall", "concern-or-above recall"):
            t.add_column(col, justify="left" if col == "construct" else "right")

        def cell(f: dict) -> str:
            return f"{f['k']}/{f['n']} ({100 * f['ci95'][0]:.0f}–{100 * f['ci95'][1]:.0f}%)" if f["n"] else "—"

        for c, v in report["per_construct"].items():
            t.add_row(c, str(v["n"]), cell(v["urgent_recall"]), cell(v["flagged_recall"]))
        console.print(t)
    hn = report["false_urgent_on_hard_negatives"]
    console.print(f"false urgent on hard negatives: {hn['k']}/{hn['n']}")
    u, f = report["levels"]["urgent"], report["flagged"]
    ok = "[green]met[/]" if report["targets"]["met"] else "[red]NOT met[/]"
    console.print(f"targets (urgent recall ≥ {TARGETS['urgent_recall']} at precision ≥ {TARGETS['urgent_precision']}, "
                  f"concern-or-above recall ≥ {TARGETS['flagged_recall']}): {ok} — urgent recall {u['recall']:.3f}, "
                  f"precision {u['precision']:.3f}, concern-or-above recall {f['recall']:.3f}")
    errs = report["errors"]
    if errs:
        console.print(f"\n[bold]{len(errs)} errors[/]" + (f" (first {max_errors})" if len(errs) > max_errors else ""))
        for e in errs[:max_errors]:
            cats = "" if e["gold_categories"] == e["pred_categories"] else \
                escape(f" [{','.join(e['gold_categories'])} → {','.join(e['pred_categories'])}]")
            console.print(f"  {e['id']}: {e['gold']} → {e['pred']}{cats}  {escape(e['text'])}  [dim]({escape(e['note'])})[/]")


def run_eval(set_path: str | Path | None = None, *, split: str | None = None, as_json: bool = False,
             max_errors: int = 30, engine=None) -> dict:
    """`psyassist safety eval`: score the rules (or `engine`) on the set and print the report."""
    items = load_evalset(set_path, split)
    if not items:
        raise DataError(str(set_path or default_path()), f"at least one item in split {split!r}", reason="empty",
                        hint="")
    report = evaluate(items, engine.detect if engine is not None else detect)
    report["set"] = str(set_path) if set_path else "psyassist/resources/crisis_eval.jsonl"
    report["split"] = split or "all"
    report["engine"] = "rules" if engine is None else f"rules+classifier ({engine.model})"
    report["context"] = "counselor_note for items labelled counselor_note, self for the others"
    if as_json:
        print(json.dumps(report, ensure_ascii=False, indent=1))
    else:
        print_report(report, title=f"{report['set']} · split {report['split']} · {report['engine']}",
                     max_errors=max_errors)
    return report
