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
from attnmel.errors import CheckpointError
from attnmel.inference import load_predictor, probabilities_from_logits, read_split
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
    trust_pickle: bool = False,
) -> CalibrationResult:
    """Fit the temperature of ``checkpoint`` on ``split`` and (unless ``write=False``) store it in the checkpoint.

    With ``tta`` the temperature is fitted to the 8-view average, as ``evaluate --tta`` will use it.
    """
    loaded = load_predictor(checkpoint, device, tta=tta, use_temperature=False, trust_pickle=trust_pickle)
    source, meta = loaded.sources[0], loaded.meta
    if write and is_pickle_checkpoint(source):
        raise CheckpointError(f"{source}: a pickle cannot store a temperature; convert it once with `attnmel export "
                              "--format safetensors --trust-pickle`, or pass --dry-run.")
    index, samples = read_split(data, split, meta.task, layout=layout)
    predictions = loaded.infer(samples, batch_size=batch_size, num_workers=num_workers, keep_logits=True,
                               progress=progress, desc="logits")
    logits, labels = torch.from_numpy(predictions.logits), predictions.labels
    previous = meta.softmax_temperature
    temperature = fit_temperature(logits, labels)

    def report(t: float) -> CalibrationReport:
        probabilities = probabilities_from_logits(logits, t).mean(dim=0).numpy()
        return calibration_report(labels, probabilities, meta.class_names, meta.score_columns, n_bins)

    result = CalibrationResult(source, split, len(samples), tta, previous, temperature, report(previous),
                               report(temperature), write)
    if write:
        update_metadata(source, temperature=temperature, calibration={
            "method": "temperature scaling: NLL minimised by bounded scalar search over log T",
            "data": str(index.root),
            **{k: v for k, v in result.to_dict().items() if k not in ("checkpoint", "written")},
        })
    return result
