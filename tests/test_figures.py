"""The figures show their scale: checked on the pixels, not only on the file's existence."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib import colormaps

from attnmel.models.maps import FLAT_EPSILON, is_flat
from attnmel.visualize.figures import Panel, attention_figure, display_scale, heatmap_image

VIEW = np.full((64, 64, 3), 150, dtype=np.uint8)


def _colours(image) -> np.ndarray:
    return np.asarray(image)[..., :3].reshape(-1, 3).astype(int)


def _has_colour(image, rgb, tolerance=12) -> bool:
    return bool((np.abs(_colours(image) - np.asarray(rgb)).max(axis=1) <= tolerance).any())


def test_a_flat_map_is_never_stretched():
    noise = np.random.default_rng(0).random((8, 8)).astype(np.float32) * 1e-3
    flat = noise + 0.998
    assert is_flat(flat) and not is_flat(np.linspace(0, 1, 64).reshape(8, 8))
    assert np.ptp(display_scale(flat, "probability")) == 0  # one colour, not noise stretched to the full range
    heat = np.asarray(heatmap_image(flat, (32, 32)))[..., :3]
    assert len({tuple(c) for c in heat.reshape(-1, 3)}) == 1
    assert is_flat(noise * 1e-3 + 5.0, "score") and not is_flat(noise * 1e-3 + 5.0 - 5.0 + noise, "score")
    assert FLAT_EPSILON == 0.05


@pytest.mark.parametrize("with_mask", [True, False])
def test_the_figure_has_a_colour_bar_per_map_and_the_lesion_outline(with_mask):
    ramp = np.linspace(0.2, 0.9, 64, dtype=np.float32).reshape(8, 8)
    mask = np.zeros((64, 64), dtype=bool)
    mask[16:48, 16:48] = True
    panels = [Panel("stage3", ramp), Panel("stage4", ramp[::2, ::2]), Panel("flat", np.full((4, 4), 0.998, np.float32))]
    image = attention_figure(VIEW, panels, title="test", lesion_mask=mask if with_mask else None)
    width, height = image.size
    assert width > 3.5 * height  # the view and three maps side by side
    pixels = np.asarray(image)[..., :3]
    # colour bars: the ends of the jet scale, drawn half-transparent on the white page (not over the view)
    ends = [np.asarray(colormaps["jet"](v)[:3]) * 255 * 0.5 + 127.5 for v in (0.0, 1.0)]
    for k in (1, 2, 3):
        panel = pixels[:, width * k // 4: width * (k + 1) // 4]
        assert all(_has_colour(panel, end) for end in ends), k
    assert not any(_has_colour(pixels[:, : width // 4], end) for end in ends)
    # the lesion outline: white pixels inside the grey view, only when a mask is given
    first = pixels[:, : width // 4].astype(int)
    grey = (np.abs(first - 150) <= 2).all(axis=-1)
    rows = np.flatnonzero(grey.sum(axis=1) > 0.5 * grey.sum(axis=1).max())  # the view's rows and columns,
    columns = np.flatnonzero(grey.sum(axis=0) > 0.5 * grey.sum(axis=0).max())  # not stray grey in text
    inside = first[rows.min() + 2: rows.max() - 1, columns.min() + 2: columns.max() - 1]
    assert bool((inside >= 240).all(axis=-1).any()) == with_mask
