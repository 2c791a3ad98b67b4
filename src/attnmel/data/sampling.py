"""Class-imbalance handling: the paper's offline oversampling, or a weighted sampler.

Both produce the epoch's index order from an explicit ``torch.Generator``, so an epoch is a pure
function of (seed, epoch): that is what makes ``--resume`` and multi-process runs reproducible.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Mapping, Sequence
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


def weighted_pool(pool: list[int], datasets: Sequence[str | None], weights: Mapping[str, float],
                  generator: torch.Generator) -> list[int]:
    """``pool`` with each dataset's entries repeated ``weight`` times: whole copies, then the
    fraction as a random subset, so an epoch holds ``round(weight x entries)`` of each dataset."""
    by_dataset: dict[str | None, list[int]] = {}
    for index in pool:
        by_dataset.setdefault(datasets[index], []).append(index)
    out: list[int] = []
    for name in sorted(by_dataset, key=str):
        entries, weight = by_dataset[name], weights.get(name, 1.0) if name is not None else 1.0
        whole = int(weight)
        out.extend(entries * whole)
        rest = round(weight * len(entries)) - whole * len(entries)
        if rest > 0:
            out.extend(entries[i] for i in torch.randperm(len(entries), generator=generator)[:rest].tolist())
    return out


def epoch_size(labels: Sequence[int], mode: str, *, positive: int = 1, factor: int = 4,
               datasets: Sequence[str | None] | None = None, weights: Mapping[str, float] | None = None) -> int:
    """How many samples one pass draws (what the learning-rate schedule plans its steps by)."""
    pool = oversampled_indices(labels, positive, factor) if mode == "oversample" else list(range(len(labels)))
    if not weights or datasets is None:
        return len(pool)
    counts = Counter(datasets[i] for i in pool)
    return sum(round((weights.get(name, 1.0) if name is not None else 1.0) * n) for name, n in counts.items())


def epoch_indices(
    labels: Sequence[int],
    mode: str,
    generator: torch.Generator,
    *,
    positive: int = 1,
    factor: int = 4,
    datasets: Sequence[str | None] | None = None,
    weights: Mapping[str, float] | None = None,
) -> list[int]:
    """Shuffled indices for one pass over the training data; ``weights`` (dataset name -> relative
    weight, over ``datasets``, each sample's dataset) draws some datasets more often than others."""
    weighted = bool(weights) and datasets is not None
    if mode == "oversample" or (mode == "uniform" and weighted):
        pool = oversampled_indices(labels, positive, factor) if mode == "oversample" else list(range(len(labels)))
        if weighted:
            pool = weighted_pool(pool, datasets, weights, generator)
        order = torch.randperm(len(pool), generator=generator).tolist()
        return [pool[i] for i in order]
    if mode == "weighted":
        counts = Counter(labels)
        weights_of = [1.0 / counts[label] * ((weights or {}).get(datasets[i], 1.0) if weighted else 1.0)
                      for i, label in enumerate(labels)]
        draws = epoch_size(labels, mode, datasets=datasets, weights=weights) if weighted else len(labels)
        return torch.multinomial(torch.tensor(weights_of, dtype=torch.double), draws, replacement=True,
                                 generator=generator).tolist()
    if mode == "uniform":
        return torch.randperm(len(labels), generator=generator).tolist()
    raise ConfigError(f"data.sampler must be one of {SAMPLERS}, not {mode!r}.")
