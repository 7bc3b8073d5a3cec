"""Agreement with lm-evaluation-harness (slow): same model, data and zero-shot prompt → same `acc`.

    PSYASSIST_TEST_DATA=../shared/data .venv/bin/python -m pytest tests/test_mcq_agreement.py -m slow

SmolLM2-135M-Instruct (the embedded default, local directory) on MMLU professional psychology,
lm-eval run OFFLINE through its Python API with a task written here that reads the same local
CSV with MMLU's prompt ("question\\nA. ..\\nB. ..\\nAnswer:", continuations " A".." D").  The
first AGREEMENT_N questions are used (the whole 624 takes ~15 min per tool on a busy 2-core
machine); the per-question log-likelihoods must match, so the accuracies agree exactly, inside
the 0.5-point requirement.  The result is in docs/eval.md.
"""

from __future__ import annotations

import pytest

AGREEMENT_N = 100


@pytest.mark.slow
def test_logprob_accuracy_equals_lm_eval_acc(test_data, tmp_path, monkeypatch):
    lm_eval = pytest.importorskip("lm_eval", reason="pip install lm-eval (the dev extra)")
    from psyassist.eval.mcq import MCQConfig, run_mcq
    from psyassist.models import default_model_dir

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    csv = test_data / "MMLU_psychology" / "professional_psychology_test.csv"
    model = default_model_dir()
    (tmp_path / "task.yaml").write_text(f"""task: psyassist_mmlu_prof
dataset_path: csv
dataset_kwargs:
  data_files:
    test: {csv}
  column_names: [question, A, B, C, D, answer]
  keep_default_na: false
output_type: multiple_choice
test_split: test
doc_to_text: "{{{{question.strip()}}}}\\nA. {{{{A}}}}\\nB. {{{{B}}}}\\nC. {{{{C}}}}\\nD. {{{{D}}}}\\nAnswer:"
doc_to_choice: ["A", "B", "C", "D"]
doc_to_target: "{{{{['A', 'B', 'C', 'D'].index(answer)}}}}"
metric_list:
  - metric: acc
""", encoding="utf-8")
    from lm_eval.tasks import TaskManager

    theirs = lm_eval.simple_evaluate(
        model="hf", model_args=f"pretrained={model},dtype=float32", device="cpu", tasks=["psyassist_mmlu_prof"],
        task_manager=TaskManager(include_path=str(tmp_path)), batch_size=8, limit=AGREEMENT_N, log_samples=True)
    their_acc = theirs["results"]["psyassist_mmlu_prof"]["acc,none"]
    their_ll = {s["doc_id"]: [r[0] for r in s["filtered_resps"]] for s in theirs["samples"]["psyassist_mmlu_prof"]}

    ours = run_mcq(MCQConfig(bench=[str(csv)], model=str(model), formats="mmlu", limit=AGREEMENT_N))
    f = ours["formats"]["mmlu"]
    assert f["n"] == AGREEMENT_N and len(their_ll) == AGREEMENT_N
    for i, row in enumerate(f["items"]):
        assert list(row["scores"].values()) == pytest.approx(their_ll[i], abs=2e-3), row["id"]
    assert abs(100 * f["accuracy"] - 100 * their_acc) <= 0.5
