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

from attnmel.metrics.challenge2024 import DEFAULT_MIN_TPR, partial_auc_above_tpr

#: The metrics a run may select its best epoch by (``train.select_metric``).
#: All but the last are the positive class's; ``balanced_multiclass_accuracy`` ranks ISIC 2018/2019.
SelectMetric = Literal["roc_auc", "average_precision", "accuracy", "balanced_accuracy", "sensitivity_at_90_specificity",
                       "balanced_multiclass_accuracy"]
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
    #: the ISIC 2024 metric: pAUC above ``min_tpr`` (``attnmel.metrics.challenge2024``), at most 1 - min_tpr
    partial_auc: float = math.nan
    min_tpr: float = DEFAULT_MIN_TPR

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, payload: dict[str, Any]) -> BinaryMetrics:
        return cls(**{f.name: payload.get(f.name, math.nan) for f in dataclasses.fields(cls)})


def binary_metrics(y_true: Sequence[int], score: Sequence[float], threshold: float = 0.5,
                   min_tpr: float = DEFAULT_MIN_TPR) -> BinaryMetrics:
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
        partial_auc=partial_auc_above_tpr(y, s, min_tpr),
        min_tpr=float(min_tpr),
    )


def top_labels(probabilities: np.ndarray) -> np.ndarray:
    """The arg-max class of each row, or -1 where two classes share the top probability (the ISIC
    scorer calls that "undecided": it is no class, so never correct)."""
    probabilities = np.asarray(probabilities, dtype=float)
    top = probabilities.argmax(axis=1)
    ties = (probabilities == probabilities.max(axis=1, keepdims=True)).sum(axis=1) > 1
    top[ties] = -1
    return top


@dataclass(frozen=True)
class MulticlassMetrics:
    """All classes at once, decided by the arg-max.

    ``balanced_accuracy`` is the ISIC 2018/2019 ranking metric as ``isic-challenge-scoring``
    computes it: the mean over classes present of the share of that class's images predicted as
    it, a tie for the top probability counting as wrong. ``accuracy`` takes the first of tied classes.
    """

    accuracy: float
    balanced_accuracy: float
    class_names: tuple[str, ...] = ()
    #: counts; rows: true class, columns: predicted class (an undecided image is in no column)
    confusion_matrix: tuple[tuple[int, ...], ...] = ()
    undecided: int = 0
    #: means over the scored classes of their ROC AUC and AP, skipping undefined ones (the scorer's macro average)
    macro_roc_auc: float = math.nan
    macro_average_precision: float = math.nan

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["class_names"] = list(self.class_names)
        out["confusion_matrix"] = [list(row) for row in self.confusion_matrix]
        return out

    @classmethod
    def from_dict(cls, payload: dict[str, Any]) -> MulticlassMetrics:
        """Also reads the two-field records of earlier versions."""
        values = {f.name: payload[f.name] for f in dataclasses.fields(cls) if f.name in payload}
        values["class_names"] = tuple(values.get("class_names", ()))
        values["confusion_matrix"] = tuple(tuple(row) for row in values.get("confusion_matrix", ()))
        return cls(**values)


def multiclass_metrics(
    labels: Sequence[int], probabilities: np.ndarray, class_names: Sequence[str], scored: Sequence[BinaryMetrics] = ()
) -> MulticlassMetrics:
    """``MulticlassMetrics`` of ``probabilities`` (N, classes) against integer ``labels``; ``scored`` are the
    per-class metrics the macro averages are taken over."""
    labels = np.asarray(labels, dtype=int)
    probabilities = np.asarray(probabilities, dtype=float)
    predicted = top_labels(probabilities)
    classes = list(range(len(class_names)))
    matrix = skm.confusion_matrix(labels, predicted, labels=classes) if len(labels) else np.zeros((len(classes),) * 2, int)
    support = np.bincount(labels, minlength=len(classes))
    present = support > 0
    recalls = np.diag(matrix)[present] / support[present]
    aucs = [m.roc_auc for m in scored if not math.isnan(m.roc_auc)]
    aps = [m.average_precision for m in scored if not math.isnan(m.average_precision)]
    return MulticlassMetrics(
        accuracy=float(np.mean(probabilities.argmax(axis=1) == labels)) if len(labels) else math.nan,
        balanced_accuracy=float(recalls.mean()) if present.any() else math.nan,
        class_names=tuple(class_names),
        confusion_matrix=tuple(tuple(int(v) for v in row) for row in matrix),
        undecided=int(np.sum(predicted < 0)),
        macro_roc_auc=float(np.mean(aucs)) if aucs else math.nan,
        macro_average_precision=float(np.mean(aps)) if aps else math.nan,
    )


@dataclass(frozen=True)
class ClassificationReport:
    """``BinaryMetrics`` per scored class (the positive class first), plus ``MulticlassMetrics`` when the
    task has more than two classes."""

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
            MulticlassMetrics.from_dict(multiclass) if isinstance(multiclass, dict) else None,
        )


def classification_report(
    labels: Sequence[int],
    probabilities: np.ndarray,
    class_names: Sequence[str],
    score_columns: Sequence[str],
    threshold: float = 0.5,
    min_tpr: float = DEFAULT_MIN_TPR,
) -> ClassificationReport:
    """``binary_metrics`` for each scored class, plus ``multiclass_metrics`` when there are more than two classes."""
    labels = np.asarray(labels, dtype=int)
    probabilities = np.asarray(probabilities, dtype=float)
    classes = {}
    for column in score_columns:
        index = list(class_names).index(column)
        classes[column] = binary_metrics(labels == index, probabilities[:, index], threshold, min_tpr)
    multiclass = None
    if len(class_names) > 2:
        multiclass = multiclass_metrics(labels, probabilities, class_names, list(classes.values()))
    return ClassificationReport(classes, multiclass)
