"""Load a model for inference and generate replies with the SAME rendering as training.

    python -c "from psyassist.infer.engine import load, reply; m = load('default'); print(reply(m, [{'role': 'user', 'content': 'Hi'}]))"

Sampling defaults follow Qwen3's model card (seed 000's advice): non-thinking
T=0.7 top_p=0.8 top_k=20; thinking T=0.6 top_p=0.95 top_k=20.  Greedy decoding is
refused unless forced: it makes instruct models repeat themselves.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from psyassist.errors import PsyassistError
from psyassist.render import ChatRenderer, RenderOptions

SAMPLING = {
    False: {"temperature": 0.7, "top_p": 0.8, "top_k": 20},  # thinking off (also models without thinking)
    True: {"temperature": 0.6, "top_p": 0.95, "top_k": 20},
}


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
        if self.temperature <= 0:
            if not self.allow_greedy:
                raise PsyassistError("greedy decoding (temperature 0) makes chat models loop and repeat; "
                                     "use the recommended sampling or pass --allow-greedy to force it.")
            return {"do_sample": False, "max_new_tokens": self.max_new_tokens}
        return {"do_sample": True, "temperature": self.temperature, "top_p": self.top_p, "top_k": self.top_k,
                "max_new_tokens": self.max_new_tokens}


@dataclass
class Loaded:
    model: object
    tok: object
    renderer: ChatRenderer
    name: str
    adapter: str | None = None
    stop_ids: list[int] = field(default_factory=list)


def load(model: str, *, adapter: str | None = None, enable_thinking: bool | None = False, dtype: str = "auto",
         device=None) -> Loaded:
    """Base model (any form models.load_model takes) + optional LoRA adapter directory."""
    from psyassist.models import load_model

    m, tok = load_model(model, dtype=dtype, device=device)
    if adapter:
        from peft import PeftModel

        try:
            m = PeftModel.from_pretrained(m, adapter)
        except (OSError, ValueError) as e:
            raise PsyassistError(f"cannot load adapter {adapter}: {e}") from e
    m.eval()
    renderer = ChatRenderer(tok, RenderOptions(enable_thinking=enable_thinking))
    # Stop on the template's end-of-turn token as well as eos: a model tuned with psyassist learned it.
    stop = sorted({*renderer.end_of_turn_ids(), *([tok.eos_token_id] if tok.eos_token_id is not None else [])})
    return Loaded(m, tok, renderer, model, adapter, stop)


@torch.no_grad()
def reply(loaded: Loaded, messages: list[dict], sampling: Sampling | None = None, streamer=None) -> str:
    """Generate the next assistant reply for `messages` (a list of {role, content})."""
    sampling = sampling or Sampling.recommended(loaded.renderer.opts.enable_thinking)
    prompt = loaded.renderer.inference_prompt(messages)
    ids = loaded.tok(prompt, add_special_tokens=False, return_tensors="pt")["input_ids"].to(loaded.model.device)
    if sampling.seed is not None:
        torch.manual_seed(sampling.seed)
    out = loaded.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), eos_token_id=loaded.stop_ids,
                                pad_token_id=loaded.tok.pad_token_id or loaded.stop_ids[0], streamer=streamer,
                                **sampling.generate_kwargs())
    return loaded.tok.decode(out[0, ids.shape[1]:], skip_special_tokens=True).strip()
