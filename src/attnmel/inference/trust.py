"""Per-answer trust signals: the OOD score, the conformal prediction set and the attention check.

The OOD score reads the pooled features the classifier already receives in the forward pass
(a forward pre-hook on the first model's ``classifier``), so it costs no second pass. What the
thresholds are, and what they were fitted on, lives in the checkpoint (``attnmel.checkpoints.trust``).

The attention check turns the paper's idea into a safeguard with a rule stated in advance (never
tuned on the data it is measured on): an answer carries an ``attention_warning`` when a map is flat
(``attnmel.models.maps.is_flat``) or when more than ``OUTSIDE_SHARE_LIMIT`` of a map's attention (above
its own minimum) lies outside the disc inscribed in the model's view, where image borders, rulers
and dark vignette corners are and a centred dermoscopy lesion mostly is not (a uniform map puts
1 - pi/4, about a fifth, there).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from attnmel.checkpoints.meta import CheckpointMeta
from attnmel.models.maps import MapKind, is_flat

#: the most attention mass a map may put outside the inscribed disc before the answer is flagged
OUTSIDE_SHARE_LIMIT = 0.5
#: what an answer of a checkpoint without a fitted detector says
NO_OOD_CHECK = "no out-of-distribution check: this checkpoint carries no fitted detector"


def classifier_of(model: nn.Module) -> nn.Module | None:
    """The module whose input is the pooled feature vector (None when a model has none)."""
    for name in ("classifier", "model.classifier"):
        try:
            return model.get_submodule(name)
        except AttributeError:
            continue
    return None


@contextmanager
def feature_tap(models: Sequence[nn.Module]) -> Iterator[list[torch.Tensor]]:
    """Collects, per forward call of the first model, the (N, D) features its classifier receives."""
    captured: list[torch.Tensor] = []
    module = classifier_of(models[0]) if models else None
    if module is None:
        yield captured
        return
    handle = module.register_forward_pre_hook(lambda _, args: captured.append(args[0].detach().flatten(1).float()))
    try:
        yield captured
    finally:
        handle.remove()


def outside_share(amap: np.ndarray) -> float:
    """Share of a map's attention above its minimum that lies outside the disc inscribed in the view."""
    height, width = amap.shape
    rows, cols = np.mgrid[0:height, 0:width]
    radius = ((rows + 0.5 - height / 2) / (height / 2)) ** 2 + ((cols + 0.5 - width / 2) / (width / 2)) ** 2
    mass = np.asarray(amap, dtype=np.float64) - float(np.min(amap))
    total = mass.sum()
    return float(mass[radius > 1].sum() / total) if total > 0 else 0.0


def attention_warning(maps: dict[str, np.ndarray], kinds: dict[str, MapKind]) -> str | None:
    """Why the maps of one answer should not be trusted, or None."""
    reasons = []
    for layer, amap in maps.items():
        kind = kinds.get(layer, "probability")
        if is_flat(amap, kind):
            reasons.append(f"{layer} attention is flat")
        elif (share := outside_share(amap)) > OUTSIDE_SHARE_LIMIT:
            reasons.append(f"{layer} puts {share:.0%} of its attention outside the region a lesion could be")
    return "; ".join(reasons) or None


@dataclass
class TrustSignals:
    """The trust part of one answer."""

    ood_score: float | None
    out_of_distribution: bool | None
    prediction_set: list[str] | None
    attention_warning: str | None

    def to_dict(self) -> dict:
        return {"ood_score": self.ood_score, "out_of_distribution": self.out_of_distribution,
                "prediction_set": self.prediction_set, "attention_warning": self.attention_warning}


def trust_signals(
    meta: CheckpointMeta,
    probabilities: np.ndarray,
    features: np.ndarray | None,
    maps: dict[str, np.ndarray],
    kinds: dict[str, MapKind],
) -> list[TrustSignals]:
    """Signals for a batch: probabilities (N, C), features (N, D) or None, maps by layer (N, h, w)."""
    n = len(probabilities)
    scores = ood_scores(meta, features, n)
    sets = meta.conformal.sets(probabilities, meta.class_names) if meta.conformal is not None else [None] * n
    threshold = meta.ood_detector.threshold if meta.ood_detector is not None else None
    return [
        TrustSignals(
            ood_score=None if scores is None else float(scores[i]),
            out_of_distribution=None if scores is None else bool(scores[i] > threshold),
            prediction_set=sets[i],
            attention_warning=attention_warning({layer: m[i] for layer, m in maps.items()}, kinds),
        )
        for i in range(n)
    ]


def ood_scores(meta: CheckpointMeta, features: np.ndarray | None, n: int) -> np.ndarray | None:
    """The detector's scores of ``features`` (None without a detector or features)."""
    if meta.ood_detector is None or features is None:
        return None
    if features.shape != (n, meta.ood_detector.feature_dim):
        raise ValueError(f"features of shape {features.shape} do not fit the detector's {meta.ood_detector.feature_dim}")
    return meta.ood_detector.score(features)

