"""The one figure of an image: what the model saw, each map with its scale, P(positive) and the truth.

``ImageFigure`` is all the figure needs, so a ``Prediction`` (``ImageFigure.of``), a row of an
evaluation and the service's answer draw it alike, without pretending to be one another.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from attnmel.inference.prediction import Prediction
from attnmel.models.maps import MapKind
from attnmel.visualize.figures import Panel, attention_figure


@dataclass(frozen=True)
class ImageFigure:
    #: the image's name, for the title
    name: str
    #: the RGB uint8 view the model saw (S, S, 3)
    view: np.ndarray
    #: raw maps by layer (h, w), drawn in this order
    maps: Mapping[str, np.ndarray]
    #: what each map's values are (a layer missing here is drawn as a score)
    kinds: Mapping[str, MapKind]
    positive_class: str
    #: None for an answer flagged out of distribution: the figure then shows no probability or class
    probability: float | None
    predicted_class: str | None
    truth: str | None = None
    #: the lesion at the view's size, outlined when given
    lesion_mask: np.ndarray | None = None
    #: each map's Jaccard against the lesion, when scored
    jaccard: Mapping[str, float] | None = None

    @classmethod
    def of(cls, prediction: Prediction, **details: Any) -> ImageFigure:
        """The figure of a ``Prediction``, its extra maps (e.g. Grad-CAM) included; an answer flagged out of
        distribution shows neither its probability nor its class."""
        withheld = prediction.withheld is not None
        return cls(Path(prediction.source).name, prediction.view, {**prediction.raw_attention, **prediction.extras},
                   prediction.map_kinds, prediction.positive_class, None if withheld else prediction.probability,
                   None if withheld else prediction.predicted_class, **details)

    @property
    def title(self) -> str:
        """The figure's title: the answer, or that there is none (an image flagged out of distribution)."""
        answer = ("not answered: out of distribution" if self.probability is None else
                  f"P({self.positive_class}) {self.probability:.3f}, predicted {self.predicted_class}")
        return f"{self.name}: {answer}" + (f"; truth: {self.truth}" if self.truth is not None else "")

    def draw(self) -> Image.Image:
        jaccard = self.jaccard or {}
        panels = [Panel(name, values, self.kinds.get(name, "score"), jaccard.get(name)) for name, values in self.maps.items()]
        return attention_figure(self.view, panels, title=self.title, lesion_mask=self.lesion_mask)
