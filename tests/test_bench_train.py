"""Training benchmarks: train_throughput.py end to end on a micro size; accelerate configs; GPU script refusal.

    .venv/bin/python -m pytest tests/test_bench_train.py -q
"""

from __future__ import annotations

import gzip
import importlib.util
import json
import sys
from pathlib import Path

import pytest
import yaml

from tiny_tokenizer import tiny_tokenizer

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"
CONFIGS = sorted((ROOT / "configs" / "accelerate").glob("*.yaml"))

LINES = [("I feel anxious about work and I cannot sleep.", "That sounds exhausting. What keeps you awake?"),
         ("My thoughts race at night.", "Racing thoughts are common. What do they say?"),
         ("I worry about my family.", "Tell me more about that worry, I am listening."),
         ("Thanks, that helps a bit.", "I am glad. What would you like to try this week?")]


def _load(name: str):
    sys.path.insert(0, str(BENCH))
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _dialogue(i: int, turns: int, system: str | None = None) -> dict:
    msgs = [{"role": "system", "content": system}] if system else []
    for j in range(turns):
        u, a = LINES[(i + j) % len(LINES)]
        msgs += [{"role": "user", "content": u}, {"role": "assistant", "content": a}]
    return {"id": f"s{i}", "messages": msgs}


@pytest.fixture
def fake_data(tmp_path) -> Path:
    """Synthetic files in the shapes the benchmark reads (no real data: this is the fast test)."""
    d = tmp_path / "data"
    (d / "SMILECHAT").mkdir(parents=True)
    (d / "PsyDTCorpus").mkdir()
    # 2 short dialogues (fewer replies than --min-turns: skipped), then long ones; one too long for 512 tokens.
    rows = [_dialogue(0, 1), _dialogue(1, 2)] + [_dialogue(i, 4) for i in range(2, 6)] + [_dialogue(9, 30)]
    with gzip.open(d / "SMILECHAT" / "smilechat_messages.jsonl.gz", "wt", encoding="utf-8") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    psydt = _dialogue(7, 5, system="You are a warm, careful counselor.")
    (d / "PsyDTCorpus" / "psydtcorpus_readme_example_1record.json").write_text(json.dumps([psydt]), encoding="utf-8")
    return d


def test_throughput_benchmark_equal_supervision_and_json_line(fake_data, tmp_path, monkeypatch, capsys):
    tt = _load("train_throughput")
    import _common

    results = tmp_path / "RESULTS.md"
    monkeypatch.setattr(_common, "RESULTS", results)  # never touch the real results file
    tok_dir = tmp_path / "tok"
    tiny_tokenizer().save_pretrained(tok_dir)
    out = tt.main(["--data", str(fake_data), "--tokenizer", str(tok_dir), "--model", "tiny", "--dialogues", "3",
                   "--max-length", "512", "--min-turns", "3", "--batch-size", "2", "--workdir", str(tmp_path / "w")])

    last = capsys.readouterr().out.strip().splitlines()[-1]
    printed = json.loads(last)  # the contract: the JSON line is printed last
    assert printed["benchmark"] == "train_throughput" and printed["models"] == json.loads(json.dumps(out["models"]))
    r = out["models"]["tiny"]
    seed, ours = r["seed_style"], r["psyassist"]
    # 3 SMILECHAT dialogues with ≥ 3 replies that fit (the 30-reply one does not) + the PsyDT-shaped record
    assert r["data"]["smilechat_dialogues"] == 3 and r["data"]["psydt_record"]
    assert r["data"]["smilechat_excluded_too_long"] == 1
    assert seed["supervised_tokens"] == ours["supervised_tokens"] > 0
    assert seed["samples"] == r["data"]["assistant_turns"] == 3 * 4 + 5  # one seed-style sample per reply
    assert ours["samples"] == 4 and ours["padding_share"] == 0.0
    assert seed["tokens_processed"] == seed["samples"] * 512  # every seed-style row padded to max_length
    assert seed["padding_share"] > 0.5 and seed["tokens_processed"] > 3 * ours["tokens_processed"]
    assert "train_throughput" in results.read_text(encoding="utf-8")


def test_gpu_benchmark_refuses_without_cuda(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    gpu = _load("train_gpu")
    with pytest.raises(SystemExit, match="needs a CUDA GPU"):
        gpu.main(["--sizes", "1.7b"])


def test_synthetic_dialogues_are_smilechat_shaped():
    gpu = _load("train_gpu")
    convs = gpu.synthetic_dialogues(3)
    assert len(convs) == 3 and all(c.n_assistant() == 8 for c in convs)
    assert convs[0].messages[0].content != convs[1].messages[0].content  # not one dialogue repeated


# --- accelerate launch configs ----------------------------------------------------------------

REQUIRED = {"compute_environment", "distributed_type", "num_machines", "num_processes", "mixed_precision"}


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_accelerate_config_parses_and_says_how_to_launch(path):
    text = path.read_text(encoding="utf-8")
    assert text.startswith(f"# accelerate launch --config_file configs/accelerate/{path.name} -m psyassist train")
    cfg = yaml.safe_load(text)
    assert REQUIRED <= cfg.keys()
    from accelerate.commands.config.config_args import load_config_from_file

    loaded = load_config_from_file(str(path))  # accelerate's own reader: unknown keys or bad values fail here
    assert loaded.distributed_type.value == cfg["distributed_type"]


def test_the_four_configs_are_shipped_with_their_engine_settings():
    cfgs = {p.stem: yaml.safe_load(p.read_text(encoding="utf-8")) for p in CONFIGS}
    assert set(cfgs) == {"ddp", "fsdp", "deepspeed_zero2", "deepspeed_zero3"}
    assert cfgs["ddp"]["distributed_type"] == "MULTI_GPU"
    fsdp = cfgs["fsdp"]["fsdp_config"]
    assert cfgs["fsdp"]["distributed_type"] == "FSDP" and fsdp["fsdp_sharding_strategy"] == "FULL_SHARD"
    assert fsdp["fsdp_auto_wrap_policy"] == "TRANSFORMER_BASED_WRAP" and fsdp["fsdp_use_orig_params"] is True
    for stage in (2, 3):
        c = cfgs[f"deepspeed_zero{stage}"]
        assert c["distributed_type"] == "DEEPSPEED" and c["deepspeed_config"]["zero_stage"] == stage
    assert cfgs["deepspeed_zero3"]["deepspeed_config"]["zero3_save_16bit_model"] is True
