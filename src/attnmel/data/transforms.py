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
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from attnmel.data.images import centre_square_box
from attnmel.errors import ConfigError

#: Per-channel mean and std in [0, 1]. isic2017/isic2016: the constants of the original AttnMel
#: code, computed (as ``attnmel data stats`` does) from each challenge's training split. inception
#: (timm's name): inputs scaled to [-1, 1], as weights trained in TensorFlow (EfficientNet-Lite) expect.
NORMALIZATION_PRESETS: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "isic2017": ((0.6820, 0.5312, 0.4736), (0.0840, 0.1140, 0.1282)),
    "isic2016": ((0.7012, 0.5517, 0.4875), (0.0942, 0.1331, 0.1521)),
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    "inception": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
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
        left, _, right, _ = centre_square_box(width, height, self.ratio)
        return {"side": right - left}

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


@dataclass(frozen=True)
class Robustness:
    """Training-time changes that a re-save, an upload or a sensor make to the same lesion: JPEG
    re-encoding at a random quality, and Gaussian pixel noise, each on a random share of the images.

    The noise goes on a share only: on every image, batch statistics saw noisy images alone and
    clean validation collapsed; on half, it trained normally (benchmarks/RESULTS.md)."""

    jpeg_quality: tuple[int, int] | None = None
    jpeg_probability: float = 0.5
    #: standard deviation of the noise, in grey levels (0: none)
    noise_levels: float = 0.0
    noise_probability: float = 0.5

    def on_uint8(self) -> list[v2.Transform]:
        if self.jpeg_quality is None or self.jpeg_probability == 0:
            return []
        return [v2.RandomApply([v2.JPEG(list(self.jpeg_quality))], p=self.jpeg_probability)]

    def on_float(self) -> list[v2.Transform]:
        """On [0, 1] pixels, before normalisation (clipped to [0, 1] as a saved image would be)."""
        if self.noise_levels == 0 or self.noise_probability == 0:
            return []
        return [v2.RandomApply([v2.GaussianNoise(sigma=self.noise_levels / 255)], p=self.noise_probability)]


def train_augment(image_size: int, mean: Sequence[float], std: Sequence[float],
                  robustness: Robustness | None = None) -> v2.Compose:
    robustness = robustness or Robustness()
    to_float, normalize = _to_float(mean, std)
    return v2.Compose(
        [
            v2.RandomCrop(image_size),
            RandomRot90(),
            v2.RandomHorizontalFlip(),
            v2.RandomVerticalFlip(),
            *robustness.on_uint8(),
            to_float,
            *robustness.on_float(),
            normalize,
        ]
    )


def eval_augment(image_size: int, mean: Sequence[float], std: Sequence[float]) -> v2.Compose:
    return v2.Compose([v2.CenterCrop(image_size), *_to_float(mean, std)])


@dataclass(frozen=True)
class Preprocessing:
    """The evaluation geometry and normalisation a model was trained with (stored in checkpoints).

    ``eval_transform`` turns an RGB image (PIL, HxWx3 uint8 array, or 3xHxW uint8 tensor) into
    the normalised 3xSxS float tensor the model takes, so nobody rebuilds it by hand.
    """

    crop_ratio: float
    resize: int
    image_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "crop_ratio": self.crop_ratio,
            "resize": self.resize,
            "image_size": self.image_size,
            "mean": list(self.mean),
            "std": list(self.std),
        }

    @classmethod
    def from_dict(cls, payload: dict[str, Any]) -> Preprocessing:
        return cls(
            float(payload["crop_ratio"]),
            int(payload["resize"]),
            int(payload["image_size"]),
            tuple(float(m) for m in payload["mean"]),
            tuple(float(s) for s in payload["std"]),
        )

    def problems(self) -> list[str]:
        """What makes these values unusable (empty when they are fine), one phrase per field."""
        out = []
        if not 0 < self.crop_ratio <= 1:
            out.append(f"crop_ratio {self.crop_ratio!r} is not in (0, 1]")
        if not MIN_INPUT <= self.image_size <= MAX_INPUT:
            out.append(f"image_size {self.image_size} is not between {MIN_INPUT} and {MAX_INPUT} px")
        if not self.image_size <= self.resize <= MAX_INPUT:
            out.append(f"resize {self.resize} is not between image_size ({self.image_size}) and {MAX_INPUT} px")
        for name, values in (("mean", self.mean), ("std", self.std)):
            if len(values) != 3 or not all(math.isfinite(v) for v in values):
                out.append(f"{name} {list(values)} is not three finite numbers")
        if len(self.std) == 3 and not all(v > 0 for v in self.std):
            out.append(f"std {list(self.std)} has a value that is not positive")
        return out

    def eval_transform(self) -> v2.Compose:
        return v2.Compose([
            _ToImage(), geometry(self.resize, self.crop_ratio), eval_augment(self.image_size, self.mean, self.std),
        ])

    def __call__(self, image: Image.Image | np.ndarray | torch.Tensor) -> torch.Tensor:
        """The model input (3, S, S) for one RGB image."""
        return self.eval_transform()(image).as_subclass(torch.Tensor)


#: Sane bounds for a model input side: below, no lesion detail survives; above, memory explodes.
MIN_INPUT, MAX_INPUT = 32, 2048


def as_image_tensor(item: Image.Image | np.ndarray | torch.Tensor) -> tv_tensors.Image:
    """A PIL image, an HxWx3 uint8 array or a 3xHxW uint8 tensor as a uint8 RGB ``tv_tensors.Image``."""
    if isinstance(item, Image.Image):
        return tv_tensors.Image(F.pil_to_tensor(item if item.mode == "RGB" else item.convert("RGB")))
    if isinstance(item, np.ndarray):
        if item.ndim != 3 or item.shape[2] != 3 or item.dtype != np.uint8:
            raise ValueError(f"an image array must be HxWx3 uint8 RGB, not {item.shape} {item.dtype}")
        return tv_tensors.Image(torch.from_numpy(np.array(item)).permute(2, 0, 1))  # a copy: inputs stay untouched
    if isinstance(item, torch.Tensor):
        if item.ndim != 3 or item.shape[0] != 3 or item.dtype != torch.uint8:
            raise ValueError(f"an image tensor must be 3xHxW uint8 RGB, not {tuple(item.shape)} {item.dtype}")
        return tv_tensors.Image(item)
    raise TypeError(f"cannot read an image from a {type(item).__name__}")


class _ToImage(v2.Transform):
    """Plain images become a ``tv_tensors.Image``; dicts of already-wrapped image and mask pass through."""

    def forward(self, *inputs: Any) -> Any:
        item = inputs[0] if len(inputs) == 1 else inputs
        return item if isinstance(item, dict | tv_tensors.TVTensor) else as_image_tensor(item)


def denormalize(images: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """Normalised model inputs (..., 3, H, W) back to the RGB uint8 views (..., H, W, 3) they came from."""
    mean_t = torch.tensor(mean, dtype=images.dtype, device=images.device).view(3, 1, 1)
    std_t = torch.tensor(std, dtype=images.dtype, device=images.device).view(3, 1, 1)
    rgb = ((images * std_t + mean_t).clamp(0, 1) * 255).round().byte()
    return rgb.movedim(-3, -1).cpu().numpy()
