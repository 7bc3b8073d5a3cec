"""The OpenAI-compatible HTTP API: /v1/chat/completions (SSE or JSON), /v1/models, /health.

    psyassist serve --model default --adapter-dir runs/ --port 8000
    curl -s localhost:8000/v1/chat/completions -H 'content-type: application/json' \
         -d '{"model": "default", "messages": [{"role": "user", "content": "I cannot sleep."}]}'

Every prompt is rendered by the SAME ChatRenderer as training (pitfalls 1, 2); generation
stops on the template's end-of-turn token and eos.  Sampling defaults to the model card's
recommendation for the thinking mode (`chat_template_kwargs: {"enable_thinking": true}`
switches Qwen3 thinking on, as in vLLM); temperature 0 (greedy) is allowed here because API
users ask for it, although chat and generate refuse it unless forced.

`response_format` ({"type": "json_schema", "json_schema": {"name": …, "schema": {…}}} or
{"type": "json_object"}) constrains decoding to that JSON: the backend compiles the schema
(`backend.constraint`, off the event loop and off the decode worker) and masks every step.

Every request's last user message goes through the crisis check (issue 6): the reply still
comes; a flagged request gets the header `X-Psyassist-Crisis: urgent|concern` and a
top-level `psyassist_safety` {level, categories, constructs, region, resources, guidance} in the
response (streaming: in a last chunk before `data: [DONE]`).  With --crisis-guidance (the
default, issue 13) a flagged request's system message also carries the crisis-response
instruction (`safety.guidance.crisis_guidance`) for that reply; `guidance: true` says so, and an
instruction that would push the prompt past --max-prompt-tokens or the context is left out
(`guidance: false`, `guidance_note`) rather than refusing a crisis message.  Errors are OpenAI-shaped JSON {"error": {message, type,
code}}: 400 bad request, 401 API key, 404 unknown model, 429 queue full (Retry-After), 504
timeout; a bad request never yields 500.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hmac
import json
import math
import os
import threading
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from jinja2 import TemplateError as JinjaTemplateError
from pydantic import BaseModel, ConfigDict
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from psyassist.errors import MissingDependency, PsyassistError
from psyassist.infer.engine import SAMPLING
from psyassist.render import ChatRenderer, RenderOptions
from psyassist.safety.crisis import detect
from psyassist.safety.guidance import crisis_guidance, message_lang, with_guidance
from psyassist.safety.resources import attach_resources, resources_for
from psyassist.serve.jobs import Job, QueueFull

ROLES = {"system", "user", "assistant", "developer"}  # developer = OpenAI's newer name for system
DEFAULT_MAX_TOKENS = 512  # when a request gives none (engine.Sampling's default), capped by --max-tokens


@dataclass
class ServeConfig:
    model: str = "default"
    adapter_dir: Path | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    backend: str = "hf"  # hf | vllm
    max_batch: int = 8
    max_adapters: int = 4
    max_queue: int = 64  # waiting requests (not yet decoding) before 429
    max_prompt_tokens: int = 4096
    max_tokens: int = 1024  # cap on a request's max_tokens
    request_timeout: float = 300.0  # seconds from arrival to the last token
    api_keys: list[str] = field(default_factory=list)
    region: str = "intl"
    safety_log: Path | None = None
    privacy: bool = False
    crisis_guidance: bool = True  # a flagged request's system message carries the crisis-response instruction
    embed_model: str | None = None  # /v1/embeddings: 'default' (packaged all-MiniLM-L6-v2) or a sentence-transformers dir
    dtype: str = "auto"
    device: str | None = None
    batch_window: float = 0.01  # seconds an idle worker waits for more requests to batch with the first

    def __post_init__(self):
        for name in ("max_batch", "max_adapters", "max_prompt_tokens", "max_tokens"):
            if getattr(self, name) < 1:
                raise PsyassistError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if self.max_queue < 0 or self.request_timeout <= 0:
            raise PsyassistError("--max-queue must be ≥ 0 and --request-timeout > 0")
        if self.backend not in ("hf", "vllm"):
            raise PsyassistError(f"--backend must be hf or vllm, got '{self.backend}'")
        resources_for(self.region)  # an unknown region fails at start, not at the first crisis

    @property
    def base_name(self) -> str:
        """The base model's id in the API: 'default', a directory's name, or the hub id."""
        p = Path(self.model)
        return p.name if p.exists() else self.model


class APIError(Exception):
    def __init__(self, status: int, message: str, code: str, *, type_: str = "invalid_request_error",
                 param: str | None = None, headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.code, self.type, self.param = status, message, code, type_, param
        self.headers = headers or {}

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: str
    content: str | list[dict] | None = None


class ChatRequest(BaseModel):
    """The fields psyassist reads; other OpenAI fields are accepted and ignored (tools are refused)."""
    model_config = ConfigDict(extra="allow")
    model: str
    messages: list[ChatMessage]
    stream: bool = False
    stream_options: dict | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None  # vLLM's extra field; 0 or -1 = no top-k cut
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    seed: int | None = None
    stop: str | list[str] | None = None
    n: int | None = None
    chat_template_kwargs: dict | None = None  # {"enable_thinking": bool}, as vLLM takes it
    response_format: dict | None = None  # {"type": "text" | "json_object" | "json_schema", …}


class SafetyLog:
    """One JSON line per flagged request; privacy mode keeps no text (as chat's --safety-log)."""

    def __init__(self, path: Path | None, privacy: bool, region: str):
        self.path, self.privacy, self.region = path, privacy, region
        self.lock = threading.Lock()

    def write(self, det, text: str, request_id: str, model: str, guided: bool = False) -> None:
        if self.path is None:
            return
        event = {"time": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "request": request_id,
                 "region": self.region, "model": model, "guidance": guided, **det.to_dict(include_text=not self.privacy)}
        if not self.privacy:
            event["text"] = text
        with self.lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a", encoding="utf-8") as f:  # one write per event
                f.write(json.dumps(event, ensure_ascii=False) + "\n")


class EmbeddingsRequest(BaseModel):
    model: str
    input: str | list[str] | list[int] | list[list[int]]
    encoding_format: str = "float"  # float | base64 (little-endian float32, as OpenAI's clients decode it)
    dimensions: int | None = None
    user: str | None = None


MAX_EMBED_INPUTS = 2048  # OpenAI's own limit per request


def embed_model_id(embed_model: str) -> str:
    """The API id of the embedding model: 'all-MiniLM-L6-v2' for the packaged default, else the directory's name."""
    return "all-MiniLM-L6-v2" if embed_model == "default" else Path(embed_model).name


def create_app(cfg: ServeConfig, backend, embedder=None) -> FastAPI:
    """The FastAPI app around a started-on-startup backend (HFBackend or VLLMBackend).

    `embedder` (a `psyassist.kb.embed` embedder, loaded by run_server from --embed-model) serves
    /v1/embeddings; without one that route answers 404 with how to turn it on."""
    keys = [k for k in cfg.api_keys if k]
    renderers = {t: ChatRenderer(backend.tok, RenderOptions(enable_thinking=t)) for t in (False, True)}
    safety_log = SafetyLog(cfg.safety_log, cfg.privacy, cfg.region)

    @asynccontextmanager
    async def lifespan(app):
        backend.start()
        yield
        backend.close()

    app = FastAPI(title="psyassist serve", version="1", lifespan=lifespan,
                  description="OpenAI-compatible chat completions for a base model and its LoRA adapters.")

    @app.exception_handler(APIError)
    async def _api_error(request: Request, e: APIError):
        return JSONResponse(e.body(), status_code=e.status, headers=e.headers)

    @app.exception_handler(RequestValidationError)
    async def _bad_request(request: Request, e: RequestValidationError):
        errs = e.errors()
        if any(err.get("type") == "json_invalid" for err in errs):
            msg = "the request body is not valid JSON: " + "; ".join(
                str(err.get("ctx", {}).get("error", err.get("msg"))) for err in errs)
        else:
            msg = "invalid request: " + "; ".join(
                f"{'.'.join(str(p) for p in err.get('loc', ())[1:]) or 'body'}: {err.get('msg')}" for err in errs[:5])
        return JSONResponse(APIError(400, msg, "invalid_request").body(), status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, e: StarletteHTTPException):
        return JSONResponse(APIError(e.status_code, str(e.detail), "http_error").body(), status_code=e.status_code,
                            headers=e.headers)

    def check_key(request: Request) -> None:
        if not keys:
            return
        auth = request.headers.get("authorization", "")
        given = auth[7:].strip() if auth.lower().startswith("bearer ") else ""
        if not any(hmac.compare_digest(given.encode(), k.encode()) for k in keys):
            raise APIError(401, "missing or wrong API key: send 'Authorization: Bearer KEY' with a key given to "
                                "--api-key or PSYASSIST_API_KEYS", "invalid_api_key")

    def model_ids() -> list[str]:
        return [backend.base_name] + [n for n, p in backend.adapters().items() if n != backend.base_name and p != "memory"]

    embed_id = embed_model_id(cfg.embed_model) if embedder is not None and cfg.embed_model else None
    embed_lock = threading.Lock()  # one encode at a time: the model is shared, and its tokenizer is not thread-safe

    @app.get("/health")
    async def health() -> dict:
        """Liveness and batching counters (no API key needed)."""
        return {"status": "ok", "model": backend.base_name, **backend.health()}

    @app.get("/v1/models")
    async def list_models(request: Request) -> dict:
        check_key(request)
        now = int(time.time())
        data = [{"id": backend.base_name, "object": "model", "created": now, "owned_by": "psyassist",
                 "root": cfg.model, "parent": None}]
        data += [{"id": n, "object": "model", "created": now, "owned_by": "psyassist", "root": str(p),
                  "parent": backend.base_name} for n, p in backend.adapters().items()
                 if n != backend.base_name and p != "memory"]  # in-memory adapters are not listed
        if embed_id:
            data.append({"id": embed_id, "object": "model", "created": now, "owned_by": "psyassist",
                         "root": cfg.embed_model, "parent": None})
        return {"object": "list", "data": data}

    @app.post("/v1/embeddings")
    async def embeddings(body: EmbeddingsRequest, request: Request) -> dict:
        """OpenAI-compatible embeddings from the --embed-model (L2-normalized float32 vectors)."""
        check_key(request)
        if embed_id is None:
            raise APIError(404, "this server has no embedding model: start it with --embed-model default (the "
                                "packaged all-MiniLM-L6-v2) or --embed-model DIR (a sentence-transformers directory)",
                           "model_not_found", param="model")
        if body.model != embed_id:
            raise APIError(404, f"the embedding model is '{embed_id}', not '{body.model}'", "model_not_found",
                           param="model")
        texts = [body.input] if isinstance(body.input, str) else list(body.input)
        if not texts or not all(isinstance(t, str) for t in texts):
            raise APIError(400, "input must be a non-empty string or list of strings (token arrays are not "
                                "accepted: this server tokenizes with the embedding model's own tokenizer)",
                           "invalid_input", param="input")
        if len(texts) > MAX_EMBED_INPUTS:
            raise APIError(400, f"at most {MAX_EMBED_INPUTS} inputs per request, got {len(texts)}", "too_many_inputs",
                           param="input")
        if body.encoding_format not in ("float", "base64"):
            raise APIError(400, f"encoding_format must be float or base64, got '{body.encoding_format}'",
                           "invalid_encoding_format", param="encoding_format")
        if body.dimensions is not None and body.dimensions != embedder.dim:
            raise APIError(400, f"this model's vectors have {embedder.dim} dimensions; it cannot shorten them to "
                                f"{body.dimensions}", "invalid_dimensions", param="dimensions")
        empty = [i for i, t in enumerate(texts) if not t.strip()]
        if empty:
            raise APIError(400, f"input[{empty[0]}] is empty", "invalid_input", param="input")

        def encode():
            with embed_lock:
                counts = embedder.count_tokens(texts)
                # Silent truncation would embed a different text than the caller sent: refuse instead.
                over = [(i, n) for i, n in enumerate(counts) if n > embedder.max_tokens]
                if over:
                    return counts, over, None
                return counts, [], embedder.encode(texts)

        counts, over, vectors = await run_in_threadpool(encode)
        if over:
            i, n = over[0]
            raise APIError(400, f"input[{i}] is {n} tokens; this embedding model reads at most {embedder.max_tokens}"
                                f" (split the text; {len(over)} input(s) are too long)", "input_too_long",
                           param="input")
        if body.encoding_format == "base64":
            import base64

            import numpy as np

            rows = [base64.b64encode(np.asarray(v, dtype="<f4").tobytes()).decode() for v in vectors]
        else:
            rows = [[float(x) for x in v] for v in vectors]
        total = int(sum(counts))
        return {"object": "list", "model": embed_id,
                "data": [{"object": "embedding", "index": i, "embedding": r} for i, r in enumerate(rows)],
                "usage": {"prompt_tokens": total, "total_tokens": total}}

    @app.put("/psyassist/adapters/{name}")
    async def put_adapter(name: str, request: Request) -> dict:
        """psyassist extension: register a LoRA adapter IN MEMORY (config + base64 safetensors), never on disk.
        The counselor app hands per-client adapters over this way (decrypted by the app, over loopback or
        TLS).  Not listed in /v1/models; requests name it as their model.  HF backend only."""
        import base64

        check_key(request)
        if not hasattr(backend, "pool"):
            raise APIError(501, "in-memory adapters need the HF backend (vLLM loads LoRA only from a path)",
                           "unsupported")
        if not name or len(name) > 64 or not all(ch.isalnum() or ch in "-_" for ch in name):
            raise APIError(400, "adapter names are 1-64 letters, digits, '-' or '_'", "bad_name")
        try:
            body = await request.json()
            config, weights = body["config"], base64.b64decode(body["weights"], validate=True)
        except (ValueError, KeyError, TypeError) as e:
            raise APIError(400, f"expected JSON {{config, weights (base64 safetensors)}}: {e}", "bad_adapter") from e
        if not isinstance(config, dict) or config.get("peft_type", "LORA") != "LORA":
            raise APIError(400, "config must be a LoRA adapter_config object", "bad_adapter")
        backend.pool.register(name, config, weights)
        return {"name": name, "bytes": len(weights)}

    @app.post("/v1/chat/completions")
    async def chat_completions(body: ChatRequest, request: Request):
        check_key(request)
        arrived = time.monotonic()
        if body.model == backend.base_name:
            adapter = None
        elif body.model in backend.adapters():
            adapter = body.model
        else:
            raise APIError(404, f"model '{body.model}' not found; available: {', '.join(model_ids())}",
                           "model_not_found", param="model")
        messages = _messages(body)
        if (body.model_extra or {}).get("tools"):
            raise APIError(400, "tool calling is not supported by psyassist serve", "unsupported", param="tools")
        if body.n not in (None, 1):
            raise APIError(400, f"n must be 1 (one reply per request), got {body.n}", "unsupported", param="n")
        thinking = bool((body.chat_template_kwargs or {}).get("enable_thinking", False))
        job = _job(body, thinking, cfg, adapter)
        last_user = next(m["content"] for m in reversed(messages) if m["role"] == "user")
        det = detect(last_user)
        guidance = crisis_guidance(det, cfg.region, lang=message_lang(last_user)) if cfg.crisis_guidance else ""
        guidance_note = None
        try:
            prompt = renderers[thinking].inference_prompt(with_guidance(messages, guidance))
        except (PsyassistError, JinjaTemplateError) as e:  # e.g. a template that demands alternating roles
            raise APIError(400, f"cannot render these messages with the chat template: {e}", "bad_messages",
                           param="messages") from e
        job.prompt_ids = backend.tok.backend_tokenizer.encode(prompt, add_special_tokens=False).ids
        n = len(job.prompt_ids)
        if guidance and (n > cfg.max_prompt_tokens or n + job.max_tokens > backend.context):
            # the instruction must never turn a crisis message into a 400: the request as sent is checked below
            guidance_note = f"left out: with it the prompt would be {n} tokens, over this server's limits"
            guidance, prompt = "", renderers[thinking].inference_prompt(messages)
            job.prompt_ids = backend.tok.backend_tokenizer.encode(prompt, add_special_tokens=False).ids
            n = len(job.prompt_ids)
        if n > cfg.max_prompt_tokens:
            raise APIError(400, f"the prompt is {n} tokens; this server allows {cfg.max_prompt_tokens} "
                                "(--max-prompt-tokens). Send fewer or shorter messages.", "prompt_too_long",
                           param="messages")
        if n + job.max_tokens > backend.context:
            raise APIError(400, f"the prompt ({n} tokens) + max_tokens ({job.max_tokens}) exceeds the model's "
                                f"{backend.context}-token context", "context_length_exceeded", param="max_tokens")
        constrained, schema = _response_format(body.response_format)
        if constrained:
            try:  # a thread: a big schema may take seconds to compile; neither requests nor decoding wait
                job.constraint = await asyncio.to_thread(backend.constraint, schema)
            except MissingDependency as e:
                raise APIError(501, f"response_format is not available on this server: {e}", "unsupported",
                               type_="server_error", param="response_format") from e
            except PsyassistError as e:
                raise APIError(400, f"response_format: {e}", "bad_response_format", param="response_format") from e
        safety = None
        headers = {}
        if det.flagged:
            full = attach_resources(det, cfg.region)
            safety = {"level": det.level, "categories": list(det.categories), "constructs": list(det.constructs),
                      "region": cfg.region, "resources": full["resources"], "guidance": bool(guidance),
                      **({"guidance_note": guidance_note} if guidance_note else {})}
            headers["X-Psyassist-Crisis"] = det.level
            safety_log.write(det, last_user, job.id, body.model, guided=bool(guidance))
        job.bind()
        try:
            backend.submit(job)
        except QueueFull as e:
            raise APIError(429, str(e), "queue_full", type_="rate_limit_error",
                           headers={"Retry-After": str(e.retry_after)}) from e
        deadline = arrived + cfg.request_timeout
        rid, created = f"chatcmpl-{job.id}", int(time.time())
        if body.stream:
            usage = bool((body.stream_options or {}).get("include_usage"))
            return StreamingResponse(_sse(job, deadline, rid, created, body.model, n, usage, safety),
                                     media_type="text/event-stream", headers=headers)
        text, finish, completion = [], None, 0
        gone = asyncio.ensure_future(_watch_disconnect(request))
        try:
            while finish is None:
                ev = await _next(job, deadline, gone)
                if ev is None:  # the client hung up: free its row now, nobody reads the answer
                    return Response(status_code=499)
                if ev[0] == "delta":
                    text.append(ev[1])
                elif ev[0] == "done":
                    finish, completion = ev[1], ev[2]
                else:
                    raise APIError(500, ev[1], "generation_failed", type_="server_error")
        except asyncio.TimeoutError as e:
            raise APIError(504, f"no complete reply within --request-timeout {cfg.request_timeout:g} s; "
                                "ask for fewer max_tokens or retry later", "timeout", type_="timeout") from e
        finally:
            gone.cancel()
            job.cancel()  # no-op when finished; frees the row when the handler is left early
        out = {"id": rid, "object": "chat.completion", "created": created, "model": body.model,
               "choices": [{"index": 0, "message": {"role": "assistant", "content": "".join(text)},
                            "finish_reason": finish, "logprobs": None}],
               "usage": {"prompt_tokens": n, "completion_tokens": completion, "total_tokens": n + completion}}
        if safety is not None:
            out["psyassist_safety"] = safety
        return JSONResponse(out, headers=headers)

    return app


def _messages(body: ChatRequest) -> list[dict]:
    """[{role, content}] with text content; 400 naming the message and field otherwise."""
    if not body.messages:
        raise APIError(400, "messages must hold at least one message", "bad_messages", param="messages")
    out = []
    for i, m in enumerate(body.messages):
        if m.role not in ROLES:
            raise APIError(400, f"messages[{i}].role must be one of {sorted(ROLES)}, got {m.role!r}", "bad_role",
                           param=f"messages[{i}].role")
        content = m.content
        if isinstance(content, list):  # OpenAI content parts: text only
            if not all(isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str)
                       for p in content):
                raise APIError(400, f"messages[{i}].content: only text parts ({{'type': 'text', 'text': …}}) are "
                                    "supported", "bad_content", param=f"messages[{i}].content")
            content = "".join(p["text"] for p in content)
        if content is None:
            raise APIError(400, f"messages[{i}].content is missing", "bad_content", param=f"messages[{i}].content")
        out.append({"role": "system" if m.role == "developer" else m.role, "content": content})
    if out[-1]["role"] != "user":
        raise APIError(400, f"the last message must be the user's (got {out[-1]['role']!r}): the server writes the "
                            "next assistant reply", "bad_messages", param="messages")
    return out


def _response_format(fmt: dict | None) -> tuple[bool, dict | None]:
    """(constrained, schema) from OpenAI's response_format; schema None = any JSON object. 400 otherwise.

    `strict` is accepted and ignored: every schema here is enforced token by token."""
    kind = "text" if fmt is None else fmt.get("type")
    if kind == "text":
        return False, None
    if kind == "json_object":
        return True, None
    if kind == "json_schema":
        spec = fmt.get("json_schema")
        if not isinstance(spec, dict) or not isinstance(spec.get("schema"), dict):
            got = spec.get("schema") if isinstance(spec, dict) else spec
            raise APIError(400, "response_format.json_schema.schema must be a JSON schema object "
                                f"({{'name': …, 'schema': {{'type': 'object', …}}}}), got {json.dumps(got)[:80]}",
                           "bad_response_format", param="response_format")
        return True, spec["schema"]
    raise APIError(400, f"response_format.type must be 'text', 'json_object' or 'json_schema', got {kind!r}",
                   "bad_response_format", param="response_format")


def _job(body: ChatRequest, thinking: bool, cfg: ServeConfig, adapter: str | None) -> Job:
    """Sampling from the request over the mode's recommended defaults; 400 on values out of range."""
    rec = SAMPLING[thinking]
    t = rec["temperature"] if body.temperature is None else body.temperature
    top_p = rec["top_p"] if body.top_p is None else body.top_p
    top_k = rec["top_k"] if body.top_k is None else body.top_k
    if not (math.isfinite(t) and 0 <= t <= 2):
        raise APIError(400, f"temperature must be in [0, 2], got {t}", "bad_sampling", param="temperature")
    if not (math.isfinite(top_p) and 0 < top_p <= 1):
        raise APIError(400, f"top_p must be in (0, 1], got {top_p}", "bad_sampling", param="top_p")
    if top_k < -1:
        raise APIError(400, f"top_k must be ≥ 0 (or -1 for none), got {top_k}", "bad_sampling", param="top_k")
    asked = body.max_completion_tokens if body.max_completion_tokens is not None else body.max_tokens
    if asked is not None and not 1 <= asked <= cfg.max_tokens:
        raise APIError(400, f"max_tokens must be between 1 and {cfg.max_tokens} (--max-tokens), got {asked}",
                       "max_tokens_too_large" if asked > cfg.max_tokens else "bad_max_tokens", param="max_tokens")
    if body.seed is not None and not 0 <= body.seed < 2**63:
        raise APIError(400, f"seed must be in [0, 2^63), got {body.seed}", "bad_seed", param="seed")
    stop = [body.stop] if isinstance(body.stop, str) else list(body.stop or [])
    if len(stop) > 4 or any(not s for s in stop):
        raise APIError(400, "stop takes up to 4 non-empty strings", "bad_stop", param="stop")
    return Job(prompt_ids=[], max_tokens=asked or min(DEFAULT_MAX_TOKENS, cfg.max_tokens), temperature=t,
               top_p=top_p, top_k=max(top_k, 0), seed=body.seed, stop=stop, adapter=adapter)


async def _next(job: Job, deadline: float, gone: asyncio.Task | None = None) -> tuple | None:
    """The job's next event; None when `gone` (a _watch_disconnect task) finished first.

    A streaming response learns of a disconnect from Starlette (the generator is cancelled); a
    non-streaming handler would only learn it when it writes the answer, so it waits on the
    job and on the client's `http.disconnect` at once: a client that gives up frees its row.
    """
    left = deadline - time.monotonic()
    if left <= 0:
        raise asyncio.TimeoutError
    if gone is None:
        return await asyncio.wait_for(job.queue.get(), left)
    get = asyncio.ensure_future(job.queue.get())
    done, _ = await asyncio.wait({get, gone}, timeout=left, return_when=asyncio.FIRST_COMPLETED)
    if get in done:
        return get.result()
    get.cancel()
    if gone in done:
        return None
    raise asyncio.TimeoutError


async def _watch_disconnect(request: Request) -> None:
    """Returns when the client disconnects (the body is already read, so nothing else arrives)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


def _chunk(rid: str, created: int, model: str, delta: dict | None, finish: str | None = None, **extra) -> str:
    choices = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}]
    obj = {"id": rid, "object": "chat.completion.chunk", "created": created, "model": model, "choices": choices,
           **extra}
    return f"data: {json.dumps(obj, ensure_ascii=False)}\n\n"


async def _sse(job: Job, deadline: float, rid: str, created: int, model: str, prompt_tokens: int,
               include_usage: bool, safety: dict | None):
    """SSE lines: role, content deltas, the finish chunk, [usage], [psyassist_safety], [DONE].

    Leaving this generator early (the client disconnected, Starlette cancels it) cancels the
    job: the worker drops its row at the next step.
    """
    try:
        yield _chunk(rid, created, model, {"role": "assistant", "content": ""})
        while True:
            try:
                ev = await _next(job, deadline)
            except asyncio.TimeoutError:
                err = APIError(504, "no complete reply within --request-timeout; the stream ends here", "timeout",
                               type_="timeout")
                yield f"data: {json.dumps(err.body())}\n\n"
                break
            if ev[0] == "delta":
                yield _chunk(rid, created, model, {"content": ev[1]})
            elif ev[0] == "done":
                yield _chunk(rid, created, model, {}, ev[1])
                if include_usage:
                    yield _chunk(rid, created, model, None, usage={
                        "prompt_tokens": prompt_tokens, "completion_tokens": ev[2],
                        "total_tokens": prompt_tokens + ev[2]})
                break
            else:
                yield f"data: {json.dumps(APIError(500, ev[1], 'generation_failed', type_='server_error').body())}\n\n"
                break
        if safety is not None:
            yield _chunk(rid, created, model, None, psyassist_safety=safety)
        yield "data: [DONE]\n\n"
    finally:
        job.cancel()


def api_keys_from_env(given: list[str]) -> list[str]:
    """--api-key values plus the comma list in PSYASSIST_API_KEYS."""
    env = [k.strip() for k in os.environ.get("PSYASSIST_API_KEYS", "").split(",") if k.strip()]
    return [*given, *env]


def build_backend(cfg: ServeConfig):
    if cfg.backend == "vllm":
        from psyassist.serve.vllm_backend import build as build_vllm

        return build_vllm(cfg)
    from psyassist.serve.batcher import build as build_hf

    return build_hf(cfg)


def run_server(cfg: ServeConfig) -> None:
    """`psyassist serve`: load the model, then serve until Ctrl-C."""
    from psyassist.optional import require
    from psyassist.ui import console

    uvicorn = require("uvicorn", "psyassist serve")
    backend = build_backend(cfg)
    embedder = None
    if cfg.embed_model:
        from psyassist.kb.embed import load_embedder

        embedder = load_embedder(cfg.embed_model)
    app = create_app(cfg, backend, embedder)
    models = ", ".join([backend.base_name, *backend.adapters()])
    if embedder is not None:
        models += f" · embeddings: {embed_model_id(cfg.embed_model)}"
    console.print(f"[bold]psyassist serve[/] · {cfg.backend} · models: {models} · http://{cfg.host}:{cfg.port}/v1 "
                  f"· max batch {cfg.max_batch} · API keys {'on' if cfg.api_keys else 'off'} · crisis resources: "
                  f"{cfg.region} · crisis guidance {'on' if cfg.crisis_guidance else 'off'}", highlight=False)
    uvicorn.run(app, host=cfg.host, port=cfg.port, log_level="info")
