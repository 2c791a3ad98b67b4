"""Confidence intervals for the metrics of one model on the images it was scored on.

A validation split of 150 images with 30 melanomas measures an AUC to about +-0.08, so a number
without its interval invites reading noise as progress. Two methods:

* **ROC AUC: DeLong's interval** (DeLong et al., Biometrics 1988), computed by the fast algorithm
  of Sun & Xu (IEEE SPL 2014): midranks give every image's structural component in O(n log n).
  Neither scikit-learn, scipy nor statsmodels ships DeLong's variance or its test for two
  correlated AUCs, so it is written here; the tests check it against MLstatkit (an independent
  implementation), a quadratic textbook version and a case worked by hand. The interval is
  AUC +- z * se, clipped to [0, 1] (as pROC does). A perfectly separated split has se = 0 and a
  zero-width interval; the bootstrap interval (``roc_auc_bootstrap``) is the better guide there.
* **Every other metric: a stratified bootstrap** through ``scipy.stats.bootstrap``. The images of
  each true class are resampled separately (each class is one of scipy's independent "samples"),
  so every resample keeps the split's class counts: AUC, sensitivity and sensitivity at a
  specificity are defined in every resample, and the interval describes which images were drawn
  within each class, with the prevalence fixed as in the split (pROC's ``boot.stratified``).
  A class with a single image is held fixed (scipy needs two observations to resample a sample,
  and a one-image class resamples to itself anyway). Percentile intervals by default (pROC's
  choice, and the one the paired p-values in ``attnmel.metrics.paired`` invert); BCa on request,
  falling back to the percentile interval where BCa is undefined (a degenerate distribution).
  Means of per-image scores (attention Jaccard and Dice over the images with a mask) are an
  ordinary bootstrap of those images.

The statistics are evaluated on all resamples at once: each metric below is vectorised over a
leading resample axis and checked against scikit-learn (and ``attnmel.metrics.calibration``) by
the tests. ECE is biased upward on small samples, and so is each resample's; its interval shows the
estimate's variability, not an unbiased range for the true calibration error.

This module imports neither torch nor the calibration module, so that ``attnmel compare`` on
prediction CSVs and ``attnmel report`` stay light.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

import numpy as np
from scipy import stats

from attnmel.errors import ConfigError
from attnmel.metrics.challenge2024 import DEFAULT_MIN_TPR, batch_partial_auc_above_tpr

CiMethod = Literal["percentile", "bca"]
CI_METHODS: tuple[str, ...] = get_args(CiMethod)
DEFAULT_LEVEL = 0.95
DEFAULT_RESAMPLES = 2000
DEFAULT_SEED = 0
#: fewer resamples put the 2.5% and 97.5% points on a handful of values
MIN_RESAMPLES = 100
#: the bootstrapped metrics of one class against the rest (ROC AUC also gets DeLong's interval)
BOOTSTRAP_METRICS: tuple[str, ...] = ("roc_auc", "average_precision", "sensitivity", "specificity",
                                      "balanced_accuracy", "sensitivity_at_90_specificity", "ece", "partial_auc")
#: resample x image elements evaluated per call (bounds memory on large splits)
_BATCH_ELEMENTS = 2_000_000


@dataclass(frozen=True)
class Interval:
    """A point estimate with its two-sided confidence interval."""

    estimate: float
    low: float
    high: float
    level: float
    #: "delong", "bootstrap-percentile" or "bootstrap-bca"
    method: str

    @property
    def width(self) -> float:
        return self.high - self.low

    def contains(self, value: float) -> bool:
        return self.low <= value <= self.high

    def to_dict(self) -> dict[str, Any]:
        return {"estimate": self.estimate, "low": self.low, "high": self.high, "level": self.level,
                "method": self.method}

    @classmethod
    def from_dict(cls, payload: dict[str, Any]) -> Interval:
        """Read what ``to_dict`` wrote (JSON nulls, for undefined values, become NaN)."""
        def number(key: str) -> float:
            value = payload.get(key)
            return math.nan if value is None else float(value)

        return cls(number("estimate"), number("low"), number("high"), number("level"), str(payload.get("method", "")))

    def format(self, digits: int = 4, bound_digits: int = 2, sign: bool = False) -> str:
        """``0.8712 [0.80, 0.93]``; ``n/a`` when undefined."""
        if not math.isfinite(self.estimate):
            return "n/a"

        def fixed(value: float, places: int) -> str:
            value = round(value, places) or 0.0  # no "-0.000" for float noise
            return f"{value:{'+' if sign else ''}.{places}f}"

        text = fixed(self.estimate, digits)
        if math.isfinite(self.low) and math.isfinite(self.high):
            text += f" [{fixed(self.low, bound_digits)}, {fixed(self.high, bound_digits)}]"
        return text


@dataclass(frozen=True)
class IntervalSettings:
    """How bootstrap intervals are computed: confidence level, resamples, seed and method."""

    level: float = DEFAULT_LEVEL
    resamples: int = DEFAULT_RESAMPLES
    seed: int = DEFAULT_SEED
    method: CiMethod = "percentile"

    def __post_init__(self):
        if not 0 < self.level < 1:
            raise ConfigError(f"confidence level must be between 0 and 1 (e.g. 0.95), not {self.level}.")
        if int(self.resamples) != self.resamples or self.resamples < MIN_RESAMPLES:
            raise ConfigError(f"bootstrap resamples must be a whole number of at least {MIN_RESAMPLES}, "
                              f"not {self.resamples}.")
        if self.method not in CI_METHODS:
            raise ConfigError(f"bootstrap method must be one of {', '.join(CI_METHODS)}, not {self.method!r}.")
        if int(self.seed) != self.seed or self.seed < 0:
            raise ConfigError(f"bootstrap seed must be a whole number of at least 0, not {self.seed}.")

    @property
    def label(self) -> str:
        return f"bootstrap-{self.method}"

    def to_dict(self) -> dict[str, Any]:
        return {"level": self.level, "resamples": self.resamples, "seed": self.seed, "method": self.label}


# ---------------------------------------------------------------------- DeLong


def delong_placements(positive: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sun & Xu's fast DeLong: (AUCs (k,), positives' components (k, m), negatives' components (k, n)).

    ``scores`` is (k, N) for k models on the same N images. A positive's component is the share of
    negatives it outranks and a negative's the share of positives that outrank it (ties count one
    half); both come from midranks within the class and in the pooled sample.
    """
    positive = np.asarray(positive, dtype=bool)
    scores = np.atleast_2d(np.asarray(scores, dtype=float))
    pos, neg = scores[:, positive], scores[:, ~positive]
    m, n = pos.shape[1], neg.shape[1]
    pooled = stats.rankdata(np.concatenate([pos, neg], axis=1), axis=1)
    within_pos = stats.rankdata(pos, axis=1)
    within_neg = stats.rankdata(neg, axis=1)
    aucs = (pooled[:, :m].sum(axis=1) - m * (m + 1) / 2) / (m * n)
    v10 = (pooled[:, :m] - within_pos) / n
    v01 = 1.0 - (pooled[:, m:] - within_neg) / m
    return aucs, v10, v01


def delong_covariance(positive: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(AUCs (k,), their DeLong covariance (k, k)); NaN when a class has fewer than two images."""
    positive = np.asarray(positive, dtype=bool)
    m, n = int(positive.sum()), int((~positive).sum())
    k = np.atleast_2d(scores).shape[0]
    if m < 2 or n < 2:
        aucs = delong_placements(positive, scores)[0] if m and n else np.full(k, math.nan)
        return aucs, np.full((k, k), math.nan)
    aucs, v10, v01 = delong_placements(positive, scores)
    cov = np.atleast_2d(np.cov(v10)) / m + np.atleast_2d(np.cov(v01)) / n
    return aucs, cov


def _z(level: float) -> float:
    return float(stats.norm.ppf(0.5 + level / 2))


def delong_interval(y_true: Sequence[int], score: Sequence[float], level: float = DEFAULT_LEVEL) -> Interval:
    """DeLong's interval of the ROC AUC of ``score`` for the 0/1 labels ``y_true``."""
    positive = np.asarray(y_true).astype(bool)
    aucs, cov = delong_covariance(positive, np.asarray(score, dtype=float)[None])
    auc, variance = float(aucs[0]), float(cov[0, 0])
    if not math.isfinite(variance):
        return Interval(auc, math.nan, math.nan, level, "delong")
    half = _z(level) * math.sqrt(max(variance, 0.0))
    return Interval(auc, max(0.0, auc - half), min(1.0, auc + half), level, "delong")


@dataclass(frozen=True)
class DeLongTest:
    """DeLong's test of two correlated ROC AUCs (the same images scored by models A and B)."""

    auc_a: float
    auc_b: float
    #: AUC(B) - AUC(A), with its DeLong interval
    difference: Interval
    z: float
    p_value: float

    def to_dict(self) -> dict[str, Any]:
        return {"auc_a": self.auc_a, "auc_b": self.auc_b, "difference": self.difference.to_dict(), "z": self.z,
                "p_value": self.p_value, "test": "delong"}


def delong_test(y_true: Sequence[int], score_a: Sequence[float], score_b: Sequence[float],
                level: float = DEFAULT_LEVEL) -> DeLongTest:
    """Two-sided test of AUC(A) = AUC(B), and the interval of AUC(B) - AUC(A).

    With zero variance (e.g. identical scores) the difference is certain: p = 1 when it is 0,
    p = 0 otherwise (pROC's convention).
    """
    positive = np.asarray(y_true).astype(bool)
    scores = np.vstack([np.asarray(score_a, dtype=float), np.asarray(score_b, dtype=float)])
    aucs, cov = delong_covariance(positive, scores)
    difference = float(aucs[1] - aucs[0])
    variance = float(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1])
    if not math.isfinite(variance):
        return DeLongTest(float(aucs[0]), float(aucs[1]), Interval(difference, math.nan, math.nan, level, "delong"),
                          math.nan, math.nan)
    se = math.sqrt(max(variance, 0.0))
    if se <= 1e-15:
        z = 0.0 if abs(difference) <= 1e-15 else math.copysign(math.inf, difference)
    else:
        z = difference / se
    p_value = float(2 * stats.norm.sf(abs(z)))
    half = _z(level) * se
    return DeLongTest(float(aucs[0]), float(aucs[1]),
                      Interval(difference, difference - half, difference + half, level, "delong"), z, p_value)


# ---------------------------------------------------------------------- metrics over resamples
# Each takes (..., N) arrays (one row per resample) and returns (...,): the same numbers as the
# scikit-learn based ``attnmel.metrics.classification`` on every row (the tests check it).


def batch_roc_auc(score: np.ndarray, positive: np.ndarray) -> np.ndarray:
    """Mann-Whitney AUC from midranks (ties count one half), as ``roc_auc_score``."""
    positive = np.asarray(positive, dtype=bool)
    n_pos = positive.sum(axis=-1)
    n_neg = positive.shape[-1] - n_pos
    ranks = stats.rankdata(score, axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        auc = (np.where(positive, ranks, 0).sum(axis=-1) - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
    return np.where((n_pos > 0) & (n_neg > 0), auc, math.nan)


def batch_average_precision(score: np.ndarray, positive: np.ndarray) -> np.ndarray:
    """Average precision as ``average_precision_score``: each positive counts the precision at the
    lowest score of its tie group (the operating point where it becomes positive)."""
    score = np.asarray(score, dtype=float)
    order = np.argsort(-score, axis=-1, kind="stable")
    ranked = np.take_along_axis(score, order, axis=-1)
    hits = np.take_along_axis(np.asarray(positive, dtype=float), order, axis=-1)
    n = score.shape[-1]
    precision = np.cumsum(hits, axis=-1) / np.arange(1, n + 1)
    last_of_ties = np.ones(ranked.shape, dtype=bool)
    last_of_ties[..., :-1] = ranked[..., 1:] != ranked[..., :-1]
    position = np.where(last_of_ties, np.arange(n), n)
    group_end = np.minimum.accumulate(position[..., ::-1], axis=-1)[..., ::-1]
    at_group_end = np.take_along_axis(precision, group_end, axis=-1)
    total = hits.sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, (hits * at_group_end).sum(axis=-1) / total, math.nan)


def batch_threshold_rates(score: np.ndarray, positive: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """(sensitivity, specificity) when a prediction is positive above ``threshold``."""
    positive = np.asarray(positive, dtype=bool)
    predicted = np.asarray(score) > threshold
    n_pos = positive.sum(axis=-1)
    n_neg = positive.shape[-1] - n_pos
    with np.errstate(invalid="ignore", divide="ignore"):
        sensitivity = np.where(n_pos > 0, (predicted & positive).sum(axis=-1) / n_pos, math.nan)
        specificity = np.where(n_neg > 0, (~predicted & ~positive).sum(axis=-1) / n_neg, math.nan)
    return sensitivity, specificity


def batch_sensitivity_at_specificity(score: np.ndarray, positive: np.ndarray, specificity: float = 0.9) -> np.ndarray:
    """Highest sensitivity with specificity >= ``specificity``, as ``sensitivity_at_specificity``.

    At most k negatives may score at or above the threshold, k the largest count with
    k / n_neg <= 1 - specificity; the best threshold lies just above the (k+1)-th highest negative
    score, so the answer is the share of positives above that score.
    """
    score = np.asarray(score, dtype=float)
    positive = np.asarray(positive, dtype=bool)
    n = score.shape[-1]
    n_pos = positive.sum(axis=-1)
    n_neg = n - n_pos
    limit = (1 - specificity) + 1e-12  # the tolerance of ``sensitivity_at_specificity``
    safe_neg = np.maximum(n_neg, 1)
    k = np.floor(limit * safe_neg).astype(int)
    k = np.where((k + 1) / safe_neg <= limit, k + 1, k)
    k = np.where(k / safe_neg > limit, k - 1, k)
    negatives_high_first = -np.sort(np.where(positive, np.inf, -score), axis=-1)
    cut = np.take_along_axis(negatives_high_first, np.minimum(k, n - 1)[..., None], axis=-1)[..., 0]
    above = (positive & (score > cut[..., None])).sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        value = np.where(k >= n_neg, 1.0, above / n_pos)
    return np.where((n_pos > 0) & (n_neg > 0), value, math.nan)


def batch_ece(confidence: np.ndarray, outcome: np.ndarray, n_bins: int) -> np.ndarray:
    """Expected calibration error over ``n_bins`` equal-width bins ((lo, hi], 0 in the first), as
    ``attnmel.metrics.calibration.expected_calibration_error``: sum over bins of |sum(outcome) -
    sum(confidence)| / N."""
    confidence = np.asarray(confidence, dtype=float)
    outcome = np.asarray(outcome, dtype=float)
    n = confidence.shape[-1]
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    index = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, n_bins - 1)
    lead = confidence.shape[:-1]
    rows = int(np.prod(lead, dtype=int))
    flat = (np.arange(rows)[:, None] * n_bins + index.reshape(rows, n)).ravel()
    gaps = np.bincount(flat, weights=(outcome - confidence).reshape(-1), minlength=rows * n_bins)
    return (np.abs(gaps.reshape(rows, n_bins)).sum(axis=-1) / n).reshape(lead) if n else np.full(lead, math.nan)


def binary_statistics(score: np.ndarray, positive: np.ndarray, threshold: float, n_bins: int,
                      min_tpr: float = DEFAULT_MIN_TPR) -> np.ndarray:
    """``BOOTSTRAP_METRICS`` of one class against the rest, stacked: (len(BOOTSTRAP_METRICS), ...)
    (``partial_auc``: above ``min_tpr``, the ISIC 2024 metric)."""
    sensitivity, specificity = batch_threshold_rates(score, positive, threshold)
    return np.stack([
        batch_roc_auc(score, positive),
        batch_average_precision(score, positive),
        sensitivity,
        specificity,
        (sensitivity + specificity) / 2,
        batch_sensitivity_at_specificity(score, positive, 0.9),
        batch_ece(score, positive, n_bins),
        batch_partial_auc_above_tpr(score, positive, min_tpr),
    ])


# ---------------------------------------------------------------------- the bootstrap


@dataclass(frozen=True)
class BootstrapOutcome:
    """One bootstrap of S statistics: estimates (S,), bounds (S,), the resampled values (S, B)."""

    estimates: np.ndarray
    low: np.ndarray
    high: np.ndarray
    distribution: np.ndarray
    methods: list[str]

    def interval(self, index: int, level: float) -> Interval:
        return Interval(float(self.estimates[index]), float(self.low[index]), float(self.high[index]), level,
                        self.methods[index])


def _percentile_bounds(distribution: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    alpha = (1 - level) / 2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return (np.nanpercentile(distribution, 100 * alpha, axis=-1),
                np.nanpercentile(distribution, 100 * (1 - alpha), axis=-1))


def run_bootstrap(samples: list[np.ndarray], statistic: Callable[..., np.ndarray], estimates: np.ndarray,
                  settings: IntervalSettings, paired: bool, n: int) -> BootstrapOutcome:
    """``scipy.stats.bootstrap`` of a vectorised statistic returning (S, ...) values; ``estimates``
    (S,) are its values on the data. No samples (nothing to resample): NaN bounds."""
    count = len(estimates)
    if not samples:  # nothing varies: no interval
        nan = np.full(count, math.nan)
        return BootstrapOutcome(estimates, nan, nan, np.full((count, 0), math.nan), [settings.label] * count)
    bca = settings.method == "bca" and all(len(s) > 2 for s in samples)
    with warnings.catch_warnings():
        # undefined metrics (NaN) and degenerate BCa are handled below, per statistic
        warnings.simplefilter("ignore", RuntimeWarning)
        warnings.simplefilter("ignore", stats.DegenerateDataWarning)
        result = stats.bootstrap(
            samples, statistic, n_resamples=settings.resamples, batch=max(1, _BATCH_ELEMENTS // max(n, 1)),
            vectorized=True, paired=paired, axis=-1, confidence_level=settings.level,
            method="BCa" if bca else "percentile", rng=np.random.default_rng(settings.seed),
        )
    distribution = np.asarray(result.bootstrap_distribution, dtype=float).reshape(count, -1)
    low = np.asarray(result.confidence_interval.low, dtype=float).reshape(count)
    high = np.asarray(result.confidence_interval.high, dtype=float).reshape(count)
    methods = ["bootstrap-bca" if bca else "bootstrap-percentile"] * count
    # BCa is undefined for a degenerate distribution, and scipy's percentile bounds are NaN when a
    # resample's metric is: use the percentile bounds of the defined resamples there
    fallback_low, fallback_high = _percentile_bounds(distribution, settings.level)
    for i in range(count):
        if not (math.isfinite(low[i]) and math.isfinite(high[i])) and np.isfinite(distribution[i]).any():
            low[i], high[i], methods[i] = fallback_low[i], fallback_high[i], "bootstrap-percentile"
    undefined = ~np.isfinite(estimates)
    low[undefined] = high[undefined] = math.nan
    return BootstrapOutcome(estimates, low, high, distribution, methods)


def stratified_bootstrap(strata: Sequence[Any], statistic: Callable[[np.ndarray], np.ndarray],
                         settings: IntervalSettings) -> BootstrapOutcome:
    """Bootstrap ``statistic`` over images resampled within each stratum (e.g. true class).

    ``statistic(index)`` takes image indices (..., N) and returns (S, ...) values; it sees one row of
    indices per resample, all strata concatenated (so it must not depend on the order of images).
    """
    strata = np.asarray(strata)
    n = len(strata)
    groups = [np.flatnonzero(strata == value) for value in np.unique(strata)]
    resampled = [g for g in groups if len(g) >= 2]
    fixed = np.concatenate([g for g in groups if len(g) < 2] or [np.zeros(0, dtype=int)])
    estimates = np.asarray(statistic(np.arange(n)), dtype=float).reshape(-1)

    def joined(*samples: np.ndarray, axis: int = -1) -> np.ndarray:
        lead = np.broadcast_shapes(*(s.shape[:-1] for s in samples))
        parts = [np.broadcast_to(s, (*lead, s.shape[-1])) for s in samples]
        parts.append(np.broadcast_to(fixed, (*lead, len(fixed))))
        values = np.asarray(statistic(np.concatenate(parts, axis=-1)), dtype=float)
        return values.reshape(len(estimates), *lead)

    return run_bootstrap(resampled, joined, estimates, settings, paired=False, n=n)


def mean_interval(values: Sequence[float], settings: IntervalSettings) -> Interval:
    """Bootstrap interval of the mean of per-image scores; NaN entries (no mask) are left out."""
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    estimate = np.array([values.mean()]) if values.size else np.array([math.nan])
    samples = [values] if values.size >= 2 else []
    outcome = run_bootstrap(samples, lambda v, axis=-1: np.mean(v, axis=axis)[None], estimate, settings,
                             paired=False, n=values.size)
    return outcome.interval(0, settings.level)


# ---------------------------------------------------------------------- one evaluation


@dataclass(frozen=True)
class EvaluationIntervals:
    """The intervals of one evaluation, laid out as ``metrics.json``: ``classification[class][metric]``
    (``roc_auc`` by DeLong, ``roc_auc_bootstrap`` and the rest by the bootstrap), the top-label and
    per-class ECE, and ``attention_quality[layer]["jaccard" | "dice"]``."""

    settings: IntervalSettings
    classification: dict[str, dict[str, Interval]]
    ece: Interval
    class_ece: dict[str, Interval]
    attention_quality: dict[str, dict[str, Interval]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            **self.settings.to_dict(),
            "stratified_by": "true class",
            "roc_auc": "delong",
            "classification": {c: {k: v.to_dict() for k, v in metrics.items()} for c, metrics in self.classification.items()},
            "calibration": {"ece": self.ece.to_dict(), **{c: {"ece": v.to_dict()} for c, v in self.class_ece.items()}},
        }
        if self.attention_quality:
            out["attention_quality"] = {layer: {k: v.to_dict() for k, v in scores.items()}
                                        for layer, scores in self.attention_quality.items()}
        return out


def classification_intervals(
    labels: Sequence[int],
    probabilities: np.ndarray,
    class_names: Sequence[str],
    score_columns: Sequence[str],
    threshold: float = 0.5,
    n_bins: int = 15,
    settings: IntervalSettings | None = None,
    min_tpr: float = DEFAULT_MIN_TPR,
) -> EvaluationIntervals:
    """DeLong's AUC interval and stratified-bootstrap intervals of every scored class's metrics and
    of the ECE (top label and per scored class), from one bootstrap shared by all of them."""
    settings = settings or IntervalSettings()
    labels = np.asarray(labels, dtype=int)
    probabilities = np.asarray(probabilities, dtype=float)
    names = list(class_names)
    columns = [names.index(c) for c in score_columns]
    top_confidence = probabilities.max(axis=1)
    top_correct = (probabilities.argmax(axis=1) == labels).astype(float)

    def statistic(index: np.ndarray) -> np.ndarray:
        y = labels[index]
        rows = [binary_statistics(probabilities[index, c], y == c, threshold, n_bins, min_tpr) for c in columns]
        return np.concatenate([*rows, batch_ece(top_confidence[index], top_correct[index], n_bins)[None]])

    outcome = stratified_bootstrap(labels, statistic, settings)
    per_class = len(BOOTSTRAP_METRICS)
    classification: dict[str, dict[str, Interval]] = {}
    class_ece: dict[str, Interval] = {}
    for i, (column, c) in enumerate(zip(score_columns, columns, strict=True)):
        found = {metric: outcome.interval(i * per_class + j, settings.level) for j, metric in enumerate(BOOTSTRAP_METRICS)}
        class_ece[column] = found.pop("ece")
        found["roc_auc_bootstrap"] = found["roc_auc"]
        found["roc_auc"] = delong_interval(labels == c, probabilities[:, c], settings.level)
        classification[column] = found
    return EvaluationIntervals(settings, classification, outcome.interval(len(columns) * per_class, settings.level),
                               class_ece)


def delong_intervals(labels: Sequence[int], probabilities: np.ndarray, class_names: Sequence[str],
                     score_columns: Sequence[str], level: float = DEFAULT_LEVEL) -> dict[str, Interval]:
    """DeLong's interval of each scored class's ROC AUC (cheap: what training records per checkpoint)."""
    labels = np.asarray(labels, dtype=int)
    probabilities = np.asarray(probabilities, dtype=float)
    names = list(class_names)
    return {c: delong_interval(labels == names.index(c), probabilities[:, names.index(c)], level) for c in score_columns}
