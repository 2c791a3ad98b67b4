"""Choosing a two-class model's decision threshold on labelled data, by a stated rule.

Rules (``ThresholdRule``):
- ``sensitivity``: the highest threshold whose sensitivity reaches ``target`` (default 85%), i.e.
  the best specificity that keeps that promise on the data;
- ``youden``: the threshold maximising Youden's J = sensitivity + specificity - 1 (Youden 1950);
- ``fixed``: a given value, with its measured rates.

A threshold sits halfway between two neighbouring scores, so that a rounding of the scores does
not move an image across it. The rates carry 95% Wilson score intervals (``scipy.stats.binomtest``).
"""

from __future__ import annotations

import math

import numpy as np
from scipy.stats import binomtest
from sklearn.metrics import roc_curve

from attnmel.checkpoints.trust import OperatingPoint, ThresholdRule
from attnmel.errors import ConfigError

DEFAULT_RULE: ThresholdRule = "sensitivity"
DEFAULT_TARGET_SENSITIVITY = 0.85


def wilson_interval(successes: int, trials: int, level: float = 0.95) -> tuple[float, float]:
    if trials == 0:
        return 0.0, 1.0
    ci = binomtest(int(successes), int(trials)).proportion_ci(confidence_level=level, method="wilson")
    return float(ci.low), float(ci.high)


def _between(scores: np.ndarray, value: float) -> float:
    """The midpoint between ``value`` and the next lower score (0 when none is lower)."""
    lower = scores[scores < value]
    return float((value + (lower.max() if lower.size else 0.0)) / 2)


def sensitivity_threshold(positive: np.ndarray, scores: np.ndarray, target: float) -> float:
    """The highest threshold with sensitivity >= ``target`` (positive when score > threshold)."""
    ranked = np.sort(scores[positive])[::-1]
    needed = max(1, math.ceil(target * len(ranked) - 1e-9))
    return _between(scores, float(ranked[needed - 1]))


def youden_threshold(positive: np.ndarray, scores: np.ndarray) -> float:
    fpr, tpr, thresholds = roc_curve(positive, scores)
    best = int(np.argmax(tpr - fpr))
    # roc_curve's rule is score >= t; ours is score > t: sit just below that score
    return _between(scores, float(min(thresholds[best], 1.0)))


def choose_operating_point(
    labels: np.ndarray,
    scores: np.ndarray,
    *,
    rule: ThresholdRule = DEFAULT_RULE,
    target: float = DEFAULT_TARGET_SENSITIVITY,
    fixed: float = 0.5,
    data: str = "",
) -> OperatingPoint:
    """The operating point chosen by ``rule`` on (binary ``labels``, P(positive) ``scores``)."""
    positive = np.asarray(labels).astype(bool)
    scores = np.asarray(scores, dtype=np.float64)
    if rule != "fixed" and (positive.all() or not positive.any()):
        raise ConfigError(f"threshold rule {rule!r} needs both classes in {data or 'the data'}; it has only one.")
    if rule == "sensitivity":
        if not 0 < target <= 1:
            raise ConfigError(f"target sensitivity {target} is not in (0, 1].")
        threshold = sensitivity_threshold(positive, scores, target)
    elif rule == "youden":
        threshold = youden_threshold(positive, scores)
    elif rule == "fixed":
        if not 0 <= fixed <= 1:
            raise ConfigError(f"fixed threshold {fixed} is not in [0, 1].")
        threshold = float(fixed)
    else:
        raise ConfigError(f"threshold rule {rule!r} is not one of sensitivity, youden, fixed.")
    said = scores > threshold
    true_pos, negatives = int((said & positive).sum()), int((~positive).sum())
    true_neg = int((~said & ~positive).sum())
    return OperatingPoint(
        threshold=threshold, rule=rule, target=target if rule == "sensitivity" else None, data=data,
        images=len(scores), positives=int(positive.sum()),
        sensitivity=true_pos / max(int(positive.sum()), 1), specificity=true_neg / max(negatives, 1),
        sensitivity_interval=wilson_interval(true_pos, int(positive.sum())),
        specificity_interval=wilson_interval(true_neg, negatives),
    )
