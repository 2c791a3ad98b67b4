"""What an attention map means, beside the models that make it: the kind of its values, when it
is flat, and the one way a map is brought to another size.

What "flat" means depends on what the map's values are (``MapKind``): a sigmoid attention map is
a probability per position, so its range is compared with ``FLAT_EPSILON`` directly; a softmax
map (values sum to 1) and a class activation map (unbounded scores) have no absolute scale, so
their range is compared relative to their largest magnitude. Drawing lives in ``attnmel.visualize``.
"""

from __future__ import annotations

from typing import Literal, TypeVar, cast

import numpy as np
import torch
import torch.nn.functional as F

#: A map whose range (max - min, relative for unbounded kinds) is below this is flat.
FLAT_EPSILON = 0.05
MapKind = Literal["probability", "distribution", "score"]
Maps = TypeVar("Maps", np.ndarray, torch.Tensor)


def map_kind(layer: str, normalize: str | None) -> MapKind:
    """What a layer's values are: ``cam`` and Grad-CAM maps are scores; gates follow their normalisation."""
    if layer == "cam" or layer.lower().startswith("grad"):
        return "score"
    return "distribution" if normalize == "softmax" else "probability"


def map_range(amap: np.ndarray) -> tuple[float, float]:
    return float(np.nanmin(amap)), float(np.nanmax(amap))


def is_flat(amap: np.ndarray, kind: MapKind = "probability", epsilon: float = FLAT_EPSILON) -> bool:
    low, high = map_range(amap)
    if kind == "probability":
        return high - low < epsilon
    return high - low < epsilon * max(abs(low), abs(high), 1e-12)


def upsample_map(maps: Maps, size: tuple[int, int]) -> Maps:
    """Bilinear upsampling of maps (..., h, w) to ``size`` (height, width), as every figure, overlay and
    Jaccard does it: a tensor gives a tensor, anything else a float32 numpy array."""
    is_tensor = isinstance(maps, torch.Tensor)
    tensor = maps if is_tensor else torch.as_tensor(np.asarray(maps, dtype=np.float32))
    flat = tensor.reshape(-1, 1, *tensor.shape[-2:])
    out = F.interpolate(flat, size=tuple(size), mode="bilinear", align_corners=False).reshape(*tensor.shape[:-2], *size)
    return cast(Maps, out if is_tensor else out.numpy())
