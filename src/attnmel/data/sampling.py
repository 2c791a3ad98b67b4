"""Class-imbalance handling: the paper's offline oversampling, or a weighted sampler.

Both produce the epoch's index order from an explicit ``torch.Generator``, so an epoch is a pure
function of (seed, epoch): that is what makes ``--resume`` and multi-process runs reproducible.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Sequence
from typing import Literal, get_args

import torch

from attnmel.errors import ConfigError

Sampler = Literal["oversample", "weighted", "uniform"]
SAMPLERS: tuple[str, ...] = get_args(Sampler)


def derive_seed(*parts: int) -> int:
    """A 63-bit seed from integers, stable across processes and platforms. A hash (a few us, 7x
    faster than ``np.random.SeedSequence``): the keys of a pass are made while the GPU waits."""
    digest = hashlib.blake2b(",".join(str(int(p)) for p in parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & ((1 << 63) - 1)


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
