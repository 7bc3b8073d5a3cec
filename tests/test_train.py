"""Training: recipes validate, only LoRA learns, loss falls, resume after kill -9 is bitwise identical."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from psyassist.train.config import RecipeError, load_recipe
from psyassist.train.loop import run
from tiny_dialogues import dialogues as _dialogues
from tiny_tokenizer import tiny_tokenizer

ROOT = Path(__file__).resolve().parents[1]
RECIPES = sorted((ROOT / "recipes").glob("*.yaml"))

@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A random tiny Qwen3 with a 600-token vocabulary: training steps take milliseconds."""
    from transformers import Qwen3Config, Qwen3ForCausalLM

    d = tmp_path_factory.mktemp("tiny-qwen3")
    tok = tiny_tokenizer()
    torch.manual_seed(0)
    cfg = Qwen3Config(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, intermediate_size=64, head_dim=8, tie_word_embeddings=True,
                      eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
                      # std 0.02 embeddings (tied) cap logits near ±0.6: LoRA could not lower the loss
                      initializer_range=0.2)
    Qwen3ForCausalLM(cfg).save_pretrained(d)
    tok.save_pretrained(d)
    return d


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("data")
    for name, n in (("train", 16), ("validation", 4)):
        (d / f"{name}.jsonl").write_text("".join(json.dumps(x) + "\n" for x in _dialogues(n)), encoding="utf-8")
    return d


def _overrides(model: Path, data: Path, out: Path, **extra) -> list[str]:
    base = {"model.name": model, "model.enable_thinking": "null", "data.train": data / "train.jsonl",
            "data.validation": data / "validation.jsonl", "data.max_length": 256, "lora.r": 4, "lora.alpha": 8,
            "lora.dropout": 0.1, "lora.target_modules": "all-linear", "optim.lr": 0.01, "optim.warmup_steps": 0,
            "train.output_dir": out, "train.batch_size": 2, "train.grad_accum": 2, "train.max_steps": 8,
            "train.log_every": 1, "train.save_every": 2, "log.tensorboard": "false"}
    base.update(extra)
    return [f"{k}={v}" for k, v in base.items()]


# --- recipes -------------------------------------------------------------------------------


@pytest.mark.parametrize("path", RECIPES, ids=[p.name for p in RECIPES])
def test_every_shipped_recipe_validates_and_says_how_to_launch(path):
    recipe = load_recipe(path)
    assert path.read_text(encoding="utf-8").startswith(f"# psyassist train recipes/{path.name}")
    assert recipe.data.train and recipe.train.output_dir


def test_six_recipes_are_shipped():
    names = {p.stem for p in RECIPES}
    assert {"qwen3-4b-psydt-lora", "qwen3-1.7b-psydt-lora", "llama3.2-3b-soulchat-lora", "mixtral-8x7b-qlora-imhi",
            "qwen3-0.6b-lora", "smollm2-135m-demo"} <= names


@pytest.mark.parametrize("override,message", [
    ("lora.rank=4", "unknown key 'lora.rank'"),
    ("train.batch_size=two", "'train.batch_size' must be int"),
    ("optim.scheduler=cyclic", "'optim.scheduler' must be one of"),
    ("lora.target_modules=everything", "all-linear"),
    ("nope", "section.key=value"),
])
def test_bad_recipe_values_are_errors_naming_the_key(override, message):
    with pytest.raises(RecipeError, match=message):
        load_recipe(RECIPES[0], [override])


MAP = {"messages": "turns", "role": "who", "content": "text", "user": "client", "assistant": "counselor"}


def test_data_map_in_a_recipe(tmp_path):
    p = tmp_path / "r.yaml"
    p.write_text("data:\n  train: t.json\n  format: mapped\n  map: {messages: turns, role: who, content: text, "
                 "user: client, assistant: counselor}\n", encoding="utf-8")
    assert load_recipe(p).data.map == MAP
    assert load_recipe(None, ["data.map={messages: turns, role: who, content: text, user: client, "
                              "assistant: counselor}"]).data.map == MAP  # format auto + map = mapped


@pytest.mark.parametrize("override,message", [
    ("data.format=mapped", "data.format mapped needs data.map"),
    ("data.format=chatml", "'data.format' must be one of openai, sharegpt"),
    ("data.map={messages: turns, speaker: who}", "data.map: --map speaker=...: unknown key 'speaker'"),
    ("data.map={messages: turns}", "data.map: --format mapped needs --map role=..."),
    ("data.map=[messages, turns]", "'data.map' must be a mapping"),
])
def test_bad_data_map_is_an_error_at_load(override, message):
    with pytest.raises(RecipeError, match=message):
        load_recipe(None, [override])
    with pytest.raises(RecipeError, match="does not apply to format 'sharegpt'"):
        load_recipe(None, ["data.format=sharegpt", "data.map=" + json.dumps(MAP)])


def test_overrides_parse_yaml_values():
    r = load_recipe(RECIPES[0], ["optim.lr=3e-4", "lora.target_modules=[q_proj, v_proj]", "train.max_steps=7"])
    assert r.optim.lr == 3e-4 and r.lora.target_modules == ["q_proj", "v_proj"] and r.train.max_steps == 7


# --- training behaviour ----------------------------------------------------------------------


def test_only_lora_learns_and_loss_falls(tiny_model_dir, data_dir, tmp_path):
    out = tmp_path / "run"
    result = run(load_recipe(None, _overrides(tiny_model_dir, data_dir, out, **{
        "train.max_steps": 16, "optim.lr": 0.02, "lora.alpha": 32})))
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in rows if "loss" in r]
    assert len(losses) == 16 and all(map(torch.isfinite, torch.tensor(losses)))
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3 - 0.5  # 4 repeated lines, high lr: clearly falling
    assert result.best_eval_loss is not None

    base_sd = load_file(tiny_model_dir / "model.safetensors")
    tuned = result.model  # the model object that was trained, not a reload
    base_after = {k.replace(".base_layer", ""): v for k, v in tuned.get_base_model().state_dict().items()
                  if "lora_" not in k}
    assert base_sd.keys() <= base_after.keys()
    for name, w in base_sd.items():  # frozen base: bit-identical after training
        assert torch.equal(base_after[name], w), name
    lora_b = [v for k, v in tuned.state_dict().items() if "lora_B" in k]
    assert lora_b and all(v.abs().sum() > 0 for v in lora_b)  # B starts at zero: it moved
    saved = load_file(result.adapter_dir / "adapter_model.safetensors")
    assert saved and all("lora_" in k for k in saved)  # the adapter holds LoRA weights only

    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["steps"] == 16 and manifest["padding_share"] == 0.0
    assert manifest["supervised_tokens"] > 0 and manifest["data_files"]
    assert (out / "loss.png").stat().st_size > 0 and (out / "recipe.resolved.yaml").is_file()


def test_packing_and_padding_give_the_same_loss(tiny_model_dir, data_dir, tmp_path):
    """Padding-free packing must not change the maths: same first-step loss as padded rows."""
    first = {}
    for packing in (True, False):
        out = tmp_path / f"p{packing}"
        run(load_recipe(None, _overrides(tiny_model_dir, data_dir, out, **{
            "train.max_steps": 1, "data.packing": packing, "lora.dropout": 0.0})))
        first[packing] = json.loads((out / "metrics.jsonl").read_text().splitlines()[0])
    assert first[True]["loss"] == pytest.approx(first[False]["loss"], rel=1e-5)
    assert first[True]["supervised_tokens"] == first[False]["supervised_tokens"]


def test_training_reads_a_mapped_layout(tiny_model_dir, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    for name, n in (("train", 4), ("validation", 2)):  # the tiny dialogues in a layout no reader knows
        recs = [{"turns": [{"who": {"user": "client", "assistant": "counselor"}[m["role"]], "text": m["content"]}
                           for m in d["messages"] if m["role"] != "system"]} for d in _dialogues(n)]
        (data / f"{name}.json").write_text(json.dumps(recs), encoding="utf-8")
    out = tmp_path / "run"
    recipe = load_recipe(None, [*_overrides(tiny_model_dir, data, out, **{"train.max_steps": 1}),
                                f"data.train={data / 'train.json'}", f"data.validation={data / 'validation.json'}",
                                "data.map=" + json.dumps(MAP)])
    run(recipe)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["steps"] == 1 and manifest["supervised_tokens"] > 0


def test_finished_run_is_not_overwritten(tiny_model_dir, data_dir, tmp_path):
    from psyassist.errors import PsyassistError

    out = tmp_path / "run"
    recipe = load_recipe(None, _overrides(tiny_model_dir, data_dir, out, **{"train.max_steps": 1}))
    run(recipe)
    with pytest.raises(PsyassistError, match="already holds a finished run"):
        run(recipe)


def test_qlora_on_cpu_is_refused_with_a_message(tiny_model_dir, data_dir, tmp_path):
    from psyassist.errors import PsyassistError

    recipe = load_recipe(None, _overrides(tiny_model_dir, data_dir, tmp_path / "q", **{"quant.load_in_4bit": "true"}))
    with pytest.raises(PsyassistError, match="CUDA"):
        run(recipe)


# --- faults: kill -9 and Ctrl-C -----------------------------------------------------------------


def _cli(args: list[str], fault: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PSYASSIST_NO_PROGRESS": "1"}
    env.pop("PSYASSIST_FAULT", None)
    if fault:
        env["PSYASSIST_FAULT"] = fault
    return subprocess.run([sys.executable, "-m", "psyassist", "train", *args], env=env, capture_output=True,
                          text=True, timeout=600)


def _adapter(out: Path) -> dict:
    return load_file(out / "adapter" / "adapter_model.safetensors")


@pytest.mark.slow
def test_resume_after_kill_9_is_bitwise_identical(tiny_model_dir, data_dir, tmp_path):
    recipe = ROOT / "recipes" / "smollm2-135m-demo.yaml"
    straight = tmp_path / "straight"
    p = _cli([str(recipe), *sum((["--set", o] for o in _overrides(tiny_model_dir, data_dir, straight)), [])])
    assert p.returncode == 0, p.stderr

    killed = tmp_path / "killed"
    args = [str(recipe), *sum((["--set", o] for o in _overrides(tiny_model_dir, data_dir, killed)), [])]
    p = _cli(args, fault="5:KILL")  # after step 5; last checkpoint is step 4
    assert p.returncode == -9, p.stderr
    assert not (killed / "adapter").exists()
    assert sorted(c.name for c in killed.glob("checkpoint-*"))[-1] == "checkpoint-0000004"
    p = _cli([*args, "--resume"])
    assert p.returncode == 0, p.stderr
    assert "resumed from" in p.stdout + p.stderr

    a, b = _adapter(straight), _adapter(killed)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), "resumed adapter differs from the uninterrupted one"


@pytest.mark.slow
def test_ctrl_c_saves_a_checkpoint_and_exits_cleanly(tiny_model_dir, data_dir, tmp_path):
    recipe = ROOT / "recipes" / "smollm2-135m-demo.yaml"
    out = tmp_path / "interrupted"
    args = [str(recipe), *sum((["--set", o] for o in _overrides(tiny_model_dir, data_dir, out)), [])]
    p = _cli(args, fault="3:INT")
    assert p.returncode == 130, p.stderr
    assert "checkpoint saved at step 3" in p.stderr and "--resume" in p.stderr
    assert (out / "checkpoint-0000003" / "adapter_model.safetensors").is_file()
    assert "Traceback" not in p.stderr


@pytest.mark.slow
def test_accelerate_two_processes_match_one_process(tiny_model_dir, data_dir, tmp_path):
    """2 CPU processes (gloo) × accum 2 == 1 process × accum 4: same dialogues per step, same losses."""
    recipe = ROOT / "recipes" / "smollm2-135m-demo.yaml"
    common = {"lora.dropout": 0.0, "train.max_steps": 6, "train.save_every": 0}
    one = tmp_path / "one"
    p = _cli([str(recipe), *sum((["--set", o] for o in _overrides(
        tiny_model_dir, data_dir, one, **common, **{"train.grad_accum": 4})), [])])
    assert p.returncode == 0, p.stderr
    two = tmp_path / "two"
    args = sum((["--set", o] for o in _overrides(tiny_model_dir, data_dir, two, **common, **{"train.grad_accum": 2})), [])
    env = {**os.environ, "PSYASSIST_NO_PROGRESS": "1", "OMP_NUM_THREADS": "1"}
    accelerate = Path(sys.executable).with_name("accelerate")
    # On CPU, `--multi_gpu` selects accelerate's torchrun launcher; psyassist asks for gloo (cpu=True).
    p = subprocess.run([str(accelerate), "launch", "--multi_gpu", "--num_processes", "2", "-m", "psyassist", "train",
                        str(recipe), *args], env=env, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "2 process(es)" in p.stdout

    def losses(out):
        rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
        return [r["loss"] for r in rows if "loss" in r], [r["eval_loss"] for r in rows if "eval_loss" in r]

    (l1, e1), (l2, e2) = losses(one), losses(two)
    assert len(l1) == len(l2) == 6
    assert l2 == pytest.approx(l1, rel=1e-4) and e2 == pytest.approx(e1, rel=1e-4)


@pytest.mark.slow
def test_an_epoch_trains_every_batch_even_when_the_last_step_is_short(tiny_model_dir, tmp_path):
    """9 dialogues, batch 2 → 5 micro-batches; 4 per step → 2 steps, the second with ONE micro-batch.

    One epoch must supervise every token of the training set (flooring the steps per epoch used
    to drop the leftover batch), and 2 processes must match 1 although rank 1 then has no batch
    (it runs a weight-0 backward so the gradient all-reduce does not hang).
    """
    data = tmp_path / "data"
    data.mkdir()
    (data / "train.jsonl").write_text("".join(json.dumps(x) + "\n" for x in _dialogues(9)), encoding="utf-8")
    (data / "validation.jsonl").write_text("".join(json.dumps(x) + "\n" for x in _dialogues(2)), encoding="utf-8")
    recipe = ROOT / "recipes" / "smollm2-135m-demo.yaml"
    common = {"lora.dropout": 0.0, "train.max_steps": "null", "train.epochs": 1, "train.save_every": 0}
    one = tmp_path / "one"
    p = _cli([str(recipe), *sum((["--set", o] for o in _overrides(
        tiny_model_dir, data, one, **common, **{"train.grad_accum": 4})), [])])
    assert p.returncode == 0, p.stderr
    manifest = json.loads((one / "manifest.json").read_text())
    assert manifest["steps"] == 2
    assert manifest["supervised_tokens"] == manifest["render"]["train"]["supervised_tokens"] > 0
    two = tmp_path / "two"
    args = sum((["--set", o] for o in _overrides(tiny_model_dir, data, two, **common, **{"train.grad_accum": 2})), [])
    env = {**os.environ, "PSYASSIST_NO_PROGRESS": "1", "OMP_NUM_THREADS": "1"}
    accelerate = Path(sys.executable).with_name("accelerate")
    p = subprocess.run([str(accelerate), "launch", "--multi_gpu", "--num_processes", "2", "-m", "psyassist", "train",
                        str(recipe), *args], env=env, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    rows = {name: [json.loads(x)["loss"] for x in (d / "metrics.jsonl").read_text().splitlines() if '"loss"' in x]
            for name, d in (("one", one), ("two", two))}
    assert len(rows["one"]) == len(rows["two"]) == 2
    assert rows["two"] == pytest.approx(rows["one"], rel=1e-4)
    assert json.loads((two / "manifest.json").read_text())["supervised_tokens"] == manifest["supervised_tokens"]


@pytest.mark.slow
def test_real_qwen3_tokenizer_tiny_model_learns_only_lora(qwen3_tokenizer_dir, data_dir, tmp_path):
    """The same guarantees with the real Qwen3 tokenizer and template (151,669 tokens, thinking off)."""
    from transformers import AutoTokenizer, Qwen3Config, Qwen3ForCausalLM

    model_dir = tmp_path / "tiny-qwen3-real-tok"
    tok = AutoTokenizer.from_pretrained(qwen3_tokenizer_dir)
    torch.manual_seed(0)
    cfg = Qwen3Config(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, intermediate_size=64, head_dim=8, tie_word_embeddings=True,
                      initializer_range=0.2, eos_token_id=tok.convert_tokens_to_ids("<|im_end|>"),
                      pad_token_id=tok.pad_token_id)
    Qwen3ForCausalLM(cfg).save_pretrained(model_dir)
    tok.save_pretrained(model_dir)
    out = tmp_path / "run"
    result = run(load_recipe(None, _overrides(model_dir, data_dir, out, **{
        "model.enable_thinking": "false", "train.max_steps": 10, "optim.lr": 0.02, "lora.alpha": 32,
        "train.save_every": 0})))
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in rows if "loss" in r]
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3 - 0.5, losses
    base_sd = load_file(model_dir / "model.safetensors")
    after = {k.replace(".base_layer", ""): v for k, v in result.model.get_base_model().state_dict().items()
             if "lora_" not in k}
    assert all(torch.equal(after[k], v) for k, v in base_sd.items())
    assert all(v.abs().sum() > 0 for k, v in result.model.state_dict().items() if "lora_B" in k)
    render = json.loads((out / "manifest.json").read_text())["render"]["train"]
    assert render["turns_without_eot"] == 0 and render["dropped_no_supervision"] == 0
