"""``attnmel predict``: probabilities for new images, and where the model looked.

For each image the model sees the evaluation view (centre 0.8 square, resized, centre crop);
overlays are drawn on that view, one PNG per attention layer (``<id>_<layer>.png``); GAP models
(``vgg16-gap``, ``gap``) get the class activation map of the positive class (``<id>_cam.png``).
The checkpoint's calibrated temperature is applied; with ``tta`` probabilities and maps are
averaged over the 8 dihedral views (each map turned back to the image's orientation first).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from attnmel.data.dataset import load_pair
from attnmel.data.images import IMAGE_SUFFIXES
from attnmel.data.records import Sample
from attnmel.errors import DataError
from attnmel.evaluation.overlays import denormalize, heatmap_overlay
from attnmel.inference import Predictor, load_predictor
from attnmel.io import atomic_path, atomic_write_text


@dataclass
class ImagePrediction:
    image: Path
    probabilities: dict[str, float]
    predicted_class: str
    #: raw attention maps by layer (h, w); ``cam`` for GAP models
    attention: dict[str, np.ndarray] = field(default_factory=dict)
    #: the RGB uint8 view the model saw (H, W, 3)
    view: np.ndarray | None = None
    overlays: dict[str, Path] = field(default_factory=dict)


def collect_images(path: str | Path) -> list[Path]:
    path = Path(path)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise DataError(path, "no such image or folder.", "check the path.")
    images = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        raise DataError(path, "the folder contains no images (.jpg, .png, ...).", "point at a folder of dermoscopy images.")
    return images


def predict_tensor(
    model: nn.Module | Predictor, batch: torch.Tensor, *, temperature: float = 1.0, tta: bool = False
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Probabilities (N, C) at ``temperature`` and raw attention maps by layer (N, h, w) for a normalised batch.

    ``model`` may also be a ``Predictor`` (which carries its own temperatures and TTA setting).
    """
    predictor = model if isinstance(model, Predictor) else Predictor([model], [temperature], tta=tta)
    probabilities, attention = predictor(batch)
    return probabilities.cpu().numpy(), {name: amap[:, 0].float().cpu().numpy() for name, amap in attention.items()}


def predict_images(
    checkpoint: str | Path | Sequence[str | Path],
    inputs: str | Path,
    output_dir: str | Path | None = None,
    *,
    overlays: bool = True,
    batch_size: int = 16,
    device: str = "auto",
    tta: bool = False,
    trust_pickle: bool = False,
) -> list[ImagePrediction]:
    loaded = load_predictor(checkpoint, device, tta=tta, trust_pickle=trust_pickle)
    class_names = loaded.class_names
    preprocessing = loaded.preprocessing
    transform = preprocessing.eval_transform()
    paths = collect_images(inputs)
    results: list[ImagePrediction] = []
    for start in range(0, len(paths), batch_size):
        chunk = paths[start : start + batch_size]
        tensors = []
        for path in chunk:
            image, mask, _ = load_pair(Sample(path.stem, path, -1, "predict"), None)
            tensors.append(transform({"image": image, "mask": mask})["image"].as_subclass(torch.Tensor))
        batch = torch.stack(tensors)
        probabilities, attention = predict_tensor(loaded.predictor, batch.to(loaded.device))
        for i, path in enumerate(chunk):
            results.append(
                ImagePrediction(
                    image=path,
                    probabilities={name: float(p) for name, p in zip(class_names, probabilities[i], strict=True)},
                    predicted_class=class_names[int(probabilities[i].argmax())],
                    attention={name: maps[i] for name, maps in attention.items()},
                    view=denormalize(batch[i], preprocessing.mean, preprocessing.std),
                )
            )
    if output_dir is not None:
        write_predictions(results, Path(output_dir), class_names, overlays)
    return results


def write_predictions(results: list[ImagePrediction], output_dir: Path, class_names: list[str], overlays: bool) -> None:
    output_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for result in results:
        rows.append({"image": result.image.stem, **result.probabilities, "predicted": result.predicted_class,
                     "file": str(result.image)})
        if overlays and result.view is not None:
            for layer, amap in result.attention.items():
                target = output_dir / f"{result.image.stem}_{layer}.png"
                with atomic_path(target) as tmp:
                    heatmap_overlay(result.view, amap).save(tmp, format="PNG")
                result.overlays[layer] = target
    frame = pd.DataFrame(rows, columns=["image", *class_names, "predicted", "file"])
    atomic_write_text(output_dir / "predictions.csv", frame.to_csv(index=False))
