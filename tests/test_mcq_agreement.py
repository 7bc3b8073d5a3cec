"""Agreement with lm-evaluation-harness (slow): same model, data and zero-shot prompt → same `acc`.

    PSYASSIST_TEST_DATA=../shared/data .venv/bin/python -m pytest tests/test_mcq_agreement.py -m slow

SmolLM2-135M-Instruct (the embedded default, local directory) on MMLU professional psychology,
lm-eval run OFFLINE through its Python API with a task (`eval.mcq.LM_EVAL_MMLU_TASK`) that reads the same local
CSV with MMLU's prompt ("question\\nA. ..\\nB. ..\\nAnswer:", continuations " A".." D").  All 624
questions (about 3 minutes for both tools on a quiet 2-core machine: 73 s ours, 112 s lm-eval); the
per-question log-likelihoods must match, so the accuracies agree exactly, inside the 0.5-point
requirement.  The result is in docs/eval.md and benchmarks/RESULTS.md (benchmarks/mcq_agreement.py).
"""

from __future__ import annotations

import pytest

AGREEMENT_QUESTIONS = 624  # the whole professional_psychology_test.csv


@pytest.mark.slow
def test_logprob_accuracy_equals_lm_eval_acc(test_data, tmp_path, monkeypatch):
    lm_eval = pytest.importorskip("lm_eval", reason="pip install lm-eval (the dev extra)")
    from psyassist.eval.mcq import LM_EVAL_MMLU_TASK, MCQConfig, run_mcq
    from psyassist.models import default_model_dir

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    csv = test_data / "MMLU_psychology" / "professional_psychology_test.csv"
    model = default_model_dir()
    (tmp_path / "task.yaml").write_text(LM_EVAL_MMLU_TASK.format(name="psyassist_mmlu_prof", csv=csv),
                                        encoding="utf-8")
    from lm_eval.tasks import TaskManager

    theirs = lm_eval.simple_evaluate(
        model="hf", model_args=f"pretrained={model},dtype=float32", device="cpu", tasks=["psyassist_mmlu_prof"],
        task_manager=TaskManager(include_path=str(tmp_path)), batch_size=8, log_samples=True)
    their_acc = theirs["results"]["psyassist_mmlu_prof"]["acc,none"]
    their_ll = {s["doc_id"]: [r[0] for r in s["filtered_resps"]] for s in theirs["samples"]["psyassist_mmlu_prof"]}

    ours = run_mcq(MCQConfig(bench=[str(csv)], model=str(model), formats="mmlu"))
    f = ours["formats"]["mmlu"]
    assert f["n"] == AGREEMENT_QUESTIONS and len(their_ll) == AGREEMENT_QUESTIONS
    for i, row in enumerate(f["items"]):
        assert list(row["scores"].values()) == pytest.approx(their_ll[i], abs=2e-3), row["id"]
    assert abs(100 * f["accuracy"] - 100 * their_acc) <= 0.5
