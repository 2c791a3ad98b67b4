"""What a checkpoint carries so that its answers say when not to trust them.

Three typed records, each stored in the checkpoint metadata and validated where it is read
(``from_dict`` raises ``ValueError`` naming the bad entry; ``CheckpointMeta.from_dict`` turns that
into one line of its ``CheckpointError``):

- ``OperatingPoint``: the decision threshold of a two-class model, the rule that chose it on
  labelled data, and the sensitivity / specificity it reached there with their intervals;
- ``OodDetector``: an out-of-distribution score on the model's own pooled features, the
  Mahalanobis distance under probabilistic PCA (Tipping & Bishop 1999; Lee et al., NeurIPS 2018
  use the Mahalanobis distance of a network's features for OOD detection), and its threshold;
- ``ConformalSets``: split conformal prediction sets with the least-ambiguous-set score
  ``1 - p(true class)`` (Sadinle, Lei & Wasserman, JASA 2019; Angelopoulos & Bates 2021,
  "A gentle introduction to conformal prediction", section 1).

Only numbers live here (no model code), so reading a checkpoint never runs anything.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal, get_args

import numpy as np

ThresholdRule = Literal["sensitivity", "youden", "fixed"]
OodMethod = Literal["ppca-mahalanobis"]
#: applied to each feature before the statistics: ``signed-sqrt`` is sign(x) sqrt(|x|), the power
#: normalisation of Perronnin, Sanchez & Mensink (ECCV 2010), which evens out bursty pooled activations
FeatureTransform = Literal["signed-sqrt", "none"]


def _number(value: Any, name: str, low: float = -math.inf, high: float = math.inf) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{name} {value!r} is not a finite number")
    if not low <= value <= high:
        raise ValueError(f"{name} {value!r} is outside [{low:g}, {high:g}]")
    return float(value)


def _count(value: Any, name: str, low: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name} {value!r} is not a whole number >= {low}")
    return value


def _interval(value: Any, name: str) -> tuple[float, float]:
    if not isinstance(value, list | tuple) or len(value) != 2:
        raise ValueError(f"{name} {value!r} is not a [low, high] pair")
    low, high = (_number(v, name, 0.0, 1.0) for v in value)
    if low > high:
        raise ValueError(f"{name} {list(value)} has its low bound above its high bound")
    return low, high


def _choice(value: Any, name: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ValueError(f"{name} {value!r} is not one of {', '.join(choices)}")
    return value


def _array(value: Any, name: str, ndim: int) -> np.ndarray:
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name} is not a {'list' if ndim == 1 else 'table'} of numbers") from None
    if array.ndim != ndim or array.size == 0:
        raise ValueError(f"{name} has shape {array.shape}, not a non-empty {ndim}-D array")
    if not np.isfinite(array).all():
        raise ValueError(f"{name} holds NaN or infinite values")
    return array


@dataclass(frozen=True)
class OperatingPoint:
    """A two-class model's decision threshold (positive when P(positive) > threshold) and how it was chosen."""

    threshold: float
    rule: ThresholdRule
    #: the sensitivity aimed at (rule ``sensitivity``); None for the other rules
    target: float | None
    #: the labelled data it was chosen on, in words (e.g. ``isic2017 val``)
    data: str
    images: int
    positives: int
    sensitivity: float
    specificity: float
    #: 95% Wilson intervals of the two rates on that data
    sensitivity_interval: tuple[float, float]
    specificity_interval: tuple[float, float]

    def describe(self) -> str:
        """The rule in words, e.g. ``85% sensitivity on isic2017 val``."""
        if self.rule == "sensitivity":
            return f"{self.target:.0%} sensitivity on {self.data}"
        if self.rule == "youden":
            return f"Youden's J on {self.data}"
        return "a fixed value"

    def to_dict(self) -> dict[str, Any]:
        return {"threshold": self.threshold, "rule": self.rule, "target": self.target, "data": self.data,
                "images": self.images, "positives": self.positives, "sensitivity": self.sensitivity,
                "specificity": self.specificity, "sensitivity_interval": list(self.sensitivity_interval),
                "specificity_interval": list(self.specificity_interval)}

    @classmethod
    def from_dict(cls, payload: Any) -> OperatingPoint:
        if not isinstance(payload, dict):
            raise ValueError(f"{payload!r} is not a JSON object")
        rule = _choice(payload.get("rule"), "rule", get_args(ThresholdRule))
        target = payload.get("target")
        if rule == "sensitivity":
            target = _number(target, "target", 0.0, 1.0)
        elif target is not None:
            raise ValueError(f"target {target!r} is only used by the rule 'sensitivity'")
        images = _count(payload.get("images"), "images")
        positives = _count(payload.get("positives"), "positives")
        if positives > images:
            raise ValueError(f"positives {positives} exceed images {images}")
        data = payload.get("data")
        if not isinstance(data, str):
            raise ValueError(f"data {data!r} is not a description")
        return cls(_number(payload.get("threshold"), "threshold", 0.0, 1.0), rule, target, data, images, positives,
                   _number(payload.get("sensitivity"), "sensitivity", 0.0, 1.0),
                   _number(payload.get("specificity"), "specificity", 0.0, 1.0),
                   _interval(payload.get("sensitivity_interval"), "sensitivity_interval"),
                   _interval(payload.get("specificity_interval"), "specificity_interval"))


@dataclass(frozen=True, eq=False)
class OodDetector:
    """Out-of-distribution score of pooled features: Mahalanobis distance under probabilistic PCA.

    The features are first put through ``transform``. With mean ``mu``, the top ``k`` principal directions ``W`` (k, D) with variances ``lambda`` and
    the mean variance ``sigma2`` of the other directions, the score of a feature vector ``x`` is
    ``sum_i ((x - mu) . w_i)^2 / lambda_i + |residual|^2 / sigma2``, divided by D: the exact
    Mahalanobis distance of the PPCA Gaussian. An image is flagged when its score is above ``threshold``.
    """

    method: OodMethod
    mean: np.ndarray
    components: np.ndarray
    variances: np.ndarray
    residual_variance: float
    threshold: float
    #: what the statistics and the threshold were fitted on, in words
    fitted_on: str
    threshold_on: str
    #: share of the threshold's data above it
    flagged_share: float
    transform: FeatureTransform = "signed-sqrt"

    @property
    def feature_dim(self) -> int:
        return int(self.mean.shape[0])

    def score(self, features: np.ndarray) -> np.ndarray:
        """One score per row of ``features`` (N, D); higher is further from the training images."""
        centred = transform_features(features, self.transform) - self.mean
        projected = centred @ self.components.T
        residual = np.maximum((centred ** 2).sum(axis=1) - (projected ** 2).sum(axis=1), 0.0)
        return ((projected ** 2 / self.variances).sum(axis=1) + residual / self.residual_variance) / self.feature_dim

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "mean": _rounded(self.mean), "components": _rounded(self.components),
                "variances": _rounded(self.variances), "residual_variance": self.residual_variance,
                "threshold": self.threshold, "fitted_on": self.fitted_on, "threshold_on": self.threshold_on,
                "flagged_share": self.flagged_share, "transform": self.transform}

    @classmethod
    def from_dict(cls, payload: Any) -> OodDetector:
        if not isinstance(payload, dict):
            raise ValueError(f"{payload!r} is not a JSON object")
        method = _choice(payload.get("method"), "method", get_args(OodMethod))
        mean = _array(payload.get("mean"), "mean", 1)
        components = _array(payload.get("components"), "components", 2)
        variances = _array(payload.get("variances"), "variances", 1)
        if components.shape[1] != mean.shape[0]:
            raise ValueError(f"components have {components.shape[1]} columns for a mean of {mean.shape[0]} features")
        if variances.shape[0] != components.shape[0]:
            raise ValueError(f"{variances.shape[0]} variances for {components.shape[0]} components")
        if (variances <= 0).any():
            raise ValueError("variances must all be above 0")
        texts = {}
        for key in ("fitted_on", "threshold_on"):
            if not isinstance(payload.get(key), str):
                raise ValueError(f"{key} {payload.get(key)!r} is not a description")
            texts[key] = payload[key]
        return cls(method, mean, components, variances,
                   _number(payload.get("residual_variance"), "residual_variance", 1e-30),
                   _number(payload.get("threshold"), "threshold", 0.0), **texts,
                   flagged_share=_number(payload.get("flagged_share"), "flagged_share", 0.0, 1.0),
                   transform=_choice(payload.get("transform"), "transform", get_args(FeatureTransform)))


@dataclass(frozen=True)
class ConformalSets:
    """Split conformal prediction sets: a class is in the set when ``1 - P(class) <= quantile``.

    On data exchangeable with the calibration images, the set holds the true class with
    probability at least ``1 - alpha`` (marginally, over images).
    """

    alpha: float
    quantile: float
    images: int
    data: str

    def sets(self, probabilities: np.ndarray, class_names: list[str] | tuple[str, ...]) -> list[list[str]]:
        """The prediction set of each row of ``probabilities`` (N, C), classes in ``class_names`` order."""
        inside = 1.0 - np.asarray(probabilities) <= self.quantile + 1e-12
        return [[name for name, keep in zip(class_names, row, strict=True) if keep] for row in inside]

    def to_dict(self) -> dict[str, Any]:
        return {"alpha": self.alpha, "quantile": self.quantile, "images": self.images, "data": self.data}

    @classmethod
    def from_dict(cls, payload: Any) -> ConformalSets:
        if not isinstance(payload, dict):
            raise ValueError(f"{payload!r} is not a JSON object")
        data = payload.get("data")
        if not isinstance(data, str):
            raise ValueError(f"data {data!r} is not a description")
        return cls(_number(payload.get("alpha"), "alpha", 1e-6, 0.5), _number(payload.get("quantile"), "quantile", 0, 1),
                   _count(payload.get("images"), "images", 1), data)


def transform_features(features: np.ndarray, transform: FeatureTransform) -> np.ndarray:
    x = np.asarray(features, dtype=np.float64)
    return np.sign(x) * np.sqrt(np.abs(x)) if transform == "signed-sqrt" else x


def _rounded(array: np.ndarray) -> list:
    """Seven significant digits: the float32 features' own precision, half the JSON of a full float."""
    return np.vectorize(lambda v: float(f"{v:.7g}"), otypes=[float])(array).tolist()
