"""GPU training benchmark: Qwen3-1.7B / 4B architecture (random init), bf16 LoRA, psyassist vs a plain HF Trainer.

    PSYASSIST_TEST_DATA=../shared/data .venv/bin/python benchmarks/train_gpu.py [--sizes 1.7b,4b]

Needs a CUDA GPU (refuses to run without one).  For each size, in ONE run and on the same
dialogues: the seed-style pipeline (one padded 2,048-token sample per reply, stock
`transformers.Trainer`, SDPA) and psyassist (`psyassist.train.loop.run`: whole dialogues,
padding-free packing, flash-attention varlen when installed, else per-dialogue SDPA), both bf16,
LoRA r=8/alpha=32 on all linear layers, one epoch each — the same functions as
benchmarks/train_throughput.py, so supervised tokens are asserted equal.

MFU convention (stated, because it decides the number):
  MFU = real tokens/s × k·N / peak, N = NON-embedding parameters (embedding and the tied LM
  head excluded; attention score FLOPs excluded: both make the figure conservative),
  k = 4 for LoRA without gradient checkpointing (forward 2N + backward w.r.t. activations 2N;
  frozen weights need no weight gradient), k = 6 with it (one forward recomputed).  Padding
  tokens are NOT counted as useful; `hfu_incl_padding` counts them (hardware busy-ness).
  Peak: H100 / H200 bf16 dense = 989 TFLOPS (SXM datasheet); other GPUs: --peak-tflops.
Target (issue 3): psyassist ≥ 35% MFU on an H100.

Without $PSYASSIST_TEST_DATA (a bare GPU box) it trains on synthetic Chinese dialogues of
SMILECHAT's shape (8 replies, similar lengths) and says so in the result.  Weights are random
(no checkpoint can be downloaded here): throughput does not depend on their values.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import record  # noqa: E402
from train_throughput import SMILECHAT, load_dialogues, psyassist, seed_style  # noqa: E402

PEAK_BF16_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0}  # dense, no sparsity


def synthetic_dialogues(n: int, seed: int = 0) -> list:
    """SMILECHAT-shaped stand-ins: 8 exchanges, user ~45 and counselor ~75 Chinese characters."""
    from psyassist.data.schema import Conversation, Message

    rng = random.Random(seed)
    chars = "我你他她们的是不了在有这个人心情绪压力焦虑睡眠工作学习家庭朋友感觉觉得因为所以可以怎么样时候"
    out = []
    for i in range(n):
        msgs = []
        for _ in range(8):
            msgs.append(Message("user", "".join(rng.choices(chars, k=rng.randint(20, 70)))))
            msgs.append(Message("assistant", "".join(rng.choices(chars, k=rng.randint(40, 110)))))
        out.append(Conversation(f"synthetic-{i}", msgs))
    return out


def random_qwen3(size: str, tokenizer: str, out: Path) -> tuple[Path, int]:
    """Save a random-init bf16 Qwen3 of the published `size` architecture; returns (dir, non-embedding N)."""
    import torch
    from transformers import AutoModelForCausalLM

    from psyassist.models import qwen3_config
    from psyassist.render import load_tokenizer

    with torch.device("meta"):  # shapes only, to count N
        n_body = sum(p.numel() for name, p in AutoModelForCausalLM.from_config(qwen3_config(size)).named_parameters()
                     if "embed_tokens" not in name)
    if not (out / "config.json").is_file():
        with torch.device("cuda"):  # random init on the GPU: a 4B model in seconds instead of minutes on CPU
            model = AutoModelForCausalLM.from_config(qwen3_config(size), dtype=torch.bfloat16)
        model.save_pretrained(out)
        load_tokenizer(tokenizer).save_pretrained(out)
        del model
        torch.cuda.empty_cache()
    return out, n_body


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1.7b,4b", help="comma-separated Qwen3 sizes (0.6b, 1.7b, 4b)")
    ap.add_argument("--data", default=os.environ.get("PSYASSIST_TEST_DATA", "../shared/data"))
    ap.add_argument("--tokenizer", default=os.environ.get("PSYASSIST_QWEN3_TOKENIZER", ".cache/tokenizers/qwen3"))
    ap.add_argument("--dialogues", type=int, default=64, help="SMILECHAT dialogues (+ the PsyDT record)")
    ap.add_argument("--max-length", type=int, default=2048, help="tokens (seed 001)")
    ap.add_argument("--batch-size", type=int, default=2, help="seed-style samples per micro-batch (seed 001: 2)")
    ap.add_argument("--dialogues-per-row", type=int, default=6,
                    help="psyassist dialogues packed per micro-batch (6 × ~700 ≈ the 4,096 tokens of 2 seed rows)")
    ap.add_argument("--gradient-checkpointing", action="store_true", help="both sides; MFU then uses 6·N")
    ap.add_argument("--peak-tflops", type=float, default=None, help="bf16 dense peak of this GPU")
    ap.add_argument("--workdir", default=None, help="where models and runs go (default: a temporary directory)")
    args = ap.parse_args(argv)

    import torch

    if not torch.cuda.is_available():
        sys.exit("train_gpu.py needs a CUDA GPU and none is visible (torch.cuda.is_available() is False). "
                 "On CPU run benchmarks/train_throughput.py instead.")
    gpu = torch.cuda.get_device_name()
    peak = args.peak_tflops or next((v for k, v in PEAK_BF16_TFLOPS.items() if k in gpu), None)
    if peak is None:
        sys.exit(f"unknown bf16 peak for '{gpu}': pass --peak-tflops (the datasheet's dense bf16 TFLOPS)")
    k = 6 if args.gradient_checkpointing else 4

    results = {}
    with tempfile.TemporaryDirectory(prefix="psyassist-gpu-bench-") as tmp:
        root = Path(args.workdir or tmp)
        for size in [s.strip() for s in args.sizes.split(",") if s.strip()]:
            work = root / size
            work.mkdir(parents=True, exist_ok=True)
            model_dir, n_body = random_qwen3(size, args.tokenizer, work / "model")
            from psyassist.render import load_tokenizer

            data = Path(args.data)
            if (data / SMILECHAT).is_file():
                convs, info = load_dialogues(data, load_tokenizer(str(model_dir)), n=args.dialogues,
                                             max_length=args.max_length, min_turns=8, enable_thinking=False)
            else:
                convs, info = synthetic_dialogues(args.dialogues), {"synthetic": True}
            opts = {"max_length": args.max_length, "batch_size": args.batch_size, "precision": "bf16",
                    "gradient_checkpointing": args.gradient_checkpointing, "enable_thinking": False, "seed": 0}
            row = {"data": info, "non_embedding_params": n_body}
            for name, fn, bs in (("seed_style", seed_style, args.batch_size),
                                 ("psyassist", psyassist, args.dialogues_per_row)):
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats()
                r = fn(model_dir, convs, {**opts, "batch_size": bs}, work)
                r["peak_gpu_memory_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
                useful = r["real_tokens"] / r["epoch_seconds"]
                r["mfu"] = round(useful * k * n_body / (peak * 1e12), 4)
                r["hfu_incl_padding"] = round(r["tokens_per_s"] * k * n_body / (peak * 1e12), 4)
                row[name] = r
            assert row["seed_style"]["supervised_tokens"] == row["psyassist"]["supervised_tokens"]
            row["speedup_per_epoch"] = round(row["seed_style"]["epoch_seconds"] / row["psyassist"]["epoch_seconds"], 2)
            row["targets"] = {"psyassist_mfu_ge_35pct": row["psyassist"]["mfu"] >= 0.35}
            results[size] = row

    result = {"gpu": gpu, "peak_bf16_tflops": peak, "flops_per_token": f"{k}·N (N = non-embedding parameters)",
              "gradient_checkpointing": args.gradient_checkpointing, "models": results}
    summary = "; ".join(
        f"Qwen3-{s} bf16 LoRA on {gpu}: psyassist {r['psyassist']['supervised_tokens_per_s']:,.0f} supervised tok/s, "
        f"MFU {r['psyassist']['mfu']:.1%} vs HF Trainer seed-style MFU {r['seed_style']['mfu']:.1%}; "
        f"**{r['speedup_per_epoch']}×** per epoch" for s, r in results.items())
    record("train_gpu", result, summary)
    return result


if __name__ == "__main__":
    main()
