"""`psyassist merge` and `psyassist push`: a verified merge, refusals, and uploads to a local hub API stand-in.

    .venv/bin/python -m pytest tests/test_merge_push.py -q

A tiny random Qwen3 with the real Qwen3 tokenizer (151,669-row embedding: a 39 MB
safetensors, LFS-sized) is LoRA-trained for 3 steps by the real training loop, so the card
reads the manifest.json and recipe the loop really writes; eval results come from the real
`eval mcq` and `eval gen` writers.  Pushes go through huggingface_hub's real client code to
tests/hub_api_server.py on 127.0.0.1.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
import yaml

from hub_api_server import HubApiServer
from psyassist.errors import PsyassistError
from tiny_dialogues import LINES
from tiny_dialogues import dialogues as _dialogues

TOKEN = "hf_test_write_token_0123456789"


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("merge_push")


@pytest.fixture(scope="module")
def base_dir(work, qwen3_tokenizer_dir) -> Path:
    from psyassist.models import save_tiny_qwen3

    return save_tiny_qwen3(work / "tiny-qwen3-base", qwen3_tokenizer_dir, seed=0)


@pytest.fixture(scope="module")
def run_dir(work, base_dir) -> Path:
    """A real 3-step LoRA run: RUN/adapter, RUN/manifest.json, RUN/recipe.resolved.yaml, RUN/checkpoint-*."""
    from psyassist.train.config import load_recipe
    from psyassist.train.loop import run

    data = work / "data"
    data.mkdir()
    for name, n in (("train", 6), ("validation", 2)):
        (data / f"{name}.jsonl").write_text("".join(json.dumps(x) + "\n" for x in _dialogues(n)), encoding="utf-8")
    out = work / "run"
    overrides = {"model.name": base_dir, "model.enable_thinking": "false", "data.train": data / "train.jsonl",
                 "data.validation": data / "validation.jsonl", "data.max_length": 128, "lora.r": 4, "lora.alpha": 8,
                 "lora.dropout": 0.0, "lora.target_modules": "all-linear", "optim.lr": 0.02, "optim.warmup_steps": 0,
                 "train.output_dir": out, "train.batch_size": 2, "train.max_steps": 3, "train.save_every": 3,
                 "log.tensorboard": "false"}
    torch.set_num_threads(2)
    run(load_recipe(None, [f"{k}={v}" for k, v in overrides.items()]))
    return out


@pytest.fixture(scope="module")
def merged_dir(work, base_dir, run_dir) -> Path:
    from psyassist.publish import merge

    merge(str(base_dir), run_dir / "adapter", work / "merged")
    return work / "merged"


@pytest.fixture(scope="module")
def evals(work, base_dir, run_dir) -> list[Path]:
    """Results files written by the real `eval mcq` (logprob on the tuned model) and `eval gen --replies`."""
    from psyassist.eval.gen import GenConfig, run_gen
    from psyassist.eval.mcq import MCQConfig, run_mcq

    mcq = work / "mcq.json"
    run_mcq(MCQConfig(bench=["sample"], model=str(base_dir), adapter=str(run_dir / "adapter"), limit=8,
                      dtype="fp32", device="cpu"), mcq)
    replies = work / "replies.jsonl"
    replies.write_text("".join(json.dumps({"id": f"r{i}", "context": [{"role": "user", "content": u}],
                                           "reference": a, "reply": a if i % 2 else "I hear you."}) + "\n"
                               for i, (u, a) in enumerate(LINES)), encoding="utf-8")
    run_gen(GenConfig(data=[], replies=str(replies), embed_model="none", lang="en"), work / "gen")
    return [mcq, work / "gen" / "results.json"]


@pytest.fixture
def hub(monkeypatch):
    """The stand-in, with huggingface_hub online (conftest sets HF_HUB_OFFLINE=1) and HF_TOKEN set."""
    import huggingface_hub.constants as hf_constants

    server = HubApiServer(TOKEN).start()
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)  # read at import time, maybe already True
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    monkeypatch.delenv("HF_ENDPOINT", raising=False)
    yield server
    server.stop()
    assert server.unhandled == []  # huggingface_hub called nothing the stand-in does not implement


def _tree(d: Path) -> dict[str, bytes]:
    return {p.relative_to(d).as_posix(): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


def _front_matter(card: str) -> dict:
    assert card.startswith("---\n")
    return yaml.safe_load(card.split("---\n")[1])


# --- merge ---------------------------------------------------------------------------------------


@pytest.mark.slow  # real tokenizer, real training loop, 39 MB models
def test_merge_cli_verifies_and_the_merged_model_generates_like_base_plus_adapter(cli, base_dir, run_dir, work):
    from psyassist.infer.engine import Sampling, generate, load

    out = work / "merged-cli"
    code, stdout, err = cli(["merge", "--model", base_dir, "--adapter", run_dir / "adapter", "--out", out])
    assert code == 0, err
    assert "verified" in stdout and "max |Δlogit|" in stdout and str(out) in stdout.replace("\n", "")
    manifest = json.loads((out / "psyassist_merge.json").read_text())
    assert manifest["max_abs_logit_diff"] <= manifest["tolerance"] < manifest["adapter_effect_max_abs_logit"]
    assert (out / "model.safetensors").is_file() and (out / "tokenizer.json").is_file()

    merged = load(str(out), merged=True, dtype="fp32", device="cpu")
    unmerged = load(str(base_dir), adapter=str(run_dir / "adapter"), dtype="fp32", device="cpu")
    assert merged.merged_from["adapter"] == str(run_dir / "adapter")
    assert not any("lora" in k for k in merged.model.state_dict())
    prompt = merged.renderer.inference_prompt([{"role": "user", "content": "I can't sleep before exams."}])
    greedy = Sampling(temperature=0.0, allow_greedy=True, max_new_tokens=12)
    a, b = (generate(m, [prompt], greedy)[0] for m in (merged, unmerged))
    assert (a.text, a.new_tokens) == (b.text, b.new_tokens) and a.new_tokens > 0  # token for token


@pytest.mark.slow
def test_merge_refusals_name_the_problem(cli, base_dir, run_dir, work, tmp_path, merged_dir):
    adapter = run_dir / "adapter"

    code, _, err = cli(["merge", "-m", base_dir, "-a", adapter, "--out", merged_dir])
    assert code == 2 and "already exists" in err and "--force" in err

    code, _, err = cli(["merge", "-m", base_dir, "-a", run_dir, "--out", tmp_path / "x"])
    assert code == 2 and "adapter_config.json is missing" in err and "RUN/adapter" in err

    half = tmp_path / "half-adapter"
    half.mkdir()
    shutil.copy(adapter / "adapter_config.json", half)
    code, _, err = cli(["merge", "-m", base_dir, "-a", half, "--out", tmp_path / "x"])
    assert code == 2 and "adapter_model.safetensors" in err and "no weights" in err

    code, _, err = cli(["merge", "-m", base_dir, "-a", adapter, "--out", adapter, "--force"])
    assert code == 2 and "adapter or the base model directory" in err

    quantized = tmp_path / "quantized-base"
    quantized.mkdir()
    cfg = json.loads((base_dir / "config.json").read_text())
    cfg["quantization_config"] = {"quant_method": "bitsandbytes", "load_in_4bit": True}
    (quantized / "config.json").write_text(json.dumps(cfg))
    code, _, err = cli(["merge", "-m", quantized, "-a", adapter, "--out", tmp_path / "x"])
    assert code == 2 and "quantized" in err and "bitsandbytes" in err and "unquantized" in err

    from psyassist.models import save_tiny_qwen3

    other = save_tiny_qwen3(tmp_path / "other-base", base_dir / ".", hidden_size=32, heads=2, kv_heads=1,
                            intermediate=64)
    code, _, err = cli(["merge", "-m", other, "-a", adapter, "--out", tmp_path / "x"])
    err = err.replace("\n", "")
    assert code == 2 and "does not fit the base" in err and str(adapter) in err and str(other) in err
    assert "was trained on" in err  # the warning names the recorded base too
    assert not (tmp_path / "x").exists()  # nothing written


# --- push ----------------------------------------------------------------------------------------


@pytest.mark.slow
def test_push_adapter_uploads_exactly_the_source_plus_card_and_skips_states(cli, hub, run_dir, evals):
    adapter = run_dir / "adapter"
    junk = {"optimizer.pt": b"adam", "rng.pt": b"rng", "training_args.bin": b"pickle", ".env": b"HF_TOKEN=x\n",
            "checkpoints/step-1/adapter_model.safetensors": b"old", "my_secret.txt": b"s"}
    for rel, data in junk.items():
        (adapter / rel).parent.mkdir(parents=True, exist_ok=True)
        (adapter / rel).write_bytes(data)
    before = _tree(adapter)

    code, out, err = cli(["push", adapter, "--repo-id", "tester/tiny-psydt-lora", "--private",
                          "--endpoint", hub.endpoint, "--eval", evals[0], "--eval", evals[1]])
    assert code == 0, err
    assert _tree(adapter) == before  # nothing written into SOURCE (no README.md)
    for rel in junk:
        assert f"skipped {rel}" in err.replace("\n", " ")
    uploaded = hub.files("tester/tiny-psydt-lora")
    # PEFT's save_pretrained writes its own README.md (base_model: a local path, which the hub rejects)
    assert "skipped README.md: replaced by the generated model card" in err
    expected = {k: v for k, v in before.items() if k not in junk and k != "README.md"}
    assert {k: v for k, v in uploaded.items() if k != "README.md"} == expected  # byte for byte
    assert {"adapter_model.safetensors", "adapter_config.json", "tokenizer.json"} <= set(uploaded)
    assert hub.repos["tester/tiny-psydt-lora"]["private"] is True
    assert hub.repos["tester/tiny-psydt-lora"]["commits"][0]["summary"].startswith("psyassist push: adapter")
    assert "pushed" in out and "/commit/" in out
    # the token went as a Bearer header on every API call; the presigned LFS PUTs carry none
    for _, path, headers, _ in hub.requests:
        token_sent = {k.lower(): v for k, v in headers.items()}.get("authorization")
        assert token_sent == (None if path.startswith("/s3/") else f"Bearer {TOKEN}"), path
    puts = [p for m, p, _, _ in hub.requests if m == "PUT"]
    assert len(puts) == 2  # adapter_model.safetensors (an LFS suffix) and tokenizer.json (≥ 10 MiB) went via LFS

    card = uploaded["README.md"].decode()
    meta = _front_matter(card)
    assert meta["library_name"] == "peft" and {"psyassist", "counseling"} <= set(meta["tags"])
    assert meta["language"] == ["en"] and "base_model" not in meta  # a local base: no hub id to claim
    assert "`tiny-qwen3-base`" in card
    assert "| LoRA r / alpha / dropout | 4 / 8 / 0.0 |" in card and "| max_length (tokens per dialogue) | 128 |" in card
    assert "| train.jsonl |" in card and "| optimizer steps done | 3 |" in card
    mcq = json.loads(evals[0].read_text())["summary"][0]
    lo, hi = mcq["wilson95"]
    assert (f"| professional | {100 * mcq['accuracy']:.1f}% | {100 * lo:.1f}%–{100 * hi:.1f}% | 8 |") in card
    assert "| BLEU-4 |" in card and "| ROUGE-L (word) |" in card and "replies read from `replies.jsonl`" in card
    assert "| LoRA target modules | all-linear: down_proj, gate_proj, k_proj, o_proj, q_proj, up_proj, v_proj |" in card
    assert str(run_dir.parent) not in card  # no local absolute paths in a public card
    assert "not a substitute for a mental-health professional" in card and "findahelpline.com" in card
    assert "psyassist chat --model BASE_MODEL --adapter adapter" in card

    hub.requests.clear()  # a second push of the card alone: the repo exists (409 → exist_ok), one file
    code, out, err = cli(["push", adapter, "--repo-id", "tester/tiny-psydt-lora", "--endpoint", hub.endpoint,
                          "--card-only", "--language", "zh", "--commit-message", "card: zh"])
    assert code == 0, err
    commit_body = [b for m, p, _, b in hub.requests if p.endswith("/commit/main")][0]
    assert [json.loads(x)["key"] for x in commit_body.splitlines()] == ["header", "file"]
    assert _front_matter(hub.files("tester/tiny-psydt-lora")["README.md"].decode())["language"] == ["zh"]
    assert hub.repos["tester/tiny-psydt-lora"]["commits"][1]["summary"] == "card: zh"


@pytest.mark.slow
def test_push_merged_model_to_a_new_branch_via_hf_endpoint(cli, hub, merged_dir, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", hub.endpoint)
    code, _, err = cli(["push", merged_dir, "--repo-id", "tester/tiny-psydt", "--revision", "v1"])
    assert code == 0, err
    assert hub.files("tester/tiny-psydt", "v1") == {**_tree(merged_dir), "README.md": hub.files(
        "tester/tiny-psydt", "v1")["README.md"]}
    assert hub.files("tester/tiny-psydt", "main") == {}  # committed to the branch only
    assert hub.repos["tester/tiny-psydt"]["private"] is False
    create = json.loads([b for m, p, _, b in hub.requests if p == "/api/repos/create"][0])
    assert "visibility" not in create  # no --private: the hub's default applies
    card = hub.files("tester/tiny-psydt", "v1")["README.md"].decode()
    assert _front_matter(card)["library_name"] == "transformers"
    assert "## Merge verification" in card and "max |Δlogit|" in card
    assert "psyassist chat --merged model" in card


@pytest.mark.slow
def test_missing_or_refused_token_is_one_clear_error(cli, hub, run_dir, monkeypatch):
    monkeypatch.delenv("HF_TOKEN")
    code, _, err = cli(["push", run_dir / "adapter", "--repo-id", "tester/x", "--endpoint", hub.endpoint])
    assert code == 2 and "HF_TOKEN is not set" in err and "never from a flag" in err
    assert hub.requests == []

    monkeypatch.setenv("HF_TOKEN", "hf_wrong_token_value_1234")
    code, _, err = cli(["push", run_dir / "adapter", "--repo-id", "tester/x", "--endpoint", hub.endpoint])
    assert code == 2 and "refused the token (401)" in err and "HF_TOKEN" in err
    assert "tester/x" not in hub.repos


@pytest.mark.slow
def test_dry_run_prints_card_and_files_without_network_or_token(cli, hub, run_dir, monkeypatch):
    monkeypatch.delenv("HF_TOKEN")
    code, out, err = cli(["push", run_dir / "adapter", "--repo-id", "tester/x", "--endpoint", hub.endpoint,
                          "--dry-run"])
    assert code == 0, err
    assert out.startswith("---\n") and "## Training" in out and out.rstrip().endswith("|")  # only the card
    assert "adapter_model.safetensors" in err and "dry run: nothing sent" in err
    assert hub.requests == []


@pytest.mark.slow
def test_a_file_holding_the_token_stops_the_push(cli, hub, run_dir, tmp_path):
    src = tmp_path / "adapter"
    shutil.copytree(run_dir / "adapter", src)
    (src / "notes.json").write_text(json.dumps({"hub": TOKEN}))
    code, _, err = cli(["push", src, "--repo-id", "tester/x", "--endpoint", hub.endpoint])
    assert code == 2 and "notes.json" in err and "contains the value of HF_TOKEN" in err
    assert hub.requests == []


@pytest.mark.slow
def test_bad_sources_and_eval_files_are_errors(run_dir, tmp_path):
    from psyassist.publish import push, read_eval

    with pytest.raises(PsyassistError, match="training run directory.*/adapter"):
        push(run_dir, "tester/x", dry_run=True)
    with pytest.raises(PsyassistError, match="USER/NAME"):
        push(run_dir / "adapter", "no-slash", dry_run=True)
    bad = tmp_path / "r.json"
    bad.write_text(json.dumps({"accuracy": 0.5}))
    with pytest.raises(PsyassistError, match=r"r\.json: not a results file of `psyassist eval mcq`"):
        read_eval(bad)


def test_plan_files_skips_states_secrets_and_checkpoints(tmp_path):
    from psyassist.publish import plan_files

    for rel in ("config.json", "model.safetensors", "sub/tokenizer.json", "README.md", "optimizer.pt", "rng_state.pth",
                "checkpoint-20/adapter_model.safetensors", ".git/config", "prod.env", "api_credentials.json",
                "training_args.bin", "pytorch_model.bin"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("x")
    files, skipped = plan_files(tmp_path)
    assert [rel for rel, _ in files] == ["config.json", "model.safetensors", "pytorch_model.bin", "sub/tokenizer.json"]
    assert {rel for rel, _ in skipped} == {"README.md", "optimizer.pt", "rng_state.pth", ".git/config", "prod.env",
                                           "checkpoint-20/adapter_model.safetensors", "api_credentials.json",
                                           "training_args.bin"}
