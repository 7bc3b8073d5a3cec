"""Deterministic batches for training: padding-free packing or padded rows.

    python -c "from psyassist.train.batching import plan_epoch; print(plan_epoch(10, 2, seed=0, epoch=0))"

An optimizer step consumes a fixed group of `grad_accum × world_size` micro-batches
from a seeded per-epoch order, so the data position of a checkpoint is just the step
number: resuming rebuilds the same order and starts at that group.

Packing (default): the dialogues of a micro-batch are concatenated into ONE row and
`position_ids` restart at 0 for each; transformers builds a block-diagonal causal
mask from them (sdpa/eager; flash-attention uses varlen), so no token attends across
dialogues and no padding is computed.  Padded fallback: rows padded to the longest
dialogue of the micro-batch, padding reported.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from psyassist.render import IGNORE_INDEX, RenderedSample


@dataclass
class Batch:
    input_ids: torch.Tensor
    labels: torch.Tensor
    position_ids: torch.Tensor | None  # packing
    cu_seq_lens: torch.Tensor | None  # packing: dialogue boundaries [0, l1, l1+l2, ...] (varlen attention)
    attention_mask: torch.Tensor | None  # padding
    tokens: int  # real (non-padding) tokens
    padded_tokens: int  # tokens computed including padding
    supervised: int  # label tokens that count in the loss (after the causal shift)

    def model_inputs(self, device) -> dict:
        d = {"input_ids": self.input_ids.to(device), "labels": self.labels.to(device), "use_cache": False}
        if self.position_ids is not None:
            d["position_ids"] = self.position_ids.to(device)
            cu = self.cu_seq_lens.to(device)
            longest = int((self.cu_seq_lens[1:] - self.cu_seq_lens[:-1]).max())
            d.update(cu_seq_lens_q=cu, cu_seq_lens_k=cu, max_length_q=longest, max_length_k=longest)
        if self.attention_mask is not None:
            d["attention_mask"] = self.attention_mask.to(device)
        return d


def plan_epoch(n_samples: int, batch_size: int, *, seed: int, epoch: int) -> list[list[int]]:
    """Seeded shuffle of sample indices, cut into micro-batches (the last one may be short)."""
    order = np.random.default_rng([seed, epoch]).permutation(n_samples)
    return [order[i:i + batch_size].tolist() for i in range(0, n_samples, batch_size)]


def collate(samples: list[RenderedSample], *, packing: bool, pad_id: int) -> Batch:
    if packing:
        ids = np.concatenate([s.input_ids for s in samples])
        labels = np.concatenate([s.labels for s in samples])
        pos = np.concatenate([np.arange(s.n_tokens) for s in samples])
        cu = torch.tensor(np.cumsum([0] + [s.n_tokens for s in samples]), dtype=torch.int32)
        return Batch(torch.from_numpy(ids.astype(np.int64))[None], torch.from_numpy(labels.astype(np.int64))[None],
                     torch.from_numpy(pos)[None], cu, None, len(ids), len(ids), _supervised(labels[None]))
    width = max(s.n_tokens for s in samples)
    ids = np.full((len(samples), width), pad_id, dtype=np.int64)
    labels = np.full((len(samples), width), IGNORE_INDEX, dtype=np.int64)
    mask = np.zeros((len(samples), width), dtype=np.int64)
    for i, s in enumerate(samples):
        ids[i, :s.n_tokens], labels[i, :s.n_tokens], mask[i, :s.n_tokens] = s.input_ids, s.labels, 1
    real = int(mask.sum())
    return Batch(torch.from_numpy(ids), torch.from_numpy(labels), None, None, torch.from_numpy(mask), real,
                 ids.size, _supervised(labels))


def _supervised(labels: np.ndarray) -> int:
    # The model predicts token t+1 from t: the first label of a row never counts.
    return int(np.count_nonzero(labels[:, 1:] != IGNORE_INDEX))
