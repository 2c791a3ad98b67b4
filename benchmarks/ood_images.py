"""A stated out-of-distribution image set built from what any installation has (no download): a
fixture of ``benchmarks/trust.py`` and the trust tests, not part of the package.

Six kinds, all RGB, sizes between 200 and 640 px, seeded:
- ``photo``: random crops of the natural photographs shipped with scikit-learn (``china.jpg``,
  ``flower.jpg``) and matplotlib (``grace_hopper.jpg``);
- ``blank``: one uniform colour (skin tones, white, black, mid grey and random colours);
- ``gradient``: linear colour ramps;
- ``noise``: uniform or Gaussian pixel noise;
- ``texture``: stripes, checkerboards and blurred noise blobs;
- ``screenshot``: matplotlib plots and text rendered to an image.

None is a dermoscopy image; a detector fitted on dermoscopy features should flag them.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

KINDS = ("photo", "blank", "gradient", "noise", "texture", "screenshot")


def _photo_sources() -> list[Path]:
    import matplotlib
    import sklearn

    candidates = [Path(sklearn.__file__).parent / "datasets" / "images" / name for name in ("china.jpg", "flower.jpg")]
    candidates.append(Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg")
    return [path for path in candidates if path.is_file()]


def _photos(rng: np.random.Generator, count: int) -> Iterator[Image.Image]:
    sources = [Image.open(path).convert("RGB") for path in _photo_sources()]
    for i in range(count if sources else 0):
        image = sources[i % len(sources)]
        side = int(rng.integers(min(image.size) // 4, min(image.size)))
        left = int(rng.integers(0, image.width - side + 1))
        top = int(rng.integers(0, image.height - side + 1))
        yield image.crop((left, top, left + side, top + side)).resize((320, 320))


def _blank(rng: np.random.Generator, i: int) -> Image.Image:
    fixed = [(224, 172, 150), (198, 134, 110), (141, 85, 60), (255, 255, 255), (0, 0, 0), (128, 128, 128)]
    colour = fixed[i] if i < len(fixed) else tuple(int(v) for v in rng.integers(0, 256, 3))
    return Image.new("RGB", (400, 300), colour)


def _gradient(rng: np.random.Generator) -> Image.Image:
    start, end = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
    ramp = np.linspace(0, 1, 400)[None, :, None]
    row = start + (end - start) * ramp
    image = np.repeat(row, 300, axis=0).astype(np.uint8)
    return Image.fromarray(image).rotate(float(rng.uniform(0, 360)))


def _noise(rng: np.random.Generator, i: int) -> Image.Image:
    if i % 2:
        array = rng.integers(0, 256, (300, 400, 3))
    else:
        array = np.clip(rng.normal(rng.uniform(60, 200), rng.uniform(10, 60), (300, 400, 3)), 0, 255)
    return Image.fromarray(array.astype(np.uint8))


def _texture(rng: np.random.Generator, i: int) -> Image.Image:
    rows, cols = np.mgrid[0:300, 0:400]
    colours = rng.integers(0, 256, (2, 3))
    if i % 3 == 0:
        period = int(rng.integers(6, 40))
        mask = ((cols + rows * rng.uniform(-1, 1)) // period) % 2 == 0
    elif i % 3 == 1:
        period = int(rng.integers(8, 50))
        mask = ((rows // period) + (cols // period)) % 2 == 0
    else:
        noise = Image.fromarray(rng.integers(0, 256, (300, 400), dtype=np.uint8)).filter(
            ImageFilter.GaussianBlur(float(rng.uniform(3, 12))))
        mask = np.asarray(noise) > 127
    return Image.fromarray(np.where(mask[..., None], colours[0], colours[1]).astype(np.uint8))


def _screenshot(rng: np.random.Generator, i: int) -> Image.Image:
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(4, 3), dpi=100)
    if i % 2:
        axes.plot(np.cumsum(rng.normal(size=100)))
        axes.set_title("loss")
    else:
        axes.axis("off")
        axes.text(0.02, 0.5, "\n".join(f"line {k}: value {rng.integers(1000)}" for k in range(8)), family="monospace")
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")


def ood_images(per_kind: int = 25, seed: int = 0) -> list[tuple[str, Image.Image]]:
    """(kind, image) pairs: ``per_kind`` of each of the six kinds (photos: as many as crops requested)."""
    rng = np.random.default_rng(seed)
    out: list[tuple[str, Image.Image]] = [("photo", image) for image in _photos(rng, per_kind)]
    out += [("blank", _blank(rng, i)) for i in range(per_kind)]
    out += [("gradient", _gradient(rng)) for _ in range(per_kind)]
    out += [("noise", _noise(rng, i)) for i in range(per_kind)]
    out += [("texture", _texture(rng, i)) for i in range(per_kind)]
    out += [("screenshot", _screenshot(rng, i)) for i in range(per_kind)]
    return out
