"""Agreement with lm-evaluation-harness on the WHOLE MMLU professional psychology test set.

    PSYASSIST_TEST_DATA=../shared/data .venv/bin/python benchmarks/mcq_agreement.py [--limit N]

The slow test (tests/test_mcq_agreement.py) checks the first 100 questions so CI stays short;
this script runs all 624 once: SmolLM2-135M-Instruct (the embedded default) fp32 on CPU,
zero-shot, MMLU's prompt ("question\\nA. ..\\nB. ..\\nAnswer:", continuations " A".." D"), lm-eval
offline through its Python API with a task that reads the same local CSV.  Requirement
(issue 4): psyassist's logprob `acc` equals lm-eval's `acc` within 0.5 points.  Also reports the
largest per-option log-likelihood difference and how many predictions differ.  Prints one JSON
line last and appends a row to RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import peak_rss_mb, record  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=os.environ.get("PSYASSIST_TEST_DATA", "../shared/data"))
    ap.add_argument("--limit", type=int, default=None, help="first N questions only (default: all)")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    import lm_eval
    from lm_eval.tasks import TaskManager

    from psyassist.eval.mcq import LM_EVAL_MMLU_TASK, MCQConfig, run_mcq
    from psyassist.models import default_model_dir

    csv = Path(args.data) / "MMLU_psychology" / "professional_psychology_test.csv"
    model = default_model_dir()
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "task.yaml").write_text(LM_EVAL_MMLU_TASK.format(name="psyassist_mmlu_prof", csv=csv),
                                             encoding="utf-8")
        t0 = time.perf_counter()
        theirs = lm_eval.simple_evaluate(
            model="hf", model_args=f"pretrained={model},dtype=float32", device="cpu", tasks=["psyassist_mmlu_prof"],
            task_manager=TaskManager(include_path=tmp), batch_size=8, limit=args.limit, log_samples=True)
        t_theirs = time.perf_counter() - t0
    their_acc = theirs["results"]["psyassist_mmlu_prof"]["acc,none"]
    samples = sorted(theirs["samples"]["psyassist_mmlu_prof"], key=lambda s: s["doc_id"])
    their_ll = [[r[0] for r in s["filtered_resps"]] for s in samples]

    t0 = time.perf_counter()
    ours = run_mcq(MCQConfig(bench=[str(csv)], model=str(model), formats="mmlu", limit=args.limit))
    t_ours = time.perf_counter() - t0
    f = ours["formats"]["mmlu"]
    if f["n"] != len(their_ll):
        raise SystemExit(f"question counts differ: psyassist {f['n']}, lm-eval {len(their_ll)}")
    max_diff, pred_diff = 0.0, 0
    for row, ll in zip(f["items"], their_ll, strict=True):
        mine = list(row["scores"].values())
        max_diff = max(max_diff, *(abs(a - b) for a, b in zip(mine, ll, strict=True)))
        pred_diff += mine.index(max(mine)) != ll.index(max(ll))
    gap = abs(100 * f["accuracy"] - 100 * their_acc)
    result = {"questions": f["n"], "psyassist_acc": f["accuracy"], "lm_eval_acc": their_acc,
              "gap_points": round(gap, 3), "max_loglik_abs_diff": round(max_diff, 5), "predictions_differing": pred_diff,
              "psyassist_seconds": round(t_ours, 1), "lm_eval_seconds": round(t_theirs, 1),
              "peak_rss_mb": round(peak_rss_mb())}
    summary = (f"MMLU professional psychology {f['n']} q, SmolLM2 fp32 zero-shot: psyassist acc "
               f"{100 * f['accuracy']:.2f}% vs lm-eval {100 * their_acc:.2f}% (gap {gap:.2f} points, target ≤0.5); "
               f"max |Δloglik| {max_diff:.1e}, {pred_diff} predictions differ; {t_ours:.0f} s vs lm-eval {t_theirs:.0f} s")
    record("mcq_agreement", result, summary)


if __name__ == "__main__":
    main()
