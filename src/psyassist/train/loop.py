"""LoRA / QLoRA fine-tuning: one linear entry point, the same from one CPU to many GPUs.

    psyassist train recipes/smollm2-135m-demo.yaml
    accelerate launch --num_processes 2 -m psyassist train recipes/qwen3-1.7b-psydt-lora.yaml

Read top to bottom: recipe → data (rendered by psyassist.render, every assistant
turn supervised) → model + LoRA → optimizer/scheduler → (resume) → loop with
evaluation, checkpoints and metrics → adapter + manifest + loss curve.

Loss normalisation: the loss of an optimizer step is the sum of token losses over all
its micro-batches (and ranks) divided by the step's supervised-token count, so a
dialogue's weight does not depend on how it was batched or accumulated.
Determinism: the data order is a function of (seed, epoch); a checkpoint stores the
adapter, optimizer, scheduler and every RNG state, so a resumed CPU run is bitwise
identical to an uninterrupted one (tests/test_train.py kills a run with SIGKILL to
prove it).  Ctrl-C finishes the current step, saves a checkpoint and exits (130).
"""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from psyassist.data.io import atomic_dir, write_json_atomic, write_text_atomic
from psyassist.errors import PsyassistError
from psyassist.render import RenderOptions, RenderReport, render_many
from psyassist.train.batching import collate, plan_epoch
from psyassist.train.config import Recipe, dump_recipe
from psyassist.ui import console, err_console

INTERRUPTED_EXIT = 130


@dataclass
class TrainResult:
    output_dir: Path
    adapter_dir: Path
    steps: int
    final_loss: float | None
    best_eval_loss: float | None
    interrupted: bool = False
    model: object = None  # the trained PeftModel (unwrapped), for programmatic use


def run(recipe: Recipe, *, resume: bool = False, recipe_path: str | None = None) -> TrainResult:
    from accelerate import Accelerator

    cfg = recipe
    out = Path(cfg.train.output_dir)
    precision = _resolve_precision(cfg.train.precision)
    # cpu=True without CUDA: under torchrun / `accelerate launch --multi_gpu` this selects gloo (MULTI_CPU).
    accelerator = Accelerator(mixed_precision={"fp32": "no", "bf16": "bf16", "fp16": "fp16"}[precision],
                              cpu=not torch.cuda.is_available())
    main = accelerator.is_main_process
    world, rank = accelerator.num_processes, accelerator.process_index
    _seed_everything(cfg.train.seed)
    t_start = time.perf_counter()

    # --- model and tokenizer -----------------------------------------------------------
    from psyassist.models import attach_lora, load_model

    if cfg.quant.load_in_4bit and accelerator.device.type != "cuda":
        raise PsyassistError("QLoRA (quant.load_in_4bit) needs a CUDA GPU and bitsandbytes; on CPU set "
                             "quant.load_in_4bit=false to train plain LoRA.")
    model, tok = load_model(cfg.model.name, dtype=cfg.model.dtype, device=accelerator.device,
                            quant=cfg.quant if cfg.quant.load_in_4bit else None,
                            attn_implementation=cfg.model.attn_implementation)
    if cfg.data.packing and model.config._attn_implementation != "flash_attention_2":
        from psyassist.train.varlen import register

        model.set_attn_implementation(register())  # per-dialogue causal SDPA: no T×T mask, no cross-talk
    if cfg.model.tokenizer or cfg.model.chat_template:
        from psyassist.render import load_tokenizer

        tok = load_tokenizer(cfg.model.tokenizer or cfg.model.name, chat_template=cfg.model.chat_template)

    # --- data ----------------------------------------------------------------------------
    train_samples, train_report, data_files = _load_split(cfg, tok, cfg.data.train, cfg.data.max_train_items, main)
    eval_samples: list = []
    eval_report = None
    if cfg.data.validation:
        eval_samples, eval_report, vfiles = _load_split(cfg, tok, cfg.data.validation, cfg.data.max_eval_items, main)
        data_files.update(vfiles)
    if not train_samples:
        raise PsyassistError(f"no training sample left after rendering {cfg.data.train} "
                             f"(max_length={cfg.data.max_length}); run `psyassist data check` to see why.")

    micro_per_step = cfg.train.grad_accum * world
    micro_per_epoch = math.ceil(len(train_samples) / cfg.train.batch_size)
    # The last step of an epoch takes the leftover micro-batches (fewer than micro_per_step):
    # flooring here would silently drop up to micro_per_step - 1 batches of every epoch.
    steps_per_epoch = math.ceil(micro_per_epoch / micro_per_step)
    total_steps = cfg.train.max_steps or max(1, int(cfg.train.epochs * steps_per_epoch))
    warmup = cfg.optim.warmup_steps or int(cfg.optim.warmup_ratio * total_steps)

    # --- LoRA, optimizer, schedule ---------------------------------------------------------------
    if cfg.train.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    model = attach_lora(model, r=cfg.lora.r, alpha=cfg.lora.alpha, dropout=cfg.lora.dropout,
                        target_modules=cfg.lora.target_modules, bias=cfg.lora.bias)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = _optimizer(cfg, trainable)
    from transformers import get_scheduler

    sched_name = {"cosine": "cosine", "linear": "linear", "constant": "constant_with_warmup"}[cfg.optim.scheduler]
    scheduler = get_scheduler(sched_name, optimizer, num_warmup_steps=warmup, num_training_steps=total_steps)
    if accelerator.state.deepspeed_plugin is not None:
        _configure_deepspeed(accelerator.state.deepspeed_plugin.deepspeed_config, cfg, world)
    model, optimizer = accelerator.prepare(model, optimizer)

    # --- resume --------------------------------------------------------------------------
    step, best, history = 0, None, []
    if resume:
        ckpt = _latest_checkpoint(out)
        if ckpt is None:
            raise PsyassistError(f"--resume: no checkpoint in {out}; start without --resume.")
        step, best, history = _load_checkpoint(ckpt, accelerator, model, optimizer, scheduler)
        if main:
            console.print(f"resumed from {ckpt} at step {step}/{total_steps}")
    elif main and (out / "adapter").exists():
        raise PsyassistError(f"{out} already holds a finished run; pass --resume to continue it or choose "
                             "another train.output_dir.")
    if main:
        out.mkdir(parents=True, exist_ok=True)
        write_text_atomic(out / "recipe.resolved.yaml",
                          f"# psyassist train {recipe_path or 'RECIPE.yaml'} (resolved)\n" + dump_recipe(cfg))
        _describe(cfg, model, train_report, eval_report, total_steps, steps_per_epoch, world, precision)
    trackers = _Trackers(cfg, out) if main else None

    # --- loop ----------------------------------------------------------------------------
    stop = _GracefulStop()
    pad_id = tok.pad_token_id if tok.pad_token_id is not None else (tok.eos_token_id or 0)
    tokens_total = padded_total = supervised_total = 0
    train_time = 0.0
    last_loss = None
    progress = _progress(main, total_steps, step)
    model.train()
    while step < total_steps:
        epoch, first = divmod(step, steps_per_epoch)
        plan = plan_epoch(len(train_samples), cfg.train.batch_size, seed=cfg.train.seed, epoch=epoch)
        group = plan[first * micro_per_step:(first + 1) * micro_per_step]
        batches = [collate([train_samples[i] for i in idx], packing=cfg.data.packing, pad_id=pad_id)
                   for idx in group]
        n_sup = sum(b.supervised for b in batches)  # every rank knows the whole group: no all-reduce
        mine = batches[rank::world]
        # An epoch's last, short step can leave a rank without a batch; it still runs one
        # backward (weight 0) so the gradient all-reduce of the other ranks does not hang.
        weights = [1.0] * len(mine) if mine else [0.0]
        mine = mine or batches[:1]
        t0 = time.perf_counter()
        loss_sum = torch.zeros((), device=accelerator.device)
        for i, batch in enumerate(mine):
            sync = i == len(mine) - 1
            # sync_gradients marks the accumulation boundary: DDP/FSDP all-reduce there, and
            # DeepSpeed (gradient_accumulation_steps 1, see _configure_deepspeed) steps only there.
            accelerator.sync_gradients = sync
            with accelerator.no_sync(model) if not sync and world > 1 else _null():
                with accelerator.autocast():
                    loss = token_loss(model, batch, accelerator.device) * (weights[i] / n_sup)
                # DDP averages gradients over ranks; the loss is already normalised globally.
                accelerator.backward(loss * world)
                loss_sum += loss.detach()
        grad_norm = None
        if cfg.optim.max_grad_norm:
            norm = accelerator.clip_grad_norm_(trainable, cfg.optim.max_grad_norm)  # DeepSpeed: clipped inside
            grad_norm = None if norm is None else float(norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        loss = float(accelerator.reduce(loss_sum, reduction="sum"))
        dt = time.perf_counter() - t0
        train_time += dt
        step_tokens = sum(b.tokens for b in batches)
        tokens_total += step_tokens
        padded_total += sum(b.padded_tokens for b in batches)
        supervised_total += n_sup
        last_loss = loss
        if main:
            rec = {"step": step, "epoch": round(step / steps_per_epoch, 4), "loss": round(loss, 6),
                   "lr": scheduler.get_last_lr()[0], "grad_norm": grad_norm, "tokens": step_tokens,
                   "supervised_tokens": n_sup, "tokens_per_s": round(step_tokens / dt, 1)}
            trackers.log(rec, every=cfg.train.log_every)
            progress.update(step, loss, rec["lr"], rec["tokens_per_s"])

        _inject_fault(step)
        at_end = step == total_steps
        if eval_samples and ((cfg.train.eval_every and step % cfg.train.eval_every == 0) or at_end
                             or (not cfg.train.eval_every and step % steps_per_epoch == 0)):
            eval_loss = _evaluate(model, eval_samples, cfg, accelerator, pad_id)
            history.append({"step": step, "eval_loss": eval_loss})
            if main:
                trackers.log({"step": step, "eval_loss": round(eval_loss, 6)}, every=1)
            best = eval_loss if best is None else min(best, eval_loss)
        if (cfg.train.save_every and step % cfg.train.save_every == 0) or stop.requested or at_end:
            _save_checkpoint(out, step, accelerator, model, optimizer, scheduler, best, history, cfg.train.keep_best)
        if stop.requested and not at_end:
            if main:
                progress.close()
                err_console.print(f"[yellow]interrupted: checkpoint saved at step {step}; continue with "
                                  f"`psyassist train {recipe_path or 'RECIPE.yaml'} --resume`[/]")
            return TrainResult(out, out / "adapter", step, last_loss, best, interrupted=True)
    stop.restore()

    # --- outputs ---------------------------------------------------------------------------
    accelerator.wait_for_everyone()
    full_state = _gathered_state(accelerator, model)  # collective under FSDP / ZeRO-3: every rank calls it
    adapter_dir = out / "adapter"
    if main:
        progress.close()
        with atomic_dir(adapter_dir) as tmp:
            accelerator.unwrap_model(model).save_pretrained(tmp, state_dict=full_state)
            tok.save_pretrained(tmp)
        trackers.close()
        manifest = _manifest(cfg, recipe_path, data_files, train_report, eval_report, step, tokens_total,
                             padded_total, supervised_total, train_time, time.perf_counter() - t_start, world,
                             precision, last_loss, best)
        write_json_atomic(out / "manifest.json", manifest)
        _plot_loss(out)
        console.print(f"[green]done[/]: adapter in {adapter_dir}, manifest and metrics in {out}")
    return TrainResult(out, adapter_dir, step, last_loss, best, model=accelerator.unwrap_model(model))


# --- data -------------------------------------------------------------------------------------


def _load_split(cfg: Recipe, tok, source: str, limit: int | None, main: bool):
    from psyassist.data.readers import read_conversations

    res = read_conversations([source], cfg.data.format, show_progress=main, mapping=cfg.data.map)
    convs = res.conversations
    if limit is not None and limit < len(convs):
        keep = sorted(random.Random(cfg.train.seed).sample(range(len(convs)), limit))
        convs = [convs[i] for i in keep]
    opts = RenderOptions(enable_thinking=cfg.model.enable_thinking, max_length=cfg.data.max_length,
                         per_turn=cfg.data.per_turn)
    samples, report = render_many(tok, convs, opts, show_progress=main)
    return samples, report, {f: _sha256(f) for f in res.files}


def _sha256(path: str) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@torch.no_grad()
def _evaluate(model, samples, cfg: Recipe, accelerator, pad_id: int) -> float:
    """Token-weighted eval loss over the validation set (split over ranks, summed)."""
    model.eval()
    total = torch.zeros((), device=accelerator.device, dtype=torch.float64)
    count = torch.zeros((), device=accelerator.device, dtype=torch.float64)
    rank, world = accelerator.process_index, accelerator.num_processes
    idx = list(range(len(samples)))[rank::world]
    for i in range(0, len(idx), cfg.train.batch_size):
        batch = collate([samples[j] for j in idx[i:i + cfg.train.batch_size]], packing=cfg.data.packing, pad_id=pad_id)
        with accelerator.autocast():
            total += token_loss(model, batch, accelerator.device).double()
        count += batch.supervised
    total = accelerator.reduce(total, reduction="sum")
    count = accelerator.reduce(count, reduction="sum")
    model.train()
    return float(total / count) if float(count) else float("nan")


def token_loss(model, batch, device) -> torch.Tensor:
    """Summed cross-entropy over supervised tokens, computing logits ONLY where a label counts.

    With a 151,936-token vocabulary (Qwen3) the LM head dominates small models and the logits
    of a packed 8k-token row take 4.9 GB in fp32; `logits_to_keep` with the positions whose
    next token is supervised (about half of a counseling dialogue) halves both.
    """
    import torch.nn.functional as F

    inputs = batch.model_inputs(device)
    labels = inputs.pop("labels")
    targets = labels[:, 1:]  # position t predicts token t + 1
    keep = (targets != -100).any(0).nonzero().squeeze(1)
    logits = model(**inputs, logits_to_keep=keep).logits  # (B, k, V)
    return F.cross_entropy(logits.float().flatten(0, 1), targets[:, keep].flatten(), ignore_index=-100,
                           reduction="sum")


# --- optimizer, precision, seeds ----------------------------------------------------------------


def _optimizer(cfg: Recipe, params):
    o = cfg.optim
    if o.name == "adamw_torch":
        return torch.optim.AdamW(params, lr=o.lr, betas=tuple(o.betas), eps=o.eps, weight_decay=o.weight_decay)
    from psyassist.optional import require

    bnb = require("bitsandbytes", f"optim.name={o.name}")
    cls = bnb.optim.PagedAdamW8bit if o.name == "paged_adamw_8bit" else bnb.optim.PagedAdamW32bit
    return cls(params, lr=o.lr, betas=tuple(o.betas), eps=o.eps, weight_decay=o.weight_decay)


def _resolve_precision(requested: str) -> str:
    """auto: bf16 where the GPU supports it, else fp16 on CUDA, else fp32 (said once)."""
    if requested != "auto":
        if requested in ("bf16", "fp16") and not torch.cuda.is_available():
            err_console.print(f"[yellow]train.precision={requested} needs a GPU here; using fp32 on CPU[/]")
            return "fp32"
        return requested
    if torch.cuda.is_available():
        chosen = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    else:
        chosen = "fp32"
    err_console.print(f"precision: {chosen} (auto: bf16 → fp16 → fp32 by hardware)")
    return chosen


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


# --- checkpoints -----------------------------------------------------------------------------


def _sharded(accelerator) -> bool:
    from accelerate.utils import DistributedType

    return accelerator.distributed_type in (DistributedType.FSDP, DistributedType.DEEPSPEED)


def _gathered_state(accelerator, model) -> dict | None:
    """The full state dict under FSDP / DeepSpeed (a collective: all ranks), None elsewhere.

    With FULL_SHARD or ZeRO-3 each rank holds 1/world of every tensor, so the main process
    alone would save a fraction of each LoRA matrix.  Elsewhere PEFT reads the (unsharded)
    model itself, which keeps the single-process path exactly as the resume tests pin it.
    """
    return accelerator.get_state_dict(model) if _sharded(accelerator) else None


def _configure_deepspeed(ds: dict, cfg: Recipe, world: int) -> None:
    """Fill the DeepSpeed config from the recipe before `prepare` (no dataloader is prepared).

    The loop accumulates itself and marks the boundary with `accelerator.sync_gradients`, so
    DeepSpeed must not accumulate or rescale the loss again: gradient_accumulation_steps 1.
    """
    gas = ds.get("gradient_accumulation_steps", "auto")
    if gas not in ("auto", 1):
        raise PsyassistError(f"DeepSpeed config gradient_accumulation_steps={gas}: set it to 1 (or auto) and use "
                             "the recipe's train.grad_accum; psyassist accumulates and normalises the loss itself.")
    ds["gradient_accumulation_steps"] = 1
    for key, value in (("train_micro_batch_size_per_gpu", cfg.train.batch_size),
                       ("train_batch_size", cfg.train.batch_size * world),
                       ("gradient_clipping", cfg.optim.max_grad_norm or 0.0)):
        if ds.get(key, "auto") == "auto":
            ds[key] = value
    if ds["gradient_clipping"] != (cfg.optim.max_grad_norm or 0.0):
        err_console.print(f"[yellow]DeepSpeed gradient_clipping={ds['gradient_clipping']} differs from the recipe's "
                          f"optim.max_grad_norm={cfg.optim.max_grad_norm}; DeepSpeed's value is used[/]")


def _save_checkpoint(out: Path, step: int, accelerator, model, optimizer, scheduler, best, history, keep: int):
    accelerator.wait_for_everyone()
    if _sharded(accelerator):
        return _save_sharded_checkpoint(out, step, accelerator, model, scheduler, best, history, keep)
    if accelerator.is_main_process:
        target = out / f"checkpoint-{step:07d}"
        with atomic_dir(target) as tmp:
            accelerator.unwrap_model(model).save_pretrained(tmp)
            torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
            torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
            torch.save(_rng_state(), tmp / "rng.pt")
            (tmp / "state.json").write_text(json.dumps({"step": step, "best_eval_loss": best, "history": history}))
        _prune(out, keep, history)
    accelerator.wait_for_everyone()


def _save_sharded_checkpoint(out: Path, step: int, accelerator, model, scheduler, best, history, keep: int):
    """FSDP / DeepSpeed: every rank writes its optimizer and parameter shards (accelerate's
    save_state) into one temp dir; the main process adds the gathered adapter, the scheduler
    and state.json, then renames it into place, so a reader never sees half a checkpoint."""
    target = out / f"checkpoint-{step:07d}"
    tmp = out / f".checkpoint-{step:07d}.tmp"
    full_state = _gathered_state(accelerator, model)
    accelerator.save_state(str(tmp))  # collective; includes every rank's RNG state
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        accelerator.unwrap_model(model).save_pretrained(tmp, state_dict=full_state)
        torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
        (tmp / "state.json").write_text(json.dumps({"step": step, "best_eval_loss": best, "history": history,
                                                    "sharded": True}))
        if target.exists():
            shutil.rmtree(target)
        tmp.rename(target)
        _prune(out, keep, history)
    accelerator.wait_for_everyone()


def _prune(out: Path, keep: int, history: list[dict]) -> None:
    """Keep the `keep` best checkpoints by eval loss (steps without eval rank last) and the latest."""
    ckpts = sorted(out.glob("checkpoint-*"))
    if len(ckpts) <= keep:
        return
    losses = {h["step"]: h["eval_loss"] for h in history}
    latest = ckpts[-1]
    ranked = sorted(ckpts[:-1], key=lambda p: (losses.get(int(p.name.split("-")[1]), math.inf),
                                               -int(p.name.split("-")[1])))
    for p in ranked[max(keep - 1, 0):]:
        if p != latest:
            shutil.rmtree(p, ignore_errors=True)


def _latest_checkpoint(out: Path) -> Path | None:
    for stale in out.glob(".checkpoint-*.tmp"):  # a run killed while writing a checkpoint
        shutil.rmtree(stale, ignore_errors=True)
    ckpts = sorted(p for p in out.glob("checkpoint-*") if (p / "state.json").is_file())
    return ckpts[-1] if ckpts else None


def _load_checkpoint(ckpt: Path, accelerator, model, optimizer, scheduler):
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    state = json.loads((ckpt / "state.json").read_text())
    if state.get("sharded"):  # written by _save_sharded_checkpoint: accelerate restores model, optimizer, RNG
        if not _sharded(accelerator):
            raise PsyassistError(f"{ckpt} was written by an FSDP/DeepSpeed run; resume it with the same "
                                 "`accelerate launch --config_file …`.")
        accelerator.load_state(str(ckpt))
        scheduler.load_state_dict(torch.load(ckpt / "scheduler.pt", weights_only=False))
        return state["step"], state["best_eval_loss"], state["history"]
    set_peft_model_state_dict(accelerator.unwrap_model(model), load_file(ckpt / "adapter_model.safetensors"))
    optimizer.load_state_dict(torch.load(ckpt / "optimizer.pt", map_location="cpu", weights_only=False))
    scheduler.load_state_dict(torch.load(ckpt / "scheduler.pt", weights_only=False))
    _set_rng_state(torch.load(ckpt / "rng.pt", weights_only=False))
    return state["step"], state["best_eval_loss"], state["history"]


def _rng_state() -> dict:
    s = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        s["cuda"] = torch.cuda.get_rng_state_all()
    return s


def _set_rng_state(s: dict) -> None:
    random.setstate(s["python"])
    np.random.set_state(s["numpy"])
    torch.set_rng_state(s["torch"])
    if "cuda" in s and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(s["cuda"])


def _inject_fault(step: int) -> None:
    """Test hook: PSYASSIST_FAULT="STEP:KILL|INT" sends SIGKILL / SIGINT to this process after STEP.

    tests/test_train.py uses it to kill a run at an exact step (a real `kill -9`, no cleanup runs)
    and to press Ctrl-C at an exact step, so the resume tests are deterministic.
    """
    spec = os.environ.get("PSYASSIST_FAULT")
    if not spec:
        return
    at, _, sig = spec.partition(":")
    if int(at) == step:
        os.kill(os.getpid(), signal.SIGKILL if sig == "KILL" else signal.SIGINT)


class _GracefulStop:
    """First Ctrl-C: finish the step, checkpoint, exit. Second Ctrl-C: stop now."""

    def __init__(self):
        self.requested = False
        self._old = signal.getsignal(signal.SIGINT)
        if threading_main():
            signal.signal(signal.SIGINT, self._handle)

    def _handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        err_console.print("[yellow]stopping after this step (Ctrl-C again to abort without saving)[/]")

    def restore(self):
        if threading_main():
            signal.signal(signal.SIGINT, self._old)


def threading_main() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False


# --- reporting --------------------------------------------------------------------------------


class _Trackers:
    """metrics.jsonl always; TensorBoard by default; W&B / SwanLab when asked (lazy imports)."""

    def __init__(self, cfg: Recipe, out: Path):
        self.f = open(out / "metrics.jsonl", "a", encoding="utf-8")
        self.tb = self.wandb = self.swanlab = None
        if cfg.log.tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(out / "tensorboard"))
            except ImportError:
                err_console.print("[yellow]TensorBoard not installed (pip install tensorboard); logging to "
                                  "metrics.jsonl only[/]")
        name = cfg.log.run_name or out.name
        if cfg.log.wandb:
            from psyassist.optional import require

            self.wandb = require("wandb", "log.wandb")
            self.wandb.init(project=cfg.log.project, name=name, config=cfg.to_dict())
        if cfg.log.swanlab:
            from psyassist.optional import require

            self.swanlab = require("swanlab", "log.swanlab")
            self.swanlab.init(project=cfg.log.project, experiment_name=name, config=cfg.to_dict())

    def log(self, rec: dict, every: int) -> None:
        self.f.write(json.dumps(rec) + "\n")
        self.f.flush()
        step = rec["step"]
        scalars = {k: v for k, v in rec.items() if k != "step" and isinstance(v, (int, float))}
        if self.tb is not None and (step % every == 0 or "eval_loss" in rec):
            for k, v in scalars.items():
                self.tb.add_scalar(("eval/" if k.startswith("eval") else "train/") + k, v, step)
        if self.wandb is not None:
            self.wandb.log(scalars, step=step)
        if self.swanlab is not None:
            self.swanlab.log(scalars, step=step)

    def close(self) -> None:
        self.f.close()
        if self.tb is not None:
            self.tb.close()
        if self.wandb is not None:
            self.wandb.finish()
        if self.swanlab is not None:
            self.swanlab.finish()


class _progress:
    def __init__(self, enabled: bool, total: int, start: int):
        from psyassist.ui import progress_enabled

        self.bar = None
        if enabled and progress_enabled():
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.bar = Progress(TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(),
                                TextColumn("{task.fields[info]}"), TimeRemainingColumn(), console=err_console)
            self.bar.start()
            self.task = self.bar.add_task("train", total=total, completed=start, info="")
        self.enabled = enabled

    def update(self, step: int, loss: float, lr: float, tps: float) -> None:
        if self.bar is not None:
            self.bar.update(self.task, completed=step, info=f"loss {loss:.4f}  lr {lr:.2e}  {tps:,.0f} tok/s")
        elif self.enabled and (step == 1 or step % 10 == 0):
            err_console.print(f"step {step}: loss {loss:.4f}  lr {lr:.2e}  {tps:,.0f} tok/s")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
            self.bar = None


def _describe(cfg, model, train_report: RenderReport, eval_report, total_steps, steps_per_epoch, world, precision):
    n_train = sum(p.numel() for p in model.parameters() if p.requires_grad)
    n_all = sum(p.numel() for p in model.parameters())
    console.print(
        f"model {cfg.model.name}: {n_all / 1e6:,.1f} M parameters, LoRA trains {n_train / 1e6:,.3f} M "
        f"({n_train / n_all:.2%}); precision {precision}; {world} process(es)\n"
        f"data: {train_report.samples} training samples, {train_report.tokens:,} tokens "
        f"({train_report.supervised_share:.1%} supervised), "
        f"{train_report.dropped_no_supervision} dropped for having no supervised token"
        + (f"; {eval_report.samples} validation samples" if eval_report else "")
        + f"\nschedule: {total_steps} optimizer steps ({steps_per_epoch} per epoch), "
        f"{cfg.train.batch_size} × {cfg.train.grad_accum} accum × {world} = "
        f"{cfg.train.batch_size * cfg.train.grad_accum * world} dialogues per step, "
        f"{'padding-free packing' if cfg.data.packing else 'padded batches (packing off)'}")


def _manifest(cfg, recipe_path, data_files, train_report, eval_report, steps, tokens, padded, supervised,
              train_time, wall, world, precision, last_loss, best) -> dict:
    import importlib.metadata as md
    import platform
    import subprocess

    def version(p):
        try:
            return md.version(p)
        except md.PackageNotFoundError:
            return None

    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).parent).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        sha = None
    peak = (torch.cuda.max_memory_allocated() if torch.cuda.is_available() else None)
    import resource

    return {
        "command": f"psyassist train {recipe_path or 'RECIPE.yaml'}",
        "recipe": cfg.to_dict(),
        "packages": {p: version(p) for p in ("psyassist", "torch", "transformers", "peft", "accelerate",
                                             "tokenizers", "bitsandbytes")},
        "python": platform.python_version(), "git_sha": sha, "world_size": world, "precision": precision,
        "data_files": data_files,
        "render": {"train": train_report.to_dict(), "validation": eval_report.to_dict() if eval_report else None},
        "steps": steps, "tokens_processed": tokens, "tokens_computed_with_padding": padded,
        "supervised_tokens": supervised,
        "padding_share": round(1 - tokens / padded, 6) if padded else 0.0,
        "train_seconds": round(train_time, 3), "wall_seconds": round(wall, 3),
        "tokens_per_second": round(tokens / train_time, 1) if train_time else None,
        "peak_gpu_memory_bytes": peak,
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "final_train_loss": last_loss, "best_eval_loss": best,
    }


def _plot_loss(out: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line.strip()]
    train = [(r["step"], r["loss"]) for r in rows if "loss" in r]
    evals = [(r["step"], r["eval_loss"]) for r in rows if "eval_loss" in r]
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=120)
    if train:
        ax.plot(*zip(*train, strict=True), label="train loss")
    if evals:
        ax.plot(*zip(*evals, strict=True), "o-", label="eval loss")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss (per supervised token)")
    ax.legend()
    fig.tight_layout()
    tmp = out / ".loss.png.tmp.png"
    fig.savefig(tmp)
    plt.close(fig)
    os.replace(tmp, out / "loss.png")


if __name__ == "__main__":  # `python -m psyassist.train.loop RECIPE` (accelerate launch uses the CLI)
    sys.exit("use `psyassist train RECIPE.yaml`")
