"""Attention maps as pictures: min-max normalised heat maps blended over what the model saw."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib import colormaps
from PIL import Image


def normalize_map(attention: np.ndarray) -> np.ndarray:
    """Min-max normalise one map to [0, 1] (a constant map becomes all zeros)."""
    attention = np.asarray(attention, dtype=np.float32)
    low, high = float(attention.min()), float(attention.max())
    if high - low < 1e-12:
        return np.zeros_like(attention)
    return (attention - low) / (high - low)


def upsample(attention: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear upsampling of an (h, w) map to ``size`` (height, width)."""
    tensor = torch.as_tensor(np.asarray(attention, dtype=np.float32))[None, None]
    return F.interpolate(tensor, size=size, mode="bilinear", align_corners=False)[0, 0].numpy()


def heatmap_overlay(image: np.ndarray, attention: np.ndarray, alpha: float = 0.5, cmap: str = "jet") -> Image.Image:
    """Blend the (upsampled, min-max normalised) attention map over an RGB uint8 image (H, W, 3)."""
    height, width = image.shape[:2]
    heat = normalize_map(upsample(attention, (height, width)))
    colored = (colormaps[cmap](heat)[..., :3] * 255).astype(np.float32)
    blended = (1 - alpha) * image.astype(np.float32) + alpha * colored
    return Image.fromarray(np.clip(blended + 0.5, 0, 255).astype(np.uint8))


def heatmap_image(attention: np.ndarray, size: tuple[int, int], cmap: str = "jet") -> Image.Image:
    """The heat map alone (RGBA, alpha 255) at ``size`` (height, width), for client-side blending."""
    heat = normalize_map(upsample(attention, size))
    return Image.fromarray((colormaps[cmap](heat) * 255).astype(np.uint8), mode="RGBA")


def denormalize(image: torch.Tensor, mean, std) -> np.ndarray:
    """A normalised (3, H, W) model input back to the RGB uint8 view (H, W, 3) it came from."""
    mean_t = torch.tensor(mean, dtype=image.dtype).view(3, 1, 1)
    std_t = torch.tensor(std, dtype=image.dtype).view(3, 1, 1)
    rgb = (image.cpu() * std_t + mean_t).clamp(0, 1) * 255
    return rgb.round().byte().permute(1, 2, 0).numpy()
