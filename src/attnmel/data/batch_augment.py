"""The paper's augmentation for a whole uint8 batch at once, on the GPU (or as CPU tensor ops).

``transforms.train_augment`` runs per sample in DataLoader workers: RandomCrop, RandomRot90,
RandomHorizontalFlip, RandomVerticalFlip, then ToDtype and Normalize. ``train_params`` draws the
same five choices from the same per-sample seed, with the same generator calls in the same order
as those v2 transforms make under ``torch.manual_seed(seed)``, so a key ``(index, seed)`` gives
the same pixels on both paths (a test compares them output for output). A crop followed by a
rotation and flips is a permutation of pixel positions, so the geometry of the whole batch is one
``gather``; the float conversion repeats torchvision's arithmetic (``x * (1/255)``, ``- mean``,
``/ std``).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class AugmentParams:
    """Per-sample crop offsets, quarter turns and flips, as (B,) tensors."""

    top: torch.Tensor
    left: torch.Tensor
    quarter_turns: torch.Tensor
    hflip: torch.Tensor
    vflip: torch.Tensor

    def to(self, device: torch.device | str) -> AugmentParams:
        return AugmentParams(*(t.to(device, non_blocking=True) for t in
                               (self.top, self.left, self.quarter_turns, self.hflip, self.vflip)))


def train_params(seeds: Sequence[int], in_size: int, out_size: int) -> AugmentParams:
    """The choices ``train_augment`` makes for each seed on an ``in_size`` square input."""
    _check_sizes(in_size, out_size)
    generator = torch.Generator()
    rows = []
    for seed in seeds:
        generator.manual_seed(int(seed))
        # v2.RandomCrop draws top, then left, each only when that side is longer than the crop.
        top = int(torch.randint(0, in_size - out_size + 1, (), generator=generator)) if in_size > out_size else 0
        left = int(torch.randint(0, in_size - out_size + 1, (), generator=generator)) if in_size > out_size else 0
        quarter_turns = int(torch.randint(0, 4, (), generator=generator))  # RandomRot90
        hflip = bool(torch.rand(1, generator=generator) < 0.5)  # _RandomApplyTransform: flip unless rand >= p
        vflip = bool(torch.rand(1, generator=generator) < 0.5)
        rows.append((top, left, quarter_turns, hflip, vflip))
    columns = list(zip(*rows, strict=True)) if rows else [(), (), (), (), ()]
    return AugmentParams(
        torch.tensor(columns[0], dtype=torch.long),
        torch.tensor(columns[1], dtype=torch.long),
        torch.tensor(columns[2], dtype=torch.long),
        torch.tensor(columns[3], dtype=torch.bool),
        torch.tensor(columns[4], dtype=torch.bool),
    )


def center_params(count: int, in_size: int, out_size: int) -> AugmentParams:
    """``v2.CenterCrop`` (the evaluation view): the same offset for every sample, no turns or flips."""
    _check_sizes(in_size, out_size)
    offset = int(round((in_size - out_size) / 2.0))
    zeros = torch.zeros(count, dtype=torch.long)
    return AugmentParams(zeros + offset, zeros + offset, zeros, zeros.bool(), zeros.bool())


def _check_sizes(in_size: int, out_size: int) -> None:
    if out_size > in_size:
        raise ValueError(f"crop size {out_size} is larger than the input size {in_size}")


@functools.lru_cache(maxsize=8)
def _dihedral_offsets(in_size: int, out_size: int, device: torch.device) -> torch.Tensor:
    """(16, out_size**2) flat source offsets inside the crop, for combination ``4*k + 2*hflip + vflip``.

    Built by applying rot90 and the flips to a grid of positions: the result holds, for every
    output pixel, where it came from.
    """
    rows = torch.arange(out_size).view(-1, 1).expand(out_size, out_size)
    cols = torch.arange(out_size).view(1, -1).expand(out_size, out_size)
    grid = rows * in_size + cols
    maps = []
    for k in range(4):
        for hflip in (False, True):
            for vflip in (False, True):
                view = torch.rot90(grid, k, dims=(-2, -1))
                view = view.flip(-1) if hflip else view
                view = view.flip(-2) if vflip else view
                maps.append(view.reshape(-1))
    return torch.stack(maps).to(device)


def augment_geometry(images: torch.Tensor, params: AugmentParams, out_size: int) -> torch.Tensor:
    """Crop, rotate and flip each of ``images`` (B, C, S, S) of any dtype: (B, C, out_size, out_size)."""
    batch, channels, height, width = images.shape
    if height != width:
        raise ValueError(f"batch augmentation expects square inputs, got {height}x{width}")
    params = params.to(images.device)
    combo = params.quarter_turns * 4 + params.hflip.long() * 2 + params.vflip.long()
    offsets = _dihedral_offsets(height, out_size, images.device)[combo]
    index = offsets + (params.top * width + params.left).view(-1, 1)
    flat = images.reshape(batch, channels, height * width)
    return flat.gather(2, index.view(batch, 1, -1).expand(batch, channels, -1)).view(batch, channels, out_size, out_size)


def normalize(images: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """uint8 (B, 3, H, W) -> float32, as ``v2.ToDtype(float32, scale=True)`` then ``v2.Normalize``."""
    out = images.to(torch.float32).mul_(1.0 / 255)
    return out.sub_(_channel_values(tuple(mean), images.device)).div_(_channel_values(tuple(std), images.device))


@functools.lru_cache(maxsize=16)
def _channel_values(values: tuple[float, ...], device: torch.device) -> torch.Tensor:
    """Per-channel constants on ``device``, made once: a copy from pageable memory would wait for the GPU."""
    return torch.tensor(values, dtype=torch.float32).view(1, -1, 1, 1).to(device)
