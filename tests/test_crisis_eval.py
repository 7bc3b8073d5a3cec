"""The labelled crisis evaluation set: its shape, the scorer, and the targets on the dev split.

    pytest tests/test_crisis_eval.py -q
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections import Counter

import pytest

from psyassist.errors import DataError
from psyassist.safety.crisis import CATEGORIES, CONSTRUCTS, Detection
from psyassist.safety.evalset import TARGETS, evaluate, load_evalset


@pytest.fixture(scope="module")
def items() -> list[dict]:
    return load_evalset()


def test_set_shape(items):
    n = len(items)
    assert n >= 300
    hard = Counter(it["hard"] for it in items)
    assert (hard["negative"] + hard["positive"]) / n >= 0.40
    assert hard["negative"] >= 80 and hard["positive"] >= 80  # both kinds, not one
    langs = Counter(it["lang"] for it in items)
    assert min(langs.values()) / n >= 0.40  # roughly half each
    splits = Counter(it["split"] for it in items)
    # 176 of the first 446 were test; the 100 written later by a second author (ids *-4xx) are all test,
    # so test is now about half (276 / 546): the record of what a first run on unseen wording scored.
    assert 0.25 <= splits["test"] / n <= 0.55
    for split in ("dev", "test"):
        levels = Counter(it["level"] for it in items if it["split"] == split)
        assert min(levels[lv] for lv in ("none", "concern", "urgent")) >= 25, (split, levels)
    cats = Counter(c for it in items for c in it["categories"])
    assert all(cats[c] >= 10 for c in CATEGORIES), cats
    assert len({it["text"] for it in items}) == n  # no duplicate texts


def test_language_labels_match_the_text(items):
    cjk = re.compile(r"[\u4e00-\u9fff]")
    for it in items:
        assert bool(cjk.search(it["text"])) == (it["lang"] == "zh"), it["id"]


def test_hard_cases_cover_the_tricks(items):
    notes = " ".join(it["note"] for it in items if it["hard"])
    for kind in ("idiom", "negation", "history", "reported", "spacing", "full-width", "繁体", "全角", "空格", "转述",
                 "否定", "过去"):
        assert kind in notes, kind
    assert any(unicodedata.normalize("NFKC", it["text"]) != it["text"] for it in items if it["hard"] == "positive")


def test_loader_names_the_bad_line_and_field(tmp_path):
    f = tmp_path / "set.jsonl"
    good = {"id": "a", "text": "t", "lang": "en", "level": "none", "categories": [], "hard": None, "note": "",
            "split": "dev"}
    f.write_text(json.dumps(good) + "\n" + json.dumps({**good, "id": "b", "level": "high"}) + "\n", encoding="utf-8")
    with pytest.raises(DataError) as e:
        load_evalset(f)
    assert (e.value.line, e.value.field) == (2, "level")
    f.write_text(json.dumps({**good, "categories": ["suicide"]}) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match="categories empty exactly when level is none"):
        load_evalset(f)
    with pytest.raises(DataError):
        load_evalset(None, split="train")


def test_constructs_are_optional_and_checked(tmp_path):
    f = tmp_path / "set.jsonl"
    good = {"id": "a", "text": "t", "lang": "en", "level": "urgent", "categories": ["suicide"], "hard": None, "note": "",
            "split": "dev", "constructs": ["preparatory", "timeframe"]}
    f.write_text(json.dumps(good) + "\n" + json.dumps({**good, "id": "b", "constructs": ["despair"]}) + "\n",
                 encoding="utf-8")
    with pytest.raises(DataError) as e:
        load_evalset(f)
    assert (e.value.line, e.value.field) == (2, "constructs")


def test_the_issue_13_items_carry_constructs_and_sit_in_dev(items):
    c4 = [it for it in items if it["id"].startswith("c4-")]
    assert len(c4) >= 300 and all(it["split"] == "dev" and it.get("constructs") is not None for it in c4)
    assert {c for it in c4 for c in it["constructs"]} == set(CONSTRUCTS) - {"abuse"} | {"abuse"}
    assert sum(it["hard"] == "negative" for it in c4) >= 60 and sum(it["lang"] == "zh" for it in c4) >= 130


def test_per_construct_recall_hard_negatives_and_the_counselor_note_context():
    items = [
        {"id": "1", "text": "a", "level": "urgent", "categories": ["suicide"], "hard": None,
         "constructs": ["preparatory", "counselor_note"]},
        {"id": "2", "text": "b", "level": "concern", "categories": ["suicide"], "hard": None, "constructs": ["wish_dead"]},
        {"id": "3", "text": "c", "level": "urgent", "categories": ["suicide"], "hard": None, "constructs": ["preparatory"]},
        {"id": "4", "text": "d", "level": "none", "categories": [], "hard": "negative", "constructs": []},
    ]
    calls = []

    def run(text, context="self"):
        calls.append((text, context))
        return {"a": Detection("urgent", ["suicide"]), "b": Detection("none"), "c": Detection("concern", ["suicide"]),
                "d": Detection("urgent", ["suicide"])}[text]

    r = evaluate(items, run)
    assert calls[0] == ("a", "counselor_note") and all(c == "self" for _, c in calls[1:])
    prep = r["per_construct"]["preparatory"]
    assert prep["n"] == 2 and (prep["urgent_recall"]["k"], prep["urgent_recall"]["n"]) == (1, 2)
    assert (prep["flagged_recall"]["k"], prep["flagged_recall"]["n"]) == (2, 2)
    assert r["per_construct"]["wish_dead"]["flagged_recall"]["k"] == 0
    assert r["per_construct"]["wish_dead"]["urgent_recall"]["n"] == 0
    assert list(r["per_construct"]) == ["wish_dead", "preparatory", "counselor_note"]  # CONSTRUCTS order
    hn = r["false_urgent_on_hard_negatives"]
    assert (hn["k"], hn["n"]) == (1, 1) and hn["ci95"][0] > 0
    assert r["intervals"]["urgent_recall"]["k"] == 1 and r["intervals"]["urgent_recall"]["n"] == 2


def test_evaluate_counts():
    items = [
        {"id": "1", "text": "u", "level": "urgent", "categories": ["suicide"], "hard": None},
        {"id": "2", "text": "u", "level": "urgent", "categories": ["suicide"], "hard": None},
        {"id": "3", "text": "c", "level": "concern", "categories": ["abuse"], "hard": None},
        {"id": "4", "text": "n", "level": "none", "categories": [], "hard": "negative"},
    ]
    preds = iter([Detection("urgent", ["suicide"]), Detection("concern", ["suicide"]),
                  Detection("urgent", ["abuse"]), Detection("none")])
    r = evaluate(items, lambda _text: next(preds))
    assert r["confusion"]["urgent"] == {"none": 0, "concern": 1, "urgent": 1}
    assert r["levels"]["urgent"] == {**r["levels"]["urgent"], "precision": 0.5, "recall": 0.5, "tp": 1}
    assert r["categories"]["abuse"]["recall"] == 1.0 and r["categories"]["suicide"]["recall"] == 1.0
    assert r["flagged"]["recall"] == 1.0 and r["accuracy"] == 0.5
    assert [e["id"] for e in r["errors"]] == ["2", "3"] and not r["targets"]["met"]


def test_eval_cli_meets_the_targets_on_dev(cli):
    code, out, _ = cli(["safety", "eval", "--split", "dev", "--json"])
    r = json.loads(out)
    assert code == 0 and r["n"] >= 200 and r["split"] == "dev"
    u = r["levels"]["urgent"]
    assert u["recall"] >= TARGETS["urgent_recall"] and u["precision"] >= TARGETS["urgent_precision"], u
    assert r["targets"]["met"]


def test_eval_cli_reports_test(cli):
    code, out, _ = cli(["safety", "eval", "--split", "test", "--errors", "5"])
    assert code == 0
    assert "per level" in out and "per category" in out and "confusion" in out and "targets" in out
    assert "false urgent on hard negatives" in out
    code, out, _ = cli(["safety", "eval", "--split", "dev"])
    assert code == 0 and "per construct" in out and "ipv_lethality" in out
    code, out, _ = cli(["safety", "eval", "--split", "test", "--json"])
    r = json.loads(out)
    # docs/safety.md states the figures; this floor only catches a regression (the test split
    # is no longer untouched: see the log there).
    assert r["levels"]["urgent"]["recall"] >= 0.90 and r["flagged"]["recall"] >= 0.90


@pytest.mark.slow
def test_no_text_copied_from_public_datasets(test_data, items):
    """License guard: no item (10+ Chinese / 25+ Latin characters after normalising) occurs in the real data."""
    def norm(s: str) -> str:
        return re.sub(r"[\W_]+", "", unicodedata.normalize("NFKC", s).lower())

    corpus = []
    for p in sorted(test_data.rglob("*")):
        if p.is_file() and p.suffix in (".json", ".jsonl", ".csv", ".txt") and p.stat().st_size < 200_000_000:
            corpus.append(norm(p.read_text(encoding="utf-8", errors="ignore")))
    blob = "\n".join(corpus)
    assert len(blob) > 1_000_000  # the datasets are really there
    hits = [it["id"] for it in items
            if len(t := norm(it["text"])) >= (10 if it["lang"] == "zh" else 25) and t in blob]
    assert not hits, hits


@pytest.mark.parametrize("name", ["crisis_eval_fresh3.jsonl", "crisis_eval_fresh4.jsonl"])
def test_the_held_out_author_sets_load_and_stay_apart_from_the_bundled_set(items, name):
    """The independent authors' sets (docs/safety.md: never tuned on) validate with the same loader, carry
    constructs on every item, and share no id or text with the bundled set the rules are developed on."""
    from importlib import resources

    path = resources.files("psyassist") / "resources" / name
    held = load_evalset(str(path))
    assert len(held) >= 240 and all(it.get("constructs") is not None for it in held)
    assert {it["lang"] for it in held} == {"en", "zh"} and {it["level"] for it in held} == {"none", "concern", "urgent"}
    assert not {it["id"] for it in held} & {it["id"] for it in items}
    assert not {it["text"] for it in held} & {it["text"] for it in items}
