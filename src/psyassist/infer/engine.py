"""Load a model for inference and generate replies with the SAME rendering as training.

    python -c "from psyassist.infer.engine import load, reply; m = load('default'); print(reply(m, [{'role': 'user', 'content': 'Hi'}]))"

Sampling defaults follow Qwen3's model card (seed 000's advice): non-thinking
T=0.7 top_p=0.8 top_k=20; thinking T=0.6 top_p=0.95 top_k=20.  Greedy decoding is
refused unless forced: it makes instruct models repeat themselves.

`generate()` is the one generation call behind chat, batch generation and `reply()`:
a batch of rendered prompts, left-padded (a decoder continues from the right end of
each row), optionally streamed (batch of one) and stoppable from another thread or a
signal handler through a `threading.Event` checked after every new token.
"""

from __future__ import annotations

import json
import re
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from transformers import StoppingCriteria, StoppingCriteriaList

from psyassist.errors import PsyassistError
from psyassist.render import ChatRenderer, RenderOptions
from psyassist.ui import warn

SAMPLING = {
    False: {"temperature": 0.7, "top_p": 0.8, "top_k": 20},  # thinking off (also models without thinking)
    True: {"temperature": 0.6, "top_p": 0.95, "top_k": 20},
}
MERGE_MANIFEST = "psyassist_merge.json"  # written by models.merge_lora next to the merged weights
_THINK = re.compile(r"^\s*<think>(.*?)(?:</think>|$)\s*", re.S)  # an unclosed block (cut by the limit) is all thinking


@dataclass
class Sampling:
    temperature: float = 0.7
    top_p: float = 0.8
    top_k: int = 20
    max_new_tokens: int = 512
    seed: int | None = None
    allow_greedy: bool = False

    @classmethod
    def recommended(cls, thinking: bool | None, **kw) -> Sampling:
        return cls(**{**SAMPLING[bool(thinking)], **kw})

    def generate_kwargs(self) -> dict:
        if self.max_new_tokens < 1:
            raise PsyassistError(f"max_new_tokens must be at least 1, got {self.max_new_tokens}")
        if self.temperature <= 0:
            if not self.allow_greedy:
                raise PsyassistError("greedy decoding (temperature 0) makes chat models loop and repeat; "
                                     "use the recommended sampling or pass --allow-greedy to force it.")
            return {"do_sample": False, "max_new_tokens": self.max_new_tokens}
        if not 0 < self.top_p <= 1 or self.top_k < 0:
            raise PsyassistError(f"top_p must be in (0, 1] and top_k >= 0, got {self.top_p} and {self.top_k}")
        return {"do_sample": True, "temperature": self.temperature, "top_p": self.top_p, "top_k": self.top_k,
                "max_new_tokens": self.max_new_tokens}

    def to_dict(self) -> dict:
        """What a results file records: the settings plus the decoding they amount to."""
        return {**asdict(self), "greedy": self.temperature <= 0}


@dataclass
class Loaded:
    model: object
    tok: object
    renderer: ChatRenderer
    name: str
    adapter: str | None = None
    stop_ids: list[int] = field(default_factory=list)
    merged_from: dict | None = None  # psyassist_merge.json of a merged model: its base and adapter

    @property
    def thinking(self) -> bool | None:
        return self.renderer.opts.enable_thinking

    def with_thinking(self, enable_thinking: bool | None) -> Loaded:
        """The same weights rendered in the other thinking mode (chat's /think on|off)."""
        renderer = ChatRenderer(self.tok, RenderOptions(enable_thinking=enable_thinking))
        return Loaded(self.model, self.tok, renderer, self.name, self.adapter, self.stop_ids, self.merged_from)

    def describe(self) -> dict:
        p = next(self.model.parameters())
        return {"model": self.name, "adapter": self.adapter, "merged_from": self.merged_from,
                "device": str(p.device), "dtype": str(p.dtype).removeprefix("torch."),
                "thinking": self.thinking, "supports_thinking": supports_thinking(self.tok)}


@dataclass
class Generation:
    text: str  # the decoded reply: special tokens removed, surrounding whitespace stripped
    new_tokens: int  # generated tokens up to (not counting) the end-of-turn token
    prompt_tokens: int
    finish: str  # "stop" (end-of-turn token), "length" (max_new_tokens) or "interrupted"
    seconds: float  # wall time of the generate call (shared by every row of a batch)


def supports_thinking(tok) -> bool:
    """Whether the chat template has Qwen3's enable_thinking switch."""
    return "enable_thinking" in (tok.chat_template or "")


def split_think(text: str) -> tuple[str | None, str]:
    """(reasoning or None, answer) of a reply that may start with <think>…</think>."""
    m = _THINK.match(text)
    if not m:
        return None, text.strip()
    return m.group(1).strip(), text[m.end():].strip()


def load(model: str, *, adapter: str | None = None, enable_thinking: bool | None = False, dtype: str = "auto",
         device=None, merged: bool = False) -> Loaded:
    """Base model (any form models.load_model takes) + optional LoRA adapter directory.

    merged=True: `model` is a `psyassist merge` output; its manifest (base, adapter, the
    verified logit difference) is read so chat and results files can say what was merged.
    """
    from psyassist.models import load_model

    merged_from = None
    if merged:
        if adapter:
            raise PsyassistError("a merged model already holds its adapter: give --merged DIR or "
                                 "--model M --adapter A, not both.")
        manifest = Path(model) / MERGE_MANIFEST
        if not Path(model).is_dir():
            raise PsyassistError(f"--merged {model}: not a directory (expected the output of `psyassist merge`).")
        if manifest.is_file():
            try:
                merged_from = json.loads(manifest.read_text(encoding="utf-8"))
            except json.JSONDecodeError as e:
                raise PsyassistError(f"{manifest}: not valid JSON ({e}); run `psyassist merge` again.") from e
        else:
            warn(f"{model} has no {MERGE_MANIFEST}: not made by `psyassist merge`, loaded as a plain model.")
    m, tok = load_model(model, dtype=dtype, device=device)
    if adapter:
        from peft import PeftModel

        if not (Path(adapter) / "adapter_config.json").is_file():
            raise PsyassistError(f"{adapter} is not a LoRA adapter directory (no adapter_config.json); "
                                 "a training run writes it to OUTPUT_DIR/adapter.")
        try:
            m = PeftModel.from_pretrained(m, adapter)
        except (OSError, ValueError, RuntimeError, KeyError) as e:
            raise PsyassistError(f"cannot load adapter {adapter} onto {model}: {e}") from e
    m.eval()
    if enable_thinking and not supports_thinking(tok):
        warn(f"{model}'s chat template has no thinking switch: --thinking only selects the thinking sampling.")
    renderer = ChatRenderer(tok, RenderOptions(enable_thinking=enable_thinking))
    # Stop on the template's end-of-turn token as well as eos: a model tuned with psyassist learned it.
    stop = sorted({*renderer.end_of_turn_ids(), *([tok.eos_token_id] if tok.eos_token_id is not None else [])})
    return Loaded(m, tok, renderer, model, adapter, stop, merged_from)


class StopOnEvent(StoppingCriteria):
    """Ends generation at the next token once `event` is set (chat's Ctrl-C handler sets it)."""

    def __init__(self, event: threading.Event):
        self.event = event

    def __call__(self, input_ids, scores, **kwargs) -> torch.BoolTensor:
        return torch.full((input_ids.shape[0],), self.event.is_set(), dtype=torch.bool, device=input_ids.device)


def pad_id(loaded: Loaded) -> int:
    return loaded.tok.pad_token_id if loaded.tok.pad_token_id is not None else loaded.stop_ids[0]


@torch.inference_mode()
def generate(loaded: Loaded, prompts: list[str], sampling: Sampling, *, streamer=None,
             stop: threading.Event | None = None) -> list[Generation]:
    """One generate call for a batch of rendered prompts, left-padded; the RNG is the caller's to seed."""
    kwargs = sampling.generate_kwargs()
    tok, model = loaded.tok, loaded.model
    enc = tok(list(prompts), add_special_tokens=False)["input_ids"]
    pad = pad_id(loaded)
    width = max(len(e) for e in enc)
    ids = torch.full((len(enc), width), pad, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for row, e in enumerate(enc):
        ids[row, width - len(e):] = torch.tensor(e, dtype=torch.long)
        mask[row, width - len(e):] = 1
    criteria = StoppingCriteriaList([StopOnEvent(stop)]) if stop is not None else None
    t0 = time.perf_counter()
    try:
        out = model.generate(input_ids=ids.to(model.device), attention_mask=mask.to(model.device),
                             eos_token_id=loaded.stop_ids, pad_token_id=pad, streamer=streamer,
                             stopping_criteria=criteria, **kwargs)
    except torch.OutOfMemoryError as e:
        raise PsyassistError(f"out of GPU memory generating {len(enc)} × ({width} prompt + {sampling.max_new_tokens} "
                             "new) tokens: lower --batch-size or --max-new-tokens, or use --dtype bf16.") from e
    secs = time.perf_counter() - t0
    stops = set(loaded.stop_ids)
    results = []
    for row, e in enumerate(enc):
        gen = out[row, width:].tolist()
        end = next((j for j, t in enumerate(gen) if t in stops), None)
        if end is not None:
            finish = "stop"
        else:
            end = len(gen)
            finish = "interrupted" if stop is not None and stop.is_set() else "length"
        text = tok.decode(gen[:end], skip_special_tokens=True).strip()
        results.append(Generation(text, end, len(e), finish, round(secs, 4)))
    return results


def reply(loaded: Loaded, messages: list[dict], sampling: Sampling | None = None, streamer=None) -> str:
    """Generate the next assistant reply for `messages` (a list of {role, content})."""
    sampling = sampling or Sampling.recommended(loaded.thinking)
    if sampling.seed is not None:
        torch.manual_seed(sampling.seed)
    prompt = loaded.renderer.inference_prompt(messages)
    return generate(loaded, [prompt], sampling, streamer=streamer)[0].text
