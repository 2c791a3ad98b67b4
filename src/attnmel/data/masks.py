"""Regions of interest that attention priors pull the maps toward.

- ``lesion``: the Part 1 lesion mask (AttnMel-CNN-Lesion);
- ``dermo``: the union of dermoscopic-feature masks (AttnMel-CNN-Dermo), from ISIC 2018 Task 2
  attribute PNGs;
- ``background``: the complement of the lesion (the -Bkg control, which should hurt).
A sample without the needed masks has no region (``None``) and contributes only its
classification loss.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from attnmel.data.images import read_mask
from attnmel.data.records import Sample
from attnmel.errors import ConfigError

ROI_KINDS = ("lesion", "dermo", "background")
#: The paper's dermoscopic features; globules are selectable but off by default.
DEFAULT_DERMO_FEATURES = ("pigment_network", "negative_network", "milia_like_cyst", "streaks")


@dataclass(frozen=True)
class RoiSpec:
    kind: str = "lesion"
    features: tuple[str, ...] = DEFAULT_DERMO_FEATURES

    def __post_init__(self) -> None:
        if self.kind not in ROI_KINDS:
            raise ConfigError(f"region of interest {self.kind!r} is not one of {ROI_KINDS}.")


def region_of_interest(sample: Sample, spec: RoiSpec, size: tuple[int, int]) -> np.ndarray | None:
    """Boolean (H, W) region for ``sample`` at image ``size`` (width, height), or None when unknown."""
    if spec.kind in ("lesion", "background"):
        if sample.mask_path is None:
            return None
        lesion = read_mask(sample.mask_path, size)
        return lesion if spec.kind == "lesion" else ~lesion
    return dermoscopic_union(sample, spec.features, size)


def dermoscopic_union(sample: Sample, features: Sequence[str], size: tuple[int, int]) -> np.ndarray | None:
    """Union of the chosen dermoscopic-feature masks (None when the sample has no feature annotation)."""
    if not sample.attribute_paths:
        return None
    union = np.zeros((size[1], size[0]), dtype=bool)
    for feature in features:
        path = sample.attribute_paths.get(feature)
        if path is not None:
            union |= read_mask(path, size)
    return union


def has_region(sample: Sample, spec: RoiSpec) -> bool:
    """Whether ``region_of_interest`` will find the masks it needs (without decoding them)."""
    if spec.kind in ("lesion", "background"):
        return sample.mask_path is not None
    return bool(sample.attribute_paths) or sample.superpixel_paths is not None


def region_paths(sample: Sample, spec: RoiSpec) -> list[Path]:
    """The mask files ``region_of_interest`` will read for ``sample`` (for pre-flight checks)."""
    if spec.kind in ("lesion", "background"):
        return [sample.mask_path] if sample.mask_path is not None else []
    return [sample.attribute_paths[f] for f in spec.features if f in sample.attribute_paths]
