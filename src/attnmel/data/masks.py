"""Regions of interest that attention priors pull the maps toward.

- ``lesion``: the Part 1 lesion mask (AttnMel-CNN-Lesion);
- ``dermo``: the union of dermoscopic-feature masks (AttnMel-CNN-Dermo), from ISIC 2018 Task 2
  attribute PNGs or, for samples without them, from ISIC 2017 Part 2 (a superpixel map whose RGB
  encodes each pixel's superpixel index, and a JSON with one 0/1 list per feature, one entry per
  superpixel);
- ``background``: the complement of the lesion (the -Bkg control, which should hurt).
A sample without the needed masks has no region (``None``) and contributes only its
classification loss.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

import numpy as np

from attnmel.data.images import read_mask, read_superpixel_index
from attnmel.data.records import Sample
from attnmel.errors import ConfigError, DataError

RoiKind = Literal["lesion", "dermo", "background"]
ROI_KINDS: tuple[str, ...] = get_args(RoiKind)
#: Dermoscopic features annotated by ISIC (2017 Part 2 and 2018 Task 2).
DermoFeature = Literal["pigment_network", "negative_network", "milia_like_cyst", "streaks", "globules"]
DERMO_FEATURES: tuple[str, ...] = get_args(DermoFeature)
#: The paper's dermoscopic features; globules are selectable but off by default.
DEFAULT_DERMO_FEATURES = ("pigment_network", "negative_network", "milia_like_cyst", "streaks")
#: Other spellings of a feature in ISIC 2017 Part 2 JSON files (the challenge called it "network").
_FEATURE_ALIASES = {"network": "pigment_network"}


@dataclass(frozen=True)
class RoiSpec:
    kind: str = "lesion"
    features: tuple[str, ...] = DEFAULT_DERMO_FEATURES

    def __post_init__(self) -> None:
        if self.kind not in ROI_KINDS:
            raise ConfigError(f"region of interest {self.kind!r} is not one of {ROI_KINDS}.")
        unknown = [f for f in self.features if f not in DERMO_FEATURES]
        if unknown:
            raise ConfigError(f"data.dermo_features: unknown feature(s) {unknown}; choose from {list(DERMO_FEATURES)}.")
        if self.kind == "dermo" and not self.features:
            raise ConfigError("data.dermo_features is empty; the dermo region needs at least one feature.")


def region_of_interest(sample: Sample, spec: RoiSpec, size: tuple[int, int]) -> np.ndarray | None:
    """Boolean (H, W) region for ``sample`` at image ``size`` (width, height), or None when unknown."""
    if spec.kind in ("lesion", "background"):
        if sample.mask_path is None:
            return None
        lesion = read_mask(sample.mask_path, size)
        return lesion if spec.kind == "lesion" else ~lesion
    return dermoscopic_union(sample, spec.features, size)


def dermoscopic_union(sample: Sample, features: Sequence[str], size: tuple[int, int]) -> np.ndarray | None:
    """Union of the chosen dermoscopic-feature masks (None when the sample has no feature annotation).

    ISIC 2018 Task 2 attribute PNGs are used when a sample has them, else ISIC 2017 Part 2 superpixels.
    """
    if sample.attribute_paths:
        union = np.zeros((size[1], size[0]), dtype=bool)
        for feature in features:
            path = sample.attribute_paths.get(feature)
            if path is not None:
                union |= read_mask(path, size)
        return union
    if sample.superpixel_paths is not None:
        superpixels, annotation = sample.superpixel_paths
        return superpixel_union(superpixels, annotation, features, size)
    return None


def read_superpixel_features(path: str | Path) -> dict[str, np.ndarray]:
    """An ISIC 2017 Part 2 ``<id>_features.json``: feature name -> bool per superpixel.

    All lists must have one 0/1 entry per superpixel (so the same length).
    """
    path = Path(path)
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(path, "dermoscopic-feature JSON not found.", "restore it from the ISIC 2017 Part 2 archive.") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(path, f"not a readable JSON file ({exc}).", "restore it from the ISIC 2017 Part 2 archive.") from None
    if not isinstance(payload, dict):
        raise DataError(path, "expected a JSON object of per-feature lists.", "use the ISIC 2017 Part 2 ground-truth file.")
    features: dict[str, np.ndarray] = {}
    for key, values in payload.items():
        name = _FEATURE_ALIASES.get(key, key)
        if name not in DERMO_FEATURES:
            continue
        bad = [v for v in values if v not in (0, 1)] if isinstance(values, list) else [values]
        if bad:
            raise DataError(path, f"feature {key!r} must be a list of 0/1 values (found {bad[0]!r}).",
                            "use the ISIC 2017 Part 2 ground-truth file.")
        features[name] = np.asarray(values, dtype=float).reshape(-1) == 1
    if not features:
        raise DataError(path, f"no dermoscopic-feature lists found (keys: {sorted(payload)}).",
                        f"expected lists named {list(DERMO_FEATURES)}.")
    lengths = {name: len(flags) for name, flags in features.items()}
    if len(set(lengths.values())) > 1:
        raise DataError(path, f"feature lists differ in length {lengths}.", "each list needs one entry per superpixel.")
    return features


def superpixel_union(
    superpixel_path: str | Path, features_path: str | Path, features: Sequence[str], size: tuple[int, int]
) -> np.ndarray:
    """Pixels whose superpixel carries any of ``features`` (ISIC 2017 Part 2), at image ``size``."""
    index = read_superpixel_index(superpixel_path, size)
    flags = read_superpixel_features(features_path)
    count = len(next(iter(flags.values())))
    superpixels = int(index.max()) + 1
    if superpixels != count:
        raise DataError(
            features_path,
            f"lists have {count} entries but {Path(superpixel_path).name} has {superpixels} superpixels "
            f"(indices 0..{superpixels - 1}).",
            "pair each features JSON with the superpixel map of the same image and release.",
        )
    selected = np.zeros(count, dtype=bool)
    for feature in features:
        if feature in flags:  # globules are not part of the 2017 annotation
            selected |= flags[feature]
    return selected[index]


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
