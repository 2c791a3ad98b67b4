"""From "my image" to an answer: ``LoadedModel.predict`` on paths, PIL images, arrays or tensors.

Every input goes through the checkpoint's own preprocessing (``Preprocessing``), so nobody
rebuilds it by hand. A ``Prediction`` carries the class probabilities, the predicted class, the
view the model saw, and each attention map both as computed and laid out in the image's own
coordinates (NaN outside the centre square the model looked at).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from attnmel.data.images import read_image
from attnmel.data.transforms import Preprocessing, as_image_tensor
from attnmel.checkpoints.meta import CheckpointMeta
from attnmel.figures import MapKind
from attnmel.inference.runner import Predictor
from attnmel.inference.trust import feature_tap, trust_signals

ImageInput = str | Path | Image.Image | np.ndarray | torch.Tensor


@dataclass
class Prediction:
    #: where the image came from: its path, or a description of the object given
    source: str
    probabilities: dict[str, float]
    predicted_class: str
    positive_class: str
    #: attention maps by layer as the model computed them (h, w); ``cam`` for GAP models
    raw_attention: dict[str, np.ndarray]
    #: the RGB uint8 view the model saw (S, S, 3)
    view: np.ndarray
    #: the square of the image the view shows: (left, top, right, bottom) in image pixels
    view_box: tuple[float, float, float, float]
    #: (width, height) of the image as decoded (a very large file is decoded at a reduced size)
    image_size: tuple[int, int]
    #: the threshold ``predicted_class`` used for the positive class (None: arg-max)
    threshold: float | None = None
    extras: dict[str, Any] = field(default_factory=dict)
    #: which rule made ``threshold`` (e.g. "85% sensitivity on isic2017 val", "--threshold 0.3")
    threshold_rule: str | None = None
    #: the out-of-distribution score and flag (None: the checkpoint has no fitted detector)
    ood_score: float | None = None
    out_of_distribution: bool | None = None
    #: the conformal prediction set, e.g. ["other", "melanoma"] ("uncertain: refer"); None: no sets stored
    prediction_set: list[str] | None = None
    #: why the attention maps should not be trusted (flat, or mostly outside where a lesion could be)
    attention_warning: str | None = None

    @property
    def probability(self) -> float:
        """P(positive class), e.g. P(melanoma)."""
        return self.probabilities[self.positive_class]

    @cached_property
    def attention(self) -> dict[str, np.ndarray]:
        """Each map in the image's own coordinates, (height, width): bilinear inside ``view_box``, NaN outside."""
        width, height = self.image_size
        left, top, right, bottom = (int(round(v)) for v in self.view_box)
        out = {}
        for name, amap in self.raw_attention.items():
            full = np.full((height, width), np.nan, dtype=np.float32)
            inside = F.interpolate(torch.as_tensor(amap, dtype=torch.float32)[None, None],
                                   size=(bottom - top, right - left), mode="bilinear", align_corners=False)[0, 0]
            full[top:bottom, left:right] = inside.numpy()
            out[name] = full
        return out

    def attention_in_view(self, layer: str) -> np.ndarray:
        """The map upsampled to the view the model saw (S, S)."""
        size = self.view.shape[:2]
        amap = torch.as_tensor(self.raw_attention[layer], dtype=torch.float32)[None, None]
        return F.interpolate(amap, size=size, mode="bilinear", align_corners=False)[0, 0].numpy()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (the maps' shapes and ranges, not their values)."""
        return {
            "source": self.source,
            "probabilities": self.probabilities,
            "predicted_class": self.predicted_class,
            "threshold": self.threshold,
            "threshold_rule": self.threshold_rule,
            "ood_score": self.ood_score,
            "out_of_distribution": self.out_of_distribution,
            "prediction_set": self.prediction_set,
            "attention_warning": self.attention_warning,
            "image_size": list(self.image_size),
            "view_box": [round(v, 2) for v in self.view_box],
            "attention": {name: {"shape": list(amap.shape), "min": float(amap.min()), "max": float(amap.max())}
                          for name, amap in self.raw_attention.items()},
        }


def view_box(preprocessing: Preprocessing, width: int, height: int) -> tuple[float, float, float, float]:
    """Where the model's view lies in a ``width`` x ``height`` image: the centre ratio crop (as
    ``RatioCenterCrop`` rounds it), resized to ``resize``, then the centre ``image_size`` crop."""
    side = max(1, int(preprocessing.crop_ratio * min(width, height)))
    left0, top0 = int(round((width - side) / 2.0)), int(round((height - side) / 2.0))
    scale = side / preprocessing.resize
    offset = int(round((preprocessing.resize - preprocessing.image_size) / 2.0)) * scale
    size = preprocessing.image_size * scale
    return left0 + offset, top0 + offset, left0 + offset + size, top0 + offset + size


def decode_input(item: ImageInput, preprocessing: Preprocessing, position: int = 0) -> tuple[Image.Image, str]:
    """(RGB PIL image, its description) for any accepted input; files are decoded as every door does."""
    if isinstance(item, str | Path):
        return read_image(item, max_side=preprocessing.decode_side), str(item)
    if isinstance(item, Image.Image):
        return item.convert("RGB"), f"PIL image [{position}]"
    image = as_image_tensor(item)  # checks the array's or tensor's shape and dtype
    return Image.fromarray(image.permute(1, 2, 0).numpy()), f"{type(item).__name__} [{position}]"


def predict(
    predictor: Predictor,
    preprocessing: Preprocessing,
    class_names: Sequence[str],
    positive_class: str,
    inputs: ImageInput | Sequence[ImageInput],
    *,
    device: torch.device,
    tta: bool | None = None,
    threshold: float | None = None,
    batch_size: int = 16,
    meta: CheckpointMeta | None = None,
    kinds: dict[str, MapKind] | None = None,
    threshold_rule: str | None = None,
) -> Prediction | list[Prediction]:
    """Predictions for one input (a ``Prediction``) or a list of them (a list, in order); with ``meta``
    each carries its trust signals (OOD score, prediction set, attention warning)."""
    single = not isinstance(inputs, list | tuple)
    items = [inputs] if single else list(inputs)
    results: list[Prediction] = []
    positive = list(class_names).index(positive_class)
    for start in range(0, len(items), batch_size):
        decoded = [decode_input(item, preprocessing, start + i) for i, item in enumerate(items[start:start + batch_size])]
        batch = torch.stack([preprocessing(image) for image, _ in decoded]).to(device)
        with feature_tap(predictor.models) as captured:
            probabilities, attention = predictor(batch, tta)
        probabilities = probabilities.cpu().numpy()
        maps = {name: amap[:, 0].float().cpu().numpy() for name, amap in attention.items()}
        signals = (trust_signals(meta, probabilities, captured[0].cpu().numpy() if captured else None, maps, kinds or {})
                   if meta is not None else None)
        for i, (image, source) in enumerate(decoded):
            p = probabilities[i]
            index = int(p.argmax())
            if threshold is not None and len(class_names) == 2:
                index = positive if p[positive] > threshold else 1 - positive
            results.append(Prediction(
                source=source,
                probabilities={name: float(v) for name, v in zip(class_names, p, strict=True)},
                predicted_class=class_names[index],
                positive_class=positive_class,
                raw_attention={name: m[i] for name, m in maps.items()},
                view=denormalize(batch[i], preprocessing.mean, preprocessing.std),
                view_box=view_box(preprocessing, *image.size),
                image_size=image.size,
                threshold=threshold if len(class_names) == 2 else None,
                threshold_rule=threshold_rule if len(class_names) == 2 else "arg-max",
                **(signals[i].to_dict() if signals is not None else {}),
            ))
    return results[0] if single else results


def denormalize(image: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """A normalised (3, H, W) model input back to the RGB uint8 view (H, W, 3) it came from."""
    mean_t = torch.tensor(mean, dtype=image.dtype, device=image.device).view(3, 1, 1)
    std_t = torch.tensor(std, dtype=image.dtype, device=image.device).view(3, 1, 1)
    rgb = (image * std_t + mean_t).clamp(0, 1) * 255
    return rgb.round().byte().permute(1, 2, 0).cpu().numpy()
