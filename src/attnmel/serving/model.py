"""The served model: one uploaded image in, probabilities and attention (numbers and pictures) out.

Decoding reuses ``attnmel.data.images`` (size checked from the header before any pixel is
decoded; decoded at full size, as every door decodes), preprocessing is the checkpoint's own
(``Preprocessing``), the model is loaded by ``attnmel.load_model`` (the shipped model
when no checkpoint is given; calibrated temperature applied; GAP models answer with their class
activation map as the layer ``cam``), the answer is the library's ``Prediction`` serialised by
``Prediction.to_dict`` and the pictures are ``attnmel.visualize``, so the service shows exactly what
``attnmel predict`` computes and draws.

Per attention layer the response carries:
- ``raw``: the map as the model computed it (h x w; sigmoid: each value in [0, 1]; softmax: the
  map sums to 1; CAM: unbounded scores), with ``kind``, ``min``, ``max`` and ``flat`` (its range is
  below ``flat_epsilon``: drawn as one colour, never stretched);
- ``overlay_png``: the coloured map blended over the model's view at 50 % (a data URL);
- ``heatmap_png``: the coloured map alone at the view's size, for blending client-side at any
  opacity, as the page does.
With ``figure=true`` the body also has ``figure_png``: the same figure as ``attnmel predict``
writes (colour bars in each map's own units).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from attnmel.checkpoints.card import NOT_DIAGNOSTIC, model_card
from attnmel.checkpoints.pretrained import get_pretrained, is_pretrained_tag
from attnmel.data.images import MAX_PIXELS, read_centre_square
from attnmel.data.transforms import Preprocessing
from attnmel.inference import LoadedModel, Prediction
from attnmel.inference.prediction import RawAnswer
from attnmel.visualize import ImageFigure, heatmap_image, heatmap_overlay, png_bytes


def png_data_url(image: Image.Image) -> str:
    return "data:image/png;base64," + base64.b64encode(png_bytes(image)).decode("ascii")


@dataclass
class Prepared:
    """An upload after decoding: the normalised model input and the decoded size."""

    tensor: torch.Tensor
    width: int
    height: int
    name: str = "upload"


@dataclass
class ServedModel:
    """What the service answers with: a model from ``attnmel.load_model`` and how responses name it."""

    loaded: LoadedModel
    #: what answers, in words ("the shipped model 'tag'" or the checkpoint's path)
    source: str
    #: the pretrained tag when the shipped model answers
    tag: str | None = None
    #: ``source`` as responses show it: a checkpoint's folder and file name, never the server's absolute path
    shown_source: str | None = None

    @classmethod
    def of(cls, loaded: LoadedModel, checkpoint: str | Path | None = None, log=print) -> ServedModel:
        """``loaded`` (``attnmel.load_model(checkpoint)``: a path, a pretrained tag, or None for the shipped
        model) ready to serve, named as ``checkpoint`` says; it must answer a plain test image with
        finite numbers first, so a broken model is refused at start."""
        tag = get_pretrained(checkpoint).tag if is_pretrained_tag(checkpoint) else None
        if tag is not None:
            log(f"no --checkpoint: serving the shipped model '{tag}'" if checkpoint is None else f"serving '{tag}'")
        loaded.check_answers()
        source = f"the shipped model '{tag}'" if tag else str(checkpoint)
        return cls(loaded, source, tag, source if tag else "/".join(Path(str(checkpoint)).resolve().parts[-2:]))

    def __post_init__(self) -> None:
        self.meta = self.loaded.meta
        self.preprocessing = self.loaded.preprocessing
        self.class_names = self.loaded.class_names
        self.layers = self.loaded.attention_layers
        self.device = self.loaded.device
        self.card = model_card(self.meta)

    @property
    def notice(self) -> str:
        return NOT_DIAGNOSTIC

    def describe(self) -> dict[str, Any]:
        arch = self.meta.architecture
        return {"name": arch.name, "backbone": arch.backbone, "class_names": self.class_names,
                "attention_layers": self.layers, "image_size": self.preprocessing.image_size,
                "source": self.shown_source or self.source, "pretrained": self.tag, "title": self.card.title}

    def prepare(self, data: bytes, name: str = "upload", max_pixels: int = MAX_PIXELS) -> Prepared:
        """Decode (raises ``DataError`` subclasses for bad files) and preprocess one upload: only the
        centre square the preprocessing keeps is converted (``read_centre_square``), so a huge upload
        costs little more than its decoded pixels; the model input is the one ``read_image_bytes``
        and the preprocessing give."""
        decoded = read_centre_square(data, self.preprocessing.crop_ratio, name, max_pixels)
        pixels = torch.from_numpy(decoded.pixels).permute(2, 0, 1)  # no copy; the strides of pil_to_tensor
        return Prepared(self._square_preprocessing(pixels), decoded.width, decoded.height, name)

    @property
    def _square_preprocessing(self) -> Preprocessing:
        """The model's preprocessing for an image already cut to its centre square."""
        return replace(self.preprocessing, crop_ratio=1.0)

    def infer(self, batch: torch.Tensor) -> list[RawAnswer]:
        """Probabilities (C,), raw maps by layer (h, w) and trust signals, per image of a batch."""
        return self.loaded.run_batch(batch.to(self.device))

    def answer(self, prepared: Prepared, raw: RawAnswer) -> Prediction:
        """The library's ``Prediction`` of one upload, built as ``LoadedModel.predict`` builds it, with the
        stored operating point."""
        threshold, rule = self.loaded.decision_threshold()
        return self.loaded.answer(raw, prepared.tensor, (prepared.width, prepared.height), prepared.name,
                                  threshold, rule)

    def response(self, prepared: Prepared, raw: RawAnswer, images: bool = True, figure: bool = False) -> dict[str, Any]:
        """``Prediction.to_dict`` with the maps' values, plus the decoded size and, when asked, the pictures."""
        prediction = self.answer(prepared, raw)
        body = {**prediction.to_dict(values=True), "input": {"width": prepared.width, "height": prepared.height}}
        if images:
            body["view_png"] = png_data_url(Image.fromarray(prediction.view))
            for layer, entry in body["attention"].items():
                amap, kind = prediction.raw_attention[layer], prediction.kind(layer)
                entry["overlay_png"] = png_data_url(heatmap_overlay(prediction.view, amap, kind))
                entry["heatmap_png"] = png_data_url(heatmap_image(amap, prediction.view.shape[:2], kind))
        if figure:
            body["figure_png"] = png_data_url(ImageFigure.of(prediction).draw())
        return body
