"""MCQ scoring benchmark: logprob vs generate on the same questions, and PsychCounsel-Bench-500 in logprob mode.

    PSYASSIST_TEST_DATA=../shared/data .venv/bin/python benchmarks/mcq_scoring.py [--compare-questions 40]

Targets (issue 4, 2-core CPU, SmolLM2-135M-Instruct, the seed's professional prompt):
- logprob scoring ≥ 10x faster than generate scoring on the same model and questions;
- all 500 PsychCounsel-Bench questions in logprob mode ≤ 5 minutes.
Each mode runs at the settings `psyassist eval mcq` uses by default: generate mode with the
recommended sampling and its 512-token cap (the model stops earlier when it ends its turn).
`--max-new-tokens 64` gives a lower bound on the speed-up (a cap far below real use; the
2026-11-23 row measured 4.9x that way).  The machine's load average is recorded: on a shared machine other processes'
threads slow every number here.  Prints one JSON line last and appends a row to RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import peak_rss_mb, record  # noqa: E402

from psyassist.eval.mcq import MCQConfig, run_mcq  # noqa: E402


def _run(cfg: MCQConfig) -> tuple[dict, float]:
    t0 = time.perf_counter()
    res = run_mcq(cfg)
    return res, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=os.environ.get("PSYASSIST_TEST_DATA", "../shared/data"))
    ap.add_argument("--model", default="default")
    ap.add_argument("--compare-questions", type=int, default=40, help="questions for logprob vs generate")
    ap.add_argument("--max-new-tokens", type=int, default=512, help="generate mode cap (the CLI default)")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = ap.parse_args()
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    bench = str(Path(args.data) / "PsychCounsel-Bench" / "PsychCounsel-Bench.json")
    load_before = os.getloadavg()[0]
    common = {"bench": [bench], "model": args.model, "formats": "professional", "batch_size": args.batch_size}

    lp_small, _ = _run(MCQConfig(**common, limit=args.compare_questions))
    gen_small, _ = _run(MCQConfig(**common, limit=args.compare_questions, mode="generate",
                                  max_new_tokens=args.max_new_tokens))
    full, full_wall = _run(MCQConfig(**common))
    s_lp, s_gen = lp_small["perf"]["seconds"], gen_small["perf"]["seconds"]
    fs = full["summary"][0]
    gs = gen_small["summary"][0]
    result = {
        "model": full["model"]["path"], "threads": torch.get_num_threads(),
        "load_average_before": round(load_before, 2), "load_average_after": round(os.getloadavg()[0], 2),
        "compare_questions": args.compare_questions,
        "logprob_seconds": s_lp, "generate_seconds": s_gen, "generate_max_new_tokens": args.max_new_tokens,
        "speedup_logprob_over_generate": round(s_gen / s_lp, 1) if s_lp else None,
        "generate_mean_new_tokens": round(gen_small["perf"]["new_tokens"] / max(1, args.compare_questions), 1),
        "logprob_accuracy_small": lp_small["summary"][0]["accuracy"],
        "generate_accuracy_small": gs["accuracy"], "generate_unparsed_rate_small": gs["unparsed_rate"],
        "pcb500_scoring_seconds": full["perf"]["seconds"], "pcb500_wall_seconds_with_load": round(full_wall, 1),
        "pcb500_tokens_per_s": full["perf"]["tokens_per_s"], "pcb500_padding_ratio": full["perf"]["padding_ratio"],
        "pcb500_accuracy": fs["accuracy"], "pcb500_wilson95": fs["wilson95"], "pcb500_chance": fs["chance"],
        "peak_rss_mb": round(peak_rss_mb()),
    }
    summary = (f"logprob {s_lp:.1f} s vs generate {s_gen:.1f} s on {args.compare_questions} q "
               f"({result['speedup_logprob_over_generate']}x, target ≥10x; generate cap {args.max_new_tokens}, "
               f"{result['generate_mean_new_tokens']} new tokens/q); PCB-500 logprob "
               f"{full['perf']['seconds']:.0f} s (target ≤300 s), acc {100 * fs['accuracy']:.1f}% "
               f"(chance {100 * fs['chance']:.1f}%); load avg {load_before:.1f}")
    record("mcq_scoring", result, summary)


if __name__ == "__main__":
    main()
