"""Joint image + mask transforms (torchvision transforms v2), split in two stages.

1. ``geometry``: deterministic, the paper's preprocessing — a centre square of 0.8 x the short
   side, resized to 256 x 256. Its uint8 output is what the decode-once cache stores.
2. ``train_augment`` / ``eval_augment``: random 224 crop, rot90 and flips (or a centre 224 crop),
   then float conversion and normalisation. Masks follow every geometric step; only the image is
   normalised.

``RatioCenterCrop`` and ``RandomRot90`` are written here because torchvision has no crop sized
relative to the input and its ``RandomRotation`` samples continuous angles and interpolates.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from attnmel.errors import ConfigError

#: Per-channel mean and std in [0, 1]. isic2017/isic2016: the constants of the original AttnMel
#: code, computed (as ``attnmel data stats`` does) from each challenge's training split.
NORMALIZATION_PRESETS: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "isic2017": ((0.6820, 0.5312, 0.4736), (0.0840, 0.1140, 0.1282)),
    "isic2016": ((0.7012, 0.5517, 0.4875), (0.0942, 0.1331, 0.1521)),
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
}


def resolve_normalization(value: Any) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """A preset name, a stats JSON written by ``attnmel data stats``, or ``{mean: [...], std: [...]}``."""
    if isinstance(value, dict):
        mean, std = value.get("mean"), value.get("std")
    elif isinstance(value, str) and value in NORMALIZATION_PRESETS:
        return NORMALIZATION_PRESETS[value]
    elif isinstance(value, str) and Path(value).is_file():
        try:
            payload = json.loads(Path(value).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError(f"{value}: not a readable stats JSON ({exc}).") from None
        mean, std = payload.get("mean"), payload.get("std")
    else:
        raise ConfigError(
            f"data.normalization {value!r} is neither a preset ({sorted(NORMALIZATION_PRESETS)}), "
            "an existing stats JSON, nor {mean: [...], std: [...]}."
        )
    if not (isinstance(mean, Sequence) and isinstance(std, Sequence) and len(mean) == len(std) == 3):
        raise ConfigError(f"normalization {value!r} must give three means and three stds.")
    if any(s <= 0 for s in std):
        raise ConfigError(f"normalization {value!r} has a non-positive std.")
    return tuple(float(m) for m in mean), tuple(float(s) for s in std)


class RatioCenterCrop(v2.Transform):
    """Centre square crop whose side is ``ratio`` x the shorter image side (the paper uses 0.8)."""

    def __init__(self, ratio: float = 0.8):
        super().__init__()
        if not 0 < ratio <= 1:
            raise ValueError("ratio must be in (0, 1]")
        self.ratio = ratio

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        height, width = _image_size(flat_inputs)
        return {"side": max(1, int(self.ratio * min(height, width)))}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        return self._call_kernel(F.center_crop, inpt, output_size=[params["side"], params["side"]])


class RandomRot90(v2.Transform):
    """Rotate by 0, 90, 180 or 270 degrees, exactly (no interpolation)."""

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        return {"k": int(torch.randint(0, 4, ()).item())}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        if params["k"] == 0:
            return inpt
        rotated = torch.rot90(inpt.as_subclass(torch.Tensor), params["k"], dims=(-2, -1))
        return tv_tensors.wrap(rotated, like=inpt) if isinstance(inpt, tv_tensors.TVTensor) else rotated


def _image_size(flat_inputs: list[Any]) -> tuple[int, int]:
    for item in flat_inputs:
        if isinstance(item, tv_tensors.Image | tv_tensors.Mask):
            return tuple(item.shape[-2:])
    raise TypeError("expected a tv_tensors.Image or Mask among the inputs")


def geometry(resize: int = 256, crop_ratio: float = 0.8) -> v2.Compose:
    """Deterministic preprocessing on uint8 tensors: centre ratio crop, then square resize."""
    return v2.Compose([RatioCenterCrop(crop_ratio), v2.Resize((resize, resize), antialias=True)])


def _to_float(mean: Sequence[float], std: Sequence[float]) -> list[v2.Transform]:
    return [
        v2.ToDtype({tv_tensors.Image: torch.float32, "others": None}, scale=True),
        v2.Normalize(mean=list(mean), std=list(std)),
    ]


def train_augment(image_size: int, mean: Sequence[float], std: Sequence[float]) -> v2.Compose:
    return v2.Compose(
        [
            v2.RandomCrop(image_size),
            RandomRot90(),
            v2.RandomHorizontalFlip(),
            v2.RandomVerticalFlip(),
            *_to_float(mean, std),
        ]
    )


def eval_augment(image_size: int, mean: Sequence[float], std: Sequence[float]) -> v2.Compose:
    return v2.Compose([v2.CenterCrop(image_size), *_to_float(mean, std)])


def eval_view(resize: int, crop_ratio: float, image_size: int) -> v2.Compose:
    """The uint8 region the model sees at evaluation (for overlays): geometry + centre crop."""
    return v2.Compose([geometry(resize, crop_ratio), v2.CenterCrop(image_size)])
