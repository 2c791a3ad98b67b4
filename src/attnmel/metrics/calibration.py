"""Calibration: expected calibration error, reliability bins, NLL and the temperature that minimises it.

ECE (Guo et al., ICML 2017) uses ``DEFAULT_BINS`` = 15 equal-width bins on [0, 1]; bin ``m`` holds
confidences in ``((m-1)/15, m/15]`` (0 falls in the first bin), and ECE is the mean over bins of
|observed frequency - mean confidence| weighted by the share of samples in the bin. It is written
here (a few lines of numpy) because scikit-learn's ``calibration_curve`` drops the bin counts ECE
needs. Two views are reported: top-label ECE (confidence = highest probability, outcome = the
arg-max is right; the usual definition) and, per scored class, the ECE of that class's probability
(e.g. how well p(melanoma) matches the melanoma frequency; this is what the reliability diagram shows).

Temperature scaling divides the logits by one scalar T > 0 fitted by minimising the negative
log-likelihood (a bounded scalar search over log T, T in [0.05, 20]).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import minimize_scalar

DEFAULT_BINS = 15
TEMPERATURE_BOUNDS = (0.05, 20.0)


@dataclass
class ReliabilityBins:
    """Per equal-width bin: sample count, mean confidence and observed frequency (NaN when empty)."""

    edges: np.ndarray
    counts: np.ndarray
    mean_confidence: np.ndarray
    frequency: np.ndarray

    @property
    def ece(self) -> float:
        total = self.counts.sum()
        if not total:
            return math.nan
        filled = self.counts > 0
        gaps = np.abs(self.frequency[filled] - self.mean_confidence[filled])
        return float(np.sum(self.counts[filled] / total * gaps))


def reliability_bins(confidence: Sequence[float], outcome: Sequence[float], n_bins: int = DEFAULT_BINS) -> ReliabilityBins:
    """Bin ``confidence`` into ``n_bins`` equal-width bins ((lo, hi], 0 in the first) and compare with ``outcome`` (0/1)."""
    confidence = np.asarray(confidence, dtype=float)
    outcome = np.asarray(outcome, dtype=float)
    if n_bins < 1:
        raise ValueError(f"n_bins must be at least 1, not {n_bins}")
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    index = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, n_bins - 1)
    counts = np.bincount(index, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_confidence = np.bincount(index, weights=confidence, minlength=n_bins) / counts
        frequency = np.bincount(index, weights=outcome, minlength=n_bins) / counts
    return ReliabilityBins(edges, counts, mean_confidence, frequency)


def expected_calibration_error(confidence: Sequence[float], outcome: Sequence[float], n_bins: int = DEFAULT_BINS) -> float:
    return reliability_bins(confidence, outcome, n_bins).ece


def negative_log_likelihood(labels: Sequence[int], probabilities: np.ndarray) -> float:
    labels = np.asarray(labels, dtype=int)
    picked = np.asarray(probabilities, dtype=float)[np.arange(len(labels)), labels]
    return float(-np.log(np.clip(picked, 1e-12, 1.0)).mean())


@dataclass(frozen=True)
class CalibrationReport:
    """Top-label ECE, NLL, and the ECE of each scored class's probability, over ``bins`` equal-width bins."""

    bins: int
    ece: float
    nll: float
    class_ece: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        return {"bins": self.bins, "ece": self.ece, "nll": self.nll,
                **{name: {"ece": value} for name, value in self.class_ece.items()}}

    @classmethod
    def from_dict(cls, payload: dict[str, Any]) -> CalibrationReport:
        return cls(int(payload["bins"]), float(payload["ece"]), float(payload["nll"]),
                   {k: float(v["ece"]) for k, v in payload.items() if isinstance(v, dict)})


def calibration_report(
    labels: Sequence[int],
    probabilities: np.ndarray,
    class_names: Sequence[str],
    score_columns: Sequence[str],
    n_bins: int = DEFAULT_BINS,
) -> CalibrationReport:
    labels = np.asarray(labels, dtype=int)
    probabilities = np.asarray(probabilities, dtype=float)
    class_ece = {
        column: expected_calibration_error(probabilities[:, list(class_names).index(column)],
                                           labels == list(class_names).index(column), n_bins)
        for column in score_columns
    }
    return CalibrationReport(
        n_bins,
        expected_calibration_error(probabilities.max(axis=1), probabilities.argmax(axis=1) == labels, n_bins),
        negative_log_likelihood(labels, probabilities),
        class_ece,
    )


def fit_temperature(
    logits: torch.Tensor | np.ndarray, labels: Sequence[int], bounds: tuple[float, float] = TEMPERATURE_BOUNDS
) -> float:
    """The temperature that minimises the NLL of ``labels``.

    ``logits`` is (N, C), or (V, N, C) for V test-time views whose softmaxes are averaged (as
    ``Predictor`` does under TTA). NLL is convex in 1/T for one view, so the bounded search over
    log T finds its minimum.
    """
    z = torch.as_tensor(logits, dtype=torch.float64)
    if z.ndim == 2:
        z = z[None]
    y = torch.as_tensor(np.asarray(labels, dtype=np.int64))
    if z.ndim != 3 or z.shape[1] != len(y) or not len(y):
        raise ValueError(f"logits of shape {tuple(z.shape)} do not match {len(y)} labels")
    log_views = math.log(z.shape[0])

    def nll(log_t: float) -> float:
        log_p = torch.logsumexp(F.log_softmax(z / math.exp(log_t), dim=-1), dim=0) - log_views
        return float(-log_p[torch.arange(len(y)), y].mean())

    result = minimize_scalar(nll, bounds=(math.log(bounds[0]), math.log(bounds[1])), method="bounded",
                             options={"xatol": 1e-6})
    return float(math.exp(result.x))
