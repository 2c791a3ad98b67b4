"""The served model: one uploaded image in, probabilities and attention (numbers and pictures) out.

Decoding reuses ``attnmel.data.images`` (size checked from the header before any pixel is
decoded; a large image reduced while it is decoded), preprocessing is the checkpoint's own
(``Preprocessing``), the model is loaded by ``attnmel.inference.load_predictor`` (the shipped model
when no checkpoint is given; calibrated temperature applied; GAP models answer with their class
activation map as the layer ``cam``) and the pictures are ``attnmel.figures``, so the service shows
exactly what ``attnmel predict`` writes.

Per attention layer the response carries:
- ``raw``: the map as the model computed it (h x w; sigmoid: each value in [0, 1]; softmax: the
  map sums to 1; CAM: unbounded scores), with ``min``, ``max`` and ``flat`` (its range is below
  ``attnmel.figures.FLAT_EPSILON``: drawn as one colour, never stretched);
- ``overlay_png``: the coloured map blended over the model's view at 50 % (a data URL);
- ``heatmap_png``: the coloured map alone at the view's size, for blending client-side at any
  opacity, as the page does.
With ``figure=true`` the body also has ``figure_png``: the same figure as ``attnmel predict``
writes (colour bars in each map's own units).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from attnmel.checkpoints.card import NOT_DIAGNOSTIC, model_card
from attnmel.data.images import MAX_PIXELS, read_image_bytes
from attnmel.figures import FLAT_EPSILON, heatmap_image, heatmap_overlay, is_flat, png_bytes
from attnmel.inference import LoadedModel, load_predictor
from attnmel.inference.prediction import Prediction, denormalize, view_box
from attnmel.inference.trust import NO_OOD_CHECK, TrustSignals, feature_tap, trust_signals


def png_data_url(image: Image.Image) -> str:
    return "data:image/png;base64," + base64.b64encode(png_bytes(image)).decode("ascii")


def _numbers(array: np.ndarray) -> list[list[float]]:
    """A 2-D map as nested lists with 6 significant digits (enough for display, half the JSON)."""
    return [[float(f"{value:.6g}") for value in row] for row in array.tolist()]


@dataclass
class Prepared:
    """An upload after decoding: the normalised model input and the decoded size."""

    tensor: torch.Tensor
    width: int
    height: int
    name: str = "upload"


@dataclass
class ServedModel:
    loaded: LoadedModel
    #: what answers, in words ("the shipped model 'tag'" or the checkpoint's path)
    source: str
    #: the pretrained tag when the shipped model answers
    tag: str | None = None

    def __post_init__(self) -> None:
        self.meta = self.loaded.meta
        self.preprocessing = self.loaded.preprocessing
        self.class_names = self.loaded.class_names
        self.layers = self.loaded.attention_layers
        self.kinds = self.loaded.map_kinds
        self.device = self.loaded.device
        self.card = model_card(self.meta)

    @property
    def notice(self) -> str:
        return NOT_DIAGNOSTIC

    def describe(self) -> dict[str, Any]:
        arch = self.meta.architecture
        return {"name": arch.name, "backbone": arch.backbone, "class_names": self.class_names,
                "attention_layers": self.layers, "image_size": self.preprocessing.image_size,
                "source": self.source, "pretrained": self.tag, "title": self.card["title"]}

    def prepare(self, data: bytes, name: str = "upload", max_pixels: int = MAX_PIXELS) -> Prepared:
        """Decode (raises ``DataError`` subclasses for bad files) and preprocess one upload."""
        image = read_image_bytes(data, name, max_pixels, self.preprocessing.decode_side)
        return Prepared(self.preprocessing(image), image.width, image.height, name)

    def infer(self, batch: torch.Tensor) -> list[tuple[np.ndarray, dict[str, np.ndarray], TrustSignals]]:
        """Probabilities (C,), raw maps by layer (h, w) and trust signals, per image of a batch."""
        with feature_tap(self.loaded.predictor.models) as captured:
            probabilities, maps = self.loaded.predictor(batch.to(self.device))
        probabilities = probabilities.cpu().numpy()
        maps = {name: m[:, 0].float().cpu().numpy() for name, m in maps.items()}
        signals = trust_signals(self.meta, probabilities, captured[0].cpu().numpy() if captured else None, maps,
                                self.kinds)
        return [(probabilities[i], {name: m[i] for name, m in maps.items()}, signals[i]) for i in range(len(batch))]

    def decide(self, probabilities: np.ndarray) -> dict[str, Any]:
        """The predicted class by the stored operating point (two classes) or the arg-max, and the rule."""
        threshold, rule = self.loaded.decision_threshold()
        if threshold is None:
            return {"predicted_class": self.class_names[int(np.argmax(probabilities))], "threshold": None,
                    "threshold_rule": rule}
        positive = self.meta.positive_index
        index = positive if probabilities[positive] > threshold else 1 - positive
        return {"predicted_class": self.class_names[index], "threshold": threshold, "threshold_rule": rule}

    def response(self, prepared: Prepared, result: tuple[np.ndarray, dict[str, np.ndarray]],
                 images: bool = True, figure: bool = False) -> dict[str, Any]:
        probabilities, maps, *rest = result
        signals = rest[0] if rest else None
        body: dict[str, Any] = {
            "probabilities": {name: float(p) for name, p in zip(self.class_names, probabilities, strict=True)},
            **self.decide(probabilities),
            **(signals.to_dict() if signals is not None else {}),
            "ood_note": None if self.meta.ood_detector is not None else NO_OOD_CHECK,
            "input": {"width": prepared.width, "height": prepared.height},
            "flat_epsilon": FLAT_EPSILON,
            "attention": {},
        }
        view = denormalize(prepared.tensor, self.preprocessing.mean, self.preprocessing.std) if images or figure else None
        if images:
            body["view_png"] = png_data_url(Image.fromarray(view))
        for layer, amap in maps.items():
            kind = self.kinds.get(layer, "probability")
            entry: dict[str, Any] = {"shape": list(amap.shape), "kind": kind, "raw": _numbers(amap),
                                     "min": float(amap.min()), "max": float(amap.max()), "flat": is_flat(amap, kind)}
            if images:
                entry["overlay_png"] = png_data_url(heatmap_overlay(view, amap, kind))
                entry["heatmap_png"] = png_data_url(heatmap_image(amap, view.shape[:2], kind))
            body["attention"][layer] = entry
        if figure:
            from attnmel.evaluation.predict import figure_for

            prediction = Prediction(
                source=prepared.name, probabilities=body["probabilities"], predicted_class=body["predicted_class"],
                positive_class=self.meta.positive_class, raw_attention=maps, view=view,
                view_box=view_box(self.preprocessing, prepared.width, prepared.height),
                image_size=(prepared.width, prepared.height), threshold=body["threshold"],
                threshold_rule=body["threshold_rule"], **(signals.to_dict() if signals is not None else {}),
            )
            body["figure_png"] = png_data_url(figure_for(prediction, self.kinds))
        return body


def load_served_model(
    checkpoint: str | Path | None = None,
    *,
    trust_pickle: bool = False,
    device: str = "auto",
    log=print,
) -> ServedModel:
    """The model to serve: ``checkpoint`` (a path or a pretrained tag), or the shipped model when it is
    None; it must answer a plain test image with finite numbers before it is served."""
    from attnmel.models.pretrained import PRETRAINED, get_pretrained

    tag = None
    if checkpoint is None or (isinstance(checkpoint, str) and checkpoint in PRETRAINED and not Path(checkpoint).exists()):
        tag = get_pretrained(checkpoint).tag
        log(f"no --checkpoint: serving the shipped model '{tag}'" if checkpoint is None else f"serving '{tag}'")
    loaded = load_predictor(checkpoint, device, trust_pickle=trust_pickle)
    loaded.check_answers()
    source = f"the shipped model '{tag}'" if tag else str(checkpoint)
    return ServedModel(loaded, source, tag)
