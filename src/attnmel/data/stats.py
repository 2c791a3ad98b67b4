"""Normalisation statistics from a training split, computed the way the paper's constants were.

The original code averaged per-image channel means and per-image channel standard deviations
over the training set after its preprocessing; ``per_image`` reproduces that (and thus the
``isic2017``/``isic2016`` presets), ``pooled`` gives the usual dataset-wide statistics.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from attnmel.data.dataset import load_pair
from attnmel.data.records import Sample
from attnmel.data.transforms import geometry
from attnmel.io import progress_bar


def normalization_stats(
    samples: Sequence[Sample], resize: int = 256, crop_ratio: float = 0.8, progress: bool = True
) -> dict:
    preprocess = geometry(resize, crop_ratio)
    per_image_mean = torch.zeros(3, dtype=torch.float64)
    per_image_std = torch.zeros(3, dtype=torch.float64)
    total = torch.zeros(3, dtype=torch.float64)
    total_sq = torch.zeros(3, dtype=torch.float64)
    pixels = 0
    for sample in progress_bar(samples, desc="stats", show=progress, unit="img"):
        image, _, _ = load_pair(sample, None)
        x = preprocess(image).to(torch.float64).flatten(1) / 255.0
        per_image_mean += x.mean(dim=1)
        per_image_std += x.std(dim=1)
        total += x.sum(dim=1)
        total_sq += (x**2).sum(dim=1)
        pixels += x.shape[1]
    n = max(len(samples), 1)
    pooled_mean = total / max(pixels, 1)
    pooled_std = (total_sq / max(pixels, 1) - pooled_mean**2).clamp_min(0).sqrt()
    return {
        "mean": [round(v, 4) for v in (per_image_mean / n).tolist()],
        "std": [round(v, 4) for v in (per_image_std / n).tolist()],
        "method": "per_image (mean of per-image channel means and stds, as the paper's constants)",
        "pooled": {"mean": [round(v, 4) for v in pooled_mean.tolist()], "std": [round(v, 4) for v in pooled_std.tolist()]},
        "images": len(samples),
        "resize": resize,
        "crop_ratio": crop_ratio,
    }
