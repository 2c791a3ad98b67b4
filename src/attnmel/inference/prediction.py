"""The answer of the library and how an input becomes an image: ``Prediction`` and ``decode_input``
(``LoadedModel.predict``, in ``loading.py``, computes the answer).

Every input goes through the checkpoint's own preprocessing (``Preprocessing``), so nobody
rebuilds it by hand. A ``Prediction`` carries the class probabilities, the predicted class, the
view the model saw, and each attention map both as computed and laid out in the image's own
coordinates (NaN outside the centre square the model looked at). It is the one answer of the
library, the CLI and the HTTP service, and ``Prediction.to_dict`` the one way it becomes JSON.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from attnmel.data.images import as_model_rgb, read_image
from attnmel.data.transforms import Preprocessing, as_image_tensor
from attnmel.inference.trust import NO_OOD_CHECK, WITHHELD, TrustSignals
from attnmel.models.maps import FLAT_EPSILON, MapKind, is_flat, upsample_map

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
    #: (width, height) of the image as displayed (full size, EXIF orientation applied)
    image_size: tuple[int, int]
    #: the threshold ``predicted_class`` used for the positive class (None: arg-max)
    threshold: float | None = None
    #: what each map's values are (``attnmel.models.maps``); a layer missing here is a probability map
    map_kinds: dict[str, MapKind] = field(default_factory=dict)
    #: further maps by name computed after the answer (e.g. Grad-CAM), drawn beside the attention
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
    #: how the answer was computed (plain, tta, ensemble of N) and, where no trust fields were fitted
    #: for that mode, what the answer therefore lacks
    trust_mode: str = "plain"
    trust_note: str | None = None
    #: why the answer must be referred to a person (``attnmel.inference.trust.refer_reasons``); empty: it need not be
    refer_reasons: list[str] = field(default_factory=list)

    @property
    def refer(self) -> bool:
        """True when the answer is not to be taken as it is: out of distribution, an uncertain or empty
        prediction set, or a predicted class outside the set."""
        return bool(self.refer_reasons)

    @property
    def withheld(self) -> str | None:
        """Why every door shows no probability, class or set for this answer (an image flagged out of
        distribution), or None. The library's object keeps the numbers, for evaluation."""
        return WITHHELD if self.out_of_distribution else None

    @property
    def probability(self) -> float:
        """P(positive class), e.g. P(melanoma)."""
        return self.probabilities[self.positive_class]

    def kind(self, layer: str) -> MapKind:
        return self.map_kinds.get(layer, "probability")

    @property
    def flat_layers(self) -> list[str]:
        """Layers whose map is flat (range below ``FLAT_EPSILON``, relative for unbounded kinds)."""
        return [name for name, amap in self.raw_attention.items() if is_flat(amap, self.kind(name))]

    @cached_property
    def attention(self) -> dict[str, np.ndarray]:
        """Each map in the image's own coordinates, (height, width): bilinear inside ``view_box``, NaN outside."""
        width, height = self.image_size
        left, top, right, bottom = (int(round(v)) for v in self.view_box)
        out = {}
        for name, amap in self.raw_attention.items():
            full = np.full((height, width), np.nan, dtype=np.float32)
            full[top:bottom, left:right] = upsample_map(amap, (bottom - top, right - left))
            out[name] = full
        return out

    def to_dict(self, values: bool = False) -> dict[str, Any]:
        """JSON-ready answer: per map its shape, kind, range and whether it is flat, and with ``values``
        the map itself (6 significant digits: enough for display, half the JSON). The HTTP service
        answers with this plus its pictures. An answer flagged out of distribution has ``probabilities``,
        ``predicted_class`` and ``prediction_set`` null, and ``withheld`` says why."""
        attention = {}
        for name, amap in self.raw_attention.items():
            entry = {"shape": list(amap.shape), "kind": self.kind(name), "min": float(amap.min()),
                     "max": float(amap.max()), "flat": is_flat(amap, self.kind(name))}
            if values:
                entry["raw"] = [[float(f"{value:.6g}") for value in row] for row in amap.tolist()]
            attention[name] = entry
        withheld = self.withheld
        return {
            "source": self.source,
            "probabilities": None if withheld else self.probabilities,
            "predicted_class": None if withheld else self.predicted_class,
            "withheld": withheld,
            "positive_class": self.positive_class,
            "threshold": self.threshold,
            "threshold_rule": self.threshold_rule,
            "ood_score": self.ood_score,
            "out_of_distribution": self.out_of_distribution,
            "prediction_set": None if withheld else self.prediction_set,
            "refer": self.refer,
            "refer_reasons": list(self.refer_reasons),
            "attention_warning": self.attention_warning,
            "ood_note": NO_OOD_CHECK if self.ood_score is None and self.trust_note is None else None,
            "trust_mode": self.trust_mode,
            "trust_note": self.trust_note,
            "image_size": list(self.image_size),
            "view_box": [round(v, 2) for v in self.view_box],
            "flat_epsilon": FLAT_EPSILON,
            "attention": attention,
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


def decode_input(item: ImageInput, position: int = 0) -> tuple[Image.Image, str]:
    """(RGB PIL image, its description) for any accepted input (``position``: its place in the list,
    to name an object that has no path). Every kind goes through ``as_model_rgb`` (full size, EXIF
    applied, the same mode conversions), so one picture gives one answer whichever way it arrives."""
    if isinstance(item, str | Path):
        return read_image(item), str(item)
    if isinstance(item, Image.Image):
        source = f"PIL image [{position}]"
        return as_model_rgb(item, source), source
    image = as_image_tensor(item)  # checks the array's or tensor's shape and dtype
    source = f"{type(item).__name__} [{position}]"
    return as_model_rgb(Image.fromarray(image.permute(1, 2, 0).numpy()), source), source


#: what the model gives for one image: probabilities (C,), raw maps by layer (h, w), and the trust
#: signals (OOD score, prediction set, attention warning) as far as the checkpoint has them fitted
RawAnswer = tuple[np.ndarray, dict[str, np.ndarray], TrustSignals | None]
