"""The main job on the embedded sample corpus (`make demo` runs this).

    .venv/bin/python scripts/demo.py [--out demo-output]

Until training lands this is the data half of the pipeline: prepare → stats →
check (with the real Qwen3 tokenizer and chat template) → contamination check,
each step the exact `psyassist` command a user would type.
"""

from __future__ import annotations

import argparse
import os
import shlex
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
    print("\nOutputs:")
    for p in sorted(prepared.iterdir()):
        print(f"  {p}")
    print("Next: training (`psyassist train`) arrives with the training issue; see README.md.")


if __name__ == "__main__":
    main()
