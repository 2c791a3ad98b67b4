"""Classification metrics, with the ISIC challenge scorer's conventions.

A prediction is positive when its probability is strictly greater than the threshold (0.5 in the
scorer); AUC and average precision come from scikit-learn, as in ``isic-challenge-scoring``, so
the numbers agree with the official scorer (tests/test_metrics.py checks this).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from sklearn import metrics as skm


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


def binary_metrics(y_true: Sequence[int], score: Sequence[float], threshold: float = 0.5) -> dict[str, float]:
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
    return {
        "roc_auc": float(skm.roc_auc_score(y, s)) if both_classes else math.nan,
        "average_precision": float(skm.average_precision_score(y, s)) if y.sum() else math.nan,
        "accuracy": _safe_div(tp + tn, len(y)),
        "sensitivity": sensitivity,
        "specificity": specificity,
        "balanced_accuracy": (sensitivity + specificity) / 2,
        "precision": _safe_div(tp, tp + fp),
        "npv": _safe_div(tn, tn + fn),
        "sensitivity_at_90_specificity": sensitivity_at_specificity(y, s, 0.9) if both_classes else math.nan,
        "threshold": float(threshold),
        "n": int(len(y)),
        "n_positive": int(y.sum()),
    }


def classification_report(
    labels: Sequence[int],
    probabilities: np.ndarray,
    class_names: Sequence[str],
    score_columns: Sequence[str],
    threshold: float = 0.5,
) -> dict[str, dict[str, float]]:
    """``binary_metrics`` for each scored class (melanoma first), plus multi-class accuracy."""
    labels = np.asarray(labels, dtype=int)
    probabilities = np.asarray(probabilities, dtype=float)
    report: dict[str, dict[str, float]] = {}
    for column in score_columns:
        index = list(class_names).index(column)
        report[column] = binary_metrics(labels == index, probabilities[:, index], threshold)
    if len(class_names) > 2:
        predicted = probabilities.argmax(axis=1)
        report["multiclass"] = {
            "accuracy": float(np.mean(predicted == labels)),
            "balanced_accuracy": float(skm.balanced_accuracy_score(labels, predicted)),
        }
    return report
