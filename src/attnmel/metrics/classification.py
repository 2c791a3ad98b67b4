"""Classification metrics, with the ISIC challenge scorer's conventions.

A prediction is positive when its probability is strictly greater than the threshold (0.5 in the
scorer); AUC and average precision come from scikit-learn, as in ``isic-challenge-scoring``, so
the numbers agree with the official scorer (a test checks this). Results are dataclasses with
``to_dict()``, as the scorer's ``Score``; ``to_dict`` is what ``metrics.json`` holds.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, get_args

import numpy as np
from sklearn import metrics as skm

#: The metrics a run may select its best epoch by (``train.select_metric``).
SelectMetric = Literal["roc_auc", "average_precision", "accuracy", "balanced_accuracy", "sensitivity_at_90_specificity"]
SELECT_METRICS: tuple[str, ...] = get_args(SelectMetric)


def _safe_div(num: float, den: float) -> float:
    return float(num / den) if den else math.nan


def sensitivity_at_specificity(y_true: np.ndarray, score: np.ndarray, specificity: float = 0.9) -> float:
    """Highest sensitivity among operating points whose specificity is at least ``specificity``."""
    if y_true.min(initial=1) == y_true.max(initial=0):
        return math.nan
    # every threshold: drop_intermediate would remove collinear points that can be the best allowed one
    fpr, tpr, _ = skm.roc_curve(y_true, score, drop_intermediate=False)
    allowed = fpr <= (1 - specificity) + 1e-12
    return float(tpr[allowed].max()) if allowed.any() else 0.0


@dataclass(frozen=True)
class BinaryMetrics:
    """One class against the rest at one threshold."""

    roc_auc: float
    average_precision: float
    accuracy: float
    sensitivity: float
    specificity: float
    balanced_accuracy: float
    precision: float
    npv: float
    sensitivity_at_90_specificity: float
    threshold: float
    n: int
    n_positive: int

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, payload: dict[str, Any]) -> BinaryMetrics:
        return cls(**{f.name: payload.get(f.name, math.nan) for f in dataclasses.fields(cls)})


def binary_metrics(y_true: Sequence[int], score: Sequence[float], threshold: float = 0.5) -> BinaryMetrics:
    """Metrics of one class against the rest; ``score`` is that class's probability."""
    y = np.asarray(y_true, dtype=int)
    s = np.asarray(score, dtype=float)
    predicted = s > threshold
    tp = int(np.sum(predicted & (y == 1)))
    tn = int(np.sum(~predicted & (y == 0)))
    fp = int(np.sum(predicted & (y == 0)))
    fn = int(np.sum(~predicted & (y == 1)))
    both_classes = 0 < y.sum() < len(y)
    sensitivity = _safe_div(tp, tp + fn)
    specificity = _safe_div(tn, tn + fp)
    return BinaryMetrics(
        roc_auc=float(skm.roc_auc_score(y, s)) if both_classes else math.nan,
        average_precision=float(skm.average_precision_score(y, s)) if y.sum() else math.nan,
        accuracy=_safe_div(tp + tn, len(y)),
        sensitivity=sensitivity,
        specificity=specificity,
        balanced_accuracy=(sensitivity + specificity) / 2,
        precision=_safe_div(tp, tp + fp),
        npv=_safe_div(tn, tn + fn),
        sensitivity_at_90_specificity=sensitivity_at_specificity(y, s, 0.9) if both_classes else math.nan,
        threshold=float(threshold),
        n=int(len(y)),
        n_positive=int(y.sum()),
    )


@dataclass(frozen=True)
class MulticlassMetrics:
    accuracy: float
    balanced_accuracy: float

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class ClassificationReport:
    """``BinaryMetrics`` per scored class (the positive class first), plus multi-class accuracy."""

    classes: dict[str, BinaryMetrics]
    multiclass: MulticlassMetrics | None = None

    def __getitem__(self, name: str) -> BinaryMetrics:
        return self.classes[name]

    def __iter__(self):
        return iter(self.classes)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {name: metrics.to_dict() for name, metrics in self.classes.items()}
        if self.multiclass is not None:
            out["multiclass"] = self.multiclass.to_dict()
        return out

    @classmethod
    def from_dict(cls, payload: dict[str, Any]) -> ClassificationReport:
        multiclass = payload.get("multiclass")
        return cls(
            {name: BinaryMetrics.from_dict(values) for name, values in payload.items()
             if name != "multiclass" and isinstance(values, dict)},
            MulticlassMetrics(**multiclass) if isinstance(multiclass, dict) else None,
        )


def classification_report(
    labels: Sequence[int],
    probabilities: np.ndarray,
    class_names: Sequence[str],
    score_columns: Sequence[str],
    threshold: float = 0.5,
) -> ClassificationReport:
    """``binary_metrics`` for each scored class, plus multi-class accuracy when there are more than two."""
    labels = np.asarray(labels, dtype=int)
    probabilities = np.asarray(probabilities, dtype=float)
    classes = {}
    for column in score_columns:
        index = list(class_names).index(column)
        classes[column] = binary_metrics(labels == index, probabilities[:, index], threshold)
    multiclass = None
    if len(class_names) > 2:
        predicted = probabilities.argmax(axis=1)
        multiclass = MulticlassMetrics(
            float(np.mean(predicted == labels)), float(skm.balanced_accuracy_score(labels, predicted))
        )
    return ClassificationReport(classes, multiclass)
