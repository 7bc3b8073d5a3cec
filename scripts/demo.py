"""The main job on the embedded sample corpus (`make demo` runs this).

    .venv/bin/python scripts/demo.py [--out demo-output]

prepare → stats → check (with the real Qwen3 tokenizer and chat template) →
contamination check → LoRA fine-tune of the embedded SmolLM2-135M-Instruct →
`psyassist compare` base vs tuned (multiple choice in seed 000's three formats with
McNemar tests, reply metrics on the held-out validation dialogues, side-by-side
replies) → report.md / report.html → one chat exchange with the tuned model; each
step the exact `psyassist` command a user would type.  See README.md for the measured
time on 2 CPU cores (the first run also downloads ≈98 MB from PyPI and converts it once).
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path


def run(cmd: list[str]) -> None:
    print(f"\n$ {shlex.join(cmd)}", flush=True)
    t = time.perf_counter()
    subprocess.run(cmd, check=True)
    print(f"  ({time.perf_counter() - t:.1f} s)", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="demo-output", help="output directory")
    args = ap.parse_args()
    from psyassist.data.samples import sample_corpus_path

    exe = str(Path(sys.executable).with_name("psyassist"))
    tok = os.environ.get("PSYASSIST_QWEN3_TOKENIZER", ".cache/tokenizers/qwen3")
    out = Path(args.out)
    prepared = out / "prepared"
    corpus = str(sample_corpus_path())
    run([exe, "data", "prepare", corpus, "--out", str(prepared), "--val-size", "6"])
    run([exe, "data", "stats", str(prepared / "train.jsonl"), "--tokenizer", tok])
    run([exe, "data", "check", str(prepared / "train.jsonl"), "--tokenizer", tok, "--samples", "1"])
    run([exe, "data", "overlap", str(prepared / "train.jsonl"), str(prepared / "validation.jsonl")])
    run_dir = out / "run"
    if (run_dir / "adapter").exists():  # `make demo` twice: train again from scratch
        shutil.rmtree(run_dir)
    run([exe, "train", "recipes/smollm2-135m-demo.yaml", "--set", f"data.train={prepared / 'train.jsonl'}",
         "--set", f"data.validation={prepared / 'validation.jsonl'}", "--set", f"train.output_dir={run_dir}"])
    suite = out / "demo-suite.yaml"
    suite.write_text(DEMO_SUITE, encoding="utf-8")
    report = out / "compare"
    run([exe, "compare", "--base", "default", "--tuned", f"default+{run_dir / 'adapter'}", "--suite", str(suite),
         "-o", str(report)])
    chat_exchange(run_dir / "adapter")
    print("\nOutputs:")
    for p in [*sorted(prepared.iterdir()), *sorted(run_dir.iterdir()), report / "report.md", report / "report.html"]:
        print(f"  {p}")


# The comparison the demo runs: paths are relative to this file (written into --out).
# Replies are scored on validation dialogues the adapter never saw; 33 MCQ items and 4
# dialogues cannot show a real difference, so the report will mostly say "not significant".
DEMO_SUITE = """\
# psyassist compare --base default --tuned default+run/adapter --suite demo-suite.yaml
name: demo
description: make demo - the sample MCQ in three formats, held-out validation replies, seed 000's prompt
seed: 0
stages:
  - type: mcq
    name: sample-mcq
    bench: sample
    formats: all
    mode: logprob
  - type: gen
    name: validation-replies
    data: prepared/validation.jsonl
    turns: last
    limit: 4                 # 4 of the 6 held-out dialogues: the demo stays under 10 minutes on 2 cores
    max_new_tokens: 64
    metrics: [bleu, rouge, embedding, distinct, length]
  - type: replies
    name: replies
    max_new_tokens: 128
    prompts:
      - 这段时间我不开心
      - I've been feeling really down lately and I can't sleep.
"""


def chat_exchange(adapter: Path) -> None:
    """One exchange with the tuned model, as `psyassist chat --model default --adapter RUN/adapter` would
    answer it (the report holds base and tuned side by side)."""
    from psyassist.infer.engine import Sampling, load, reply

    question = "I've been feeling really low lately and I can't concentrate at work. What should I do?"
    sampling = Sampling.recommended(None, seed=0, max_new_tokens=120)
    print(f"\n[user] {question}")
    loaded = load("default", adapter=str(adapter), enable_thinking=None)
    print(f"\n[tuned (LoRA)] {reply(loaded, [{'role': 'user', 'content': question}], sampling)}")


if __name__ == "__main__":
    main()
