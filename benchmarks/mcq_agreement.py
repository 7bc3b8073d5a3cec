"""Agreement with lm-evaluation-harness on a whole benchmark: prompts, log-likelihoods, accuracy.

    PSYASSIST_TEST_DATA=../shared/data .venv/bin/python benchmarks/mcq_agreement.py [--task cmmlu] [--limit N]

SmolLM2-135M-Instruct (the embedded default) fp32 on CPU, zero-shot, lm-eval offline through its Python API
on the same local CSV:
  mmlu   all 624 MMLU professional psychology questions, `--format mmlu` vs the task
         `eval.mcq.LM_EVAL_MMLU_TASK` (the harness's MMLU prompt: description + question + options +
         "Answer:", continuations " A".." D");
  cmmlu  all 232 CMMLU professional psychology questions, `--format cmmlu` vs the harness's shipped
         cmmlu_professional_psychology task reading the local CSV (`eval.mcq.LM_EVAL_CMMLU_TASK`).
Requirement (issue 4): psyassist's logprob `acc` equals lm-eval's within 0.5 points.  Also reports how many
prompts differ (must be 0: issue 14), the largest per-option log-likelihood difference, how many
predictions differ, both run times and the load average.  Prints one JSON line last and appends a row to
RESULTS.md.
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

TITLES = {"mmlu": "MMLU professional psychology", "cmmlu": "CMMLU professional psychology"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=os.environ.get("PSYASSIST_TEST_DATA", "../shared/data"))
    ap.add_argument("--task", choices=sorted(TITLES), default="mmlu")
    ap.add_argument("--limit", type=int, default=None, help="first N questions only (default: all)")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    import lm_eval
    from lm_eval.tasks import TaskManager

    from psyassist.eval.mcq import LM_EVAL_CMMLU_TASK, LM_EVAL_MMLU_TASK, MCQConfig, run_mcq
    from psyassist.models import default_model_dir

    load_before = os.getloadavg()[0]
    name = f"psyassist_{args.task}_prof"
    if args.task == "mmlu":
        csv = Path(args.data) / "MMLU_psychology" / "professional_psychology_test.csv"
        task = LM_EVAL_MMLU_TASK.format(name=name, csv=csv, subject="professional psychology")
    else:
        d = Path(args.data) / "CMMLU_professional_psychology"
        csv = d / "test_professional_psychology.csv"
        task = LM_EVAL_CMMLU_TASK.format(tasks=Path(lm_eval.__file__).parent / "tasks", subject="professional_psychology",
                                         name=name, csv=csv, dev=d / "dev_professional_psychology.csv")
    model = default_model_dir()
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "task.yaml").write_text(task, encoding="utf-8")
        t0 = time.perf_counter()
        theirs = lm_eval.simple_evaluate(
            model="hf", model_args=f"pretrained={model},dtype=float32", device="cpu", tasks=[name],
            task_manager=TaskManager(include_path=tmp), batch_size=8, limit=args.limit, log_samples=True)
        t_theirs = time.perf_counter() - t0
    their_acc = theirs["results"][name]["acc,none"]
    samples = sorted(theirs["samples"][name], key=lambda s: s["doc_id"])

    t0 = time.perf_counter()
    ours = run_mcq(MCQConfig(bench=[str(csv)], model=str(model), formats=args.task, limit=args.limit))
    t_ours = time.perf_counter() - t0
    f = ours["formats"][args.task]
    if f["n"] != len(samples):
        raise SystemExit(f"question counts differ: psyassist {f['n']}, lm-eval {len(samples)}")
    max_diff, pred_diff, prompt_diff = 0.0, 0, 0
    for row, s in zip(f["items"], samples, strict=True):
        mine, ll = list(row["scores"].values()), [r[0] for r in s["filtered_resps"]]
        max_diff = max(max_diff, *(abs(a - b) for a, b in zip(mine, ll, strict=True)))
        pred_diff += mine.index(max(mine)) != ll.index(max(ll))
        prompt_diff += {ctx for ctx, _ in s["arguments"]} != {row["prompt"]}
    gap = abs(100 * f["accuracy"] - 100 * their_acc)
    import torch

    load = f"{torch.get_num_threads()} torch thread(s), load avg {load_before:.1f} → {os.getloadavg()[0]:.1f}"
    result = {"task": args.task, "questions": f["n"], "psyassist_acc": f["accuracy"], "lm_eval_acc": their_acc,
              "gap_points": round(gap, 3), "prompts_differing": prompt_diff,
              "max_loglik_abs_diff": round(max_diff, 7), "predictions_differing": pred_diff,
              "psyassist_seconds": round(t_ours, 1), "lm_eval_seconds": round(t_theirs, 1),
              "peak_rss_mb": round(peak_rss_mb()), "torch_threads": torch.get_num_threads(), "load_avg": [round(load_before, 2), round(os.getloadavg()[0], 2)]}
    summary = (f"{TITLES[args.task]} {f['n']} q, SmolLM2 fp32 zero-shot, `--format {args.task}` (the harness's prompt, "
               f"description included): psyassist acc {100 * f['accuracy']:.2f}% vs lm-eval {100 * their_acc:.2f}% "
               f"(gap {gap:.2f} points, target ≤0.5); {prompt_diff} prompts differ; max |Δloglik| {max_diff:.1e}, "
               f"{pred_diff} predictions differ; {t_ours:.0f} s vs lm-eval {t_theirs:.0f} s; {load}")
    record("mcq_agreement", result, summary)


if __name__ == "__main__":
    main()
