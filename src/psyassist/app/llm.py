"""The app's model: in this process (serve's continuous-batching HF backend) or an OpenAI-compatible endpoint.

    psyassist app                                                  # in-process, the default model
    psyassist app --backend openai --endpoint http://127.0.0.1:8000/v1 --model default   # psyassist serve / vLLM

Both stream events: ("delta", text) … then ("done", finish, completion_tokens).  A JSON schema
makes the reply constrained: in process through xgrammar (infer/grammar.py, the same code as
`psyassist serve`'s response_format); on an endpoint through `response_format: json_schema`, which
psyassist serve and vLLM both enforce.  Nothing leaves this machine unless `endpoint` says so.

Sampling is the Qwen3 model card's non-thinking recommendation (T 0.7, top-p 0.8, top-k 20;
never greedy, seed 000's advice) with thinking off: a draft is a note, not a chain of thought.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
from collections.abc import AsyncIterator

from psyassist.app.config import AppConfig
from psyassist.errors import PsyassistError
from psyassist.infer.engine import SAMPLING

_CJK = re.compile(r"[\u3000-\u303f\u3400-\u4dbf\u4e00-\u9fff\uff00-\uffef]")


class LLMError(PsyassistError):
    """The model could not produce a reply (endpoint down, queue full, generation failed)."""


class InProcess:
    name = "inprocess"

    def __init__(self, cfg: AppConfig):
        from psyassist.infer.engine import load
        from psyassist.serve.batcher import HFBackend

        self.cfg = cfg
        self.loaded = load(cfg.model, dtype=cfg.dtype, device=cfg.device, enable_thinking=False)
        self.hf = HFBackend(self.loaded, base_name=cfg.model, adapter_dir=cfg.adapter_dir, max_batch=cfg.max_batch,
                            max_queue=64)
        self.context = self.loaded.model.config.max_position_embeddings
        self.sampling = dict(SAMPLING[False])
        self._started = False

    def start(self) -> None:
        if not self._started:
            self.hf.start()
            self._started = True

    def close(self) -> None:
        if self._started:
            self.hf.close()
            self._started = False

    def count_tokens(self, text: str) -> int:
        return len(self.loaded.tok.backend_tokenizer.encode(text, add_special_tokens=False).ids)

    # Per-client adapters live in the batcher's pool IN MEMORY (decrypted by the app, never on disk).
    def has_adapter(self, name: str) -> bool:
        return name in self.hf.pool.available()

    def add_adapter(self, name: str, config: dict, weights: bytes) -> None:
        self.hf.pool.register(name, config, weights)

    def forget_adapter(self, name: str) -> None:
        self.hf.pool.forget(name)

    def describe(self) -> dict:
        d = self.loaded.describe()
        return {"backend": self.name, "model": self.cfg.model, "device": d["device"], "dtype": d["dtype"]}

    async def stream(self, messages: list[dict], *, schema: dict | None = None, max_tokens: int = 512,
                     adapter: str | None = None, seed: int | None = None) -> AsyncIterator[tuple]:
        from psyassist.serve.jobs import Job, QueueFull

        self.start()
        prompt = self.loaded.renderer.inference_prompt(messages)
        ids = self.loaded.tok.backend_tokenizer.encode(prompt, add_special_tokens=False).ids
        room = self.context - len(ids)
        if room < 32:
            raise LLMError(f"the prompt is {len(ids)} tokens and the model's context is {self.context}: lower "
                           "context_tokens in the app settings")
        constraint = await asyncio.to_thread(self.hf.constraint, schema) if schema is not None else None
        job = Job(prompt_ids=ids, max_tokens=min(max_tokens, room), adapter=adapter, seed=seed,
                  constraint=constraint, **self.sampling).bind()
        try:
            self.hf.submit(job)
        except QueueFull as e:
            raise LLMError(f"the model is busy: {e}") from e
        try:
            while True:
                ev = await job.queue.get()
                if ev[0] == "error":
                    raise LLMError(ev[1])
                yield ev
                if ev[0] == "done":
                    return
        finally:
            job.cancel()  # the consumer left early (client gone, cancelled): free the row


class OpenAIEndpoint:
    name = "openai"

    def __init__(self, cfg: AppConfig):
        import httpx

        self.cfg = cfg
        self.base = cfg.endpoint.rstrip("/")
        key = os.environ.get(cfg.endpoint_api_key_env, "")
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.client = httpx.AsyncClient(base_url=self.base, headers=headers,
                                        timeout=httpx.Timeout(300.0, connect=10.0))
        self.sampling = dict(SAMPLING[False])
        self._uploaded: set[str] = set()

    def start(self) -> None:
        pass

    def close(self) -> None:
        try:
            asyncio.get_running_loop().create_task(self.client.aclose())
        except RuntimeError:
            asyncio.run(self.client.aclose())

    # Per-client adapters: uploaded into `psyassist serve`'s memory (PUT /psyassist/adapters/NAME) over the
    # endpoint's connection — loopback or TLS — and never written to its disk.  vLLM loads LoRA only
    # from a path, so with vLLM per-client adapters are not used (drafts fall back to the base model).
    def has_adapter(self, name: str) -> bool:
        return name in self._uploaded

    def add_adapter(self, name: str, config: dict, weights: bytes) -> None:
        import base64

        import httpx

        root = self.base.removesuffix("/v1")
        key = os.environ.get(self.cfg.endpoint_api_key_env, "")
        try:
            r = httpx.put(f"{root}/psyassist/adapters/{name}", timeout=120,
                          headers={"Authorization": f"Bearer {key}"} if key else {},
                          json={"config": config, "weights": base64.b64encode(weights).decode()})
        except httpx.HTTPError as e:
            raise LLMError(f"cannot hand the client's adapter to {root}: {e}") from e
        if r.status_code != 200:
            raise LLMError(f"{root} refused the client's adapter ({r.status_code}): {r.text[:200]}; drafts use "
                           "the base model (per-client adapters need psyassist serve with the HF backend)")
        self._uploaded.add(name)

    def forget_adapter(self, name: str) -> None:
        self._uploaded.discard(name)

    def count_tokens(self, text: str) -> int:
        """An estimate (the endpoint's tokenizer is not here): one token per CJK character, one per four others."""
        cjk = len(_CJK.findall(text))
        return cjk + (len(text) - cjk + 3) // 4

    def describe(self) -> dict:
        return {"backend": self.name, "model": self.cfg.model, "endpoint": self.base}

    async def stream(self, messages: list[dict], *, schema: dict | None = None, max_tokens: int = 512,
                     adapter: str | None = None, seed: int | None = None) -> AsyncIterator[tuple]:
        import httpx

        body = {"model": adapter or self.cfg.model, "messages": messages, "stream": True, "max_tokens": max_tokens,
                "stream_options": {"include_usage": True}, **self.sampling,
                "chat_template_kwargs": {"enable_thinking": False}}
        if seed is not None:
            body["seed"] = seed
        if schema is not None:
            body["response_format"] = {"type": "json_schema",
                                       "json_schema": {"name": "psyassist_note", "schema": schema, "strict": True}}
        finish, tokens = None, 0
        try:
            async with self.client.stream("POST", "/chat/completions", json=body) as r:
                if r.status_code != 200:
                    text = (await r.aread()).decode("utf-8", "replace")[:300]
                    raise LLMError(f"the model endpoint {self.base} answered {r.status_code}: {text}")
                async for line in r.aiter_lines():
                    if not line.startswith("data:"):
                        continue
                    data = line[5:].strip()
                    if data == "[DONE]":
                        break
                    try:
                        obj = json.loads(data)
                    except ValueError as e:
                        raise LLMError(f"the model endpoint sent a line that is not JSON: {data[:120]}") from e
                    if "error" in obj:
                        raise LLMError(f"the model endpoint failed: {obj['error'].get('message', obj['error'])}")
                    if obj.get("usage"):
                        tokens = obj["usage"].get("completion_tokens", tokens)
                    for ch in obj.get("choices") or []:
                        delta = (ch.get("delta") or {}).get("content")
                        if delta:
                            yield ("delta", delta)
                        finish = ch.get("finish_reason") or finish
        except httpx.HTTPError as e:
            raise LLMError(f"cannot reach the model endpoint {self.base}: {type(e).__name__}: {e}") from e
        yield ("done", finish or "stop", tokens)


def build_backend(cfg: AppConfig):
    return OpenAIEndpoint(cfg) if cfg.backend == "openai" else InProcess(cfg)
