"""GPU training: single-GPU bf16 LoRA and QLoRA nf4 on a tiny random Qwen3 (never run by `make test`).

    .venv/bin/python -m pytest -m gpu tests/test_train_gpu.py -q

Every test is marked `gpu` (deselected by default in pyproject.toml) and skips with the
reason when CUDA or bitsandbytes is missing.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from psyassist.train.config import load_recipe
from psyassist.train.loop import run
from tiny_dialogues import dialogues
from tiny_tokenizer import tiny_tokenizer

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (torch.cuda.is_available() "
                                                                        "is False)")]

@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A random tiny Qwen3 (600-token vocabulary); hidden 64 so 4-bit blocks (64 values) fit whole rows."""
    from transformers import Qwen3Config, Qwen3ForCausalLM

    d = tmp_path_factory.mktemp("tiny-qwen3-gpu")
    tok = tiny_tokenizer()
    torch.manual_seed(0)
    cfg = Qwen3Config(vocab_size=len(tok), hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, intermediate_size=128, head_dim=16, tie_word_embeddings=True,
                      eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
                      initializer_range=0.2)  # std 0.02 caps logits near ±0.6: LoRA could barely lower the loss
    Qwen3ForCausalLM(cfg).save_pretrained(d)
    tok.save_pretrained(d)
    return d


@pytest.fixture(scope="module")
def train_file(tmp_path_factory) -> Path:
    rows = dialogues(16)
    f = tmp_path_factory.mktemp("data") / "train.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return f


def _train(model_dir: Path, data: Path, out: Path, **extra):
    overrides = {"model.name": model_dir, "model.enable_thinking": "null", "data.train": data,
                 "data.max_length": 256, "lora.r": 4, "lora.alpha": 32, "lora.dropout": 0.0,
                 "lora.target_modules": "all-linear", "optim.lr": 0.02, "train.output_dir": out,
                 "train.batch_size": 2, "train.grad_accum": 2, "train.max_steps": 16, "train.log_every": 1,
                 "log.tensorboard": "false", **extra}
    result = run(load_recipe(None, [f"{k}={v}" for k, v in overrides.items()]))
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in rows if "loss" in r]
    return result, losses, json.loads((out / "manifest.json").read_text())


def _falls(losses: list[float]) -> bool:
    return len(losses) == 16 and all(map(torch.isfinite, torch.tensor(losses))) and \
        sum(losses[-3:]) / 3 < sum(losses[:3]) / 3 - 0.3


def test_single_gpu_bf16_lora_trains(tiny_model_dir, train_file, tmp_path):
    if not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bf16 (auto precision picks fp16 there)")
    result, losses, manifest = _train(tiny_model_dir, train_file, tmp_path / "bf16")
    assert manifest["precision"] == "bf16"  # auto: bf16 chosen on a bf16-capable GPU
    assert manifest["peak_gpu_memory_bytes"] > 0
    assert _falls(losses), losses
    model = result.model
    assert next(model.parameters()).device.type == "cuda"
    base = [p for n, p in model.named_parameters() if "lora_" not in n]
    lora = [p for n, p in model.named_parameters() if "lora_" in n]
    assert base and all(p.dtype == torch.bfloat16 and not p.requires_grad for p in base)  # dtype auto → bf16
    assert lora and all(p.requires_grad for p in lora)
    assert all(p.abs().sum() > 0 for n, p in model.named_parameters() if "lora_B" in n)  # B starts at 0: it moved


def test_qlora_nf4_base_is_4bit_and_lora_trains(tiny_model_dir, train_file, tmp_path):
    bnb = pytest.importorskip("bitsandbytes", reason="QLoRA needs bitsandbytes: pip install bitsandbytes")
    result, losses, manifest = _train(tiny_model_dir, train_file, tmp_path / "qlora", **{
        "quant.load_in_4bit": "true", "quant.quant_type": "nf4", "quant.compute_dtype": "bf16",
        "optim.name": "paged_adamw_8bit"})
    model = result.model
    linear4 = [m for m in model.modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert linear4, "no Linear4bit layer: the base was not loaded in 4 bit"
    assert {m.weight.quant_type for m in linear4} == {"nf4"}
    assert all(not p.requires_grad for n, p in model.named_parameters() if "lora_" not in n)
    assert all(p.abs().sum() > 0 for n, p in model.named_parameters() if "lora_B" in n)
    assert _falls(losses), losses
    saved = (result.adapter_dir / "adapter_model.safetensors")
    assert saved.stat().st_size > 0
    assert manifest["recipe"]["quant"]["load_in_4bit"] is True
