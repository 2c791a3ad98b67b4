"""Calibration: expected calibration error, reliability bins, and temperature scaling.

ECE (Guo et al., ICML 2017) uses ``DEFAULT_BINS`` = 15 equal-width bins on [0, 1]; bin ``m`` holds
confidences in ``((m-1)/15, m/15]`` (0 falls in the first bin), and ECE is the mean over bins of
|observed frequency - mean confidence| weighted by the share of samples in the bin. It is written
here (a few lines of numpy) because scikit-learn's ``calibration_curve`` drops the bin counts ECE
needs. Two views are reported: top-label ECE (confidence = highest probability, outcome = the
arg-max is right; the usual definition) and, per scored class, the ECE of that class's probability
(e.g. how well p(melanoma) matches the melanoma frequency; this is what the reliability diagram shows).

Temperature scaling divides the logits by one scalar T > 0 fitted on validation by minimising the
negative log-likelihood (a bounded scalar search over log T, T in [0.05, 20]). It never changes the
arg-max, hence not accuracy, sensitivity or specificity at 0.5, nor (for one model without TTA) the
ROC AUC; it makes the probabilities honest. ``calibrate_checkpoint`` stores T in the checkpoint
(metadata ``temperature``), which evaluate, predict and the HTTP service then apply through
``attnmel.evaluation.inference.probabilities_from_logits``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import minimize_scalar
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from attnmel.data.readers import read_dataset
from attnmel.errors import DataError
from attnmel.evaluation.inference import Preprocessing, eval_loader, probabilities_from_logits, resolve_device
from attnmel.evaluation.tta import dihedral_view, view_indices
from attnmel.training.checkpoint import (
    checkpoint_paths,
    checkpoint_temperature,
    load_model_checkpoint,
    update_metadata,
)

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


def calibration_report(
    labels: Sequence[int],
    probabilities: np.ndarray,
    class_names: Sequence[str],
    score_columns: Sequence[str],
    n_bins: int = DEFAULT_BINS,
) -> dict[str, Any]:
    """Top-label ECE, NLL, and the ECE of each scored class's probability."""
    labels = np.asarray(labels, dtype=int)
    probabilities = np.asarray(probabilities, dtype=float)
    report: dict[str, Any] = {
        "bins": n_bins,
        "ece": expected_calibration_error(probabilities.max(axis=1), probabilities.argmax(axis=1) == labels, n_bins),
        "nll": negative_log_likelihood(labels, probabilities),
    }
    for column in score_columns:
        index = list(class_names).index(column)
        report[column] = {"ece": expected_calibration_error(probabilities[:, index], labels == index, n_bins)}
    return report


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


@torch.no_grad()
def collect_logits(
    model: nn.Module, loader: DataLoader, device: torch.device | str = "cpu", *, tta: bool = False, progress: bool = False
) -> tuple[torch.Tensor, np.ndarray]:
    """Raw logits (V, N, C) for V = 8 dihedral views under TTA (else 1), and the labels (N,)."""
    model.eval()
    views, labels = [], []
    for batch in tqdm(loader, desc="logits", disable=not progress, leave=False, unit="batch"):
        images = batch["image"].to(device)
        views.append(torch.stack([model(dihedral_view(images, i)).logits.float().cpu() for i in view_indices(tta)]))
        labels.append(batch["label"].numpy())
    return torch.cat(views, dim=1), np.concatenate(labels)


@dataclass
class CalibrationResult:
    checkpoint: Path
    split: str
    images: int
    tta: bool
    previous_temperature: float
    temperature: float
    #: calibration_report with the previous temperature, and with the fitted one
    before: dict[str, Any]
    after: dict[str, Any]
    written: bool

    @property
    def at_bound(self) -> bool:
        """True when the fit stopped at a search bound (e.g. validation perfectly separated): treat T with care."""
        return any(math.isclose(self.temperature, b, rel_tol=1e-3) for b in TEMPERATURE_BOUNDS)

    def to_dict(self) -> dict[str, Any]:
        return {
            "checkpoint": str(self.checkpoint),
            "split": self.split,
            "images": self.images,
            "tta": self.tta,
            "previous_temperature": self.previous_temperature,
            "temperature": self.temperature,
            "at_bound": self.at_bound,
            "before": self.before,
            "after": self.after,
            "written": self.written,
        }


def calibrate_checkpoint(
    checkpoint: str | Path,
    data: str | Path,
    split: str = "val",
    *,
    tta: bool = False,
    n_bins: int = DEFAULT_BINS,
    write: bool = True,
    batch_size: int = 64,
    num_workers: int = 0,
    device: str = "auto",
    layout: str | None = None,
    progress: bool = True,
) -> CalibrationResult:
    """Fit the temperature of ``checkpoint`` on ``split`` and (unless ``write=False``) store it in the checkpoint.

    With ``tta`` the temperature is fitted to the 8-view average, as ``evaluate --tta`` will use it.
    """
    weights, _ = checkpoint_paths(checkpoint)
    torch_device = resolve_device(device)
    model, meta = load_model_checkpoint(weights, torch_device)
    class_names, score_columns = list(meta["class_names"]), list(meta["score_columns"])
    index = read_dataset(data, meta["task"], layout=layout)
    samples = index.split(split)
    if not samples:
        raise DataError(index.root, f"split {split!r} has no images.", "calibrate on the validation split.")
    loader = eval_loader(samples, Preprocessing.from_dict(meta["preprocessing"]), batch_size, num_workers)
    logits, labels = collect_logits(model, loader, torch_device, tta=tta, progress=progress)
    previous = checkpoint_temperature(meta)
    temperature = fit_temperature(logits, labels)

    def report(t: float) -> dict[str, Any]:
        probabilities = probabilities_from_logits(logits, t).mean(dim=0).numpy()
        return {"temperature": t, **calibration_report(labels, probabilities, class_names, score_columns, n_bins)}

    result = CalibrationResult(weights, split, len(samples), tta, previous, temperature, report(previous),
                               report(temperature), write)
    if write:
        update_metadata(weights, {
            "temperature": temperature,
            "calibration": {
                "method": "temperature scaling: NLL minimised by bounded scalar search over log T",
                "data": str(index.root),
                **{k: v for k, v in result.to_dict().items() if k not in ("checkpoint", "written")},
            },
        })
    return result
