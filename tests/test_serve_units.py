"""serve without a server: stop-string hold-back, sampling, message checks, adapter discovery, config."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

pytest.importorskip("fastapi")

from psyassist.errors import PsyassistError  # noqa: E402
from psyassist.serve.adapters import discover  # noqa: E402
from psyassist.serve.app import APIError, ChatRequest, ServeConfig, _job, _messages  # noqa: E402
from psyassist.serve.batcher import HFBackend, Row, _pick, _stop_prefix  # noqa: E402
from psyassist.serve.jobs import Job  # noqa: E402
from tiny_tokenizer import tiny_tokenizer  # noqa: E402


def test_stop_prefix_holds_back_only_what_could_start_a_stop_string():
    assert _stop_prefix("hello wor", ["world"]) == 3
    assert _stop_prefix("hello", ["world"]) == 0
    assert _stop_prefix("a\nUs", ["\nUser:", "s"]) == 3
    assert _stop_prefix("anything", []) == 0


def test_pick_is_greedy_at_zero_and_stays_inside_top_k():
    logits = torch.tensor([0.0, 5.0, 4.9, -3.0, 1.0])
    job = Job(prompt_ids=[], max_tokens=1, temperature=0, top_p=1, top_k=0)
    assert _pick(logits, job, torch.Generator().manual_seed(0)) == 1
    job = Job(prompt_ids=[], max_tokens=1, temperature=5.0, top_p=1, top_k=2)
    g = torch.Generator().manual_seed(0)
    assert {_pick(logits, job, g) for _ in range(200)} == {1, 2}
    job = Job(prompt_ids=[], max_tokens=1, temperature=1.0, top_p=0.5, top_k=0)  # token 1 alone holds > 0.5
    assert {_pick(logits, job, g) for _ in range(50)} == {1}


def _emitter(tok, stop_ids):
    return SimpleNamespace(tok=tok, stop_ids=set(stop_ids), stats={"tokens_generated": 0})


def test_emit_streams_text_stops_on_end_of_turn_and_on_stop_strings():
    tok = tiny_tokenizer()
    eot = tok.convert_tokens_to_ids("<|im_end|>")
    ids = tok("Hello world, how are you", add_special_tokens=False)["input_ids"]
    events = []
    job = Job(prompt_ids=[], max_tokens=100, temperature=0, top_p=1, top_k=0, stop=["are"])
    job.emit = events.append
    row, be = Row(job, torch.Generator()), _emitter(tok, [eot])
    for t in ids:
        HFBackend._emit(be, row, t)
        if row.finish:
            break
    assert row.finish == "stop" and "".join(e[1] for e in events if e[0] == "delta") == "Hello world, how "
    events.clear()
    job2 = Job(prompt_ids=[], max_tokens=100, temperature=0, top_p=1, top_k=0)
    job2.emit = events.append
    row = Row(job2, torch.Generator())
    for t in [*ids[:2], eot]:
        HFBackend._emit(be, row, t)
    assert events[-1] == ("done", "stop", 3) and "<|im_end|>" not in "".join(e[1] for e in events[:-1])
    events.clear()
    job3 = Job(prompt_ids=[], max_tokens=2, temperature=0, top_p=1, top_k=0)
    job3.emit = events.append
    row = Row(job3, torch.Generator())
    for t in ids[:2]:
        HFBackend._emit(be, row, t)
    assert events[-1] == ("done", "length", 2)


def test_messages_are_checked_with_the_field_named():
    def req(**kw):
        return ChatRequest(model="m", **kw)

    assert _messages(req(messages=[{"role": "developer", "content": "be kind"},
                                   {"role": "user", "content": [{"type": "text", "text": "hi"}]}])) == [
        {"role": "system", "content": "be kind"}, {"role": "user", "content": "hi"}]
    for msgs, words in [([{"role": "tool", "content": "x"}], "messages[0].role"),
                        ([{"role": "user"}], "content is missing"),
                        ([{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}], "last message")]:
        with pytest.raises(APIError, match=words.replace("[", r"\[")) as e:
            _messages(req(messages=msgs))
        assert e.value.status == 400


def test_sampling_defaults_follow_the_mode_and_limits_are_enforced():
    cfg = ServeConfig(max_tokens=100)
    job = _job(ChatRequest(model="m", messages=[]), False, cfg, None)
    assert (job.temperature, job.top_p, job.top_k, job.max_tokens) == (0.7, 0.8, 20, 100)
    job = _job(ChatRequest(model="m", messages=[], chat_template_kwargs={"enable_thinking": True}), True, cfg, "x")
    assert (job.temperature, job.top_p, job.adapter) == (0.6, 0.95, "x")
    for kw in ({"max_tokens": 101}, {"top_p": 0}, {"temperature": float("nan")}, {"seed": -1}, {"top_k": -2}):
        with pytest.raises(APIError):
            _job(ChatRequest(model="m", messages=[], **kw), False, cfg, None)


def test_discover_reads_both_layouts_and_skips_the_rest(tmp_path):
    (tmp_path / "one").mkdir()
    (tmp_path / "one" / "adapter_config.json").write_text("{}")
    (tmp_path / "run2" / "adapter").mkdir(parents=True)
    (tmp_path / "run2" / "adapter" / "adapter_config.json").write_text("{}")
    (tmp_path / "empty").mkdir()
    assert discover(tmp_path) == {"one": tmp_path / "one", "run2": tmp_path / "run2" / "adapter"}
    assert discover(None) == {}


def test_config_rejects_bad_limits_and_regions():
    with pytest.raises(PsyassistError, match="--max-batch"):
        ServeConfig(max_batch=0)
    with pytest.raises(PsyassistError, match="region"):
        ServeConfig(region="atlantis")
    assert ServeConfig(model="default").base_name == "default"


def test_pool_never_evicts_a_pinned_adapter(tmp_path, monkeypatch):
    from psyassist.serve.adapters import AdapterPool

    for n in ("x", "y"):
        (tmp_path / n).mkdir()
        (tmp_path / n / "adapter_config.json").write_text("{}")
    deleted = []
    pool = AdapterPool(SimpleNamespace(delete_adapter=deleted.append, set_adapter=lambda n: None), tmp_path, 1)

    def fake_load(name, path):
        pool.loaded[name] = path
        pool.loads += 1
        pool.names = tuple(pool.loaded)

    monkeypatch.setattr(pool, "_load", fake_load)
    assert pool.acquire("x")  # a running row uses x
    assert not pool.acquire("y") and not deleted  # the only slot is pinned: y waits
    pool.release("x")
    assert pool.acquire("y") and deleted == ["x"] and pool.names == ("y",)
    assert pool.adapter_names([None, "y"]) == ["__base__", "y"]
