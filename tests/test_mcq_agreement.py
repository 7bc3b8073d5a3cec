"""Agreement with lm-evaluation-harness (slow): the same prompts, token for token, and the same scores.

    PSYASSIST_TEST_DATA=../shared/data .venv/bin/python -m pytest tests/test_mcq_agreement.py -m slow

1. Prompt strings, no model: `--format mmlu` / `--format cmmlu` against the harness's SHIPPED mmlu and cmmlu
   tasks (their description, doc_to_text, target_delimiter, fewshot_delimiter, first_n few-shot sampler), run
   on small benchmark files written here, zero- and two-shot.
2. Scores: SmolLM2-135M-Instruct (the embedded default, local directory), lm-eval run OFFLINE through its
   Python API on the same local CSVs — all 624 MMLU professional psychology questions (task
   `eval.mcq.LM_EVAL_MMLU_TASK`, the harness's MMLU prompt over the header-less CSV) and the first
   CMMLU_QUESTIONS of CMMLU professional psychology (`eval.mcq.LM_EVAL_CMMLU_TASK`, the shipped cmmlu task
   reading the local CSV; ours through `psyassist eval mcq` with `--format cmmlu` and with a template file
   written with lm-eval's key names).  Per question: the prompt and continuations are identical and the log-likelihoods
   agree to 2e-3 (measured: ~1e-4); accuracies within 0.5 points.  Numbers: docs/eval.md and
   benchmarks/RESULTS.md (benchmarks/mcq_agreement.py).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

AGREEMENT_QUESTIONS = 624  # the whole professional_psychology_test.csv
CMMLU_QUESTIONS = 40  # the first 40 of 232: Chinese prompts are long in SmolLM2's byte-level tokens


@pytest.fixture(scope="module")
def lm_eval():
    return pytest.importorskip("lm_eval", reason="pip install lm-eval (the dev extra)")


def _offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")


def _tasks_dir(lm_eval) -> Path:
    return Path(lm_eval.__file__).parent / "tasks"


def _task(lm_eval, folder: Path, name: str):
    from lm_eval.tasks import TaskManager

    return TaskManager(include_path=str(folder)).load([name])["tasks"][name]


# --- 1. prompt strings against the shipped tasks --------------------------------------------------

# Leading/trailing spaces in a stem (both strip it), an option with a trailing space (both keep it), braces
# and a percent sign (neither template language may touch them), Chinese punctuation.
QUESTIONS = [
    ("  Which {term} is 50% right? ", ["alpha ", "beta", "gamma", "delta"], "C"),
    ("Second question?", ["one", "two", "three", "four"], "A"),
    ("“引号”与（括号）：哪一项正确？", ["甲", "乙", "丙", "丁"], "D"),
]
DEV = [("Dev one?", ["x", "y", "z", "w"], "B"), ("第二个例题？", ["p", "q", "r", "s"], "D")]


def _write_mmlu(tmp_path: Path, lm_eval) -> tuple[Path, Path, Path]:
    """The same items as hendrycks CSVs (psyassist) and as cais/mmlu JSON Lines (the shipped task)."""
    def write_csv(path: Path, rows) -> Path:
        with open(path, "w", encoding="utf-8", newline="") as f:
            csv.writer(f, lineterminator="\n").writerows([q, *opts, a] for q, opts, a in rows)
        return path

    def write_jsonl(path: Path, rows) -> Path:
        path.write_text("".join(json.dumps({"question": q, "subject": "professional_psychology", "choices": opts,
                                            "answer": "ABCD".index(a)}, ensure_ascii=False) + "\n"
                                for q, opts, a in rows), encoding="utf-8")
        return path

    d = tmp_path / "mmlu"
    d.mkdir()
    test_csv = write_csv(d / "professional_psychology_test.csv", QUESTIONS)
    dev_csv = write_csv(d / "professional_psychology_dev.csv", DEV)
    (tmp_path / "task_mmlu.yaml").write_text(
        f"include: {_tasks_dir(lm_eval)}/mmlu/default/mmlu_professional_psychology.yaml\n"
        "task: fixture_mmlu\ndataset_path: json\ndataset_name: null\ndataset_kwargs:\n  data_files:\n"
        f"    test: {write_jsonl(d / 'test.jsonl', QUESTIONS)}\n    dev: {write_jsonl(d / 'dev.jsonl', DEV)}\n",
        encoding="utf-8")
    return test_csv, dev_csv, tmp_path


def _write_cmmlu(tmp_path: Path, lm_eval) -> tuple[Path, Path, Path]:
    """CMMLU CSVs (header `,Question,A,B,C,D,Answer`), read by psyassist and by the shipped task alike."""
    def write_csv(path: Path, rows) -> Path:
        with open(path, "w", encoding="utf-8", newline="") as f:
            w = csv.writer(f, lineterminator="\n")
            w.writerow(["", "Question", "A", "B", "C", "D", "Answer"])
            w.writerows([i, q, *opts, a] for i, (q, opts, a) in enumerate(rows))
        return path

    from psyassist.eval.mcq import LM_EVAL_CMMLU_TASK

    d = tmp_path / "cmmlu"
    d.mkdir()
    test_csv = write_csv(d / "test_professional_psychology.csv", QUESTIONS)
    dev_csv = write_csv(d / "dev_professional_psychology.csv", DEV)
    (tmp_path / "task_cmmlu.yaml").write_text(LM_EVAL_CMMLU_TASK.format(
        tasks=_tasks_dir(lm_eval), subject="professional_psychology", name="fixture_cmmlu", csv=test_csv,
        dev=dev_csv), encoding="utf-8")
    return test_csv, dev_csv, tmp_path


@pytest.mark.parametrize("bench", ["mmlu", "cmmlu"])
def test_harness_formats_build_lm_evals_exact_prompt_strings(lm_eval, tmp_path, monkeypatch, bench):
    from psyassist.eval.mcq import build_prompt, load_format
    from psyassist.eval.mcq_loaders import load_mcq

    _offline(monkeypatch)
    test_csv, dev_csv, folder = (_write_mmlu(tmp_path, lm_eval) if bench == "mmlu" else _write_cmmlu(tmp_path, lm_eval))
    task = _task(lm_eval, folder, f"fixture_{bench}")
    docs = list(task.test_docs())
    fmt = load_format(bench)
    items, shots = load_mcq([str(test_csv)]).items, load_mcq([str(dev_csv)]).items
    assert len(items) == len(docs) == len(QUESTIONS)
    for k in (0, 2):
        for item, doc in zip(items, docs, strict=True):
            theirs = task.fewshot_context(doc, k)
            assert build_prompt(fmt, item, shots[:k]) == theirs, (bench, k, item.id)
            conts = [task.config.target_delimiter + c for c in task.doc_to_choice(doc)]
            assert [fmt.letter_prefix + ltr for ltr in item.letters] == conts
            assert item.letters[task.doc_to_target(doc)] == item.answer
    # the description is written once, at the top, not before every example
    assert theirs.count(task.config.description.strip()) == 1 and theirs.startswith(task.config.description)
    # the old format is still there under its own name, without the description
    old = build_prompt(load_format("mmlu_no_description"), items[1], [])
    assert old == f"{items[1].question}\nA. one\nB. two\nC. three\nD. four\nAnswer:"


# --- 2. scores on the real benchmarks ----------------------------------------------------------------


def _lm_eval(lm_eval, task_file: Path, name: str, limit: int | None) -> tuple[float, list[dict]]:
    from lm_eval.tasks import TaskManager

    from psyassist.models import default_model_dir

    theirs = lm_eval.simple_evaluate(
        model="hf", model_args=f"pretrained={default_model_dir()},dtype=float32", device="cpu", tasks=[name],
        task_manager=TaskManager(include_path=str(task_file.parent)), batch_size=8, limit=limit, log_samples=True)
    return theirs["results"][name]["acc,none"], sorted(theirs["samples"][name], key=lambda s: s["doc_id"])


def _assert_same_items(ours: dict, samples: list[dict]) -> None:
    """Per question: the same prompt string, the same continuations, the same log-likelihoods."""
    assert ours["n"] == len(samples)
    for row, s in zip(ours["items"], samples, strict=True):
        assert {ctx for ctx, _ in s["arguments"]} == {row["prompt"]}, row["id"]
        assert [c for _, c in s["arguments"]] == [f" {ltr}" for ltr in row["scores"]]
        assert list(row["scores"].values()) == pytest.approx([r[0] for r in s["filtered_resps"]], abs=2e-3), \
            row["id"]


def test_mmlu_logprob_equals_lm_eval_on_every_question(lm_eval, test_data, tmp_path, monkeypatch):
    from psyassist.eval.mcq import LM_EVAL_MMLU_TASK, MCQConfig, run_mcq
    from psyassist.models import default_model_dir

    _offline(monkeypatch)
    csv_path = test_data / "MMLU_psychology" / "professional_psychology_test.csv"
    task = tmp_path / "task.yaml"
    task.write_text(LM_EVAL_MMLU_TASK.format(name="psyassist_mmlu_prof", csv=csv_path,
                                             subject="professional psychology"), encoding="utf-8")
    their_acc, samples = _lm_eval(lm_eval, task, "psyassist_mmlu_prof", None)
    ours = run_mcq(MCQConfig(bench=[str(csv_path)], model=str(default_model_dir()), formats="mmlu"))
    f = ours["formats"]["mmlu"]
    assert f["n"] == AGREEMENT_QUESTIONS
    _assert_same_items(f, samples)
    assert abs(100 * f["accuracy"] - 100 * their_acc) <= 0.5


def test_cmmlu_through_eval_mcq_equals_lm_eval_per_question(lm_eval, test_data, tmp_path, monkeypatch, cli):
    """The shipped `cmmlu` format and a template a user writes with lm-eval's key names, both through the CLI."""
    from psyassist.eval.mcq import LM_EVAL_CMMLU_TASK
    from psyassist.models import default_model_dir

    _offline(monkeypatch)
    d = test_data / "CMMLU_professional_psychology"
    csv_path = d / "test_professional_psychology.csv"
    task = tmp_path / "task.yaml"
    task.write_text(LM_EVAL_CMMLU_TASK.format(
        tasks=_tasks_dir(lm_eval), subject="professional_psychology", name="psyassist_cmmlu_prof", csv=csv_path,
        dev=d / "dev_professional_psychology.csv"), encoding="utf-8")
    mine = tmp_path / "harness_style.yaml"
    mine.write_text('description: "以下是关于{subject}的单项选择题，请直接给出正确答案的选项。\\n\\n"\n'
                    'user: "{question}\\n{options}\\n答案："\ntarget_delimiter: " "\n'
                    "subject_names: {professional_psychology: 专业心理学}\n", encoding="utf-8")
    their_acc, samples = _lm_eval(lm_eval, task, "psyassist_cmmlu_prof", CMMLU_QUESTIONS)
    out = tmp_path / "ours.json"
    code, _, err = cli(["eval", "mcq", "--bench", csv_path, "--model", default_model_dir(), "--format",
                        f"cmmlu,{mine}", "--limit", CMMLU_QUESTIONS, "--out", out])
    assert code == 0, err
    res = json.loads(out.read_text(encoding="utf-8"))
    for name in ("cmmlu", "harness_style"):
        f = res["formats"][name]
        _assert_same_items(f, samples)
        assert abs(100 * f["accuracy"] - 100 * their_acc) <= 0.5
