"""``attnmel calibrate``: fit a softmax temperature on a validation split and store it in the checkpoint.

Temperature scaling divides the logits by one scalar T > 0 fitted by minimising the negative
log-likelihood (``attnmel.metrics.calibration.fit_temperature``). It never changes the arg-max,
hence not accuracy, sensitivity or specificity at 0.5, nor (for one model without TTA) the ROC
AUC; it makes the probabilities honest. ``calibrate_checkpoint`` stores T in the checkpoint
(metadata ``temperature``), which evaluate, predict and the HTTP service then apply through
``attnmel.inference.probabilities_from_logits``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from attnmel.checkpoints.format import is_pickle_checkpoint, update_metadata
from attnmel.checkpoints.loader import resolve_source
from attnmel.errors import CheckpointError
from attnmel.inference import DataSplit, InferenceSettings, predict_split, probabilities_from_logits
from attnmel.metrics.calibration import (
    DEFAULT_BINS,
    TEMPERATURE_BOUNDS,
    CalibrationReport,
    calibration_report,
    fit_temperature,
)


@dataclass
class CalibrationResult:
    checkpoint: Path
    split: str
    images: int
    tta: bool
    previous_temperature: float
    temperature: float
    #: calibration with the previous temperature, and with the fitted one
    before: CalibrationReport
    after: CalibrationReport
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
            "before": {"temperature": self.previous_temperature, **self.before.to_dict()},
            "after": {"temperature": self.temperature, **self.after.to_dict()},
            "written": self.written,
        }


def calibrate_checkpoint(
    checkpoint: str | Path,
    source: DataSplit,
    *,
    n_bins: int = DEFAULT_BINS,
    write: bool = True,
    settings: InferenceSettings = InferenceSettings(),
) -> CalibrationResult:
    """Fit the temperature of ``checkpoint`` on ``source`` and (unless ``write=False``) store it in the checkpoint.

    The logits are read without any stored temperature (``settings.use_temperature`` is ignored). With
    ``settings.tta`` the temperature is fitted to the 8-view average, as ``evaluate --tta`` will use it.
    """
    path = resolve_source(checkpoint)
    if write and settings.trust_pickle and is_pickle_checkpoint(path):  # an untrusted one is refused by the loader
        raise CheckpointError(f"{path}: a pickle cannot store a temperature; convert it once with `attnmel export "
                              "--format safetensors --trust-pickle`, or pass --dry-run.")
    run = predict_split(checkpoint, source, settings.replace(use_temperature=False), keep=("logits",), desc="logits")
    split, tta, index, samples, predictions = source.split, settings.tta, run.index, run.samples, run.predictions
    source_path, meta = run.loaded.sources[0], run.loaded.meta
    logits, labels = torch.from_numpy(predictions.logits), predictions.labels
    previous = meta.softmax_temperature
    temperature = fit_temperature(logits, labels)

    def report(t: float) -> CalibrationReport:
        probabilities = probabilities_from_logits(logits, t).mean(dim=0).numpy()
        return calibration_report(labels, probabilities, meta.class_names, meta.score_columns, n_bins)

    result = CalibrationResult(source_path, split, len(samples), tta, previous, temperature, report(previous),
                               report(temperature), write)
    if write:
        update_metadata(source_path, temperature=temperature, calibration={
            "method": "temperature scaling: NLL minimised by bounded scalar search over log T",
            "data": str(index.root),
            **{k: v for k, v in result.to_dict().items() if k not in ("checkpoint", "written")},
        })
    return result
