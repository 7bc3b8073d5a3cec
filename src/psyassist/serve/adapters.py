"""Adapters by name: found in --adapter-dir, loaded on demand into ONE PeftModel, evicted least-recently-used.

    psyassist serve --model default --adapter-dir runs/ --max-adapters 2

`--adapter-dir DIR` holds one adapter per sub-directory, named after it: either
DIR/NAME/adapter_config.json (a saved adapter) or DIR/NAME/adapter/adapter_config.json
(a training run's OUTPUT_DIR).  The directory is rescanned when asked, so an adapter
copied in while the server runs is served without a restart.

The pool belongs to the worker thread that owns the model: every call below runs there.
A loaded adapter is pinned while a running batch row uses it and is never evicted then;
when all --max-adapters slots are pinned, a request for another adapter waits in the queue.
The new adapter is loaded before the old one is deleted (for a moment max+1 are loaded):
PEFT cannot hold a PeftModel with no adapter.

Adapters can also be registered IN MEMORY (`register(name, config, weights)`): a LoRA config dict
and safetensors bytes, loaded with `set_peft_model_state_dict` — no file.  The counselor app
uses this for per-client adapters, which exist on disk only encrypted.
"""

from __future__ import annotations

import threading
from collections import Counter, OrderedDict
from pathlib import Path

from psyassist.errors import PsyassistError

ADAPTER_CONFIG = "adapter_config.json"
BASE = "__base__"  # PEFT's name for "no adapter" in a mixed-adapter batch


def discover(adapter_dir: str | Path | None) -> dict[str, Path]:
    """Adapter name → directory holding adapter_config.json."""
    if adapter_dir is None:
        return {}
    root = Path(adapter_dir)
    found = {}
    for d in sorted(p for p in root.iterdir() if p.is_dir()):
        if (d / ADAPTER_CONFIG).is_file():
            found[d.name] = d
        elif (d / "adapter" / ADAPTER_CONFIG).is_file():  # a training run: RUN/adapter
            found[d.name] = d / "adapter"
    return found


def check_adapter_dir(adapter_dir: str | Path | None) -> None:
    if adapter_dir is not None and not Path(adapter_dir).is_dir():
        raise PsyassistError(f"--adapter-dir {adapter_dir}: not a directory (expected one sub-directory per "
                             "adapter, each with adapter_config.json or adapter/adapter_config.json).")


class AdapterPool:
    def __init__(self, model, adapter_dir: str | Path | None, max_adapters: int):
        if max_adapters < 1:
            raise PsyassistError(f"--max-adapters must be at least 1, got {max_adapters}")
        check_adapter_dir(adapter_dir)
        self.model = model  # becomes a PeftModel at the first adapter load
        self.adapter_dir = adapter_dir
        self.max = max_adapters
        self.loaded: OrderedDict[str, Path] = OrderedDict()  # least recently used first
        self.names: tuple[str, ...] = ()  # a copy of loaded's keys that /health may read from another thread
        self.pins: Counter = Counter()
        self.loads = 0
        self.evictions = 0
        self.memory: dict[str, tuple[dict, bytes]] = {}  # name -> (LoRA config, safetensors bytes)
        self.memory_lock = threading.Lock()  # register/forget run on request threads, loads on the worker

    def available(self) -> dict[str, Path | str]:
        with self.memory_lock:
            mem = {n: "memory" for n in self.memory}
        return {**discover(self.adapter_dir), **mem}

    def register(self, name: str, config: dict, weights: bytes) -> None:
        with self.memory_lock:
            self.memory[name] = (config, weights)

    def forget(self, name: str) -> None:
        """Drop a registered adapter; a loaded copy is evicted at the next acquire that needs a slot."""
        with self.memory_lock:
            self.memory.pop(name, None)

    def acquire(self, name: str | None) -> bool:
        """Load (if needed) and pin `name`; False when every slot is pinned by running rows."""
        if name is None:
            return True
        if name in self.loaded:
            self.loaded.move_to_end(name)
            self.names = tuple(self.loaded)
            self.pins[name] += 1
            return True
        victim = None
        if len(self.loaded) >= self.max:
            victim = next((n for n in self.loaded if not self.pins[n]), None)
            if victim is None:
                return False
        path = self.available().get(name)
        if path is None:
            raise PsyassistError(f"adapter '{name}' is no longer available (not in {self.adapter_dir}, not registered)")
        self._load(name, path)
        if victim is not None:
            self.model.set_adapter(name)  # the victim may be PEFT's active adapter; deleting that one warns
            self.model.delete_adapter(victim)
            del self.loaded[victim]
            self.pins.pop(victim, None)
            self.evictions += 1
            self.names = tuple(self.loaded)
        self.pins[name] += 1
        return True

    def release(self, name: str | None) -> None:
        if name is not None and self.pins[name] > 0:
            self.pins[name] -= 1

    def _load(self, name: str, path: Path | str) -> None:
        from peft import PeftModel

        if path == "memory":
            with self.memory_lock:
                config, weights = self.memory[name]
            return self._load_memory(name, config, weights)
        try:
            if isinstance(self.model, PeftModel):
                self.model.load_adapter(str(path), adapter_name=name, is_trainable=False)
            else:
                self.model = PeftModel.from_pretrained(self.model, str(path), adapter_name=name,
                                                       is_trainable=False)
        except (OSError, ValueError, RuntimeError, KeyError) as e:
            raise PsyassistError(f"cannot load adapter '{name}' from {path}: {e}") from e
        self.model.eval()
        self.loaded[name] = path
        self.loads += 1
        self.names = tuple(self.loaded)

    def _load_memory(self, name: str, config: dict, weights: bytes) -> None:
        from peft import LoraConfig, PeftModel, get_peft_model, set_peft_model_state_dict
        from safetensors.torch import load

        try:
            cfg = LoraConfig(**{k: v for k, v in config.items() if k in LoraConfig.__dataclass_fields__})
            cfg.inference_mode = True
            if isinstance(self.model, PeftModel):
                self.model.add_adapter(name, cfg)
            else:
                self.model = get_peft_model(self.model, cfg, adapter_name=name)
            result = set_peft_model_state_dict(self.model, load(weights), adapter_name=name)
        except (OSError, ValueError, RuntimeError, KeyError, TypeError) as e:
            raise PsyassistError(f"cannot load adapter '{name}' from memory: {e}") from e
        if getattr(result, "unexpected_keys", None):
            raise PsyassistError(f"adapter '{name}' does not fit this model (unexpected weights, e.g. "
                                 f"{result.unexpected_keys[0]})")
        self.model.eval()
        self.loaded[name] = Path("memory:" + name)
        self.loads += 1
        self.names = tuple(self.loaded)

    def adapter_names(self, rows_adapters: list[str | None]) -> list[str] | None:
        """PEFT's per-row adapter list for a forward (None when no adapter was ever loaded)."""
        if not self.loads:
            return None
        return [a if a is not None else BASE for a in rows_adapters]
