"""Attention quality: how well each attention map (or class activation map) covers the lesion.

The paper's measure (Yan et al., IPMI 2019): upsample each map to the model input, min-max
normalise it per image, binarise it at a threshold (0.5), and compute the Jaccard index against
the lesion mask in the same view. Dice is reported beside it. A pixel is attended when its
normalised value is above the threshold. A flat map (range below ``attnmel.models.maps.FLAT_EPSILON``)
is not stretched, which would invent a region out of noise: it is counted, and scored as what it
is, uniform attention: a sigmoid map attends everywhere when its value is above the threshold and
nowhere otherwise; a softmax map or a CAM, which have no absolute scale, attend everywhere. When
both the attended region and the mask are empty the two agree: Jaccard = Dice = 1. Images without
a mask are counted, never scored as zero.

Scores are computed here for a whole batch at once (torch/numpy); scikit-learn's
``jaccard_score`` scores one pair of masks per call, and the test suite uses it as the reference.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from attnmel.errors import ConfigError
from attnmel.evaluation.split_predictions import predict_split
from attnmel.inference import DataSplit, InferenceSettings, Predictions
from attnmel.io import atomic_write_text
from attnmel.models.maps import FLAT_EPSILON, MapKind, is_flat, upsample_map

#: Images upsampled and scored at a time (bounds memory at full input size).
_CHUNK = 64


@dataclass
class AttentionQuality:
    """Per-image and mean Jaccard/Dice of every attention layer (``cam`` for GAP models)."""

    threshold: float
    roi: str
    image_ids: list[str]
    #: (N,) whether the image has a mask; images without one have NaN scores
    has_mask: np.ndarray
    #: layer -> (N,) per-image scores
    jaccard: dict[str, np.ndarray]
    dice: dict[str, np.ndarray]
    #: layer -> (N,) whether the map was flat (scored as uniform attention, never stretched)
    flat: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def layers(self) -> list[str]:
        return list(self.jaccard)

    @property
    def images_with_mask(self) -> int:
        return int(self.has_mask.sum())

    @property
    def images_without_mask(self) -> int:
        return len(self.image_ids) - self.images_with_mask

    def flat_count(self, layer: str) -> int:
        """Flat maps among the images with a mask."""
        return int(self.flat[layer][self.has_mask].sum()) if layer in self.flat else 0

    def mean(self, layer: str, metric: str = "jaccard") -> float:
        """Mean over the images that have a mask (NaN when none has)."""
        scores = {"jaccard": self.jaccard, "dice": self.dice}[metric][layer][self.has_mask]
        return float(scores.mean()) if scores.size else math.nan

    def to_dict(self) -> dict[str, Any]:
        return {
            "roi": self.roi,
            "threshold": self.threshold,
            "images": len(self.image_ids),
            "images_with_mask": self.images_with_mask,
            "images_without_mask": self.images_without_mask,
            "flat_epsilon": FLAT_EPSILON,
            "layers": {layer: {"jaccard": self.mean(layer), "dice": self.mean(layer, "dice"),
                               "flat_maps": self.flat_count(layer)} for layer in self.layers},
        }

    def to_frame(self) -> pd.DataFrame:
        """One row per image: ``image``, ``has_mask``, then ``<layer>_jaccard`` and ``<layer>_dice``."""
        frame = pd.DataFrame({"image": self.image_ids, "has_mask": self.has_mask.astype(bool)})
        for layer in self.layers:
            frame[f"{layer}_jaccard"] = self.jaccard[layer]
            frame[f"{layer}_dice"] = self.dice[layer]
            if layer in self.flat:
                frame[f"{layer}_flat"] = self.flat[layer]
        return frame

    def write_csv(self, path: str | Path) -> Path:
        path = Path(path)
        atomic_write_text(path, self.to_frame().to_csv(index=False))
        return path

    def to_string(self) -> str:
        lines = [
            f"attention quality vs {self.roi} masks (threshold {self.threshold}; {self.images_with_mask} of "
            f"{len(self.image_ids)} images scored, {self.images_without_mask} without a mask)",
            f"{'layer':<12}{'Jaccard':>10}{'Dice':>10}{'flat maps':>12}",
        ]
        lines += [f"{layer:<12}{self.mean(layer):>10.4f}{self.mean(layer, 'dice'):>10.4f}"
                  f"{self.flat_count(layer):>7} of {self.images_with_mask}" for layer in self.layers]
        lines.append(f"(a map is flat when its range is below {FLAT_EPSILON}, relative for CAMs and softmax maps; "
                     "it is scored as uniform attention, not stretched)")
        return "\n".join(lines)


def check_mask_threshold(threshold: float) -> float:
    if not 0 <= threshold < 1:
        raise ConfigError(f"mask threshold must be in [0, 1) (a pixel is attended when above it), not {threshold}.")
    return float(threshold)


def binarize_maps(
    maps: np.ndarray | torch.Tensor, size: tuple[int, int], threshold: float = 0.5, kind: MapKind = "probability"
) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, h, w) maps -> ((N, H, W) attended pixels, (N,) flat flags): bilinear upsampling to ``size``,
    per-image min-max, ``> threshold``; a flat map is uniform attention (see the module docstring)."""
    check_mask_threshold(threshold)
    maps = maps.float() if torch.is_tensor(maps) else torch.as_tensor(np.asarray(maps, dtype=np.float32))
    flat = torch.tensor([is_flat(m.numpy(), kind) for m in maps], dtype=torch.bool)
    upsampled = upsample_map(maps, size)
    low = upsampled.amin(dim=(1, 2), keepdim=True)
    span = upsampled.amax(dim=(1, 2), keepdim=True) - low
    attended = (upsampled - low) / span.clamp_min(1e-12) > threshold
    if kind == "probability":
        uniform = upsampled.mean(dim=(1, 2), keepdim=True).expand_as(upsampled) > threshold
    else:
        uniform = torch.ones_like(attended)
    return torch.where(flat[:, None, None], uniform, attended), flat


def overlap_scores(attended: torch.Tensor | np.ndarray, masks: torch.Tensor | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-image (Jaccard, Dice) of two (N, H, W) boolean stacks; both empty counts as agreement (1.0)."""
    attended = torch.as_tensor(attended).bool()
    masks = torch.as_tensor(masks).bool()
    intersection = (attended & masks).sum(dim=(1, 2)).double()
    union = (attended | masks).sum(dim=(1, 2)).double()
    total = attended.sum(dim=(1, 2)).double() + masks.sum(dim=(1, 2)).double()
    jaccard = torch.where(union > 0, intersection / union.clamp_min(1), torch.ones_like(union))
    dice = torch.where(total > 0, 2 * intersection / total.clamp_min(1), torch.ones_like(total))
    return jaccard.numpy(), dice.numpy()


def score_attention(
    attention: dict[str, np.ndarray],
    masks: np.ndarray,
    has_mask: np.ndarray,
    image_ids: Sequence[str],
    threshold: float = 0.5,
    roi: str = "lesion",
    kinds: dict[str, MapKind] | None = None,
) -> AttentionQuality:
    """Score raw maps ``attention[layer]`` (N, h, w) against ``masks`` (N, H, W) at the masks' size;
    ``kinds`` says what each layer's values are (default: sigmoid probabilities)."""
    threshold = check_mask_threshold(threshold)
    masks = np.asarray(masks, dtype=bool)
    has_mask = np.asarray(has_mask, dtype=bool)
    size = tuple(masks.shape[-2:])
    scored = np.flatnonzero(has_mask)
    jaccard: dict[str, np.ndarray] = {}
    dice: dict[str, np.ndarray] = {}
    flat: dict[str, np.ndarray] = {}
    for layer, maps in attention.items():
        jaccard[layer] = np.full(len(image_ids), np.nan)
        dice[layer] = np.full(len(image_ids), np.nan)
        flat[layer] = np.zeros(len(image_ids), dtype=bool)
        for start in range(0, len(scored), _CHUNK):
            rows = scored[start : start + _CHUNK]
            attended, flat[layer][rows] = binarize_maps(np.asarray(maps)[rows], size, threshold,
                                                        (kinds or {}).get(layer, "probability"))
            jaccard[layer][rows], dice[layer][rows] = overlap_scores(attended, masks[rows])
    return AttentionQuality(threshold, roi, list(image_ids), has_mask, jaccard, dice, flat)


def attention_quality(
    checkpoint: str | Path | Sequence[str | Path],
    source: DataSplit,
    *,
    threshold: float = 0.5,
    roi: str = "lesion",
    settings: InferenceSettings = InferenceSettings(progress=False),
) -> AttentionQuality:
    """Attention quality of a checkpoint (a run folder or ``best.safetensors``, or an ensemble) on one split."""
    check_mask_threshold(threshold)
    run = predict_split(checkpoint, source, settings, roi=roi, desc=f"attention {source.split}")
    return score_predictions(run.predictions, threshold, roi, run.loaded.map_kinds)


def score_predictions(
    predictions: Predictions, threshold: float = 0.5, roi: str = "lesion", kinds: dict[str, MapKind] | None = None
) -> AttentionQuality:
    """``score_attention`` on what ``collect_maps`` returned."""
    return score_attention(predictions.attention, predictions.masks, predictions.has_mask, predictions.image_ids,
                           threshold, roi, kinds)
