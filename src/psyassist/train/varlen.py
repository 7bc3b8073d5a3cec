"""Padding-free attention without a dense mask: one causal SDPA call per packed dialogue.

    python -c "from psyassist.train.varlen import register; print(register())"

transformers turns restarting `position_ids` into a block-diagonal T×T mask for sdpa
and eager.  That is correct but computes attention over the whole packed row: for four
700-token dialogues it does (4·700)² work where (4·700²) suffices, and on CPU the masked
SDPA path is the slow "math" kernel.  This attention function receives the dialogue
boundaries (`cu_seq_lens_q`, the same keyword flash-attention varlen uses) and runs
`scaled_dot_product_attention(is_causal=True)` per dialogue, which takes SDPA's fused
kernels and skips the masked blocks entirely.  On CUDA with flash-attn installed,
`flash_attention_2` consumes the same keywords natively.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

NAME = "psyassist_varlen"


def varlen_attention(module, query, key, value, attention_mask, dropout: float = 0.0, scaling=None,
                     is_causal=None, **kwargs):
    cu = kwargs.get("cu_seq_lens_q")
    if cu is None or query.shape[0] != 1 or attention_mask is not None:
        from transformers.integrations.sdpa_attention import sdpa_attention_forward

        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      is_causal=is_causal, **kwargs)
    p = dropout if module.training else 0.0
    gqa = query.shape[1] != key.shape[1]
    bounds = cu.tolist()
    outs = [F.scaled_dot_product_attention(query[:, :, s:e], key[:, :, s:e], value[:, :, s:e], dropout_p=p,
                                           is_causal=True, scale=scaling, enable_gqa=gqa)
            for s, e in zip(bounds[:-1], bounds[1:], strict=True)]
    return torch.cat(outs, dim=2).transpose(1, 2).contiguous(), None


def _no_mask(*args, **kwargs):
    return None  # boundaries travel as cu_seq_lens; no T×T mask is built


def register() -> str:
    from transformers import AttentionInterface, AttentionMaskInterface

    AttentionInterface.register(NAME, varlen_attention)
    AttentionMaskInterface.register(NAME, _no_mask)
    return NAME
