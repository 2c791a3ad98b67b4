"""Fitting what a checkpoint needs to say when not to trust it, and measuring it.

``fit_trust(checkpoint, train_data, val_data)`` is the one call a ship or training script makes:
from the model's own pooled features (no retraining) it fits the OOD detector on the training
images and its threshold on validation, the split conformal sets and the operating point on
validation, and returns the metadata fields to store.

Split conformal prediction is the few lines below rather than MAPIE: MAPIE wraps a scikit-learn
estimator and refits or predicts through it, while here the probabilities come from a torch model
already run; the calibration is one quantile (Angelopoulos & Bates 2021, "A gentle introduction to
conformal prediction and distribution-free uncertainty quantification", section 1).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from attnmel.checkpoints.trust import (
    ConformalSets,
    FeatureTransform,
    OodDetector,
    transform_features,
)
from attnmel.errors import DataError
from attnmel.evaluation.operating_point import (
    DEFAULT_RULE,
    DEFAULT_TARGET_SENSITIVITY,
    choose_operating_point,
    wilson_interval,
)
from attnmel.evaluation.split_predictions import read_split
from attnmel.inference import DataSplit, InferenceSettings, LoadedModel, Predictions, load_model
from attnmel.inference.trust import NO_OOD_CHECK, trust_signals

DEFAULT_ALPHA = 0.1
#: the largest share of validation images the OOD threshold may flag
MAX_FLAGGED = 0.05
#: principal directions kept by the detector (benchmarks/trust.py compares 8-64, with and without the
#: signed square root, and kNN distance)
DEFAULT_COMPONENTS = 32
#: the least labelled data calibrate fits a temperature, a threshold and sets on: with fewer, a
#: temperature runs to a search bound and a threshold rests on one or two images
MIN_IMAGES = 20
MIN_PER_CLASS = 5


def conformal_quantile(labels: np.ndarray, probabilities: np.ndarray, alpha: float) -> float:
    """The ceil((n+1)(1-alpha))/n empirical quantile of the scores 1 - P(true class) (1.0 when n is too small)."""
    scores = 1.0 - probabilities[np.arange(len(labels)), np.asarray(labels, dtype=int)]
    n = len(scores)
    rank = math.ceil((n + 1) * (1 - alpha))
    return 1.0 if rank > n else float(np.sort(scores)[rank - 1])


def fit_conformal(labels: np.ndarray, probabilities: np.ndarray, alpha: float = DEFAULT_ALPHA, data: str = "") -> ConformalSets:
    return ConformalSets(alpha, conformal_quantile(labels, probabilities, alpha), len(labels), data)


def fit_ood(train_features: np.ndarray, val_features: np.ndarray, *, components: int = DEFAULT_COMPONENTS,
            max_flagged: float = MAX_FLAGGED, fitted_on: str = "", threshold_on: str = "",
            transform: FeatureTransform = "signed-sqrt") -> OodDetector:
    """PPCA Mahalanobis statistics of ``train_features`` (N, D) after ``transform``; threshold: the smallest
    score that flags at most ``max_flagged`` of ``val_features``."""
    x = transform_features(train_features, transform)
    mean = x.mean(axis=0)
    _, singular, vt = np.linalg.svd(x - mean, full_matrices=False)
    variances = singular ** 2 / max(len(x) - 1, 1)
    k = min(components, len(variances) - 1)
    rest = variances[k:]
    residual = float(rest.sum() / max(x.shape[1] - k, 1))
    detector = OodDetector("ppca-mahalanobis", mean, vt[:k], np.maximum(variances[:k], 1e-12), max(residual, 1e-12),
                           0.0, fitted_on, threshold_on, 0.0, transform)
    scores = np.sort(detector.score(val_features))
    allowed = int(math.floor(max_flagged * len(scores)))
    threshold = float(scores[len(scores) - allowed - 1])
    return OodDetector(detector.method, detector.mean, detector.components, detector.variances,
                       detector.residual_variance, threshold, fitted_on, threshold_on,
                       float((scores > threshold).mean()), transform)


def refuse_degenerate(labels: np.ndarray, class_names: list[str], source: str) -> None:
    """Data that cannot identify a temperature, a threshold or sets is refused, saying why."""
    counts = np.bincount(np.asarray(labels, dtype=int), minlength=len(class_names))
    problems = []
    if len(labels) < MIN_IMAGES:
        problems.append(f"{len(labels)} images (calibrate needs at least {MIN_IMAGES})")
    short = [f"{name} {count}" for name, count in zip(class_names, counts, strict=True) if count < MIN_PER_CLASS]
    if short:
        problems.append(f"too few images of a class: {', '.join(short)} (each class needs at least {MIN_PER_CLASS}; "
                        "with one class a temperature runs to its bound and no threshold exists)")
    if problems:
        raise DataError(source, "cannot be calibrated on: " + "; ".join(problems) + ".",
                        "calibrate on a labelled split with both classes and more images.")


@dataclass
class ConformalReport:
    """How prediction sets behaved on labelled data."""

    alpha: float
    images: int
    coverage: float
    coverage_interval: tuple[float, float]
    uncertain_share: float
    uncertain_interval: tuple[float, float]
    mean_set_size: float

    def to_dict(self) -> dict[str, Any]:
        return {"alpha": self.alpha, "images": self.images, "coverage": self.coverage,
                "coverage_interval": list(self.coverage_interval), "uncertain_share": self.uncertain_share,
                "uncertain_interval": list(self.uncertain_interval), "mean_set_size": self.mean_set_size}


def conformal_report(sets: ConformalSets, labels: np.ndarray, probabilities: np.ndarray,
                     class_names: list[str]) -> ConformalReport:
    """Empirical coverage and share of sets with more than one class, with 95% Wilson intervals."""
    answer = sets.sets(probabilities, class_names)
    covered = sum(class_names[int(y)] in s for y, s in zip(labels, answer, strict=True))
    uncertain = sum(len(s) > 1 for s in answer)
    n = len(answer)
    return ConformalReport(sets.alpha, n, covered / max(n, 1), wilson_interval(covered, n), uncertain / max(n, 1),
                           wilson_interval(uncertain, n), float(np.mean([len(s) for s in answer])) if n else 0.0)


def split_features(loaded: LoadedModel, source: DataSplit, settings: InferenceSettings) -> Predictions:
    """Probabilities, features and attention maps of one split."""
    _, samples = read_split(source, loaded.task)
    return loaded.infer(samples, settings, keep=("features", "attention"), desc=f"features {source.split}")


def fit_trust(
    checkpoint: str | Path | None,
    train: DataSplit | Sequence[DataSplit],
    val: DataSplit,
    settings: InferenceSettings = InferenceSettings(device="cpu", progress=False),
    alpha: float = DEFAULT_ALPHA,
    components: int = DEFAULT_COMPONENTS,
) -> dict[str, Any]:
    """The metadata fields ``ood_detector``, ``conformal`` and ``operating_point`` (the default rule)
    for ``checkpoint`` (features only, no retraining), to pass to
    ``attnmel.checkpoints.format.update_metadata``; the detector learns the pooled features of every
    ``train`` split (a model trained on several datasets gives all of them)."""
    loaded = load_model(checkpoint, settings)
    trains = [train] if isinstance(train, DataSplit) else list(train)
    features = [split_features(loaded, part, settings).features for part in trains]
    fitted = split_features(loaded, val, settings)
    if any(f is None for f in features):
        raise DataError(str(checkpoint), "this model has no classifier input to read pooled features from.",
                        "fit the detector on a model built by attnmel.models.")
    train_name = " + ".join(f"{Path(part.data).name} {part.split}" for part in trains)
    val_name = f"{Path(val.data).name} {val.split}"
    positive = loaded.meta.positive_index
    return {
        "ood_detector": fit_ood(np.concatenate(features), fitted.features, components=components,
                                fitted_on=train_name, threshold_on=val_name),
        "conformal": fit_conformal(fitted.labels, fitted.probabilities, alpha, val_name),
        "operating_point": choose_operating_point(fitted.labels == positive, fitted.probabilities[:, positive],
                                                  rule=DEFAULT_RULE, target=DEFAULT_TARGET_SENSITIVITY, data=val_name),
    }


@dataclass
class TrustReport:
    """What the trust signals said over a labelled split (``metrics.json`` key ``trust``)."""

    threshold: float | None
    threshold_rule: str
    images: int
    #: None when the checkpoint has no fitted detector
    ood_flagged: int | None
    ood_interval: tuple[float, float] | None
    attention_warnings: int
    attention_interval: tuple[float, float]
    conformal: ConformalReport | None
    #: one row per image: image, ood_score, out_of_distribution, prediction_set, attention_warning
    rows: list[dict[str, Any]]

    def to_dict(self) -> dict[str, Any]:
        n = max(self.images, 1)
        return {
            "threshold": self.threshold, "threshold_rule": self.threshold_rule,
            "ood": ({"available": False, "note": NO_OOD_CHECK} if self.ood_flagged is None else
                    {"available": True, "flagged": self.ood_flagged, "flagged_share": self.ood_flagged / n,
                     "flagged_interval": list(self.ood_interval)}),
            "attention_warnings": {"count": self.attention_warnings, "share": self.attention_warnings / n,
                                   "interval": list(self.attention_interval)},
            "conformal": None if self.conformal is None else self.conformal.to_dict(),
        }

    def describe(self) -> str:
        n = max(self.images, 1)
        parts = [f"threshold {self.threshold:.4g} ({self.threshold_rule})" if self.threshold is not None
                 else "arg-max decision"]
        parts.append(NO_OOD_CHECK if self.ood_flagged is None else
                     f"out of distribution: {self.ood_flagged}/{self.images} ({self.ood_flagged / n:.1%}, 95% CI "
                     f"{self.ood_interval[0]:.1%}-{self.ood_interval[1]:.1%})")
        parts.append(f"attention warnings: {self.attention_warnings}/{self.images} ({self.attention_warnings / n:.1%})")
        if self.conformal is not None:
            c = self.conformal
            parts.append(f"prediction sets (alpha {c.alpha:g}): coverage {c.coverage:.3f} [{c.coverage_interval[0]:.2f}, "
                         f"{c.coverage_interval[1]:.2f}], uncertain {c.uncertain_share:.3f} [{c.uncertain_interval[0]:.2f}, "
                         f"{c.uncertain_interval[1]:.2f}]")
        return "\n".join(parts)


def trust_report(loaded: LoadedModel, predictions: Predictions, threshold: float | None, rule: str) -> TrustReport:
    """The trust signals of every image of ``predictions`` (features and maps kept) and their summary."""
    meta = loaded.meta
    signals = trust_signals(meta, predictions.probabilities, predictions.features, predictions.attention,
                            loaded.map_kinds)
    n = len(signals)
    flagged = None if meta.ood_detector is None or predictions.features is None else \
        sum(bool(s.out_of_distribution) for s in signals)
    warnings = sum(s.attention_warning is not None for s in signals)
    conformal = None if meta.conformal is None else conformal_report(meta.conformal, predictions.labels,
                                                                     predictions.probabilities, list(meta.class_names))
    rows = [{"image": image, **{k: ("|".join(v) if isinstance(v, list) else v) for k, v in s.to_dict().items()}}
            for image, s in zip(predictions.image_ids, signals, strict=True)]
    return TrustReport(threshold, rule, n, flagged, None if flagged is None else wilson_interval(flagged, n), warnings,
                       wilson_interval(warnings, n), conformal, rows)
