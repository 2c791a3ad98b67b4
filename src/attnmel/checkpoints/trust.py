"""What a checkpoint carries so that its answers say when not to trust them.

Three typed records, each stored in the checkpoint metadata and validated where it is read
(``from_dict`` raises ``ValueError`` naming the bad entry; ``CheckpointMeta.from_dict`` turns that
into one line of its ``CheckpointError``):

- ``OperatingPoint``: the decision threshold of a two-class model, the rule that chose it on
  labelled data, and the sensitivity / specificity it reached there with their intervals;
- ``OodDetector``: an out-of-distribution check of one or more parts (``OodPart``), each the
  Mahalanobis distance under probabilistic PCA (Tipping & Bishop 1999; Lee et al., NeurIPS 2018
  use the Mahalanobis distance of a network's features for OOD detection) of the model's own pooled
  features or of the view's pixel statistics, each with its threshold;
- ``ConformalSets``: split conformal prediction sets with the least-ambiguous-set score
  ``1 - p(true class)`` (Sadinle, Lei & Wasserman, JASA 2019; Angelopoulos & Bates 2021,
  "A gentle introduction to conformal prediction", section 1), one quantile per class
  (class-conditional) or, in older checkpoints, one for all (marginal);
- ``TrustFields``: the three for one mode of answering (plain, TTA, an ensemble), fitted for it.

Only numbers live here (no model code), so reading a checkpoint never runs anything.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal, get_args

import numpy as np

ThresholdRule = Literal["sensitivity", "youden", "fixed"]
#: what an OOD part reads: the classifier's pooled features, or the statistics of the view's pixels
OodInput = Literal["features", "image-statistics"]
#: ``marginal``: one conformal quantile for all classes (older checkpoints); ``class-conditional``: one per class
ConformalKind = Literal["marginal", "class-conditional"]
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
class OodPart:
    """One score of the OOD detector: Mahalanobis distance under probabilistic PCA of one input.

    The input (``features``: the pooled features the classifier receives; ``image-statistics``: the
    colour, contrast and sharpness statistics of the view, ``attnmel.inference.trust.image_statistics``)
    is first put through ``transform``. With the top ``k`` principal directions ``W`` (k, D) of the
    within-class spread, their variances ``lambda`` and the mean variance ``sigma2`` of the other
    directions, the distance of ``x`` to a class mean ``mu_c`` is ``sum_i ((x - mu_c) . w_i)^2 / lambda_i
    + |residual|^2 / sigma2``, divided by D; the score is the distance to the nearest class mean (Lee et
    al., NeurIPS 2018: class-conditional Gaussians with a shared covariance), so a rarer class is not
    far from "the" mean merely for being rare. A part read from an older checkpoint has one mean.
    """

    input: OodInput
    #: (C, D): one mean per class (or one row: the mean of all)
    means: np.ndarray
    components: np.ndarray
    variances: np.ndarray
    residual_variance: float
    #: the part flags an image when its score is above this
    threshold: float
    transform: FeatureTransform = "signed-sqrt"

    @property
    def feature_dim(self) -> int:
        return int(self.means.shape[1])

    def score(self, values: np.ndarray) -> np.ndarray:
        """One score per row of ``values`` (N, D); higher is further from the fitting images."""
        x = transform_features(values, self.transform)
        best = None
        for mean in self.means:
            centred = x - mean
            projected = centred @ self.components.T
            residual = np.maximum((centred ** 2).sum(axis=1) - (projected ** 2).sum(axis=1), 0.0)
            distance = ((projected ** 2 / self.variances).sum(axis=1) + residual / self.residual_variance) / self.feature_dim
            best = distance if best is None else np.minimum(best, distance)
        assert best is not None  # a part has at least one mean
        return best

    def to_dict(self) -> dict[str, Any]:
        return {"input": self.input, "means": _rounded(self.means), "components": _rounded(self.components),
                "variances": _rounded(self.variances), "residual_variance": self.residual_variance,
                "threshold": self.threshold, "transform": self.transform}

    @classmethod
    def from_dict(cls, payload: Any, name: str = "") -> OodPart:
        if not isinstance(payload, dict):
            raise ValueError(f"{name}{payload!r} is not a JSON object")
        means = _array(payload.get("means"), f"{name}means", 2)
        components = _array(payload.get("components"), f"{name}components", 2)
        variances = _array(payload.get("variances"), f"{name}variances", 1)
        if components.shape[1] != means.shape[1]:
            raise ValueError(f"{name}components have {components.shape[1]} columns for means of {means.shape[1]} values")
        if variances.shape[0] != components.shape[0]:
            raise ValueError(f"{name}{variances.shape[0]} variances for {components.shape[0]} components")
        if (variances <= 0).any():
            raise ValueError(f"{name}variances must all be above 0")
        return cls(_choice(payload.get("input"), f"{name}input", get_args(OodInput)), means, components, variances,
                   _number(payload.get("residual_variance"), f"{name}residual_variance", 1e-30),
                   _number(payload.get("threshold"), f"{name}threshold", 0.0),
                   _choice(payload.get("transform"), f"{name}transform", get_args(FeatureTransform)))


@dataclass(frozen=True, eq=False)
class OodDetector:
    """Out-of-distribution check: one or more ``OodPart`` scores, each with its own threshold.

    An image is flagged when any part's score is above that part's threshold; the answer's
    ``ood_score`` is the largest ratio score / threshold over the parts, so 1 is the threshold for
    every detector (an older checkpoint's one-part detector included).
    """

    parts: tuple[OodPart, ...]
    #: what the statistics and the thresholds were fitted on, in words
    fitted_on: str
    threshold_on: str
    #: share of the threshold's data flagged
    flagged_share: float
    #: how the thresholds were chosen, in words
    rule: str = ""

    #: every detector flags above a relative score of 1
    threshold = 1.0

    @property
    def method(self) -> str:
        def means(part: OodPart) -> str:
            return f"nearest of {len(part.means)} class means" if len(part.means) > 1 else "one mean"
        return "PPCA Mahalanobis of " + " and ".join(f"{part.input} ({means(part)})" for part in self.parts)

    @property
    def feature_dim(self) -> int | None:
        """The length of the pooled feature vector the detector reads (None: it reads none)."""
        return next((part.feature_dim for part in self.parts if part.input == "features"), None)

    @property
    def inputs(self) -> set[str]:
        return {part.input for part in self.parts}

    def part_scores(self, features: np.ndarray | None, statistics: np.ndarray | None) -> dict[str, np.ndarray]:
        values = {"features": features, "image-statistics": statistics}
        out: dict[str, np.ndarray] = {}
        for part in self.parts:
            given = values[part.input]
            if given is None:
                raise ValueError(f"the OOD detector needs the {part.input} of the images")
            out[part.input] = part.score(given)
        return out

    def score(self, features: np.ndarray | None, statistics: np.ndarray | None = None) -> np.ndarray:
        """One relative score per image: the largest part score / its threshold (flagged above 1)."""
        scores = self.part_scores(features, statistics)
        return np.max(np.stack([scores[part.input] / max(part.threshold, 1e-300) for part in self.parts]), axis=0)

    def to_dict(self) -> dict[str, Any]:
        return {"version": 2, "parts": [part.to_dict() for part in self.parts], "fitted_on": self.fitted_on,
                "threshold_on": self.threshold_on, "flagged_share": self.flagged_share, "rule": self.rule}

    @classmethod
    def from_dict(cls, payload: Any) -> OodDetector:
        if not isinstance(payload, dict):
            raise ValueError(f"{payload!r} is not a JSON object")
        texts = {}
        for key in ("fitted_on", "threshold_on"):
            if not isinstance(payload.get(key), str):
                raise ValueError(f"{key} {payload.get(key)!r} is not a description")
            texts[key] = payload[key]
        share = _number(payload.get("flagged_share"), "flagged_share", 0.0, 1.0)
        if "parts" not in payload:  # an older checkpoint: one PPCA part on the pooled features, one mean
            _choice(payload.get("method"), "method", ("ppca-mahalanobis",))
            part = OodPart.from_dict({"input": "features", "means": [payload.get("mean")] if isinstance(
                payload.get("mean"), list) else payload.get("mean"), "components": payload.get("components"),
                "variances": payload.get("variances"), "residual_variance": payload.get("residual_variance"),
                "threshold": payload.get("threshold"), "transform": payload.get("transform", "signed-sqrt")})
            return cls((part,), **texts, flagged_share=share, rule=f"threshold {part.threshold:.4g} on {texts['threshold_on']}")
        parts = payload.get("parts")
        if not isinstance(parts, list) or not parts:
            raise ValueError(f"parts {parts!r} is not a non-empty list")
        read = tuple(OodPart.from_dict(part, f"parts[{i}].") for i, part in enumerate(parts))
        if len({part.input for part in read}) != len(read):
            raise ValueError("parts repeat an input")
        rule = payload.get("rule", "")
        if not isinstance(rule, str):
            raise ValueError(f"rule {rule!r} is not a description")
        return cls(read, **texts, flagged_share=share, rule=rule)


@dataclass(frozen=True)
class ConformalSets:
    """Split conformal prediction sets: a class is in the set when ``1 - P(class) <= its quantile``.

    ``kind`` ``class-conditional`` (Mondrian: Vovk et al. 2005; Sadinle, Lei & Wasserman 2019, section 4.3)
    has one quantile per class, fitted on that class's calibration images only: on data exchangeable
    with them, the set holds the true class with probability at least ``1 - alpha`` for each class
    separately, melanomas included. ``marginal`` (older checkpoints) has one quantile for all: the
    guarantee holds over images only, and a rarer class may be covered far less.
    """

    alpha: float
    #: the quantile of the marginal kind; for the class-conditional kind, the largest class quantile
    quantile: float
    images: int
    data: str
    kind: ConformalKind = "marginal"
    #: class name -> (quantile, calibration images of that class); class-conditional kind only
    per_class: dict[str, tuple[float, int]] | None = None

    def quantiles(self, class_names: list[str] | tuple[str, ...]) -> np.ndarray:
        """The quantile of each class, in ``class_names`` order."""
        if self.kind == "marginal" or self.per_class is None:
            return np.full(len(class_names), self.quantile)
        return np.array([self.per_class[name][0] for name in class_names])

    def sets(self, probabilities: np.ndarray, class_names: list[str] | tuple[str, ...]) -> list[list[str]]:
        """The prediction set of each row of ``probabilities`` (N, C), classes in ``class_names`` order."""
        inside = 1.0 - np.asarray(probabilities) <= self.quantiles(class_names)[None, :] + 1e-12
        return [[name for name, keep in zip(class_names, row, strict=True) if keep] for row in inside]

    def describe(self) -> str:
        if self.kind == "marginal":
            return (f"marginal split conformal sets (one quantile for all classes: coverage holds over images, "
                    f"not per class), alpha {self.alpha:g}, fitted on {self.data}, {self.images} images")
        counts = ", ".join(f"{name} {count}" for name, (_, count) in (self.per_class or {}).items())
        return (f"class-conditional split conformal sets (one quantile per class: each class covered at "
                f"{1 - self.alpha:.0%}), alpha {self.alpha:g}, fitted on {self.data} ({counts})")

    def to_dict(self) -> dict[str, Any]:
        out = {"alpha": self.alpha, "quantile": self.quantile, "images": self.images, "data": self.data,
               "kind": self.kind}
        if self.per_class is not None:
            out["per_class"] = {name: {"quantile": q, "images": n} for name, (q, n) in self.per_class.items()}
        return out

    @classmethod
    def from_dict(cls, payload: Any) -> ConformalSets:
        if not isinstance(payload, dict):
            raise ValueError(f"{payload!r} is not a JSON object")
        data = payload.get("data")
        if not isinstance(data, str):
            raise ValueError(f"data {data!r} is not a description")
        kind = _choice(payload.get("kind", "marginal"), "kind", get_args(ConformalKind))  # older files: marginal
        per_class: dict[str, tuple[float, int]] | None = None
        if kind == "class-conditional":
            entries = payload.get("per_class")
            if not isinstance(entries, dict) or not entries:
                raise ValueError(f"per_class {entries!r} is not an object of class -> quantile and images")
            per_class = {}
            for name, entry in entries.items():
                if not isinstance(entry, dict):
                    raise ValueError(f"per_class.{name} {entry!r} is not a JSON object")
                per_class[str(name)] = (_number(entry.get("quantile"), f"per_class.{name}.quantile", 0, 1),
                                        _count(entry.get("images"), f"per_class.{name}.images", 1))
        elif "per_class" in payload:
            raise ValueError("per_class is only used by the kind 'class-conditional'")
        return cls(_number(payload.get("alpha"), "alpha", 1e-6, 0.5), _number(payload.get("quantile"), "quantile", 0, 1),
                   _count(payload.get("images"), "images", 1), data, kind, per_class)


@dataclass(frozen=True)
class TrustFields:
    """The signals fitted for one way of computing the answer (one mode): its decision threshold, its
    OOD detector and its prediction sets, each None where not fitted."""

    operating_point: OperatingPoint | None = None
    ood_detector: OodDetector | None = None
    conformal: ConformalSets | None = None

    def to_dict(self) -> dict[str, Any]:
        return {key: getattr(self, key).to_dict() for key in TRUST_KINDS if getattr(self, key) is not None}

    @classmethod
    def from_dict(cls, payload: Any) -> TrustFields:
        if not isinstance(payload, dict):
            raise ValueError(f"{payload!r} is not a JSON object")
        unknown = sorted(set(payload) - set(TRUST_KINDS))
        if unknown:
            raise ValueError(f"unknown trust field(s) {unknown}; known: {', '.join(TRUST_KINDS)}")
        values = {}
        for key, kind in TRUST_KINDS.items():
            try:
                values[key] = None if payload.get(key) is None else kind.from_dict(payload[key])
            except ValueError as exc:
                raise ValueError(f"{key}: {exc}") from None
        return cls(**values)


TRUST_KINDS: dict[str, type[OperatingPoint] | type[OodDetector] | type[ConformalSets]] = {
    "operating_point": OperatingPoint, "ood_detector": OodDetector, "conformal": ConformalSets}


def trust_mode(tta: bool, others: list[str] | tuple[str, ...] = ()) -> str:
    """The key a mode's fields are stored under in the first member's checkpoint: ``plain``, ``tta``,
    or ``ensemble:<sha256 of each other member, in order>`` (``ensemble-tta:...`` with TTA)."""
    if not others:
        return "tta" if tta else "plain"
    return ("ensemble-tta:" if tta else "ensemble:") + ",".join(others)


def check_mode(key: Any) -> str:
    """A stored mode key, validated."""
    if key in ("plain", "tta"):
        return key
    if isinstance(key, str) and key.startswith(("ensemble:", "ensemble-tta:")):
        shas = key.split(":", 1)[1].split(",")
        if all(len(sha) == 64 and all(c in "0123456789abcdef" for c in sha) for sha in shas):
            return key
    raise ValueError(f"mode {key!r} is not plain, tta, ensemble:<sha256,...> or ensemble-tta:<sha256,...>")


def transform_features(features: np.ndarray, transform: FeatureTransform) -> np.ndarray:
    x = np.asarray(features, dtype=np.float64)
    return np.sign(x) * np.sqrt(np.abs(x)) if transform == "signed-sqrt" else x


def _rounded(array: np.ndarray) -> list:
    """Seven significant digits: the float32 features' own precision, half the JSON of a full float."""
    return np.vectorize(lambda v: float(f"{v:.7g}"), otypes=[float])(array).tolist()
