"""Seeded, optionally stratified train/validation split and seeded subsampling.

    psyassist data prepare corpus.jsonl --out prepared/ --val-ratio 0.05 --seed 42 --stratify

Stratification groups conversations by their FIRST tag (untagged ones form one
group) and gives each group its share of the validation set by largest
remainder, so the total is exactly the target.  Both outputs keep the input
order, so a diff between two runs shows only membership changes.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Sequence
from typing import TypeVar

from psyassist.data.schema import Conversation

T = TypeVar("T")


def val_target(n: int, val_ratio: float, val_size: int | None) -> int:
    """How many go to validation: --val-size wins; a ratio > 0 gives at least 1 when n >= 2,
    and training always keeps at least 1."""
    if n < 2:
        return 0
    target = val_size if val_size is not None else round(n * val_ratio)
    if val_size is None and val_ratio > 0:
        target = max(target, 1)
    return max(0, min(target, n - 1))


def _quotas(sizes: dict[str, int], target: int) -> dict[str, int]:
    """Split `target` over groups proportionally to their size (largest remainder, ties by name)."""
    total = sum(sizes.values())
    exact = {k: target * v / total for k, v in sizes.items()}
    quota = {k: int(x) for k, x in exact.items()}
    left = target - sum(quota.values())
    for k in sorted(sizes, key=lambda k: (-(exact[k] - quota[k]), k))[:left]:
        quota[k] += 1
    return quota


def split(convs: Sequence[Conversation], *, val_ratio: float = 0.05, val_size: int | None = None,
          seed: int = 42, stratify: bool = True) -> tuple[list[Conversation], list[Conversation]]:
    """Return (train, validation), deterministic for a given input order and seed."""
    target = val_target(len(convs), val_ratio, val_size)
    groups: dict[str, list[int]] = defaultdict(list)
    for i, c in enumerate(convs):
        groups[(c.tags[0] if c.tags else "") if stratify else ""].append(i)
    rng = random.Random(seed)
    chosen: set[int] = set()
    quotas = _quotas({k: len(v) for k, v in groups.items()}, target) if target else {}
    for key in sorted(groups):
        idx = list(groups[key])
        rng.shuffle(idx)
        chosen.update(idx[: quotas.get(key, 0)])
    train = [c for i, c in enumerate(convs) if i not in chosen]
    val = [c for i, c in enumerate(convs) if i in chosen]
    return train, val


def subsample(items: Sequence[T], limit: int | None, seed: int) -> list[T]:
    """A seeded random subset of at most `limit` items, in input order (quick runs)."""
    if limit is None or len(items) <= limit:
        return list(items)
    keep = set(random.Random(seed).sample(range(len(items)), limit))
    return [x for i, x in enumerate(items) if i in keep]
