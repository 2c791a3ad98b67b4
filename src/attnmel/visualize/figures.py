"""Attention maps as pictures that show their scale.

Min-max stretching every map to the full colour range turns a nearly flat map into bold
structure. Here a map is drawn over the view the model saw with a colour bar in the map's own
units and its raw minimum and maximum; a map whose range is below ``FLAT_EPSILON`` is drawn as
flat (one colour, with its value) and never stretched; the lesion outline is drawn where a mask
exists. One figure per image: predict, evaluate, the demo, the service page and TensorBoard all
draw it with ``attention_figure``. What a map's values are and when it is flat is said beside the
models (``attnmel.models.maps``).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib import colormaps  # noqa: E402
from PIL import Image  # noqa: E402

from attnmel.models.maps import FLAT_EPSILON, MapKind, is_flat, map_range, upsample_map  # noqa: E402

__all__ = ["FLAT_EPSILON", "Panel", "attention_figure", "display_scale", "heatmap_image", "heatmap_overlay",
           "is_flat", "png_bytes"]
CMAP = "jet"


def display_scale(amap: np.ndarray, kind: MapKind) -> np.ndarray:
    """The map on [0, 1] for colouring: min-max stretched when it has structure; when flat, one value
    (its own for a probability map, the middle of the scale otherwise), never an invented region."""
    amap = np.asarray(amap, dtype=np.float32)
    low, high = map_range(amap)
    if is_flat(amap, kind):
        level = float(np.clip(np.nanmean(amap), 0, 1)) if kind == "probability" else 0.5
        return np.full_like(amap, level)
    return (amap - low) / (high - low)


def heatmap_image(amap: np.ndarray, size: tuple[int, int], kind: MapKind = "probability") -> Image.Image:
    """The coloured map alone (RGBA) at ``size`` (height, width), for blending at any opacity."""
    heat = display_scale(upsample_map(amap, size), kind)
    return Image.fromarray((colormaps[CMAP](heat) * 255).astype(np.uint8), mode="RGBA")


def heatmap_overlay(view: np.ndarray, amap: np.ndarray, kind: MapKind = "probability", alpha: float = 0.5) -> Image.Image:
    """The coloured map blended over an RGB uint8 view (H, W, 3)."""
    heat = np.asarray(heatmap_image(amap, view.shape[:2], kind))[..., :3].astype(np.float32)
    blended = (1 - alpha) * view.astype(np.float32) + alpha * heat
    return Image.fromarray(np.clip(blended + 0.5, 0, 255).astype(np.uint8))


@dataclass(frozen=True)
class Panel:
    """One map to draw: its raw values, what they are, and its agreement with the lesion (if scored)."""

    name: str
    values: np.ndarray
    kind: MapKind = "probability"
    jaccard: float | None = None


def attention_figure(
    view: np.ndarray,
    panels: Sequence[Panel],
    *,
    title: str = "",
    lesion_mask: np.ndarray | None = None,
    dpi: int = 80,
) -> Image.Image:
    """The view the model saw, then each map over it with a colour bar in its own units, its raw
    min/max (or "flat" and its value), the lesion outline where ``lesion_mask`` (the view's size) is given."""
    columns = 1 + len(panels)
    figure, axes = plt.subplots(1, columns, figsize=(2.9 * columns, 3.3), dpi=dpi, squeeze=False)
    axes = axes[0]
    size = view.shape[:2]
    axes[0].imshow(view)
    axes[0].set_title("what the model saw", fontsize=8)
    _outline(axes[0], lesion_mask)
    for ax, panel in zip(axes[1:], panels, strict=True):
        values = upsample_map(panel.values, size)
        low, high = map_range(panel.values)
        flat = is_flat(panel.values, panel.kind)
        ax.imshow(view)
        if flat:
            level = display_scale(values, panel.kind)[0, 0]
            image = ax.imshow(np.full(size, level), cmap=CMAP, vmin=0, vmax=1, alpha=0.5)
            caption = f"{panel.name}: flat, {np.nanmean(panel.values):.3g} everywhere"
            bar = figure.colorbar(image, ax=ax, fraction=0.046, pad=0.03)
            bar.set_ticks([level])
            bar.set_ticklabels([f"{np.nanmean(panel.values):.3g}"])
        else:
            image = ax.imshow(values, cmap=CMAP, vmin=low, vmax=high, alpha=0.5)
            caption = f"{panel.name}: {low:.3g} to {high:.3g}"
            bar = figure.colorbar(image, ax=ax, fraction=0.046, pad=0.03)
        bar.ax.tick_params(labelsize=6)
        bar.set_label({"probability": "attention (0-1)", "distribution": "attention (sums to 1)",
                       "score": "score (unbounded)"}[panel.kind], fontsize=6)
        if panel.jaccard is not None:
            caption += f"\nJaccard vs lesion {panel.jaccard:.2f}"
        ax.set_title(caption, fontsize=8)
        _outline(ax, lesion_mask)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        figure.suptitle(title, fontsize=9)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    plt.close(figure)
    buffer.seek(0)
    return Image.open(buffer).convert("RGB")


def _outline(ax, mask: np.ndarray | None) -> None:
    if mask is not None and mask.any() and not mask.all():
        ax.contour(np.asarray(mask, dtype=float), levels=[0.5], colors="white", linewidths=1.4)


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()
