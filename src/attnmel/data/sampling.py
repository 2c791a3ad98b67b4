"""Class-imbalance handling: the paper's offline oversampling, or a weighted sampler.

Both produce the epoch's index order from an explicit ``torch.Generator``, so an epoch is a pure
function of (seed, epoch): that is what makes ``--resume`` and multi-process runs reproducible.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import torch

from attnmel.errors import ConfigError

SAMPLERS = ("oversample", "weighted", "uniform")


def oversampled_indices(labels: Sequence[int], positive: int, factor: int) -> list[int]:
    """Every index once, and positives ``factor`` times in all (the paper: melanoma x4)."""
    if factor < 1:
        raise ConfigError(f"data.oversample must be >= 1, not {factor}.")
    out: list[int] = []
    for index, label in enumerate(labels):
        out.extend([index] * (factor if label == positive else 1))
    return out


def epoch_indices(
    labels: Sequence[int],
    mode: str,
    generator: torch.Generator,
    *,
    positive: int = 1,
    factor: int = 4,
) -> list[int]:
    """Shuffled indices for one pass over the training data."""
    if mode == "oversample":
        pool = oversampled_indices(labels, positive, factor)
        order = torch.randperm(len(pool), generator=generator).tolist()
        return [pool[i] for i in order]
    if mode == "weighted":
        counts = Counter(labels)
        weights = torch.tensor([1.0 / counts[label] for label in labels], dtype=torch.double)
        return torch.multinomial(weights, len(labels), replacement=True, generator=generator).tolist()
    if mode == "uniform":
        return torch.randperm(len(labels), generator=generator).tolist()
    raise ConfigError(f"data.sampler must be one of {SAMPLERS}, not {mode!r}.")


def stratified_split(
    labels: Sequence[int], fraction: float, seed: int
) -> tuple[list[int], list[int]]:
    """Split indices into (train, val) with ``fraction`` of each class in val."""
    if not 0 < fraction < 1:
        raise ConfigError(f"data.val_fraction must be between 0 and 1, not {fraction}.")
    generator = torch.Generator().manual_seed(seed)
    train: list[int] = []
    val: list[int] = []
    for label in sorted(set(labels)):
        members = [i for i, value in enumerate(labels) if value == label]
        order = torch.randperm(len(members), generator=generator).tolist()
        n_val = max(1, round(fraction * len(members))) if len(members) > 1 else 0
        val.extend(members[i] for i in order[:n_val])
        train.extend(members[i] for i in order[n_val:])
    return sorted(train), sorted(val)
