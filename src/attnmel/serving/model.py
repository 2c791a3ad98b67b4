"""The served model: one uploaded image in, probabilities and attention (numbers and pictures) out.

Decoding reuses ``attnmel.data.images`` (size checked from the header before any pixel is
decoded), preprocessing is the checkpoint's own evaluation transform, the model is loaded by
``attnmel.inference.load_predictor`` (calibrated temperature applied; GAP models answer
with their class activation map as the layer ``cam``), inference is
``attnmel.evaluation.predict.predict_tensor`` and the pictures are ``attnmel.evaluation.overlays``,
so the service shows exactly what ``attnmel predict`` writes.

Per attention layer the response carries:
- ``raw``: the map as the model computed it (h x w; sigmoid: each value in [0, 1]; softmax: the
  map sums to 1);
- ``normalized``: the same map min-max scaled to [0, 1] (what the pictures show);
- ``overlay_png``: the heat map blended over the model's view at 50 % (a data URL);
- ``heatmap_png``: the coloured heat map alone at the view's size (a data URL), for blending
  client-side at any opacity, as the page does.
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torchvision import tv_tensors
from torchvision.transforms.v2 import functional as F

from attnmel.checkpoints.card import NOT_DIAGNOSTIC, model_card
from attnmel.data.images import MAX_PIXELS, read_image_bytes
from attnmel.evaluation.overlays import denormalize, heatmap_image, heatmap_overlay, normalize_map
from attnmel.evaluation.predict import predict_tensor
from attnmel.inference import LoadedModel, load_predictor

DEMO_NOTICE = (
    "Demo model: trained for minutes on 40 bundled ISIC images. It is not a diagnostic tool and its "
    "predictions mean nothing; start the service with --checkpoint to serve a trained model."
)


def png_data_url(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _numbers(array: np.ndarray) -> list[list[float]]:
    """A 2-D map as nested lists with 6 significant digits (enough for display, half the JSON)."""
    return [[float(f"{value:.6g}") for value in row] for row in array.tolist()]


@dataclass
class Prepared:
    """An upload after decoding: the normalised model input and the original size."""

    tensor: torch.Tensor
    width: int
    height: int


@dataclass
class ServedModel:
    loaded: LoadedModel
    source: str
    demo: bool = False
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    def __post_init__(self) -> None:
        self.meta = self.loaded.meta
        self.preprocessing = self.loaded.preprocessing
        self.transform = self.preprocessing.eval_transform()
        self.class_names = self.loaded.class_names
        self.layers = self.loaded.attention_layers
        self.card = model_card(self.meta, demo=self.demo)

    @property
    def notice(self) -> str:
        return DEMO_NOTICE if self.demo else NOT_DIAGNOSTIC

    def describe(self) -> dict[str, Any]:
        arch = self.meta.architecture
        return {"name": arch.name, "backbone": arch.backbone, "class_names": self.class_names,
                "attention_layers": self.layers, "image_size": self.preprocessing.image_size,
                "source": Path(self.source).name}

    def prepare(self, data: bytes, name: str = "upload", max_pixels: int = MAX_PIXELS) -> Prepared:
        """Decode (raises ``DataError`` subclasses for bad files) and preprocess one upload."""
        image = read_image_bytes(data, name, max_pixels, self.preprocessing.decode_side)
        tensor = self.transform(tv_tensors.Image(F.pil_to_tensor(image)))
        return Prepared(tensor.as_subclass(torch.Tensor), image.width, image.height)

    def infer(self, batch: torch.Tensor) -> list[tuple[np.ndarray, dict[str, np.ndarray]]]:
        """Probabilities (C,) and raw maps by layer (h, w), per image of a batch."""
        probabilities, maps = predict_tensor(self.loaded.predictor, batch.to(self.device))
        return [(probabilities[i], {name: m[i] for name, m in maps.items()}) for i in range(len(batch))]

    def response(self, prepared: Prepared, result: tuple[np.ndarray, dict[str, np.ndarray]],
                 images: bool = True) -> dict[str, Any]:
        probabilities, maps = result
        body: dict[str, Any] = {
            "probabilities": {name: float(p) for name, p in zip(self.class_names, probabilities, strict=True)},
            "predicted_class": self.class_names[int(np.argmax(probabilities))],
            "input": {"width": prepared.width, "height": prepared.height},
            "attention": {},
        }
        view = denormalize(prepared.tensor, self.preprocessing.mean, self.preprocessing.std) if images else None
        if view is not None:
            body["view_png"] = png_data_url(Image.fromarray(view))
        for layer, amap in maps.items():
            entry: dict[str, Any] = {"shape": list(amap.shape), "raw": _numbers(amap),
                                     "normalized": _numbers(normalize_map(amap))}
            if view is not None:
                entry["overlay_png"] = png_data_url(heatmap_overlay(view, amap))
                entry["heatmap_png"] = png_data_url(heatmap_image(amap, view.shape[:2]))
            body["attention"][layer] = entry
        return body


def load_served_model(
    checkpoint: str | Path | None = None,
    *,
    trust_pickle: bool = False,
    device: str = "auto",
    log=print,
) -> ServedModel:
    """The model to serve: ``checkpoint``, or the demo model when it is None."""
    demo = checkpoint is None
    if demo:
        from attnmel.serving.demo_model import demo_checkpoint

        checkpoint = demo_checkpoint(log=log)
    loaded = load_predictor(checkpoint, device, trust_pickle=trust_pickle)
    loaded.check_answers()
    return ServedModel(loaded, str(checkpoint), demo=demo, device=loaded.device)
