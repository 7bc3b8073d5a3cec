"""Batch generation: inputs → records, output schema, batched == single (greedy), resume after kill."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from psyassist.errors import DataError
from psyassist.infer.engine import Sampling, load
from psyassist.infer.generate import read_items, run_generate
from tiny_tokenizer import tiny_tokenizer

LINES = [("I can't sleep before exams.", "That sounds exhausting. What keeps you awake?"),
         ("My thoughts race at night.", "Racing thoughts are common. Shall we try a breathing exercise?"),
         ("I feel anxious about work.", "Work anxiety is hard. What part of work worries you most?")]


def _dialogue(i: int, turns: int, trailing_user: bool = False) -> dict:
    msgs = [{"role": "system", "content": "You are a warm counselor."}]
    for j in range(turns):
        u, a = LINES[(i + j) % len(LINES)]
        msgs += [{"role": "user", "content": f"{u} ({i})"}, {"role": "assistant", "content": a}]
    if trailing_user:
        msgs.append({"role": "user", "content": f"One more thing ({i})."})
    return {"id": f"d{i}", "messages": msgs}


def _write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    """Tiny random Qwen3 that never emits a special token: every reply has exactly max_new_tokens tokens.

    A random model often ends at once, and with the default std 0.02 embeddings its greedy
    reply is one whitespace token repeated; std 0.2 gives varied, prompt-dependent text.
    """
    import torch
    from transformers import GenerationConfig, Qwen3Config, Qwen3ForCausalLM

    d = tmp_path_factory.mktemp("gen") / "model"
    tok = tiny_tokenizer()
    torch.manual_seed(0)
    cfg = Qwen3Config(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, intermediate_size=64, head_dim=8, tie_word_embeddings=True,
                      eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, initializer_range=0.2)
    Qwen3ForCausalLM(cfg).save_pretrained(d)
    tok.save_pretrained(d)
    GenerationConfig(suppress_tokens=tok.all_special_ids).save_pretrained(d)
    return d


@pytest.fixture(scope="module")
def loaded(model_dir):
    return load(str(model_dir))


@pytest.fixture
def corpus(tmp_path) -> Path:
    return _write_jsonl(tmp_path / "corpus.jsonl", [_dialogue(i, 1 + i % 3, trailing_user=i % 2 == 1)
                                                    for i in range(7)])


# --- input -----------------------------------------------------------------------------------


def test_context_ends_at_the_last_user_turn_and_the_reply_after_it_is_the_reference(corpus):
    items, skipped = read_items([str(corpus)])
    assert [it.id for it in items] == [f"d{i}" for i in range(7)] and not skipped
    for i, it in enumerate(items):
        d = _dialogue(i, 1 + i % 3, trailing_user=i % 2 == 1)["messages"]
        assert it.messages[-1]["role"] == "user"
        if i % 2:  # ends on a user turn: the whole dialogue is context, nothing to compare with
            assert it.messages == d and it.reference is None
        else:
            assert it.messages == d[:-1] and it.reference == d[-1]["content"]


def test_per_turn_makes_one_record_per_reply(corpus):
    items, _ = read_items([str(corpus)], per_turn=True)
    d2 = _dialogue(2, 3)["messages"]
    mine = [it for it in items if it.id.startswith("d2#")]
    assert [it.id for it in mine] == ["d2#1", "d2#2", "d2#3"]
    for k, it in enumerate(mine):
        j = 2 + 2 * k  # index of the k-th reply in d2
        assert it.messages == d2[:j] and it.reference == d2[j]["content"]
    assert len(items) == sum(1 + i % 3 for i in range(7))


def test_prompt_jsonl_and_other_reader_formats(tmp_path):
    p = _write_jsonl(tmp_path / "prompts.jsonl", [
        {"id": "a", "prompt": "Hello?"}, {"id": 7, "prompt": "Hi", "system": "Be brief.", "reference": "Hey"}])
    items, _ = read_items([str(p)], system_prompt="Default system.")
    assert items[0].messages == [{"role": "system", "content": "Default system."},
                                 {"role": "user", "content": "Hello?"}]
    assert items[1].id == "7" and items[1].messages[0]["content"] == "Be brief." and items[1].reference == "Hey"
    pr = _write_jsonl(tmp_path / "pr.jsonl", [{"id": "q", "prompt": "Why?", "response": "Because."}])
    sharegpt = tmp_path / "s.json.gz"
    sharegpt.write_bytes(gzip.compress(json.dumps([{"id": "s", "conversations": [
        {"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello"}]}]).encode()))
    gz = tmp_path / "more.jsonl.gz"
    gz.write_bytes(gzip.compress(b"\n" + json.dumps({"id": "z", "prompt": "Hm?"}).encode() + b"\n"))
    items, _ = read_items([str(pr), str(sharegpt), str(gz)])
    assert [(it.id, it.reference) for it in items] == [("z", None), ("q", "Because."), ("s", "Hello")]


def test_bad_prompt_line_names_line_and_field(tmp_path):
    p = _write_jsonl(tmp_path / "prompts.jsonl", [{"id": "a", "prompt": "ok"}, {"id": "b", "prompt": 3}])
    with pytest.raises(DataError) as e:
        read_items([str(p)])
    assert e.value.line == 2 and e.value.field == "prompt" and "prompts.jsonl:2" in str(e.value)
    items, skipped = read_items([str(p)], skip_invalid=True)
    assert [it.id for it in items] == ["a"] and skipped == {"bad_content": 1}


def test_duplicate_ids_and_records_without_a_user_turn_are_errors(tmp_path):
    dup = _write_jsonl(tmp_path / "dup.jsonl", [_dialogue(1, 1), _dialogue(1, 2)])
    with pytest.raises(DataError, match="unique ids"):
        read_items([str(dup)])
    nouser = _write_jsonl(tmp_path / "nouser.jsonl", [
        {"id": "x", "messages": [{"role": "system", "content": "s"}, {"role": "assistant", "content": "a"}]},
        _dialogue(2, 1)])
    with pytest.raises(DataError, match="user turn") as e:
        read_items([str(nouser)])
    assert "'x'" in str(e.value)
    items, skipped = read_items([str(nouser)], skip_invalid=True)
    assert [it.id for it in items] == ["d2"] and skipped == {"no_user_turn": 1}


# --- generation --------------------------------------------------------------------------------


def test_batched_and_single_greedy_generation_give_the_same_text(loaded, corpus, tmp_path):
    items, _ = read_items([str(corpus)])  # prompts of different lengths: left padding is exercised
    greedy = Sampling(temperature=0, allow_greedy=True, max_new_tokens=8)
    one = run_generate(loaded, items, tmp_path / "one.json", sampling=greedy, batch_size=1)
    four = run_generate(loaded, items, tmp_path / "four.json", sampling=greedy, batch_size=4)
    assert len({len(r["prompt"]) for r in four["records"]}) > 1
    assert [r["reply"] for r in one["records"]] == [r["reply"] for r in four["records"]]
    assert [r["new_tokens"] for r in one["records"]] == [r["new_tokens"] for r in four["records"]]
    assert all(r["reply"] and r["new_tokens"] == 8 for r in one["records"])
    assert len({r["reply"] for r in one["records"]}) > 1  # different prompts, different replies


def test_output_schema(loaded, corpus, tmp_path):
    items, _ = read_items([str(corpus)])
    out = tmp_path / "r.json"
    sampling = Sampling.recommended(False, seed=5, max_new_tokens=6)
    run_generate(loaded, items, out, sampling=sampling, batch_size=3, inputs=[str(corpus)])
    data = json.loads(out.read_text(encoding="utf-8"))
    meta, records = data["meta"], data["records"]
    assert meta["model"] == loaded.name and meta["thinking"] is False and meta["inputs"] == [str(corpus)]
    assert meta["sampling"] == {"temperature": 0.7, "top_p": 0.8, "top_k": 20, "max_new_tokens": 6, "seed": 5,
                                "allow_greedy": False, "greedy": False}
    assert meta["perf"]["records"] == 7 and meta["perf"]["batches"] == 3 and meta["perf"]["new_tokens"] > 0
    assert [r["id"] for r in records] == [it.id for it in items]
    for k, (r, it) in enumerate(zip(records, items, strict=True)):
        assert set(r) == {"id", "prompt", "reply", "reasoning", "reference", "finish", "prompt_tokens",
                          "new_tokens", "seconds", "batch", "seed", "sampling"}
        assert r["prompt"] == loaded.renderer.inference_prompt(it.messages)  # the exact rendered text
        assert r["prompt"].endswith("<|im_start|>assistant\n") and r["reference"] == it.reference
        assert r["prompt_tokens"] == len(loaded.tok(r["prompt"], add_special_tokens=False)["input_ids"])
        assert r["batch"] == k // 3 and r["seed"] == 5 + k // 3 and r["sampling"] == meta["sampling"]
        assert r["finish"] == "length" and r["new_tokens"] == 6 and r["reply"] and r["seconds"] > 0


def test_limit_twice_resumes_and_keeps_input_order(cli, model_dir, corpus, tmp_path):
    out = tmp_path / "r.json"
    base = ["generate", "--model", model_dir, "--input", corpus, "--output", out, "--batch-size", "2",
            "--max-new-tokens", "4"]
    code, _, err = cli([*base, "--limit", "3"])
    assert code == 0, err
    first = json.loads(out.read_text())["records"]
    assert [r["id"] for r in first] == ["d0", "d1", "d2"]
    code, stdout, err = cli([*base, "--limit", "5"])
    assert code == 0, err
    assert "3 of 5 records already generated, 2 to go" in stdout
    second = json.loads(out.read_text())["records"]
    assert [r["id"] for r in second] == ["d0", "d1", "d2", "d3", "d4"]
    assert second[:3] == first  # finished records are kept untouched
    assert json.loads(out.read_text())["meta"]["perf"]["records"] == 5


def test_interrupted_run_resumes_to_the_same_replies(cli, model_dir, corpus, tmp_path, monkeypatch):
    """Ctrl-C after batch 2 (the fault hook sends a real SIGINT), resume: same file as one straight run."""
    base = ["generate", "--model", model_dir, "--input", corpus, "--batch-size", "2", "--max-new-tokens", "5",
            "--seed", "3"]
    code, _, err = cli([*base, "--output", tmp_path / "straight.json"])
    assert code == 0, err
    monkeypatch.setenv("PSYASSIST_FAULT", "2:INT")
    code, out, err = cli([*base, "--output", tmp_path / "resumed.json"])
    assert code == 130 and "run the same command to resume" in out
    assert len(json.loads((tmp_path / "resumed.json").read_text())["records"]) == 4
    monkeypatch.delenv("PSYASSIST_FAULT")
    code, _, err = cli([*base, "--output", tmp_path / "resumed.json"])
    assert code == 0, err
    straight = json.loads((tmp_path / "straight.json").read_text())["records"]
    resumed = json.loads((tmp_path / "resumed.json").read_text())["records"]
    strip = [{k: v for k, v in r.items() if k != "seconds"} for r in straight]
    assert [{k: v for k, v in r.items() if k != "seconds"} for r in resumed] == strip


def test_other_settings_are_refused_on_resume_and_restart_starts_over(cli, model_dir, corpus, tmp_path):
    out = tmp_path / "r.json"
    base = ["generate", "--model", model_dir, "--input", corpus, "--output", out, "--max-new-tokens", "3",
            "--limit", "2"]
    assert cli(base)[0] == 0
    code, _, err = cli([*base, "--temperature", "0.9"])
    assert code == 2 and "other settings" in err and "--restart" in err and "0.9" in err
    code, _, err = cli([*base, "--temperature", "0.9", "--restart"])
    assert code == 0, err
    assert json.loads(out.read_text())["meta"]["sampling"]["temperature"] == 0.9
    out.write_text("{not json", encoding="utf-8")
    code, _, err = cli(base)
    assert code == 2 and "r.json:1" in err and "--restart" in err


def test_generate_reads_a_mapped_layout(cli, model_dir, tmp_path):
    recs = [{"key": f"m{i}", "dialog": [{"speaker": "usr", "text": u}, {"speaker": "sys", "text": a}]}
            for i, (u, a) in enumerate(LINES)]
    src = _write_jsonl(tmp_path / "esconv_like.jsonl", recs)
    out = tmp_path / "r.json"
    code, _, err = cli(["generate", "--model", model_dir, "--input", src, "--output", out, "--max-new-tokens", "2",
                        "--map", "messages=dialog", "--map", "role=speaker", "--map", "content=text",
                        "--map", "user=usr", "--map", "assistant=sys", "--map", "id=key"])
    assert code == 0, err
    records = json.loads(out.read_text())["records"]
    assert [(r["id"], r["reference"]) for r in records] == [(f"m{i}", a) for i, (_, a) in enumerate(LINES)]


def test_greedy_is_refused_before_the_model_loads(cli, corpus, tmp_path):
    code, _, err = cli(["generate", "--model", tmp_path / "no-such-model", "--input", corpus, "--output",
                        tmp_path / "r.json", "--temperature", "0"])
    assert code == 2 and "allow-greedy" in err


@pytest.mark.slow
def test_kill_9_mid_run_then_resume(model_dir, corpus, tmp_path):
    """A real SIGKILL after batch 2: no cleanup runs, yet the file is whole and the resume completes it."""
    out = tmp_path / "r.json"
    cmd = [sys.executable, "-m", "psyassist", "generate", "--model", str(model_dir), "--input", str(corpus),
           "--output", str(out), "--batch-size", "2", "--max-new-tokens", "4"]
    env = {**os.environ, "PSYASSIST_FAULT": "2:KILL", "PSYASSIST_NO_PROGRESS": "1"}
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == -9, p.stderr
    assert [r["id"] for r in json.loads(out.read_text())["records"]] == ["d0", "d1", "d2", "d3"]
    assert not list(tmp_path.glob(".r.json.*"))  # the kill came after a complete, renamed write
    env.pop("PSYASSIST_FAULT")
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    assert "4 of 7 records already generated, 3 to go" in p.stdout
    assert len(json.loads(out.read_text())["records"]) == 7


@pytest.mark.slow
def test_real_psydt_record_per_turn_with_the_qwen3_template(test_data, qwen3_tokenizer_dir, tmp_path):
    """PsyDTCorpus's one real record, cut per reply, rendered with the real Qwen3 template (thinking off)."""
    from psyassist.models import save_tiny_qwen3

    src = test_data / "PsyDTCorpus" / "psydtcorpus_readme_example_1record.json"
    model = save_tiny_qwen3(tmp_path / "qwen3-tiny", qwen3_tokenizer_dir)
    items, _ = read_items([str(src)], per_turn=True)
    conv = json.loads(src.read_text(encoding="utf-8"))[0]
    n_replies = sum(m["role"] == "assistant" for m in conv["messages"])
    assert len(items) == n_replies and items[0].messages[0]["role"] == "system"
    loaded = load(str(model), enable_thinking=False)
    res = run_generate(loaded, items[:3], tmp_path / "r.json", sampling=Sampling.recommended(False, max_new_tokens=4),
                       batch_size=3, per_turn=True)
    for r, it in zip(res["records"], items[:3], strict=True):
        assert r["prompt"].endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")  # pitfall 2
        assert r["prompt"].count("<|im_start|>user") == sum(m["role"] == "user" for m in it.messages)
        assert r["reference"] == it.reference and r["reasoning"] is None


def test_adapter_is_applied_and_recorded(cli, model_dir, corpus, tmp_path):
    import torch

    from psyassist.models import attach_lora

    peft = attach_lora(load(str(model_dir)).model, r=4, alpha=8)
    with torch.no_grad():  # B starts at zero (a no-op adapter); make it change the logits
        for name, p in peft.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    peft.save_pretrained(tmp_path / "adapter")
    greedy = ["--temperature", "0", "--allow-greedy", "--max-new-tokens", "8", "--limit", "3"]
    for name, extra in (("base", []), ("tuned", ["--adapter", tmp_path / "adapter"])):
        code, _, err = cli(["generate", "--model", model_dir, *extra, "--input", corpus, "--output",
                            tmp_path / f"{name}.json", *greedy])
        assert code == 0, err
    base_r, tuned_r = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("base", "tuned"))
    assert tuned_r["meta"]["adapter"] == str(tmp_path / "adapter") and base_r["meta"]["adapter"] is None
    assert [r["reply"] for r in base_r["records"]] != [r["reply"] for r in tuned_r["records"]]
    code, _, err = cli(["generate", "--model", model_dir, "--adapter", tmp_path, "--input", corpus,
                        "--output", tmp_path / "x.json"])
    assert code == 2 and "not a LoRA adapter directory" in err
