"""HF backend: one worker thread owns the model and decodes every running request in ONE batch.

    psyassist serve --model default --max-batch 8

Continuous batching at step boundaries, by hand (no `model.generate`):
- Requests wait in a queue.  When idle, the worker waits for the first one, then
  `batch_window` seconds (10 ms) for more, and admits up to --max-batch.
- Admitted prompts are left-padded to a common width and prefilled in one forward with a
  fresh KV cache (positions count real tokens only, so padding changes no row's numbers).
- Each later step feeds every running row its last token in one forward
  (`[rows, 1]` ids, the mask grown by one column, per-row position ids).
- Between two steps, waiting requests JOIN the running batch: they are prefilled on their
  own, then the two caches are left-padded to the same length (zero keys/values under a zero
  mask) and concatenated along the batch dimension.
- A row that ends (end of turn, eos, a stop string, max_tokens) or whose client went away
  (`Job.cancelled`) is removed from the cache, mask and ids at once, and the columns that
  are padding for every remaining row are trimmed, so it stops costing compute.
- Sampling is per row (temperature 0 = greedy, top_k, top_p) with a per-row torch.Generator
  seeded from the request's seed: a seeded request samples the same text alone or batched.
- Adapters are per row: PEFT's mixed-adapter batch (`adapter_names=[...]`, "__base__" for
  the base model) in every forward.
- response_format is per row: a row whose job carries a JSON constraint (infer/grammar.py,
  compiled by `constraint()` on the route's thread, never here) gets the grammar's token mask
  on its logits before sampling, at the prefill's token as at every step, and its matcher
  accepts each picked token; unconstrained rows in the same batch are untouched.

Counters in `health()` (/health) show what happened: forward_calls, prefill_calls,
decode_steps, rows_admitted/finished/cancelled, max_rows_in_forward, active_rows, queued.
"""

from __future__ import annotations

import math
import threading
import time
import traceback
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
from transformers import DynamicCache

from psyassist.errors import PsyassistError
from psyassist.infer.engine import Loaded, pad_id
from psyassist.serve.adapters import AdapterPool
from psyassist.serve.jobs import Job, QueueFull
from psyassist.ui import warn

if TYPE_CHECKING:
    from psyassist.infer.grammar import JsonCompiler, JsonConstraint, JsonState


@dataclass
class Row:
    job: Job
    gen: torch.Generator
    tokens: list[int] = field(default_factory=list)  # generated, without the end-of-turn token
    n_generated: int = 0  # sampled tokens, the end-of-turn token included (usage.completion_tokens)
    sent: int = 0  # characters of reply text already emitted
    finish: str | None = None  # "stop" | "length" | "cancelled" | "error"
    grammar: JsonState | None = None  # response_format: masks this row's logits, accepts its tokens


@dataclass
class Batch:
    rows: list[Row]
    cache: DynamicCache
    mask: torch.Tensor  # [rows, cache length]: 1 real token, 0 left padding
    pos: torch.Tensor  # [rows]: position id of the next token fed (= real tokens so far)
    next_ids: torch.Tensor | None = None  # [rows, 1]: sampled last step, not yet in the cache


class HFBackend:
    name = "hf"

    def __init__(self, loaded: Loaded, *, base_name: str, adapter_dir=None, max_batch: int = 8,
                 max_adapters: int = 4, max_queue: int = 64, batch_window: float = 0.01):
        if max_batch < 1 or max_queue < 0:
            raise PsyassistError(f"--max-batch must be ≥ 1 and --max-queue ≥ 0, got {max_batch} and {max_queue}")
        self.loaded = loaded
        self.tok = loaded.tok
        self.base_name = base_name
        self.context = loaded.model.config.max_position_embeddings
        self.pool = AdapterPool(loaded.model, adapter_dir, max_adapters)
        self.device = next(loaded.model.parameters()).device
        self.stop_ids = set(loaded.stop_ids)
        self.pad = pad_id(loaded)
        self.max_batch, self.max_queue, self.window = max_batch, max_queue, batch_window
        self.json: JsonCompiler | None = None  # built at the first response_format request
        self.json_lock = threading.Lock()
        self.pending: deque[Job] = deque()
        self.cv = threading.Condition()
        self.active_rows = 0
        self.closing = False
        self.recent_secs: deque[float] = deque(maxlen=32)  # request durations, for Retry-After
        self.stats = {k: 0 for k in ("forward_calls", "prefill_calls", "decode_steps", "rows_admitted",
                                     "rows_finished", "rows_cancelled", "rows_failed", "tokens_generated",
                                     "max_rows_in_forward")}
        self.thread = threading.Thread(target=self._run, name="psyassist-serve-worker", daemon=True)

    # --- called from the server's event loop ----------------------------------------------------

    def start(self) -> None:
        self.thread.start()

    def close(self) -> None:
        with self.cv:
            self.closing = True
            self.cv.notify_all()
        self.thread.join(timeout=10)

    def adapters(self) -> dict:
        return self.pool.available()

    def constraint(self, schema: dict | None) -> JsonConstraint:
        """The compiled grammar for a response_format schema (None = any JSON object) to set as Job.constraint.

        Call it off the worker thread (the route uses asyncio.to_thread): a new schema compiles
        in milliseconds to seconds, and decoding must not wait for it.  PsyassistError when the
        schema cannot be compiled."""
        from psyassist.infer.grammar import JsonCompiler

        with self.json_lock:
            if self.json is None:
                self.json = JsonCompiler(self.tok, vocab_size=self.loaded.model.config.vocab_size,
                                         stop_ids=sorted(self.stop_ids))
        return self.json.compile(schema)

    def submit(self, job: Job) -> None:
        with self.cv:
            if len(self.pending) >= self.max_queue:
                raise QueueFull(len(self.pending), self._retry_after())
            self.pending.append(job)
            self.cv.notify()

    def _retry_after(self) -> int:
        """Seconds until a slot is likely free: the queue drains max_batch requests per request time."""
        per_request = sum(self.recent_secs) / len(self.recent_secs) if self.recent_secs else 1.0
        return max(1, math.ceil(per_request * (len(self.pending) + 1) / self.max_batch))

    def health(self) -> dict:
        return {"backend": self.name, "active_rows": self.active_rows, "queued": len(self.pending),
                "max_batch": self.max_batch, "max_queue": self.max_queue,
                "adapters_loaded": list(self.pool.names), "adapter_loads": self.pool.loads,
                "adapter_evictions": self.pool.evictions, **self.stats}

    # --- the worker thread ------------------------------------------------------------------------

    def _run(self) -> None:
        batch: Batch | None = None
        with torch.inference_mode():
            while not self.closing:
                rows: list[Row] = []
                try:
                    rows = self._admit(self.max_batch - (len(batch.rows) if batch else 0), wait=batch is None)
                    if rows:
                        batch = self._prefill(rows, batch)
                    elif batch is not None:
                        self._step(batch)
                    else:
                        continue
                    batch = self._drop_finished(batch)
                except Exception as e:  # noqa: BLE001 — a failed forward must fail its requests, not the server
                    traceback.print_exc()
                    everyone = rows + (batch.rows if batch else [])
                    for r in {id(r): r for r in everyone}.values():
                        if r.finish is None:
                            r.job.emit(("error", f"generation failed: {type(e).__name__}: {e}"))
                            r.finish = "error"
                            self.stats["rows_failed"] += 1
                        self.pool.release(r.job.adapter)
                    batch = None
                self.active_rows = len(batch.rows) if batch else 0
        if batch is not None:
            for r in batch.rows:
                r.job.emit(("error", "the server is shutting down"))

    def _admit(self, free: int, wait: bool) -> list[Row]:
        """Take up to `free` waiting jobs (after the batch window when idle) and pin their adapters."""
        with self.cv:
            if wait:
                while not self.pending and not self.closing:
                    self.cv.wait(0.5)
                until = time.monotonic() + self.window
                while len(self.pending) < free and (left := until - time.monotonic()) > 0:
                    self.cv.wait(left)
            jobs = []
            while self.pending and len(jobs) < free:
                job = self.pending.popleft()
                if job.cancelled.is_set():
                    self.stats["rows_cancelled"] += 1
                    continue
                jobs.append(job)
        rows, blocked = [], []
        for job in jobs:  # adapter loads read files: outside the lock, so submit() never waits on them
            if blocked:
                blocked.append(job)
                continue
            try:
                ok = self.pool.acquire(job.adapter)
            except PsyassistError as e:
                job.emit(("error", str(e)))
                self.stats["rows_failed"] += 1
                continue
            if ok:
                gen = torch.Generator(device=self.device)
                if job.seed is not None:
                    gen.manual_seed(job.seed)
                else:
                    gen.seed()
                rows.append(Row(job, gen, grammar=job.constraint.start() if job.constraint is not None else None))
            else:  # every adapter slot is pinned by running rows: wait (in order) for one to finish
                blocked.append(job)
        if blocked:
            with self.cv:
                self.pending.extendleft(reversed(blocked))
        self.stats["rows_admitted"] += len(rows)
        return rows

    def _forward(self, ids: torch.Tensor, mask: torch.Tensor, pos: torch.Tensor, cache: DynamicCache,
                 rows: list[Row]) -> torch.Tensor:
        kw = {}
        names = self.pool.adapter_names([r.job.adapter for r in rows])
        if names is not None:
            kw["adapter_names"] = names
        out = self.pool.model(input_ids=ids, attention_mask=mask, position_ids=pos, cache=cache,
                              use_cache=True, logits_to_keep=1, **kw)
        self.stats["forward_calls"] += 1
        self.stats["max_rows_in_forward"] = max(self.stats["max_rows_in_forward"], len(rows))
        return out.logits[:, -1, :].float()

    def _prefill(self, rows: list[Row], running: Batch | None) -> Batch:
        prompts = [r.job.prompt_ids for r in rows]
        width = max(len(p) for p in prompts)
        ids = torch.full((len(rows), width), self.pad, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for i, p in enumerate(prompts):
            ids[i, width - len(p):] = torch.tensor(p, dtype=torch.long)
            mask[i, width - len(p):] = 1
        ids, mask = ids.to(self.device), mask.to(self.device)
        pos = (mask.cumsum(-1) - 1).clamp(min=0)
        cache = DynamicCache(config=self.pool.model.config)
        logits = self._forward(ids, mask, pos, cache, rows)
        self.stats["prefill_calls"] += 1
        new = Batch(rows, cache, mask, mask.sum(-1))
        self._sample(new, logits)
        return new if running is None else _merge(running, new)

    def _step(self, batch: Batch) -> None:
        n = len(batch.rows)
        batch.mask = torch.cat([batch.mask, batch.mask.new_ones((n, 1))], dim=1)
        logits = self._forward(batch.next_ids, batch.mask, batch.pos[:, None], batch.cache, batch.rows)
        batch.pos = batch.pos + 1
        self.stats["decode_steps"] += 1
        self._sample(batch, logits)

    def _sample(self, batch: Batch, logits: torch.Tensor) -> None:
        picked = []
        for i, r in enumerate(batch.rows):
            if r.grammar is not None:
                r.grammar.fill(logits[i])  # forbidden tokens → -inf before temperature, top-k and top-p
            picked.append(_pick(logits[i], r.job, r.gen))
        batch.next_ids = torch.tensor(picked, dtype=torch.long, device=self.device)[:, None]
        for r, t in zip(batch.rows, picked, strict=True):
            if r.grammar is not None and not r.grammar.accept(t):  # only if the mask failed: end this row, not all
                r.finish = "error"
                self.stats["rows_failed"] += 1
                r.job.emit(("error", f"token {t} broke the response_format grammar"))
                continue
            self._emit(r, t)

    def _emit(self, row: Row, token: int) -> None:
        """Append one token, emit the text that is now safe to show, and decide whether the row ends."""
        job = row.job
        row.n_generated += 1
        self.stats["tokens_generated"] += 1
        if token in self.stop_ids:
            row.finish = "stop"  # with a grammar: only allowed once the JSON is complete
        else:
            row.tokens.append(token)
            if row.grammar is not None and row.grammar.done:  # a grammar given other stop tokens than ours
                row.finish = "stop"
        text = self.tok.backend_tokenizer.decode(row.tokens, skip_special_tokens=True)
        hits = [i for i in (text.find(s) for s in job.stop) if i >= 0]
        if hits:
            text, row.finish = text[:max(min(hits), row.sent)], "stop"
        if row.finish is None and row.n_generated >= job.max_tokens:
            row.finish = "length"
        if row.finish is None:  # hold back a half character and a possible start of a stop string
            text = text.rstrip("\ufffd")
            text = text[:len(text) - _stop_prefix(text, job.stop)]
        if len(text) > row.sent:
            job.emit(("delta", text[row.sent:]))
            row.sent = len(text)
        if row.finish is not None:
            job.emit(("done", row.finish, row.n_generated))

    def _drop_finished(self, batch: Batch) -> Batch | None:
        for r in batch.rows:
            if r.finish is None and r.job.cancelled.is_set():
                r.finish = "cancelled"
                self.stats["rows_cancelled"] += 1
        keep = [i for i, r in enumerate(batch.rows) if r.finish is None]
        for r in batch.rows:
            if r.finish is not None:
                self.pool.release(r.job.adapter)
                self.recent_secs.append(time.monotonic() - r.job.submitted)
                if r.finish in ("stop", "length"):
                    self.stats["rows_finished"] += 1
        if not keep:
            return None
        if len(keep) < len(batch.rows):
            idx = torch.tensor(keep, dtype=torch.long, device=self.device)
            for layer in batch.cache.layers:
                layer.keys, layer.values = layer.keys[idx], layer.values[idx]
            batch.rows = [batch.rows[i] for i in keep]
            batch.mask, batch.pos, batch.next_ids = batch.mask[idx], batch.pos[idx], batch.next_ids[idx]
            # Columns that are left padding for every remaining row cost attention compute: cut them.
            first = int(batch.mask.any(0).nonzero()[0])
            if first:
                batch.mask = batch.mask[:, first:]
                for layer in batch.cache.layers:
                    layer.keys, layer.values = layer.keys[:, :, first:], layer.values[:, :, first:]
        return batch


def _merge(a: Batch, b: Batch) -> Batch:
    """One batch from two: the shorter cache is left-padded (zeros under a zero mask), then rows are stacked."""
    la, lb = a.mask.shape[1], b.mask.shape[1]
    width = max(la, lb)

    def pad(t: torch.Tensor, n: int, dim: int) -> torch.Tensor:
        if n == 0:
            return t
        shape = list(t.shape)
        shape[dim] = n
        return torch.cat([t.new_zeros(shape), t], dim=dim)

    for la_, lb_ in zip(a.cache.layers, b.cache.layers, strict=True):
        la_.keys = torch.cat([pad(la_.keys, width - la, 2), pad(lb_.keys, width - lb, 2)], dim=0)
        la_.values = torch.cat([pad(la_.values, width - la, 2), pad(lb_.values, width - lb, 2)], dim=0)
    return Batch(a.rows + b.rows, a.cache,
                 torch.cat([pad(a.mask, width - la, 1), pad(b.mask, width - lb, 1)], dim=0),
                 torch.cat([a.pos, b.pos]), torch.cat([a.next_ids, b.next_ids]))


def _pick(logits: torch.Tensor, job: Job, gen: torch.Generator) -> int:
    """One token from one row's logits: greedy at temperature 0, else top-k → top-p → sample."""
    if job.temperature <= 0:
        return int(logits.argmax())
    scaled = logits / job.temperature
    if 0 < job.top_k < scaled.shape[0]:
        vals, idx = scaled.topk(job.top_k)
    else:
        vals, idx = scaled.sort(descending=True)
    probs = vals.softmax(-1)
    if job.top_p < 1:
        probs = probs * ((probs.cumsum(-1) - probs) < job.top_p)  # keep the smallest set reaching top_p
    choice = torch.multinomial(probs, 1, generator=gen)
    return int(idx[choice])


def _stop_prefix(text: str, stops: list[str]) -> int:
    """Length of the longest end of `text` that could be the start of a stop string."""
    best = 0
    for s in stops:
        for n in range(min(len(s) - 1, len(text)), best, -1):
            if text.endswith(s[:n]):
                best = n
                break
    return best


def build(cfg) -> HFBackend:
    """The HF backend for a ServeConfig: the model via infer.engine.load (same template and stop ids as chat)."""
    from psyassist.infer.engine import load

    loaded = load(cfg.model, dtype=cfg.dtype, device=cfg.device)
    if any(layer.is_sliding for layer in DynamicCache(config=loaded.model.config).layers):
        warn(f"{cfg.model} uses sliding-window attention: joining requests to a running batch assumes full "
             "attention caches; outputs of long prompts may differ from generate().")
    return HFBackend(loaded, base_name=cfg.base_name, adapter_dir=cfg.adapter_dir, max_batch=cfg.max_batch,
                     max_adapters=cfg.max_adapters, max_queue=cfg.max_queue, batch_window=cfg.batch_window)
