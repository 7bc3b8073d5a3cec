"""psyassist compare: suite validation, model specs, report rendering, and one end-to-end run."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from psyassist.errors import PsyassistError
from psyassist.eval.compare import ModelSpec, load_suite, parse_model_spec, resolve_sides
from psyassist.eval.report import write_report

ROOT = Path(__file__).resolve().parents[1]
EVIL = "<script>alert(1)</script> a|b\nnext line & more"


# --- suites ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", sorted((ROOT / "suites").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_suite_parses(path):
    suite = load_suite(path)
    assert suite.stages and len({s.name for s in suite.stages}) == len(suite.stages)


def test_sample_suite_has_seed_000s_prompt_and_all_three_formats():
    suite = load_suite(ROOT / "suites" / "sample.yaml")
    by_type = {s.type: s for s in suite.stages}
    assert by_type["replies"].opts["prompts"][0] == "这段时间我不开心"
    assert by_type["mcq"].opts["bench"] == ["sample"] and by_type["mcq"].opts["formats"] == "all"
    assert Path(by_type["gen"].opts["data"][0]).name == "sample_corpus.jsonl"


def _suite(tmp_path, text: str) -> Path:
    p = tmp_path / "s.yaml"
    p.write_text(text, encoding="utf-8")
    return p


@pytest.mark.parametrize("text, message", [
    ("stages: []", r"'stages' must be a non-empty list"),
    ("seed: 1\nstagez: []", r"unknown key 'stagez'; known: name, description, seed, stages"),
    ("stages:\n  - {type: imhi2, data: x}", r"stages\[0\]: unknown stage type 'imhi2'; supported: mcq, gen, imhi, replies"),
    ("stages:\n  - {type: mcq, bench: sample}\n  - {type: mcq, bench: sample, formt: all}",
     r"stages\[1\] \(mcq\): unknown key 'formt'; a mcq stage takes .*formats"),
    ("stages:\n  - {type: mcq, bench: sample, limit: 0}", r"stages\[0\] \(mcq\): 'limit' must be an integer >= 1"),
    ("stages:\n  - {type: mcq, bench: sample, mode: guess}", r"'mode' must be logprob or generate"),
    ("stages:\n  - {type: gen}", r"stages\[0\] \(gen\): missing required key\(s\) data"),
    ("stages:\n  - {type: gen, data: nowhere.jsonl}", r"stages\[0\] \(gen\): 'data': 'nowhere.jsonl' not found"),
    ("stages:\n  - {type: gen, data: sample, metrics: [bleu, meteor]}", r"'metrics' must be a list of bleu"),
    ("stages:\n  - {type: gen, data: sample, metrics: [bertscore]}", r"'bertscore' needs bertscore_model"),
    ("stages:\n  - {type: imhi, split: train}", r"stages\[0\] \(imhi\): 'split' must be complete or instruction"),
    ("stages:\n  - {type: replies, prompts: []}", r"'prompts' must be a non-empty list of prompt strings"),
    ("stages:\n  - {type: replies, prompts: [hi]}\n  - {type: replies, prompts: [yo]}\n"
     "  - {type: replies, name: replies, prompts: [x]}", r"stages\[2\] \(replies\): name 'replies' is used twice"),
    ("stages:\n  - {type: replies, name: 'a/b', prompts: [hi]}", r"'name' must be a name of letters"),
    ("- just a list", r"expected a mapping with 'stages:'"),
    ("stages: [1", r"not valid YAML"),
])
def test_suite_errors_name_file_stage_and_key(tmp_path, text, message):
    p = _suite(tmp_path, text)
    with pytest.raises(PsyassistError, match=message) as e:
        load_suite(p)
    assert str(p) in str(e.value)


def test_suite_paths_are_relative_to_the_suite_file(tmp_path, monkeypatch):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "bench.json").write_text("[]", encoding="utf-8")
    p = _suite(tmp_path / "d", "stages:\n  - {type: mcq, bench: bench.json}")
    monkeypatch.chdir(tmp_path)  # not the suite's directory
    assert load_suite(p).stages[0].opts["bench"] == [str(tmp_path / "d" / "bench.json")]


# --- model specs ----------------------------------------------------------------------------------


def _adapter(d: Path) -> Path:
    d.mkdir(parents=True)
    (d / "adapter_config.json").write_text("{}", encoding="utf-8")
    return d


def test_model_specs(tmp_path):
    ad = _adapter(tmp_path / "runs" / "demo" / "adapter")
    base = parse_model_spec("default", "--base")
    assert base == ModelSpec("default")
    assert parse_model_spec(f"default+{ad}", "--tuned", base) == ModelSpec("default", str(ad))
    assert parse_model_spec(f"+{ad}", "--tuned", base) == ModelSpec("default", str(ad))
    odd = tmp_path / "merged+v2"  # an existing path is a model, never split at '+'
    odd.mkdir()
    assert parse_model_spec(str(odd), "--tuned", base) == ModelSpec(str(odd))
    plus_adapter = _adapter(tmp_path / "a+b")  # the split picks the '+' whose right side is an adapter
    assert parse_model_spec(f"Qwen/Qwen3-4B+{plus_adapter}", "--tuned") == ModelSpec("Qwen/Qwen3-4B", str(plus_adapter))
    assert resolve_sides("default", None, str(ad))["tuned"] == ModelSpec("default", str(ad))


@pytest.mark.parametrize("tuned, tuned_adapter, message", [
    ("default+runs/none/adapter", None, "ADAPTER_DIR 'runs/none/adapter' is not a LoRA adapter directory"),
    (None, None, "exactly one of --tuned"),
    ("x", "y", "exactly one of --tuned"),
    ("default", None, "same model"),
])
def test_model_spec_errors(tuned, tuned_adapter, message):
    with pytest.raises(PsyassistError, match=message):
        resolve_sides("default", tuned, tuned_adapter)


def test_adapter_dir_without_config_is_named(tmp_path):
    (tmp_path / "adapter").mkdir()
    with pytest.raises(PsyassistError, match="no adapter_config.json in it"):
        parse_model_spec(f"default+{tmp_path / 'adapter'}", "--tuned")


# --- report rendering from synthetic results ------------------------------------------------------


def _mcq_row(fmt, acc_b, acc_t, p, n=40):
    side = lambda a: {"accuracy": a, "wilson95": [max(0, a - 0.15), min(1, a + 0.15)], "unparsed": 0,  # noqa: E731
                      "correct": round(a * n), "n": n}
    return {"format": fmt, "n": n, "base": side(acc_b), "tuned": side(acc_t), "delta": acc_t - acc_b,
            "base_only_right": 3, "tuned_only_right": 9, "p_value": p, "test": "exact binomial (two-sided)",
            "chance": 0.25}


def synthetic_report() -> dict:
    model = {"model": "default", "adapter": None, "merged_from": None, "device": "cpu", "dtype": "float32",
             "thinking": False, "supports_thinking": False, "spec": "default", "adapter_check": None,
             "path": "models/smollm2", "load_seconds": 1.0}
    tuned = {**model, "adapter": "runs/demo/adapter", "spec": "default+runs/demo/adapter",
             "adapter_check": {"trained_on": "models/smollm2", "rank": 8, "alpha": 16, "weights_sha256": "ab" * 32,
                               "base_check": "match"}}
    sampling = {"temperature": 0.7, "top_p": 0.8, "top_k": 20, "max_new_tokens": 64, "seed": 0}
    gen_rows = [{"metric": "BLEU-4", "how": "corpus BLEU, tokenize=zh", "base": 1.5, "base_ci95": None, "tuned": 3.0,
                 "tuned_ci95": None, "delta": 1.5, "paired": None},
                {"metric": "ROUGE-L (char)", "how": "mean F1", "base": 10.0, "base_ci95": [8.0, 12.0], "tuned": 14.0,
                 "tuned_ci95": [11.0, 17.0], "delta": 4.0, "paired": {"n": 8, "mean": 4.0, "ci95": [1.0, 7.0]}},
                {"metric": "length (mean)", "how": "chars", "base": 50.0, "base_ci95": None, "tuned": 80.0,
                 "tuned_ci95": None, "delta": 30.0, "paired": {"n": 8, "mean": 30.0, "ci95": [-2.0, 62.0]}}]
    imhi_side = {"accuracy": 0.4, "unparsed_rate": 0.1, "bleu4": 0.01, "rougeL": 0.12, "embedding_cosine": None,
                 "bertscore_f1": None}
    return {
        "kind": "psyassist.compare", "version": 1, "date": "2025-01-01T00:00:00+00:00", "seed": 0, "limit": None,
        "command": "psyassist compare --base default --tuned default+runs/demo/adapter --suite suites/sample.yaml "
                   "-o results/compare-sample --seed 0",
        "suite": {"path": "suites/sample.yaml", "sha256": "cd" * 32, "name": "sample", "description": "",
                  "stages": 3},
        "models": {"base": model, "tuned": tuned}, "seconds": 12.5,
        "versions": {"python": "3.12", "psyassist": "0.1.0", "torch": "2.13.0", "transformers": "5", "peft": "0.17"},
        "machine": {"platform": "Linux", "arch": "x86_64", "cpus": 2, "torch_threads": 2},
        "stages": [
            {"name": "sample-mcq", "type": "mcq", "index": 0, "seconds": {"base": 1, "tuned": 1}, "bench": ["sample"],
             "files": {"resources/sample_mcq.json": "ef" * 32}, "n_items": 40, "mode": "logprob",
             "rule": "logprob: argmax", "multi_answer_rule": "m", "thinking": None, "shuffle_options": False,
             "templates": {f: {"source": f"{f}.yaml"} for f in ("professional", "plain")},
             "example_prompts": {"professional": "Question <b>1</b>", "plain": "Q 1"},
             "commands": {"base": "psyassist eval mcq --bench sample", "tuned": "psyassist eval mcq --adapter a"},
             "warnings": [], "rows": [_mcq_row("professional", 0.40, 0.55, 0.146), _mcq_row("plain", 0.30, 0.60, 0.001)]},
            {"name": "sample-gen", "type": "gen", "index": 1, "seconds": {"base": 1, "tuned": 1}, "data": ["c.jsonl"],
             "files": {"c.jsonl": "01" * 32}, "lang": "zh", "n": 8, "turns": "last", "sampling": sampling,
             "finish": {s: {"stop": 7, "length": 1, "interrupted": 0} for s in ("base", "tuned")},
             "empty_replies": {"base": 0, "tuned": 0}, "commands": {"base": "b", "tuned": "t"}, "rows": gen_rows,
             "chart": ["BLEU-4", "ROUGE-L (char)", "length (mean)"]},
            {"name": "imhi", "type": "imhi", "index": 3, "seconds": {"base": 1, "tuned": 1}, "split": "complete",
             "dir": "IMHI/test_data/test_complete", "files": {"DR.csv": "02" * 32}, "parse_rule": "leftmost alias",
             "scale": "0-1", "sampling": sampling, "commands": {"base": "b", "tuned": "t"},
             "rows": [{"dataset": d, "n": 20, "base": {**imhi_side, "weighted_f1": 0.2},
                       "tuned": {**imhi_side, "weighted_f1": 0.5},
                       "mcnemar": {"n_paired": 20, "base_only_right": 1, "tuned_only_right": 9, "p_value": 0.0215,
                                   "method": "exact binomial (two-sided)"}} for d in ("DR", "macro")]},
            {"name": "replies", "type": "replies", "index": 2, "seconds": {"base": 1, "tuned": 1},
             "sampling": sampling, "system": None, "thinking": False,
             "rows": [{"prompt": "这段时间我不开心", "base": EVIL, "tuned": "我能感受到你现在可能正经历一些困扰。",
                       "finish": {"base": "stop", "tuned": "length"}, "new_tokens": {"base": 9, "tuned": 64}}]},
        ]}


def test_report_is_self_contained_escaped_and_honest(tmp_path):
    report = synthetic_report()
    paths = write_report(report, tmp_path)
    html_text = (tmp_path / "report.html").read_text(encoding="utf-8")
    md = (tmp_path / "report.md").read_text(encoding="utf-8")

    # self-contained: no external URL anywhere, every image a data URI, the PNGs saved beside it
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html_text)
    imgs = re.findall(r'<img [^>]*src="([^"]+)"', html_text)
    assert len(imgs) == 3 and all(s.startswith("data:image/png;base64,") for s in imgs)
    for name in ("sample-mcq.png", "sample-gen.png", "imhi.png"):
        assert paths[name].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads(paths["json"].read_text(encoding="utf-8")) == report

    # model text is escaped in both files; the Markdown row stays one row
    for text in (html_text, md):
        assert "<script>" not in text and "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "<b>1</b>" not in html_text and "Question &lt;b&gt;1&lt;/b&gt;" in html_text
    reply_row = next(line for line in md.splitlines() if line.startswith("| 1 | 这段时间我不开心"))
    assert "a&#124;b<br>next line &amp; more" in reply_row and reply_row.count(" | ") == 3
    assert "(cut at max_new_tokens)" in reply_row  # the tuned reply hit the limit

    # the reproducible command, ids, hashes, versions, seed
    for text in (md, html_text):
        assert report["command"] in text
        assert "ab" * 8 in text and "cd" * 32 in text and "ef" * 32 in text and "torch 2.13.0" in text
        assert "trained on models/smollm2: match" in text
    assert "| professional | 40 | 40.0% [25.0–55.0] | 55.0% [40.0–70.0] | +15.0 | 0.146 | 0 / 0 | 25.0% |" in md
    assert "professional: difference not significant at 0.05 (McNemar p = 0.146; only base right 3" in md
    assert "plain: tuned is more accurate, significant at 0.05 (McNemar p = 0.001; 2 formats tested" in md
    assert "| ROUGE-L (char) | 10.000 | 14.000 | +4.000 | +4.00 [+1.00, +7.00] * |" in md
    assert "| length (mean) | 50.000 | 80.000 | +30.000 | +30.00 [-2.00, +62.00] |" in md  # CI spans 0: no star
    assert "not how good they are" in md and "not how good they are" in html_text
    assert "| DR | 20 | 0.200 | 0.500 | +0.300 | 0.400 | 0.400 | 0.0215 | 10.0% / 10.0% | 0.120 / 0.120 |" in md
    assert "DR: label accuracy significant at 0.05 (McNemar p = 0.0215; only base right 1, only tuned right 9)" in md


# --- end to end ----------------------------------------------------------------------------------



@pytest.fixture(scope="module")
def tiny_base_and_adapter(tmp_path_factory, qwen3_tokenizer_dir):
    """A tiny random Qwen3 with the real Qwen3 tokenizer, and a LoRA adapter whose B is random (not a no-op)."""
    import torch

    from psyassist.infer.engine import load
    from psyassist.models import attach_lora, save_tiny_qwen3

    root = tmp_path_factory.mktemp("compare")
    model_dir = save_tiny_qwen3(root / "model", qwen3_tokenizer_dir, seed=3)
    peft = attach_lora(load(str(model_dir), dtype="float32", device="cpu").model, r=4, alpha=8)
    with torch.no_grad():
        for name, p in peft.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    peft.save_pretrained(root / "adapter")
    return model_dir, root / "adapter"


@pytest.mark.slow
def test_cli_compare_end_to_end(cli, tiny_base_and_adapter, test_data, tmp_path, one_torch_thread):
    model_dir, adapter = tiny_base_and_adapter
    imhi = json.dumps(str(test_data / "IMHI_MentalLLaMA"))
    suite = _suite(tmp_path, """
seed: 7
stages:
  - {type: mcq, name: mcq, bench: sample, formats: all, limit: 5}
  - {type: gen, name: gen, data: sample, turns: last, limit: 2, max_new_tokens: 6, metrics: [bleu, rouge, distinct, length]}
  - {type: replies, prompts: ["这段时间我不开心"], max_new_tokens: 8}
  - {type: imhi, data: IMHI, datasets: [DR], limit: 3, max_new_tokens: 8}
""".replace("IMHI", imhi))
    out = tmp_path / "out"
    code, stdout, err = cli(["compare", "--base", model_dir, "--tuned", f"{model_dir}+{adapter}", "--suite", suite,
                             "-o", out, "--dtype", "fp32", "--device", "cpu"])
    assert code == 0, err
    for f in ("report.md", "report.html", "compare.json", "mcq.png", "gen.png", "base/mcq.json", "tuned/mcq.json",
              "base/gen/results.json", "tuned/gen/replies.jsonl", "base/replies.json", "tuned/replies.json"):
        assert (out / f).is_file(), f
    md = (out / "report.md").read_text(encoding="utf-8")
    rep = json.loads((out / "compare.json").read_text(encoding="utf-8"))
    assert rep["command"].startswith("psyassist compare --base ") and "--seed 7" in rep["command"]
    assert f"`{rep['command']}`" in md or rep["command"] in md
    for fmt in ("professional", "plain", "chat"):
        assert re.search(rf"^\| {fmt} \| 5 \| \d+\.\d% \[", md, re.M), fmt
    assert rep["models"]["tuned"]["adapter_check"]["base_check"] == "match"
    assert rep["models"]["base"]["adapter"] is None and rep["models"]["tuned"]["adapter"] == str(adapter)
    mcq_stage, gen_stage, replies, imhi = rep["stages"]
    # the McNemar counts are those of the two raw result files, paired by item id
    base_raw = json.loads((out / "base" / "mcq.json").read_text(encoding="utf-8"))
    tuned_raw = json.loads((out / "tuned" / "mcq.json").read_text(encoding="utf-8"))
    row = mcq_stage["rows"][0]
    b = [r["correct"] for r in base_raw["formats"][row["format"]]["items"]]
    t = [r["correct"] for r in tuned_raw["formats"][row["format"]]["items"]]
    assert row["base_only_right"] == sum(x and not y for x, y in zip(b, t, strict=True))
    assert row["tuned_only_right"] == sum(y and not x for x, y in zip(b, t, strict=True))
    assert tuned_raw["model"]["adapter"] == str(adapter) and base_raw["seed"] == 7
    assert gen_stage["n"] == 2 and {"BLEU-4", "distinct-2", "length (mean)"} <= {r["metric"] for r in gen_stage["rows"]}
    assert len(gen_stage["files"]) == 1 and "| embedding cosine |" not in md  # not asked for: not computed
    assert replies["rows"][0]["prompt"] == "这段时间我不开心"
    assert replies["rows"][0]["base"] != replies["rows"][0]["tuned"]  # the random adapter changes the reply
    assert "| 1 | 这段时间我不开心 |" in md
    assert [r["dataset"] for r in imhi["rows"]] == ["DR", "macro"] and imhi["rows"][0]["n"] == 3
    assert imhi["rows"][0]["mcnemar"]["n_paired"] == 3 and (out / "tuned" / "imhi" / "predictions.jsonl").is_file()
    assert re.search(r"^\| DR \| 3 \| ", md, re.M)
    html_text = (out / "report.html").read_text(encoding="utf-8")
    assert html_text.count('src="data:image/png;base64,') == 3 and 'src="http' not in html_text


def test_cli_user_errors_are_one_line_and_come_before_any_model_loads(cli, tmp_path):
    bad = _suite(tmp_path, "stages:\n  - {type: mcq, bench: sample, formats: all, modes: logprob}")
    code, _, err = cli(["compare", "--base", "no/such-model", "--tuned", "+nowhere", "--suite", bad])
    assert code == 2 and "stages[0] (mcq): unknown key 'modes'" in err and "Traceback" not in err
    good = _suite(tmp_path, "stages:\n  - {type: replies, prompts: [hi]}")
    code, _, err = cli(["compare", "--base", "default", "--tuned", "default+nowhere/adapter", "--suite", good])
    assert code == 2 and "'nowhere/adapter' is not a LoRA adapter directory" in err
