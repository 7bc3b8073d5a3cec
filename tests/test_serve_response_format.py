"""response_format (JSON schema) by constrained decoding: infer/grammar.py, the HF backend's rows, the routes.

    .venv/bin/python -m pytest tests/test_serve_response_format.py            # with the slow server tests

Fast: the grammar with the tiny tokenizer (random logits walk through the mask, so every
reachable token is tried), and HFBackend with a tiny random Qwen3 run in-process (mixed
batches, the prefill's token, per-row seeds).  Slow: the real `psyassist serve` with the
default SmolLM2-135M, talked to with httpx and the official `openai` client.
"""

from __future__ import annotations

import asyncio
import json
import sys
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
import torch

pytest.importorskip("fastapi")
pytest.importorskip("xgrammar")
jsonschema_rs = pytest.importorskip("jsonschema_rs")  # schemathesis's validator (the serve tests' dev extra)

from psyassist.errors import PsyassistError  # noqa: E402
from psyassist.infer.grammar import JsonCompiler, json_grammar  # noqa: E402
from psyassist.serve.app import APIError, _response_format  # noqa: E402
from psyassist.serve.jobs import Job  # noqa: E402
from tiny_tokenizer import tiny_tokenizer  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")

NOTE = {"type": "object", "properties": {  # every kind of bound: enum, string length, integer range, items
    "mood": {"enum": ["calm", "sad"]}, "note": {"type": "string", "maxLength": 10},
    "tags": {"type": "array", "items": {"type": "integer", "minimum": 0, "maximum": 99}, "minItems": 1,
             "maxItems": 3}}, "required": ["mood", "note", "tags"]}
MOOD = {"type": "object", "properties": {"mood": {"enum": ["calm", "anxious", "sad"]}}, "required": ["mood"]}
RISK = {"type": "object", "properties": {"level": {"type": "integer", "minimum": 0, "maximum": 3},
                                         "urgent": {"type": "boolean"}}, "required": ["level", "urgent"]}
PAD = 42  # vocabulary padding past len(tok), as real checkpoints have (Qwen3: 151,669 tokens, 151,936 logits)


def validate(schema: dict, text: str) -> dict:
    value = json.loads(text)  # strict: a raw control character inside a string fails here
    jsonschema_rs.validate(schema, value)
    return value


@pytest.fixture(scope="module")
def tok():
    return tiny_tokenizer()


@pytest.fixture(scope="module")
def compiler(tok):
    return JsonCompiler(tok, vocab_size=len(tok) + PAD, stop_ids=[tok.convert_tokens_to_ids("<|im_end|>")])


def walk(compiler, tok, schema, seed: int, bias: dict[int, float] | None = None, steps: int = 300) -> str:
    """Argmax over random logits through the mask until the grammar takes the stop token: the reply text."""
    state, out = compiler.compile(schema).start(), []
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        logits = torch.randn(compiler.vocab_size, generator=g)
        for t, b in (bias or {}).items():
            logits[t] += b
        state.fill(logits)
        t = int(logits.argmax())
        assert state.accept(t)
        if state.done:
            return tok.decode(out)
        out.append(t)
    raise AssertionError(f"no end after {steps} tokens: {tok.decode(out)!r}")


# --- infer/grammar.py -------------------------------------------------------------------------------


def test_random_walks_through_the_mask_always_give_valid_json_and_never_a_padding_id(compiler, tok):
    pad_bias = {t: 100.0 for t in range(len(tok), len(tok) + PAD)}  # padding ids would win every argmax
    replies = [walk(compiler, tok, NOTE, seed, pad_bias) for seed in range(20)]
    for r in replies:
        validate(NOTE, r)
    assert len(set(replies)) > 15  # the walks really differ
    assert all(r.startswith('{"mood": "') for r in replies)  # compact: ", " and ": ", nothing else


def test_length_bounded_strings_refuse_control_characters(compiler, tok):
    """xgrammar ≤ 0.2.9 lets raw control bytes into a string with maxLength (issue 800): 95 of 200 of these
    walks then failed json.loads.  Pushing every token that decodes to one makes the fix visible."""
    ctrl = {t: 50.0 for t in range(len(tok)) if any(ord(c) < 0x20 for c in tok.decode([t]))}
    assert len(ctrl) >= 20  # the byte-level alphabet has all 32
    for seed in range(20):
        validate(NOTE, walk(compiler, tok, NOTE, seed, ctrl))


def test_a_valid_reply_is_accepted_token_by_token_and_ends_on_the_stop_token(compiler, tok):
    state = compiler.compile(NOTE).start()
    for t in tok('{"mood": "sad", "note": "tired", "tags": [3]}', add_special_tokens=False)["input_ids"]:
        assert state.accept(t) and not state.done
    assert not state.accept(tok.convert_tokens_to_ids("<|endoftext|>"))  # not a stop token of this compiler
    assert state.accept(tok.convert_tokens_to_ids("<|im_end|>")) and state.done
    fresh = compiler.compile(NOTE).start()
    brace, space = (tok(s, add_special_tokens=False)["input_ids"][0] for s in ("{", " "))
    assert not fresh.accept(space) and fresh.accept(brace)  # no whitespace anywhere: compact JSON
    assert not fresh.accept(space)


def test_json_object_mode_takes_any_object_and_nothing_else(compiler, tok):
    state = compiler.compile(None).start()
    assert not state.accept(tok("[", add_special_tokens=False)["input_ids"][0])
    for t in tok('{"a": [1, {"b": null}], "c": "x"}', add_special_tokens=False)["input_ids"]:
        assert state.accept(t)
    assert state.accept(tok.convert_tokens_to_ids("<|im_end|>")) and state.done
    assert isinstance(json.loads(walk(compiler, tok, None, 0, steps=2000)), dict)


@pytest.mark.parametrize(("schema", "words"), [
    ([1, 2], "must be a JSON object, got list"),
    ({"type": "nope"}, 'Unsupported type "nope"'),
    ({"type": "integer", "minimum": 5, "maximum": 2}, "minimum greater than maximum"),
    ({"type": "object", "properties": 3}, "properties must be an object"),
    ({"$ref": "#/$defs/missing"}, "missing"),
    ({"type": "string", "pattern": "(("}, "parenthesis is not closed"),
    ({"type": "number", "maximum": float("nan")}, "not JSON-serializable"),
])
def test_a_schema_xgrammar_cannot_use_is_a_clear_error(compiler, schema, words):
    for make in (compiler.compile, json_grammar):
        with pytest.raises(PsyassistError, match="JSON schema") as e:
            make(schema)
        assert words in str(e.value) and ".cc:" not in str(e.value)  # xgrammar's reason, not its C++ location


def test_compiled_schemas_are_cached_by_their_json_in_lru_order(tok):
    c = JsonCompiler(tok, vocab_size=len(tok), stop_ids=[tok.convert_tokens_to_ids("<|im_end|>")], cache_size=2)
    a = c.compile(MOOD)
    assert c.compile(json.loads(json.dumps(MOOD))) is a and c.compiles == 1  # an equal dict is a hit
    swapped = {"required": ["mood"], "properties": MOOD["properties"], "type": "object"}
    assert c.compile(swapped) is not a and c.compiles == 2  # key order is kept: properties come out in it
    c.compile(MOOD)  # a is now the most recently used …
    c.compile(NOTE)  # … so swapped is evicted
    assert c.compile(MOOD) is a and c.compiles == 3
    assert c.compile(swapped) is not a and c.compiles == 4


# --- the route's parsing ------------------------------------------------------------------------------


def test_response_format_parsing_follows_openai():
    assert _response_format(None) == (False, None)
    assert _response_format({"type": "text"}) == (False, None)
    assert _response_format({"type": "json_object"}) == (True, None)
    spec = {"type": "json_schema", "json_schema": {"name": "mood", "schema": MOOD, "strict": True}}
    assert _response_format(spec) == (True, MOOD)
    for bad, words in [({"type": "xml"}, "must be 'text', 'json_object' or 'json_schema', got 'xml'"),
                       ({}, "got None"),
                       ({"type": "json_schema"}, "json_schema.schema must be"),
                       ({"type": "json_schema", "json_schema": {"name": "x", "schema": "{}"}}, 'got "{}"')]:
        with pytest.raises(APIError, match=words.replace("(", r"\(").replace(")", r"\)")) as e:
            _response_format(bad)
        assert e.value.status == 400 and e.value.param == "response_format"


def test_the_vllm_backend_sends_the_same_grammar_as_structured_outputs(monkeypatch):
    """vllm is never installed here: a stand-in module with the two names the backend uses."""
    from types import ModuleType, SimpleNamespace

    from psyassist.serve.vllm_backend import VLLMBackend

    vllm, sampling = ModuleType("vllm"), ModuleType("vllm.sampling_params")
    sampling.StructuredOutputsParams = lambda **kw: SimpleNamespace(**kw)
    vllm.sampling_params = sampling
    monkeypatch.setitem(sys.modules, "vllm", vllm)
    monkeypatch.setitem(sys.modules, "vllm.sampling_params", sampling)
    vllm.__version__ = "0.11.0"
    assert vars(VLLMBackend.constraint(None, NOTE)) == {"grammar": json_grammar(NOTE)}  # self is not used
    with pytest.raises(PsyassistError, match='Unsupported type "nope"'):
        VLLMBackend.constraint(None, {"type": "nope"})
    vllm.__version__ = "0.9.2"
    with pytest.raises(PsyassistError, match=r"vllm>=0.10.2 .* runs vllm 0.9.2"):
        VLLMBackend.constraint(None, NOTE)


# --- HFBackend rows, in-process with a tiny random Qwen3 ---------------------------------------------


@pytest.fixture(scope="module")
def backend(tok):
    from transformers import Qwen3Config, Qwen3ForCausalLM

    from psyassist.infer.engine import Loaded
    from psyassist.render import ChatRenderer, RenderOptions
    from psyassist.serve.batcher import HFBackend

    torch.manual_seed(0)
    cfg = Qwen3Config(vocab_size=len(tok) + PAD, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, intermediate_size=64, head_dim=8, tie_word_embeddings=True,
                      eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, initializer_range=0.2)
    renderer = ChatRenderer(tok, RenderOptions(enable_thinking=False))
    loaded = Loaded(Qwen3ForCausalLM(cfg).eval(), tok, renderer, "tiny",
                    stop_ids=[tok.convert_tokens_to_ids("<|im_end|>")])
    be = HFBackend(loaded, base_name="tiny", max_batch=8, batch_window=0.3)  # 0.3 s: the jobs land in one batch
    be.start()
    yield be
    be.close()


def job(backend, text: str, schema=False, *, max_tokens: int = 80, temperature: float = 0, seed=None) -> Job:
    """schema False: free text; None: any JSON object; a dict: that schema."""
    prompt = backend.loaded.renderer.inference_prompt([{"role": "user", "content": text}])
    return Job(prompt_ids=backend.tok(prompt, add_special_tokens=False)["input_ids"], max_tokens=max_tokens,
               temperature=temperature, top_p=0.9, top_k=0, seed=seed,
               constraint=None if schema is False else backend.constraint(schema))


def run(backend, jobs: list[Job]) -> list[tuple[str, str]]:
    """Submit all at once; (text, finish) of each."""
    async def go():
        for j in jobs:
            j.bind()
            backend.submit(j)
        out = []
        for j in jobs:
            text = []
            while (ev := await asyncio.wait_for(j.queue.get(), 60))[0] == "delta":
                text.append(ev[1])
            assert ev[0] == "done", ev
            out.append(("".join(text), ev[1]))
        return out

    return asyncio.run(go())


def test_mixed_batches_keep_each_rows_grammar_and_match_the_rows_run_alone(backend):
    def cases():
        return [job(backend, "I cannot sleep.", max_tokens=12), job(backend, "I feel anxious.", NOTE),
                job(backend, "Work is hard.", MOOD), job(backend, "I am tired.", NOTE, temperature=1.0, seed=3),
                job(backend, "Hello.", None, max_tokens=40)]

    alone = [run(backend, [j])[0] for j in cases()]
    rows_before = backend.health()["max_rows_in_forward"]
    together = run(backend, cases())
    assert backend.health()["max_rows_in_forward"] == 5 > rows_before
    assert together == alone  # the mask of one row never touches another's logits; seeds stay per row
    free, note, mood, sampled, obj = together
    assert not free[0].startswith("{")  # the free row is not JSON …
    for (text, finish), schema in ((note, NOTE), (mood, MOOD), (sampled, NOTE)):
        assert finish == "stop"  # … the constrained ones are complete and valid
        validate(schema, text)
    assert obj[0].startswith("{")


def test_the_prefills_token_is_masked_too(backend):
    free, obj = run(backend, [job(backend, "Hello.", max_tokens=1), job(backend, "Hello.", None, max_tokens=1)])
    assert not free[0].startswith("{") and obj == ("{", "length")  # cut by max_tokens: a prefix of JSON


def test_a_token_the_grammar_refuses_fails_its_row_only(backend):
    class NoMask:  # a constraint whose mask lets everything through: the first token breaks the grammar
        def __init__(self, real):
            self.real = real

        def start(self):
            state = self.real.start()
            state.fill = lambda logits: None
            return state

    broken = job(backend, "Hello.", MOOD)
    broken.constraint = NoMask(broken.constraint)
    ok = job(backend, "Hello.", MOOD)
    failed = backend.health()["rows_failed"]

    async def go():
        for j in (broken, ok):
            j.bind()
            backend.submit(j)
        events = []
        while (ev := await asyncio.wait_for(broken.queue.get(), 60))[0] == "delta":
            pass
        events.append(ev)
        text = []
        while (ev := await asyncio.wait_for(ok.queue.get(), 60))[0] == "delta":
            text.append(ev[1])
        return events[0], "".join(text), ev

    err, text, done = asyncio.run(go())
    assert err[0] == "error" and "broke the response_format grammar" in err[1]
    assert done[:2] == ("done", "stop") and validate(MOOD, text)
    assert backend.health()["rows_failed"] == failed + 1


# --- the real server with the default model (slow) ----------------------------------------------------

DRAFT = {"type": "object", "properties": {  # nested object, array with min/maxItems, string maxLength, enum
    "mood": {"type": "string", "enum": ["calm", "anxious", "sad", "angry"]},
    "summary": {"type": "string", "maxLength": 40},
    "risk": RISK,
    "tags": {"type": "array", "items": {"type": "string", "maxLength": 12}, "minItems": 1, "maxItems": 3}},
    "required": ["mood", "summary", "risk", "tags"]}
SYSTEM = "Answer with JSON only: the client's mood, a short summary, the risk and up to three tags."
PROMPTS = ["I can't sleep before exams.", "My thoughts race at night and I feel alone.", "Work makes me anxious.",
           "How do I tell my sister I am struggling with everything lately?"]


def schema_format(schema: dict, name: str = "draft") -> dict:
    return {"type": "json_schema", "json_schema": {"name": name, "schema": schema, "strict": True}}


@pytest.fixture(scope="module")
def server():
    from psyassist.serve.app import ServeConfig
    from test_serve import Server

    s = Server(ServeConfig(model="default", max_batch=8, max_tokens=256, batch_window=0.05, request_timeout=120))
    yield s
    s.stop()


def chat(s, prompt: str, response_format: dict | None = None, *, max_tokens: int = 160, seed: int = 0,
         temperature: float = 0.7, stream: bool = False) -> httpx.Response:
    body = {"model": "default", "messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": prompt}],
            "max_tokens": max_tokens, "seed": seed, "temperature": temperature, "stream": stream}
    if response_format is not None:
        body["response_format"] = response_format
    return httpx.post(s.url + "/v1/chat/completions", json=body, timeout=120)


def content(r: httpx.Response) -> tuple[str, str]:
    assert r.status_code == 200, r.text
    choice = r.json()["choices"][0]
    return choice["message"]["content"], choice["finish_reason"]


def tokens(r: httpx.Response) -> int:
    return r.json()["usage"]["completion_tokens"]


@pytest.mark.slow
def test_concurrent_schema_replies_all_parse_and_validate(server):
    with ThreadPoolExecutor(4) as ex:
        replies = list(ex.map(lambda i: content(chat(server, PROMPTS[i], schema_format(DRAFT), seed=i)), range(4)))
    for text, finish in replies:
        assert finish == "stop", text
        validate(DRAFT, text)
    assert len({t for t, _ in replies}) == 4
    assert server.health()["max_rows_in_forward"] >= 2


@pytest.mark.slow
def test_constrained_and_free_requests_share_a_batch(server):
    def ask(case):
        fmt, prompt = case
        return chat(server, prompt, fmt, max_tokens=16 if fmt is None or fmt["type"] == "text" else 48, temperature=0)

    cases = [(None, PROMPTS[0]), (schema_format(MOOD, "mood"), PROMPTS[1]), (schema_format(RISK, "risk"), PROMPTS[2]),
             ({"type": "text"}, PROMPTS[3])]
    before = server.health()["forward_calls"]
    with ThreadPoolExecutor(len(cases)) as ex:
        replies = list(ex.map(ask, cases))
    (free, _), mood, risk, (text, _) = map(content, replies)
    assert not free.lstrip().startswith("{") and not text.lstrip().startswith("{")
    assert mood[1] == risk[1] == "stop", (mood, risk)
    validate(MOOD, mood[0])
    validate(RISK, risk[0])
    one_by_one = sum(map(tokens, replies))  # each request alone: one forward per token
    assert server.health()["forward_calls"] - before < one_by_one / 2


@pytest.mark.slow
def test_a_streamed_schema_reply_concatenates_to_the_same_json(server):
    fmt = schema_format(MOOD, "mood")
    whole, _ = content(chat(server, PROMPTS[0], fmt, temperature=0))
    with httpx.stream("POST", server.url + "/v1/chat/completions", timeout=60, json={
            "model": "default", "messages": [{"role": "system", "content": SYSTEM},
                                             {"role": "user", "content": PROMPTS[0]}],
            "max_tokens": 160, "temperature": 0, "stream": True, "response_format": fmt}) as r:
        data = [json.loads(ln[6:]) for ln in r.iter_lines() if ln.startswith("data: ") and ln != "data: [DONE]"]
    pieces = [c["choices"][0]["delta"].get("content") or "" for c in data if c["choices"]]
    assert sum(1 for p in pieces if p) > 2 and "".join(pieces) == whole
    assert data[-1]["choices"][0]["finish_reason"] == "stop"
    validate(MOOD, whole)


@pytest.mark.slow
def test_the_openai_client_parses_into_a_pydantic_model(server):
    from typing import Literal

    import openai
    from pydantic import BaseModel, Field

    class Risk(BaseModel):
        level: int = Field(ge=0, le=3)
        urgent: bool

    class Triage(BaseModel):
        mood: Literal["calm", "anxious", "sad"]
        risk: Risk

    client = openai.OpenAI(base_url=server.url + "/v1", api_key="none", max_retries=0, timeout=60)
    r = client.chat.completions.parse(model="default", response_format=Triage, max_tokens=160, temperature=0,
                                      messages=[{"role": "system", "content": SYSTEM},
                                                {"role": "user", "content": PROMPTS[1]}])
    assert r.choices[0].finish_reason == "stop"
    parsed = r.choices[0].message.parsed
    assert isinstance(parsed, Triage) and isinstance(parsed.risk, Risk)
    plain = client.chat.completions.create(model="default", max_tokens=64, temperature=0, messages=[
        {"role": "system", "content": SYSTEM}, {"role": "user", "content": PROMPTS[2]}],
        response_format={"type": "json_object"})
    assert plain.choices[0].finish_reason == "stop"
    assert isinstance(json.loads(plain.choices[0].message.content), dict)


@pytest.mark.slow
def test_max_tokens_cuts_the_json_with_finish_length(server):
    text, finish = content(chat(server, PROMPTS[2], schema_format(DRAFT), max_tokens=5))
    assert finish == "length" and text.startswith('{"mood": ')  # an incomplete prefix, as with OpenAI
    with pytest.raises(json.JSONDecodeError):
        json.loads(text)


@pytest.mark.slow
@pytest.mark.parametrize(("fmt", "words"), [
    ({"type": "yaml"}, "response_format.type must be"),
    ({"type": "json_schema", "json_schema": {"name": "x", "schema": ["not", "a", "dict"]}}, "must be a JSON schema"),
    (schema_format({"type": "object", "properties": {"a": {"type": "nope"}}}), 'Unsupported type "nope"'),
    (schema_format({"type": "integer", "minimum": 3, "maximum": 1}), "minimum greater than maximum"),
    ("json", "response_format"),
])
def test_a_bad_response_format_is_400_naming_it(server, fmt, words):
    r = chat(server, PROMPTS[0], fmt)
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert words in err["message"]
    assert err["param"] == "response_format" or fmt == "json"  # pydantic's own check names it in the message
