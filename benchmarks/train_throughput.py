"""Training throughput: the seed-style pipeline vs psyassist, same data, same model, one epoch each.

    PSYASSIST_TEST_DATA=../shared/data .venv/bin/python benchmarks/train_throughput.py [--model tiny|smollm2|both]

(a) seed-style, as seed 001's train_psydt_lora.py does it: one sample per assistant turn
    (context → that reply; `RenderOptions(per_turn=True)` gives exactly that layout with the
    same supervised tokens), every sample padded to a fixed `max_length`
    (DataCollatorForSeq2Seq(padding="max_length"), labels -100 on padding), SDPA attention,
    a stock `transformers.Trainer`.
(b) psyassist: the whole dialogue once with every assistant turn supervised, padding-free
    packing, varlen attention and logits only where a label counts (`psyassist.train.loop.run`).

Same LoRA (seed 001: r=8, alpha=32, dropout 0.1, all linear layers), same dialogues per
micro-batch (--batch-size), same precision, no gradient accumulation (so neither pipeline
drops a remainder), gradient checkpointing off on both (--gradient-checkpointing turns it on
for both).  The script ASSERTS that both consume the same supervised tokens; every dialogue
must therefore fit `max_length` whole (longer ones are excluded from both and counted).

Data: PsyDT-shaped long dialogues: SMILECHAT dialogues with ≥ --min-turns replies (cleaned
with psyassist.data.clean, first in file order that fit) plus the one real PsyDTCorpus record
(15 replies, ~740-character system prompt) when it fits.  Models: a random tiny Qwen3
(hidden 64, 2 layers) with the real Qwen3 tokenizer (151,669 tokens: the LM head dominates),
and SmolLM2-135M-Instruct (`default`).

Targets (issue 3): psyassist ≥ 3× faster per epoch at equal supervised tokens; its padding
share ≤ 5%.  Prints one JSON line last and appends a row to benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import peak_rss_mb, record  # noqa: E402

from psyassist.data.clean import CleanOptions, clean_conversation  # noqa: E402
from psyassist.data.readers import read_conversations  # noqa: E402
from psyassist.render import IGNORE_INDEX, RenderOptions, load_tokenizer, render_many  # noqa: E402

SMILECHAT = Path("SMILECHAT") / "smilechat_messages.jsonl.gz"
PSYDT = Path("PsyDTCorpus") / "psydtcorpus_readme_example_1record.json"
# Per-model defaults sized so that `--model both` finishes in ≤ ~10 min on 2 CPU cores.  The
# seed-style side computes replies × max_length tokens per dialogue, and on both models that is
# slow: SmolLM2 runs at ≈ 150 tokens/s (≈ 14 s per padded 2,048-token sample, ~8 samples per
# dialogue); the tiny Qwen3 spends its time in the 151,936-row LM head, which the stock Trainer
# applies to every padded position (2 × 2,048 × 151,669 fp32 logits = 2.5 GB per micro-batch).
# SmolLM2's English BPE spends ~2.6 tokens per Qwen3 token on Chinese, so the PsyDT record
# (3,401 SmolLM2 tokens) does not fit 2,048 there.  max_length 2048 is seed 001's value.
DEFAULTS = {"tiny": {"dialogues": 2, "max_length": 2048},
            "smollm2": {"dialogues": 2, "max_length": 2048}}
LORA = {"r": 8, "alpha": 32, "dropout": 0.1, "target_modules": "all-linear"}  # seed 001


def load_dialogues(data_dir: Path, tok, *, n: int, max_length: int, min_turns: int,
                   enable_thinking: bool | None) -> tuple[list, dict]:
    """The first `n` cleaned SMILECHAT dialogues with ≥ min_turns replies that fit max_length whole,
    plus the PsyDT record if it fits.  Returns (conversations, a description)."""
    opts = RenderOptions(enable_thinking=enable_thinking)
    pool = [c for c in read_conversations([data_dir / SMILECHAT], show_progress=False).conversations
            if c.n_assistant() >= min_turns]
    picked, too_long = [], 0
    for start in range(0, len(pool), 256):
        chunk = [r.conversation for r in (clean_conversation(c, CleanOptions()) for c in pool[start:start + 256])
                 if r.conversation is not None and r.conversation.n_assistant() >= min_turns]
        samples, _ = render_many(tok, chunk, opts, show_progress=False)
        length = {s.conversation_id: s.n_tokens for s in samples}
        for c in chunk:
            if c.id not in length:
                continue  # no supervised token (cannot happen after cleaning; never trained on)
            if length[c.id] > max_length:
                too_long += 1
            elif len(picked) < n:
                picked.append(c)
        if len(picked) >= n:
            break
    psydt = read_conversations([data_dir / PSYDT], show_progress=False).conversations[0]
    (p,), _ = render_many(tok, [psydt], opts, show_progress=False)
    psydt_fits = p.n_tokens <= max_length
    convs = picked + [psydt] if psydt_fits else picked
    info = {"smilechat_dialogues": len(picked), "smilechat_excluded_too_long": too_long,
            "psydt_record": psydt_fits, "psydt_record_tokens": p.n_tokens, "min_turns": min_turns,
            "assistant_turns": sum(c.n_assistant() for c in convs)}
    return convs, info


def seed_style(model_dir: Path, convs: list, opts: dict, workdir: Path) -> dict:
    """Seed 001's layout and trainer: per-turn samples padded to max_length, stock HF Trainer."""
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, DataCollatorForSeq2Seq, Trainer, TrainingArguments

    from psyassist.models import attach_lora

    t0 = time.perf_counter()
    tok = load_tokenizer(str(model_dir))
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token  # what the seed does
    samples, rep = render_many(tok, convs, RenderOptions(enable_thinking=opts["enable_thinking"],
                                                         max_length=opts["max_length"], per_turn=True),
                               show_progress=False)
    assert rep.cut == 0 and rep.truncated == 0, "a per-turn sample was truncated: equal supervision is lost"
    ds = Dataset.from_list([{"input_ids": s.input_ids.tolist(), "attention_mask": [1] * s.n_tokens,
                             "labels": s.labels.tolist()} for s in samples])
    bf16 = opts["precision"] == "bf16"
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), attn_implementation="sdpa",
                                                 dtype=torch.bfloat16 if bf16 else torch.float32)
    if opts["gradient_checkpointing"]:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    model = attach_lora(model, **LORA)
    pad = DataCollatorForSeq2Seq(tok, padding="max_length", max_length=opts["max_length"],
                                 label_pad_token_id=IGNORE_INDEX)
    seen = {"computed": 0, "real": 0, "supervised": 0}

    def collate(features):  # counts exactly what the Trainer feeds the model
        batch = pad(features)
        seen["computed"] += batch["input_ids"].numel()
        seen["real"] += int(batch["attention_mask"].sum())
        seen["supervised"] += int((batch["labels"][:, 1:] != IGNORE_INDEX).sum())  # causal shift
        return batch

    args = TrainingArguments(output_dir=str(workdir / "seed-style"), per_device_train_batch_size=opts["batch_size"],
                             num_train_epochs=1, learning_rate=2e-4, logging_steps=10, save_strategy="no",
                             report_to="none", bf16=bf16, seed=opts["seed"], disable_tqdm=True,
                             label_names=["labels"])
    trainer = Trainer(model=model, args=args, train_dataset=ds, data_collator=collate)
    t1 = time.perf_counter()
    out = trainer.train()
    t2 = time.perf_counter()
    assert seen["real"] == rep.tokens, (seen, rep.tokens)
    del trainer, model
    gc.collect()
    return _row(len(samples), seen["computed"], seen["real"], seen["supervised"], t2 - t1, t2 - t0,
                out.training_loss)


def psyassist(model_dir: Path, convs: list, opts: dict, workdir: Path) -> dict:
    """psyassist's own loop: whole dialogues, all turns supervised, padding-free packing."""
    from psyassist.train.config import load_recipe
    from psyassist.train.loop import run

    data = workdir / "dialogues.jsonl"
    data.write_text("".join(json.dumps(c.to_dict(), ensure_ascii=False) + "\n" for c in convs), encoding="utf-8")
    out = workdir / "psyassist"
    et = opts["enable_thinking"]
    overrides = {
        "model.name": model_dir, "model.enable_thinking": "null" if et is None else str(et).lower(),
        "model.dtype": opts["precision"], "data.train": data, "data.max_length": opts["max_length"],
        "data.packing": "true", "lora.r": LORA["r"], "lora.alpha": LORA["alpha"], "lora.dropout": LORA["dropout"],
        "lora.target_modules": LORA["target_modules"], "optim.lr": 2e-4, "train.output_dir": out,
        "train.epochs": 1, "train.batch_size": opts["batch_size"], "train.grad_accum": 1,
        "train.gradient_checkpointing": str(opts["gradient_checkpointing"]).lower(),
        "train.precision": opts["precision"], "train.seed": opts["seed"], "train.log_every": 10,
        "log.tensorboard": "false"}
    t0 = time.perf_counter()
    result = run(load_recipe(None, [f"{k}={v}" for k, v in overrides.items()]))
    wall = time.perf_counter() - t0
    m = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert m["render"]["train"]["truncated"] == 0 and m["render"]["train"]["cut"] == 0
    del result
    gc.collect()
    return _row(m["render"]["train"]["samples"], m["tokens_computed_with_padding"], m["tokens_processed"],
                m["supervised_tokens"], m["train_seconds"], wall, m["final_train_loss"])


def _row(samples, computed, real, supervised, epoch_s, wall_s, loss) -> dict:
    return {"samples": samples, "tokens_processed": computed, "real_tokens": real, "supervised_tokens": supervised,
            "padding_share": round(1 - real / computed, 4), "epoch_seconds": round(epoch_s, 2),
            "wall_seconds": round(wall_s, 2), "tokens_per_s": round(computed / epoch_s, 1),
            "supervised_tokens_per_s": round(supervised / epoch_s, 1),
            "last_loss": round(loss, 4) if loss is not None else None}


def compare(model_dir: Path, convs: list, opts: dict, workdir: Path) -> dict:
    """Both pipelines, one epoch each, on the same dialogues; asserts equal supervised tokens."""
    seed = seed_style(model_dir, convs, opts, workdir)
    ours = psyassist(model_dir, convs, opts, workdir)
    assert seed["supervised_tokens"] == ours["supervised_tokens"], (seed["supervised_tokens"],
                                                                    ours["supervised_tokens"])
    speedup = seed["epoch_seconds"] / ours["epoch_seconds"]
    return {"seed_style": seed, "psyassist": ours, "speedup_per_epoch": round(speedup, 2),
            "tokens_ratio": round(seed["tokens_processed"] / ours["tokens_processed"], 2),
            "targets": {"speedup_ge_3x": speedup >= 3, "padding_le_5pct": ours["padding_share"] <= 0.05}}


def model_dir_for(name: str, tokenizer: str, workdir: Path) -> tuple[Path, bool | None]:
    """(model directory, enable_thinking) for 'tiny' or 'smollm2'."""
    if name == "tiny":
        from psyassist.models import save_tiny_qwen3

        return save_tiny_qwen3(workdir / "tiny-qwen3", tokenizer), False  # Qwen3: non-thinking, explicit
    from psyassist.models import default_model_dir

    return default_model_dir(), None  # SmolLM2 has no thinking mode


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=os.environ.get("PSYASSIST_TEST_DATA", "../shared/data"))
    ap.add_argument("--tokenizer", default=os.environ.get("PSYASSIST_QWEN3_TOKENIZER", ".cache/tokenizers/qwen3"),
                    help="Qwen3 tokenizer directory (for the tiny model)")
    ap.add_argument("--model", choices=("tiny", "smollm2", "both"), default="both")
    ap.add_argument("--dialogues", type=int, default=None,
                    help=f"SMILECHAT dialogues (+ the PsyDT record); default {DEFAULTS['tiny']['dialogues']} "
                         f"for tiny, {DEFAULTS['smollm2']['dialogues']} for smollm2")
    ap.add_argument("--max-length", type=int, default=None, help="tokens; default 2048 (seed 001)")
    ap.add_argument("--min-turns", type=int, default=8, help="replies per SMILECHAT dialogue (PsyDT-shaped: long)")
    ap.add_argument("--batch-size", type=int, default=2, help="samples (seed-style) / dialogues (psyassist) "
                                                               "per micro-batch; seed 001 used 2")
    ap.add_argument("--precision", choices=("fp32", "bf16"), default="fp32", help="bf16 needs a GPU")
    ap.add_argument("--gradient-checkpointing", action="store_true", help="on both sides (seed 001 had it on)")
    ap.add_argument("--workdir", default=None, help="where models and runs go (default: a temporary directory)")
    args = ap.parse_args(argv)
    data = Path(args.data)
    if not (data / SMILECHAT).is_file():
        sys.exit(f"{data / SMILECHAT} not found: set PSYASSIST_TEST_DATA or pass --data")

    import torch

    results, rss = {}, {}
    load_before = os.getloadavg()[0]  # other processes on the machine skew absolute numbers; say so
    with tempfile.TemporaryDirectory(prefix="psyassist-bench-") as tmp:
        root = Path(args.workdir or tmp)
        for name in (("tiny", "smollm2") if args.model == "both" else (args.model,)):
            work = root / name
            work.mkdir(parents=True, exist_ok=True)
            model_dir, thinking = model_dir_for(name, args.tokenizer, work)
            opts = {"max_length": args.max_length or DEFAULTS[name]["max_length"], "batch_size": args.batch_size,
                    "precision": args.precision, "gradient_checkpointing": args.gradient_checkpointing,
                    "enable_thinking": thinking, "seed": 0}
            convs, info = load_dialogues(data, load_tokenizer(str(model_dir)),
                                         n=args.dialogues or DEFAULTS[name]["dialogues"],
                                         max_length=opts["max_length"], min_turns=args.min_turns,
                                         enable_thinking=thinking)
            results[name] = {"data": {**info, "max_length": opts["max_length"]}, **compare(model_dir, convs, opts, work)}
            rss[name] = round(peak_rss_mb())

    result = {"settings": {"batch_size": args.batch_size, "precision": args.precision,
                           "gradient_checkpointing": args.gradient_checkpointing, "lora": LORA,
                           "torch_threads": torch.get_num_threads()},
              "models": results, "peak_rss_mb": rss,
              "load_average_1min": {"start": round(load_before, 2), "end": round(os.getloadavg()[0], 2)}}
    summary = "; ".join(
        f"{name} ({r['data']['smilechat_dialogues']} SMILECHAT + {int(r['data']['psydt_record'])} PsyDT dialogues, "
        f"{r['seed_style']['supervised_tokens']:,} supervised tokens each): seed-style "
        f"{r['seed_style']['epoch_seconds']:.1f} s/epoch ({r['seed_style']['tokens_processed']:,} tokens, "
        f"{r['seed_style']['padding_share']:.0%} padding) vs psyassist {r['psyassist']['epoch_seconds']:.1f} s "
        f"({r['psyassist']['tokens_processed']:,} tokens, {r['psyassist']['padding_share']:.0%} padding): "
        f"**{r['speedup_per_epoch']}×**" for name, r in results.items())
    summary += f"; load avg {load_before:.1f} → {result['load_average_1min']['end']:.1f}"
    record("train_throughput", result, summary)
    return result


if __name__ == "__main__":
    main()
