"""psyassist serve: a real server on loopback, talked to with the official `openai` client and httpx.

The model is a tiny random Qwen3 with the real Qwen3 tokenizer whose special-token
embeddings are zero, so no reply ever ends early (every logit of a special token is 0, the
largest of 151k random logits is far above): a reply runs to max_tokens unless stopped.
Two adapters with different random lora_B weights make the base, A and B answer differently.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

pytest.importorskip("fastapi")
openai = pytest.importorskip("openai")

from psyassist.serve.app import ServeConfig, build_backend, create_app  # noqa: E402

# slow: each module server loads a model and the tests send real requests; one torch thread: conftest.py
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_torch_thread")]

PROMPTS = ["I can't sleep before exams.", "My thoughts race at night and I feel alone.",
           "Work makes me anxious.", "How do I tell my sister I am struggling with everything lately?"]
URGENT = "I want to kill myself tonight, I have the pills ready."
KEY = "test-key"



@pytest.fixture(scope="module")
def dirs(tmp_path_factory, qwen3_tokenizer_dir) -> tuple[Path, Path]:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import Qwen3Config, Qwen3ForCausalLM

    from psyassist.render import load_tokenizer

    root = tmp_path_factory.mktemp("serve")
    tok = load_tokenizer(str(qwen3_tokenizer_dir))
    torch.manual_seed(0)
    cfg = Qwen3Config(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, intermediate_size=64, head_dim=8, tie_word_embeddings=True,
                      eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, initializer_range=0.2,
                      max_position_embeddings=4096)
    model = Qwen3ForCausalLM(cfg)
    with torch.no_grad():
        model.model.embed_tokens.weight[min(tok.added_tokens_decoder):] = 0  # never sampled: run to max_tokens
    model.save_pretrained(root / "tiny")
    tok.save_pretrained(root / "tiny")
    adapters = root / "adapters"
    for seed, out in ((1, adapters / "warm"), (2, adapters / "brief" / "adapter")):  # both layouts
        base = Qwen3ForCausalLM.from_pretrained(root / "tiny")
        peft = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"],
                                               lora_dropout=0.0))
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for n, p in peft.named_parameters():
                if "lora_B" in n:
                    p.copy_(torch.randn(p.shape, generator=g) * 2.0)
        peft.save_pretrained(out)
    (adapters / "not-an-adapter").mkdir()
    return root / "tiny", adapters


class Server:
    """uvicorn on a free loopback port, in a thread of this process; `backend` defaults to the config's
    (build_backend), `embedder` serves /v1/embeddings."""

    def __init__(self, cfg: ServeConfig, backend=None, embedder=None):
        import uvicorn

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            cfg.port = s.getsockname()[1]
        self.cfg = cfg
        self.backend = backend if backend is not None else build_backend(cfg)
        self.url = f"http://127.0.0.1:{cfg.port}"
        self.server = uvicorn.Server(uvicorn.Config(create_app(cfg, self.backend, embedder), host="127.0.0.1",
                                                    port=cfg.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        t0 = time.monotonic()
        while not self.server.started:
            assert time.monotonic() - t0 < 30, "server did not start"
            time.sleep(0.02)

    def client(self, key: str | None = KEY) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.url + "/v1", api_key=key or "none", max_retries=0, timeout=60)

    def health(self) -> dict:
        return httpx.get(self.url + "/health").json()

    def wait(self, cond, what: str, timeout: float = 20) -> dict:
        t0 = time.monotonic()
        while not cond(h := self.health()):
            assert time.monotonic() - t0 < timeout, f"timed out waiting for {what}: {h}"
            time.sleep(0.01)
        return h

    def stop(self):
        self.server.should_exit = True
        self.thread.join(timeout=15)


@pytest.fixture(scope="module")
def server(dirs, tmp_path_factory):
    model, adapters = dirs
    log = tmp_path_factory.mktemp("log") / "safety.jsonl"
    s = Server(ServeConfig(model=str(model), adapter_dir=adapters, max_batch=8, max_adapters=2, max_queue=16,
                           max_prompt_tokens=200, max_tokens=512, api_keys=[KEY], safety_log=log, privacy=True,
                           batch_window=0.05))
    yield s
    s.stop()


@pytest.fixture(scope="module")
def small(dirs):
    """One row at a time, one queued request, one adapter slot: for 429, disconnect and LRU eviction."""
    model, adapters = dirs
    s = Server(ServeConfig(model=str(model), adapter_dir=adapters, max_batch=1, max_adapters=1, max_queue=1,
                           max_tokens=3000, request_timeout=60))
    yield s
    s.stop()


def ask(s: Server, prompt: str, model: str = "tiny", max_tokens: int = 12, **kw):
    return s.client().chat.completions.create(model=model, messages=[{"role": "user", "content": prompt}],
                                              max_tokens=max_tokens, temperature=0, **kw)


# --- the OpenAI client ---------------------------------------------------------------------------


def test_non_stream_and_stream_give_the_same_greedy_reply(server):
    r = ask(server, PROMPTS[0])
    assert r.object == "chat.completion" and r.model == "tiny"
    assert r.choices[0].finish_reason == "length" and r.choices[0].message.role == "assistant"
    assert r.usage.completion_tokens == 12 and r.usage.prompt_tokens > 5
    assert r.usage.total_tokens == r.usage.prompt_tokens + 12
    text = r.choices[0].message.content
    assert text.strip()
    chunks = list(server.client().chat.completions.create(
        model="tiny", messages=[{"role": "user", "content": PROMPTS[0]}], max_tokens=12, temperature=0, stream=True,
        stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == text
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
    assert chunks[-1].usage.completion_tokens == 12 and not chunks[-1].choices
    assert sum(1 for c in chunks if c.choices and c.choices[0].delta.content) > 3  # token by token, not at once


def test_thinking_switch_renders_the_qwen3_prompt_without_the_empty_think_block(server):
    def prompt_tokens(thinking):
        return ask(server, PROMPTS[0], max_tokens=1,
                   extra_body={"chat_template_kwargs": {"enable_thinking": thinking}}).usage.prompt_tokens

    assert prompt_tokens(False) - prompt_tokens(True) == 4  # "<think>", "\n\n", "</think>", "\n\n"


def test_stop_string_ends_the_reply_before_it(server):
    full = ask(server, PROMPTS[1], max_tokens=20).choices[0].message.content
    cut = full[len(full) // 2:len(full) // 2 + 3]
    assert cut.strip()
    r = ask(server, PROMPTS[1], max_tokens=20, stop=[cut])
    assert r.choices[0].finish_reason == "stop"
    assert r.choices[0].message.content == full[:full.index(cut)]


def test_models_lists_the_base_and_every_adapter_layout(server):
    ids = [m.id for m in server.client().models.list().data]
    assert ids == ["tiny", "brief", "warm"]  # warm: NAME/adapter_config.json, brief: RUN/adapter/…


def test_adapters_switch_per_request_and_the_base_stays_the_base(server):
    base = ask(server, PROMPTS[2]).choices[0].message.content
    a = ask(server, PROMPTS[2], model="warm").choices[0].message.content
    b = ask(server, PROMPTS[2], model="brief").choices[0].message.content
    assert len({base, a, b}) == 3
    assert ask(server, PROMPTS[2]).choices[0].message.content == base  # base after PEFT wrapped the model
    assert ask(server, PROMPTS[2], model="warm").choices[0].message.content == a
    assert set(server.health()["adapters_loaded"]) == {"warm", "brief"}


# --- batching --------------------------------------------------------------------------------------


def test_concurrent_requests_share_forwards_and_match_their_solo_replies(server):
    cases = [(p, m) for p, m in zip(PROMPTS, ["tiny", "warm", "brief", "warm"], strict=True)]  # prompts of 4 lengths
    alone, solo_forwards = [], 0
    for p, m in cases:
        before = server.health()["forward_calls"]
        alone.append(ask(server, p, model=m, max_tokens=10).choices[0].message.content)
        solo_forwards += server.health()["forward_calls"] - before
    assert solo_forwards == len(cases) * 10  # 1 prefill + 9 decode steps each
    before = server.health()
    with ThreadPoolExecutor(len(cases)) as ex:
        together = list(ex.map(lambda c: ask(server, c[0], model=c[1], max_tokens=10).choices[0].message.content,
                               cases))
    after = server.health()
    assert together == alone  # left padding, masks and positions change nothing
    forwards = after["forward_calls"] - before["forward_calls"]
    assert forwards < solo_forwards / 2, (forwards, solo_forwards)
    assert after["max_rows_in_forward"] >= 3


def test_a_request_joins_a_running_batch_and_still_matches_its_solo_reply(server):
    short_alone = ask(server, PROMPTS[0], model="brief", max_tokens=5).choices[0].message.content
    f0 = server.health()["forward_calls"]
    long_alone = ask(server, PROMPTS[3], max_tokens=300).choices[0].message.content
    f1 = server.health()["forward_calls"]
    assert f1 - f0 == 300
    with ThreadPoolExecutor(1) as ex:
        long = ex.submit(ask, server, PROMPTS[3], "tiny", 300)
        server.wait(lambda h: h["active_rows"] == 1, "the long request to run")
        short = ask(server, PROMPTS[0], model="brief", max_tokens=5).choices[0].message.content
        assert not long.done()  # the short one ran inside the long one's batch and finished first
        assert long.result().choices[0].message.content == long_alone
    assert short == short_alone
    assert server.health()["forward_calls"] - f1 == 300 + 1  # its 4 decode steps rode along: only its prefill


def test_seeded_sampling_is_the_same_alone_and_batched(server):
    def sample(p):
        return server.client().chat.completions.create(
            model="warm", messages=[{"role": "user", "content": p}], max_tokens=10, seed=7,
            temperature=0.9).choices[0].message.content

    alone = [sample(p) for p in PROMPTS[:3]]
    with ThreadPoolExecutor(3) as ex:
        assert list(ex.map(sample, PROMPTS[:3])) == alone


# --- errors -----------------------------------------------------------------------------------------


def test_api_key_is_required_when_configured(server):
    with pytest.raises(openai.AuthenticationError) as e:
        server.client(key="wrong").models.list()
    assert e.value.status_code == 401 and "API key" in e.value.body["message"]
    r = httpx.post(server.url + "/v1/chat/completions", json={"model": "tiny", "messages": []})
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
    assert httpx.get(server.url + "/health").status_code == 200


@pytest.mark.parametrize(("body", "status", "words"), [
    ('{"model": "tiny", "messages": [', 400, "not valid JSON"),
    ('{"model": "tiny"}', 400, "messages"),
    ('{"model": "tiny", "messages": []}', 400, "at least one message"),
    ('{"model": "tiny", "messages": [{"role": "wizard", "content": "hi"}]}', 400, "role"),
    ('{"model": "tiny", "messages": [{"role": "user", "content": [{"type": "image_url"}]}]}', 400, "text parts"),
    ('{"model": "tiny", "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "x"}]}',
     400, "last message"),
    ('{"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 513}', 400, "--max-tokens"),
    ('{"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "temperature": -1}', 400, "temperature"),
    ('{"model": "nope", "messages": [{"role": "user", "content": "hi"}]}', 404, "available: tiny, brief, warm"),
    ('[1, 2]', 400, "invalid request"),
])
def test_bad_requests_get_4xx_with_a_message(server, body, status, words):
    r = httpx.post(server.url + "/v1/chat/completions", content=body,
                   headers={"authorization": f"Bearer {KEY}", "content-type": "application/json"})
    assert r.status_code == status, r.text
    assert words in r.json()["error"]["message"]


def test_oversize_prompt_is_400_naming_the_counts(server):
    with pytest.raises(openai.BadRequestError) as e:
        ask(server, "I feel anxious. " * 80)
    msg = e.value.body["message"]
    assert "allows 200" in msg and "--max-prompt-tokens" in msg
    assert int(msg.split("prompt is ")[1].split()[0]) > 200


def test_queue_full_is_429_and_a_disconnected_stream_frees_its_row(small):
    body = {"model": "tiny", "messages": [{"role": "user", "content": PROMPTS[0]}], "max_tokens": 3000,
            "temperature": 0, "stream": True}
    h0 = small.health()
    with httpx.Client(timeout=60) as http, http.stream("POST", small.url + "/v1/chat/completions", json=body) as r:
        got, lines = [], r.iter_lines()  # kept referenced: a dropped iterator closes the response
        for ln in lines:
            if ln.startswith("data: "):
                got.append(json.loads(ln[6:]))
            if len(got) == 3:  # the role chunk and two content chunks
                break
        assert got[2]["choices"][0]["delta"]["content"]
        h = small.wait(lambda h: h["active_rows"] == 1, "the stream to run")
        with ThreadPoolExecutor(1) as ex:  # a second request waits in the queue (max_batch 1) …
            queued = ex.submit(ask, small, PROMPTS[1], "tiny", 4)
            small.wait(lambda h: h["queued"] == 1, "the second request to queue")
            full = httpx.post(small.url + "/v1/chat/completions", json={**body, "stream": False})
            assert full.status_code == 429  # … and a third finds the queue (max 1) full
            assert int(full.headers["retry-after"]) >= 1 and "queue is full" in full.json()["error"]["message"]
            r.close()  # the client goes away mid-stream
            assert queued.result().choices[0].finish_reason == "length"  # it got the freed row
    h = small.wait(lambda h: h["active_rows"] == 0 and h["rows_cancelled"] >= 1, "the dropped row")
    time.sleep(0.2)
    assert small.health()["tokens_generated"] == h["tokens_generated"]  # nothing decodes any more …
    assert h["tokens_generated"] - h0["tokens_generated"] < 1000  # … long before the stream's 3000 tokens


def test_a_non_streaming_client_that_hangs_up_frees_its_row(small):
    """No write tells a non-streaming handler that its client left; it checks while it waits."""
    body = {"model": "tiny", "messages": [{"role": "user", "content": PROMPTS[0]}], "max_tokens": 3000,
            "temperature": 0}
    h0 = small.health()
    with pytest.raises(httpx.ReadTimeout):  # the client gives up long before 3000 tokens
        httpx.post(small.url + "/v1/chat/completions", json=body, timeout=httpx.Timeout(10, read=1.5))
    h = small.wait(lambda h: h["active_rows"] == 0 and h["rows_cancelled"] > h0["rows_cancelled"], "the dropped row")
    time.sleep(0.2)
    assert small.health()["tokens_generated"] == h["tokens_generated"]  # nothing decodes any more
    assert h["tokens_generated"] - h0["tokens_generated"] < 3000


def test_lru_eviction_keeps_one_adapter_and_reloads_on_demand(small, server):
    want = {m: ask(server, PROMPTS[0], model=m, max_tokens=8).choices[0].message.content for m in ("warm", "brief")}
    before = small.health()
    assert ask(small, PROMPTS[0], model="warm", max_tokens=8).choices[0].message.content == want["warm"]
    assert ask(small, PROMPTS[0], model="brief", max_tokens=8).choices[0].message.content == want["brief"]
    assert small.health()["adapters_loaded"] == ["brief"]
    assert ask(small, PROMPTS[0], model="warm", max_tokens=8).choices[0].message.content == want["warm"]
    h = small.health()
    assert h["adapters_loaded"] == ["warm"] and h["adapter_evictions"] >= before["adapter_evictions"] + 2


def test_timeout_is_504_and_ends_a_stream_with_an_error_event(small):
    body = {"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3000, "temperature": 0}
    small.cfg.request_timeout = 0.3  # the route reads it per request
    try:
        r = httpx.post(small.url + "/v1/chat/completions", json=body)
        assert r.status_code == 504 and "request-timeout" in r.json()["error"]["message"]
        small.wait(lambda h: h["active_rows"] == 0, "the timed-out row to be dropped")
        with httpx.stream("POST", small.url + "/v1/chat/completions", json={**body, "stream": True}) as r:
            assert r.status_code == 200
            data = [ln[6:] for ln in r.iter_lines() if ln.startswith("data: ")]
        assert data[-1] == "[DONE]" and json.loads(data[-2])["error"]["code"] == "timeout"
    finally:
        small.cfg.request_timeout = 60
    small.wait(lambda h: h["active_rows"] == 0, "the timed-out row to be dropped")


# --- safety -----------------------------------------------------------------------------------------


def test_an_urgent_message_gets_the_flag_resources_and_a_log_line_without_text(server):
    raw = server.client().chat.completions.with_raw_response.create(
        model="tiny", messages=[{"role": "user", "content": URGENT}], max_tokens=4)
    assert raw.headers["x-psyassist-crisis"] == "urgent"
    r = raw.parse()
    assert r.choices[0].message.content  # the reply still comes
    safety = r.model_extra["psyassist_safety"]
    assert safety["level"] == "urgent" and "suicide" in safety["categories"]
    assert safety["resources"] and all(x["name"] for x in safety["resources"])
    chunks = list(server.client().chat.completions.create(
        model="warm", messages=[{"role": "user", "content": URGENT}], max_tokens=4, stream=True))
    assert chunks[-1].model_extra["psyassist_safety"]["level"] == "urgent" and not chunks[-1].choices
    calm = server.client().chat.completions.with_raw_response.create(
        model="tiny", messages=[{"role": "user", "content": PROMPTS[0]}], max_tokens=2)
    assert "x-psyassist-crisis" not in calm.headers and "psyassist_safety" not in calm.parse().model_extra
    events = [json.loads(x) for x in server.cfg.safety_log.read_text(encoding="utf-8").splitlines()]
    assert len(events) == 2 and all(e["level"] == "urgent" for e in events)
    assert all("text" not in e and "text" not in e["evidence"][0] for e in events)  # --privacy
    assert "pills ready" not in server.cfg.safety_log.read_text(encoding="utf-8")


# --- schemathesis -----------------------------------------------------------------------------------


def test_schemathesis_finds_no_server_error(server):
    import schemathesis
    from hypothesis import HealthCheck, given, settings

    schema = schemathesis.openapi.from_url(server.url + "/openapi.json")
    failures, calls = [], []
    for result in schema.get_all_operations():
        op = result.ok()

        @given(case=op.as_strategy())
        @settings(max_examples=40, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        def check(case):
            r = case.call(base_url=server.url, headers={"Authorization": f"Bearer {KEY}"}, timeout=30)
            calls.append((case.method, r.status_code))
            if r.status_code >= 500:
                failures.append((case.method, case.path, case.body, r.status_code, r.text[:300]))

        check()
    assert not failures, failures[:3]
    assert sum(m == "POST" for m, _ in calls) >= 20 and {c for _, c in calls} & {400, 404}
    assert server.health()["rows_failed"] == 0


def test_cli_vllm_backend_without_vllm_names_the_install(cli):
    from psyassist.optional import available

    if available("vllm"):
        pytest.skip("vllm is installed here")
    code, out, err = cli(["serve", "--backend", "vllm", "--model", "default"])
    assert code == 2 and "pip install vllm" in (out + err)
