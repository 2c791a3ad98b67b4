"""Two models on the same images: each metric's difference (B - A) with its paired interval and p-value.

* ROC AUC: DeLong's test for two correlated AUCs (``attnmel.metrics.intervals.delong_test``).
* The other metrics (and ROC AUC again, as a cross-check): a paired, stratified bootstrap: each
  resample draws images within each true class and scores both models on the same draw, so the
  interval of the difference keeps the correlation between the models. The two-sided p-value
  inverts the percentile interval, p = 2 min(#{d* <= 0} + 1, #{d* >= 0} + 1) / (B + 1), capped at 1,
  so the (1 - alpha) percentile interval excludes 0 when p < alpha (up to the resampling grain).
  The smallest p it can report is 2 / (B + 1). Resampled differences within ``NO_DIFFERENCE`` of 0
  count as none, so float noise between two copies of one model is never "significant".
* Means of per-image scores (attention Jaccard, Dice): the same paired bootstrap over the images
  that have a mask (``scipy.stats.bootstrap(..., paired=True)``).
* McNemar's test on which images each model gets right at the threshold: the exact binomial test
  on the discordant images (``scipy.stats.binomtest``), valid at every count; the chi-square form
  is only its large-sample approximation.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats

from attnmel.metrics.challenge2024 import DEFAULT_MIN_TPR
from attnmel.metrics.intervals import (
    BOOTSTRAP_METRICS,
    Interval,
    IntervalSettings,
    binary_statistics,
    delong_test,
    run_bootstrap,
    stratified_bootstrap,
)

#: differences this small are float noise (e.g. probabilities that went through a CSV), not a difference
NO_DIFFERENCE = 1e-6


def bootstrap_p_value(distribution: np.ndarray) -> float:
    """Two-sided p-value of "no difference" from a bootstrap distribution of differences (those
    within ``NO_DIFFERENCE`` of 0 count on both sides)."""
    values = np.asarray(distribution, dtype=float)
    values = values[np.isfinite(values)]
    if not values.size:
        return math.nan
    tail = min(int((values <= NO_DIFFERENCE).sum()), int((values >= -NO_DIFFERENCE).sum()))
    return min(1.0, 2 * (tail + 1) / (values.size + 1))


@dataclass(frozen=True)
class Difference:
    """One metric of models A and B on the same images, and B - A with its interval and p-value."""

    metric: str
    a: float
    b: float
    difference: Interval
    p_value: float
    #: "delong" or "paired bootstrap"
    test: str

    def significant(self, alpha: float | None = None) -> bool:
        """Whether p < alpha (by default 1 - the interval's level)."""
        alpha = 1 - self.difference.level if alpha is None else alpha
        return math.isfinite(self.p_value) and self.p_value < alpha

    def to_dict(self) -> dict[str, Any]:
        return {"metric": self.metric, "a": self.a, "b": self.b, "difference": self.difference.to_dict(),
                "p_value": self.p_value, "test": self.test}


@dataclass(frozen=True)
class McNemarTest:
    """Which images each model classifies right at ``threshold`` (positive when score > threshold)."""

    threshold: float
    both_correct: int
    only_a_correct: int
    only_b_correct: int
    both_wrong: int
    p_value: float

    @property
    def images(self) -> int:
        return self.both_correct + self.only_a_correct + self.only_b_correct + self.both_wrong

    @property
    def accuracy_a(self) -> float:
        return (self.both_correct + self.only_a_correct) / self.images if self.images else math.nan

    @property
    def accuracy_b(self) -> float:
        return (self.both_correct + self.only_b_correct) / self.images if self.images else math.nan

    def to_dict(self) -> dict[str, Any]:
        return {"threshold": self.threshold, "both_correct": self.both_correct, "only_a_correct": self.only_a_correct,
                "only_b_correct": self.only_b_correct, "both_wrong": self.both_wrong, "accuracy_a": self.accuracy_a,
                "accuracy_b": self.accuracy_b, "p_value": self.p_value, "test": "mcnemar exact binomial"}


def mcnemar_test(correct_a: Sequence[bool], correct_b: Sequence[bool], threshold: float = 0.5) -> McNemarTest:
    """McNemar's exact test: under "equally accurate" each discordant image is a fair coin."""
    a = np.asarray(correct_a, dtype=bool)
    b = np.asarray(correct_b, dtype=bool)
    only_a, only_b = int((a & ~b).sum()), int((~a & b).sum())
    discordant = only_a + only_b
    p_value = float(stats.binomtest(only_b, discordant, 0.5).pvalue) if discordant else 1.0
    return McNemarTest(float(threshold), int((a & b).sum()), only_a, only_b, int((~a & ~b).sum()), p_value)


def paired_differences(
    positive: Sequence[bool],
    score_a: Sequence[float],
    score_b: Sequence[float],
    *,
    threshold: float = 0.5,
    n_bins: int = 15,
    settings: IntervalSettings | None = None,
    strata: Sequence[Any] | None = None,
    min_tpr: float = DEFAULT_MIN_TPR,
) -> dict[str, Difference]:
    """B - A for every metric of ``BOOTSTRAP_METRICS`` (one class against the rest).

    ``roc_auc`` is DeLong's test; ``roc_auc_bootstrap`` and the rest come from one paired bootstrap
    stratified by ``strata`` (default: the positive/negative label). ``ece`` is the ECE of the
    class's probability.
    """
    settings = settings or IntervalSettings()
    positive = np.asarray(positive, dtype=bool)
    score_a = np.asarray(score_a, dtype=float)
    score_b = np.asarray(score_b, dtype=float)
    if not len(positive) == len(score_a) == len(score_b):
        raise ValueError(f"{len(positive)} labels but {len(score_a)} and {len(score_b)} scores")
    values_a = binary_statistics(score_a, positive, threshold, n_bins, min_tpr)
    values_b = binary_statistics(score_b, positive, threshold, n_bins, min_tpr)

    def statistic(index: np.ndarray) -> np.ndarray:
        y = positive[index]
        return (binary_statistics(score_b[index], y, threshold, n_bins, min_tpr)
                - binary_statistics(score_a[index], y, threshold, n_bins, min_tpr))

    outcome = stratified_bootstrap(positive if strata is None else strata, statistic, settings)
    found: dict[str, Difference] = {}
    for i, metric in enumerate(BOOTSTRAP_METRICS):
        name = "roc_auc_bootstrap" if metric == "roc_auc" else metric
        found[name] = Difference(name, float(values_a[i]), float(values_b[i]), outcome.interval(i, settings.level),
                                 bootstrap_p_value(outcome.distribution[i]), "paired bootstrap")
    delong = delong_test(positive, score_a, score_b, settings.level)
    found = {"roc_auc": Difference("roc_auc", delong.auc_a, delong.auc_b, delong.difference, delong.p_value, "delong"),
             **found}
    return found


def paired_mean_difference(metric: str, values_a: Sequence[float], values_b: Sequence[float],
                           settings: IntervalSettings | None = None) -> Difference:
    """mean(B) - mean(A) of per-image scores over the images scored for both (non-NaN in both)."""
    settings = settings or IntervalSettings()
    a = np.asarray(values_a, dtype=float)
    b = np.asarray(values_b, dtype=float)
    both = np.isfinite(a) & np.isfinite(b)
    a, b = a[both], b[both]
    estimate = np.array([np.mean(b - a)]) if a.size else np.array([math.nan])
    outcome = run_bootstrap([a, b] if a.size >= 2 else [],
                             lambda x, y, axis=-1: np.mean(y - x, axis=axis)[None], estimate, settings,
                             paired=True, n=a.size)
    return Difference(metric, float(a.mean()) if a.size else math.nan, float(b.mean()) if b.size else math.nan,
                      outcome.interval(0, settings.level), bootstrap_p_value(outcome.distribution[0]),
                      "paired bootstrap")
