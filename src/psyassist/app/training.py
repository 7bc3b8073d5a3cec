"""Train a client's LoRA adapter entirely in memory: SFT on (context + input → final note), optionally with
a preference term on (model draft → counselor's final) pairs.

    python -c "from psyassist.app.training import TrainSpec; help(TrainSpec)"

Why its own small loop and not `psyassist train` or TRL's DPOTrainer: the data is a client's
decrypted notes and the result is that client's adapter, and neither may touch the disk in
plain text — `psyassist train` reads JSONL files and writes adapter directories and
checkpoints, TRL's trainers save to `output_dir`.  Here the samples come from memory, go
through the project's ONE rendering (`render.ChatRenderer`: the same chat template, the same
supervision of the assistant turn and its end-of-turn token as every other training), the
weights come back as a state dict and are sealed by the caller.  The loop is the standard one
(AdamW on the LoRA weights, linear warm-up, gradient clipping, loss on supervised tokens only).

Preference term (method "dpo"): the DPO loss (Rafailov et al. 2023) on pairs sharing a prompt,
chosen = the counselor's final note, rejected = the model's original draft, with the reference
model = the same base with the adapter switched off (PEFT `disable_adapter()`: no second copy of
the model), PLUS the SFT loss on every sample (as RPO, Pang et al. 2024: the NLL term keeps DPO
from lowering the chosen likelihood, which it otherwise does on a handful of pairs).  Whether the
preference term helps a counselor is measured by benchmarks/app_adapters.py.
"""

from __future__ import annotations

import io
import math
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from psyassist.errors import PsyassistError

METHODS = ("sft", "dpo")


@dataclass
class Example:
    messages: list[dict]  # system + user (the prompt the app drafts with)
    chosen: str  # the counselor's final note, as the JSON the model writes
    rejected: str | None = None  # the model's original draft (preference pairs only)


@dataclass
class TrainSpec:
    base_model: str = "default"
    method: str = "sft"
    steps: int = 30
    lr: float = 2e-4
    r: int = 8
    alpha: int = 16
    dropout: float = 0.05
    target_modules: str = "all-linear"
    batch_size: int = 2
    beta: float = 0.1  # DPO temperature
    max_length: int = 2048
    seed: int = 0
    warmup_steps: int = 3
    device: str | None = None
    dtype: str = "auto"
    # Recompute each layer's activations in the backward pass instead of keeping them: on CPU, SDPA's
    # backward keeps every layer's attention matrices, which for 2 × 1.3k-token examples of the 135M default
    # model took the job to 15 GB (benchmarks/app_adapters.py); with checkpointing the peak is measured there.
    gradient_checkpointing: bool = True
    # Large freed blocks go back to the OS (psyassist.memory): without it, glibc keeps what each layer frees
    # and the job's peak RSS is about twice what it holds.
    release_memory: bool = True

    def __post_init__(self):
        if self.method not in METHODS:
            raise PsyassistError(f"training method must be one of {', '.join(METHODS)}, got {self.method!r}")
        if self.steps < 1 or self.batch_size < 1 or self.lr <= 0:
            raise PsyassistError("steps and batch_size must be >= 1 and lr > 0")


@dataclass
class TrainOutput:
    weights: bytes  # safetensors bytes of the LoRA state dict (never written to disk here)
    config: dict  # the PEFT LoraConfig as a dict
    figures: dict = field(default_factory=dict)  # steps, losses, tokens, seconds, peak memory


class Cancelled(PsyassistError):
    pass


def _peak_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def train(spec: TrainSpec, examples: list[Example], *, progress: Callable[[dict], None] | None = None,
          cancel: threading.Event | None = None, loaded=None) -> TrainOutput:
    """Train a fresh LoRA adapter on `examples`; `progress(dict)` is called after every step.

    `loaded`: an already loaded (model, tokenizer) pair to train on instead of loading `spec.base_model`
    (the caller must not use that model for anything else while this runs)."""
    from peft import get_peft_model_state_dict
    from safetensors.torch import save

    from psyassist.data.schema import Conversation
    from psyassist.models import attach_lora, load_model
    from psyassist.render import ChatRenderer, RenderOptions, RenderReport
    from psyassist.train.batching import collate
    from psyassist.train.loop import token_loss

    if not examples:
        raise PsyassistError("no training example: save at least one note drafted from a session input first")
    if spec.release_memory:
        from psyassist.memory import release_large_frees

        release_large_frees()
    t0 = time.perf_counter()
    random.seed(spec.seed)
    torch.manual_seed(spec.seed)
    model, tok = loaded if loaded is not None else load_model(spec.base_model, dtype=spec.dtype, device=spec.device)
    device = next(model.parameters()).device
    model = attach_lora(model, r=spec.r, alpha=spec.alpha, dropout=spec.dropout, target_modules=spec.target_modules)
    if spec.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    renderer = ChatRenderer(tok, RenderOptions(enable_thinking=False, max_length=spec.max_length))
    report = RenderReport()

    def render(messages: list[dict], reply: str):
        conv = Conversation.from_dict({"id": "x", "messages": [*messages, {"role": "assistant", "content": reply}]},
                                      file="client notes")
        out = renderer.render(conv, report)
        return out[0] if out else None

    sft = [s for s in (render(e.messages, e.chosen) for e in examples) if s is not None]
    pairs = []
    if spec.method == "dpo":
        for e in examples:
            if e.rejected and e.rejected != e.chosen:
                c, r = render(e.messages, e.chosen), render(e.messages, e.rejected)
                if c is not None and r is not None:
                    pairs.append((c, r))
    if not sft:
        raise PsyassistError(f"every training example was longer than {spec.max_length} tokens or had nothing to "
                             "learn; lower the history budget or raise the job's max_length")
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    trainable = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(trainable, lr=spec.lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / max(1, spec.warmup_steps)))
    model.train()
    losses, dpo_losses, tokens = [], [], 0
    rng = random.Random(spec.seed)
    for step in range(1, spec.steps + 1):
        if cancel is not None and cancel.is_set():
            raise Cancelled("cancelled by the counselor")
        t_step = time.perf_counter()
        batch = collate(rng.sample(sft, min(spec.batch_size, len(sft))), packing=False, pad_id=pad)
        loss = token_loss(model, batch, device) / max(1, batch.supervised)
        tokens += batch.tokens
        dpo_val = None
        if pairs:
            chosen, rejected = pairs[rng.randrange(len(pairs))]
            dpo = _dpo_loss(model, chosen, rejected, spec.beta, pad, device)
            loss = loss + dpo
            dpo_val = float(dpo.detach())
            tokens += chosen.n_tokens + rejected.n_tokens
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        opt.step()
        sched.step()
        value = float(loss.detach())
        if not math.isfinite(value):
            raise PsyassistError(f"the training loss became {value} at step {step}: lower the learning rate")
        losses.append(round(value, 4))
        if dpo_val is not None:
            dpo_losses.append(round(dpo_val, 4))
        if progress is not None:
            elapsed = time.perf_counter() - t0
            per_step = elapsed / step
            progress({"phase": "training", "step": step, "steps": spec.steps, "loss": losses[-1],
                      "tokens_per_s": round(tokens / elapsed, 1), "eta_s": round(per_step * (spec.steps - step), 1),
                      "step_s": round(time.perf_counter() - t_step, 2)})
    model.eval()
    if spec.gradient_checkpointing:
        model.gradient_checkpointing_disable()  # the caller's model drafts again afterwards
    state = {k: v.detach().to("cpu").contiguous() for k, v in get_peft_model_state_dict(model).items()}
    config = model.peft_config["default"].to_dict()
    config = {k: (sorted(v) if isinstance(v, set) else v) for k, v in config.items()}
    weights = save(state)
    figures = {"steps": spec.steps, "examples": len(sft), "pairs": len(pairs), "first_loss": losses[0],
               "last_loss": losses[-1], "losses": losses, "dpo_losses": dpo_losses, "tokens": tokens,
               "train_tokens": sum(s.n_tokens for s in sft), "seconds": round(time.perf_counter() - t0, 2),
               "peak_rss_mb": round(_peak_mb(), 1), "device": str(device), "weights_bytes": len(weights),
               "dropped_too_long": report.dropped_no_supervision}
    if loaded is not None:  # give the caller back a model without LoRA layers
        model.unload()
    return TrainOutput(weights, config, figures)


def _seq_logp(model, sample, pad: int, device) -> torch.Tensor:
    """Sum of log-probabilities of a rendered sample's supervised tokens (the reply)."""
    ids = torch.as_tensor(sample.input_ids, dtype=torch.long, device=device)[None]
    labels = torch.as_tensor(sample.labels, dtype=torch.long, device=device)[None]
    logits = model(input_ids=ids, use_cache=False).logits[:, :-1].float()
    target = labels[:, 1:]
    mask = target != -100
    logp = torch.gather(F.log_softmax(logits, -1), 2, target.clamp(min=0)[..., None]).squeeze(-1)
    return (logp * mask).sum()


def _dpo_loss(model, chosen, rejected, beta: float, pad: int, device) -> torch.Tensor:
    pc, pr = _seq_logp(model, chosen, pad, device), _seq_logp(model, rejected, pad, device)
    with torch.no_grad(), model.disable_adapter():
        rc, rr = _seq_logp(model, chosen, pad, device), _seq_logp(model, rejected, pad, device)
    return -F.logsigmoid(beta * ((pc - rc) - (pr - rr)))


def load_weights(weights: bytes) -> dict[str, torch.Tensor]:
    """The state dict back from safetensors bytes, in memory."""
    from safetensors.torch import load

    return load(weights)


def pack(weights: bytes, config: dict) -> bytes:
    """One blob: a JSON header line with the LoRA config, then the safetensors bytes."""
    import json

    head = json.dumps({"format": "psyassist-adapter", "version": 1, "config": config}, sort_keys=True).encode()
    buf = io.BytesIO()
    buf.write(head + b"\n")
    buf.write(weights)
    return buf.getvalue()


def unpack(blob: bytes) -> tuple[dict, bytes]:
    import json

    head, _, weights = blob.partition(b"\n")
    meta = json.loads(head)
    if meta.get("format") != "psyassist-adapter":
        raise PsyassistError("not a psyassist adapter blob")
    return meta["config"], weights
