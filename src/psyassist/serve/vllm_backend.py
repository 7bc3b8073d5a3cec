"""vLLM backend (GPU, optional): the same routes, adapters as vLLM multi-LoRA requests.

    pip install vllm && psyassist serve --model Qwen/Qwen3-1.7B --backend vllm --adapter-dir runs/ --max-adapters 4

For users who outgrow one process of the HF backend: vLLM's engine does continuous batching
and paged attention; each adapter in --adapter-dir becomes a `LoRARequest(name, id, path)`
(`enable_lora`, `max_loras` = --max-adapters: vLLM keeps that many on the GPU and swaps
least-recently-used ones itself; `max_num_seqs` = --max-batch).  Prompts are rendered and
tokenized here by the SAME ChatRenderer as training and sent as token ids, so vLLM never
applies a chat template of its own.  response_format becomes vLLM's structured outputs
(`SamplingParams(structured_outputs=StructuredOutputsParams(grammar=…))`, vllm>=0.10.2) with
the EBNF grammar that infer/grammar.py makes for the HF backend (compact JSON, xgrammar's
length-bounded strings fixed), so both backends allow the same replies and a schema xgrammar
cannot convert is a 400 before vLLM sees it.  Not measured yet: the gpu-marked
test in tests/test_serve_vllm.py has not run on a GPU machine in this project.
"""

from __future__ import annotations

import asyncio

from psyassist.errors import PsyassistError
from psyassist.optional import require
from psyassist.render import ChatRenderer, RenderOptions, load_tokenizer
from psyassist.serve.adapters import check_adapter_dir, discover
from psyassist.serve.jobs import Job, QueueFull

MAX_LORA_RANK = 64  # vLLM preallocates LoRA buffers for this rank; psyassist recipes use r ≤ 64
STRUCTURED_OUTPUTS_SINCE = "0.10.2"  # StructuredOutputsParams; the older GuidedDecodingParams is gone since 0.12


class VLLMBackend:
    name = "vllm"

    def __init__(self, cfg):
        require("vllm", "psyassist serve --backend vllm")
        from vllm import AsyncEngineArgs, AsyncLLMEngine

        from psyassist.models import resolve_model

        check_adapter_dir(cfg.adapter_dir)
        path, gguf = resolve_model(cfg.model)
        if gguf:
            raise PsyassistError("--backend vllm needs a model directory or hub id, not a GGUF file")
        self.tok = load_tokenizer(str(path))
        renderer = ChatRenderer(self.tok, RenderOptions(enable_thinking=False))
        self.stop_ids = sorted({*renderer.end_of_turn_ids(), *([self.tok.eos_token_id]
                                                               if self.tok.eos_token_id is not None else [])})
        self.base_name = cfg.base_name
        self.adapter_dir = cfg.adapter_dir
        self.max_batch, self.max_queue = cfg.max_batch, cfg.max_queue
        args = AsyncEngineArgs(model=str(path), tokenizer=str(path), dtype=_dtype(cfg.dtype),
                               max_num_seqs=cfg.max_batch, enable_lora=cfg.adapter_dir is not None,
                               max_loras=cfg.max_adapters, max_lora_rank=MAX_LORA_RANK)
        self.engine = AsyncLLMEngine.from_engine_args(args)
        self.context = _context(path)
        self.lora_ids: dict[str, int] = {}  # adapter name → vLLM's integer id, stable for the process
        self.running = 0
        self.stats = {"requests": 0, "rows_finished": 0, "rows_cancelled": 0, "tokens_generated": 0}

    def start(self) -> None:
        pass

    def close(self) -> None:
        self.engine.shutdown()

    def adapters(self) -> dict:
        return discover(self.adapter_dir)

    def health(self) -> dict:
        return {"backend": self.name, "active_rows": self.running, "max_batch": self.max_batch,
                "max_queue": self.max_queue, **self.stats}

    def constraint(self, schema: dict | None):
        """response_format as vLLM's StructuredOutputsParams (None = any JSON object); PsyassistError if unusable.

        The route calls it in a thread: converting a big schema may take a while."""
        import vllm
        from packaging.version import Version

        from psyassist.infer.grammar import json_grammar

        if Version(vllm.__version__) < Version(STRUCTURED_OUTPUTS_SINCE):
            raise PsyassistError(f"response_format needs vllm>={STRUCTURED_OUTPUTS_SINCE} on --backend vllm; this server "
                                 f"runs vllm {vllm.__version__} (pip install -U 'vllm>={STRUCTURED_OUTPUTS_SINCE}')")
        from vllm.sampling_params import StructuredOutputsParams

        # The grammar, not json=schema: vLLM's xgrammar would let control characters into length-bounded
        # strings (see infer/grammar.py), and its json_object=True also allows arrays and any whitespace.
        return StructuredOutputsParams(grammar=json_grammar(schema))

    def submit(self, job: Job) -> None:
        if self.running >= self.max_batch + self.max_queue:  # vLLM queues internally; bound it the same way
            raise QueueFull(self.running - self.max_batch, 1)
        self.running += 1
        self.stats["requests"] += 1
        job.loop.create_task(self._run(job))

    async def _run(self, job: Job) -> None:
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt
        from vllm.lora.request import LoRARequest

        structured = {} if job.constraint is None else {"structured_outputs": job.constraint}  # vllm<0.10.2 lacks it
        params = SamplingParams(temperature=job.temperature, top_p=job.top_p, top_k=job.top_k or -1,
                                max_tokens=job.max_tokens, seed=job.seed, stop=job.stop or None,
                                stop_token_ids=self.stop_ids, skip_special_tokens=True, **structured)
        lora = None
        if job.adapter is not None:
            lid = self.lora_ids.setdefault(job.adapter, len(self.lora_ids) + 1)
            lora = LoRARequest(job.adapter, lid, str(self.adapters()[job.adapter]))
        sent = 0
        try:
            async for out in self.engine.generate(TokensPrompt(prompt_token_ids=job.prompt_ids), params, job.id,
                                                  lora_request=lora):
                if job.cancelled.is_set():
                    await self.engine.abort(job.id)
                    self.stats["rows_cancelled"] += 1
                    return
                c = out.outputs[0]
                if len(c.text) > sent:
                    job.emit(("delta", c.text[sent:]))
                    sent = len(c.text)
                if out.finished:
                    self.stats["rows_finished"] += 1
                    self.stats["tokens_generated"] += len(c.token_ids)
                    job.emit(("done", "length" if c.finish_reason == "length" else "stop", len(c.token_ids)))
        except asyncio.CancelledError:
            await self.engine.abort(job.id)
            raise
        except Exception as e:  # noqa: BLE001 — the request fails, the server stays up
            job.emit(("error", f"vLLM generation failed: {type(e).__name__}: {e}"))
        finally:
            self.running -= 1


def _dtype(dtype: str) -> str:
    return {"auto": "auto", "bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}.get(dtype, dtype)


def _context(path) -> int:
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(str(path)).max_position_embeddings


def build(cfg) -> VLLMBackend:
    if cfg.device not in (None, "cuda") and not str(cfg.device).startswith("cuda"):
        raise PsyassistError(f"--backend vllm runs on CUDA GPUs; --device {cfg.device} is not supported")
    return VLLMBackend(cfg)
