"""``attnmel calibrate``: refit a checkpoint's temperature, decision threshold and prediction sets
on labelled data (e.g. a user's own site), writing a NEW checkpoint.

Temperature scaling divides the logits by one scalar T > 0 fitted by minimising the negative
log-likelihood (``attnmel.metrics.calibration.fit_temperature``); it makes the probabilities honest
without changing their order. The operating point is then chosen on the same data at the new
temperature by a stated rule (``attnmel.evaluation.operating_point``), and the split conformal
sets are refitted (``attnmel.evaluation.trust``); the OOD detector, fitted on the training images,
is kept. Data that cannot identify these (one class, fewer than ``MIN_IMAGES`` images or
``MIN_PER_CLASS`` of a class) is refused, saying why.

The result is written to ``output`` or beside the input (``<name>-calibrated.safetensors``; in the
current folder for the shipped model): never over the input, never inside the installed package.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from attnmel.checkpoints.format import checkpoint_paths, copy_with_metadata, is_pickle_checkpoint
from attnmel.checkpoints.loader import resolve_source
from attnmel.checkpoints.trust import ConformalSets, OperatingPoint, ThresholdRule
from attnmel.errors import CheckpointError, ConfigError
from attnmel.evaluation.operating_point import (
    DEFAULT_RULE,
    DEFAULT_TARGET_SENSITIVITY,
    choose_operating_point,
)
from attnmel.evaluation.split_predictions import predict_split
from attnmel.evaluation.trust import DEFAULT_ALPHA, fit_conformal, refuse_degenerate
from attnmel.inference import DataSplit, InferenceSettings, probabilities_from_logits
from attnmel.metrics.calibration import (
    DEFAULT_BINS,
    TEMPERATURE_BOUNDS,
    CalibrationReport,
    calibration_report,
    fit_temperature,
)

#: the installed package: read-only to attnmel
PACKAGE_DIR = Path(__file__).resolve().parents[1]


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
    #: the new checkpoint (None: a dry run)
    output: Path | None = None
    operating_point: OperatingPoint | None = None
    conformal: ConformalSets | None = None
    data: str = ""
    notes: list[str] = field(default_factory=list)

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
            "output": None if self.output is None else str(self.output),
            "operating_point": None if self.operating_point is None else self.operating_point.to_dict(),
            "conformal": None if self.conformal is None else self.conformal.to_dict(),
        }


def calibrated_output(source: Path, output: str | Path | None) -> Path:
    """Where the calibrated checkpoint goes: ``output``, or ``<stem>-calibrated.safetensors`` beside the
    input (in the current folder when the input lies inside the installed package)."""
    source, _ = checkpoint_paths(source)
    if output is None:
        folder = Path.cwd() if _inside(source, PACKAGE_DIR) else source.parent
        output = folder / f"{source.stem}-calibrated.safetensors"
    target, _ = checkpoint_paths(Path(output))
    if target.resolve() == source.resolve():
        raise ConfigError(f"--output {output} is the checkpoint being calibrated; calibrate never writes its input. "
                          "Name another file.")
    if _inside(target, PACKAGE_DIR):
        raise ConfigError(f"--output {output} lies inside the installed attnmel package, which attnmel never writes; "
                          "name a file elsewhere.")
    return target


def _inside(path: Path, folder: Path) -> bool:
    return path.resolve().is_relative_to(folder)


@dataclass(frozen=True)
class CalibrationFit:
    """What ``calibrate`` fits besides the temperature: the operating point's rule and the conformal
    sets' error rate."""

    n_bins: int = DEFAULT_BINS
    rule: ThresholdRule = DEFAULT_RULE
    #: the sensitivity the "sensitivity" rule reaches
    target: float = DEFAULT_TARGET_SENSITIVITY
    #: the threshold of the "fixed" rule
    fixed: float = 0.5
    alpha: float = DEFAULT_ALPHA


def calibrate_checkpoint(
    checkpoint: str | Path | None,
    source: DataSplit,
    fit: CalibrationFit = CalibrationFit(),
    settings: InferenceSettings = InferenceSettings(),
    write: bool = True,
    output: str | Path | None = None,
) -> CalibrationResult:
    """Fit temperature, operating point and conformal sets of ``checkpoint`` on ``source`` and (unless
    ``write=False``) write them with the same weights to a new checkpoint (``calibrated_output``), never
    over the input.

    The logits are read without any stored temperature (``settings.use_temperature`` is ignored). With
    ``settings.tta`` the temperature is fitted to the 8-view average, as ``evaluate --tta`` will use it.
    """
    path = resolve_source(checkpoint) if checkpoint is not None else None
    if write and path is not None and is_pickle_checkpoint(path):
        raise CheckpointError(f"{path}: a pickle cannot store a calibration; convert it once with `attnmel export "
                              "--format safetensors --trust-pickle`, or pass --dry-run.")
    run = predict_split(checkpoint, source, settings.replace(use_temperature=False), keep=("logits",), desc="logits")
    split, tta, index, samples, predictions = source.split, settings.tta, run.index, run.samples, run.predictions
    source_path, meta = run.loaded.sources[0], run.loaded.meta
    destination = calibrated_output(source_path, output) if write else None
    logits, labels = torch.from_numpy(predictions.logits), predictions.labels
    refuse_degenerate(labels, list(meta.class_names), f"{index.root} ({split})")
    previous = meta.softmax_temperature
    temperature = fit_temperature(logits, labels)

    def probabilities(t: float) -> np.ndarray:
        return probabilities_from_logits(logits, t).mean(dim=0).numpy()

    def report(t: float) -> CalibrationReport:
        return calibration_report(labels, probabilities(t), meta.class_names, meta.score_columns, fit.n_bins)

    described = f"{Path(index.root).name} {split}"
    fitted = probabilities(temperature)
    point = None
    if len(meta.class_names) == 2:
        point = choose_operating_point(labels == meta.positive_index, fitted[:, meta.positive_index], rule=fit.rule,
                                       target=fit.target, fixed=fit.fixed, data=described)
    result = CalibrationResult(source_path, split, len(samples), tta, previous, temperature, report(previous),
                               report(temperature), write, destination, point,
                               fit_conformal(labels, fitted, fit.alpha, described), str(index.root))
    if meta.ood_detector is not None:
        result.notes.append("the OOD detector (fitted on the training images) is kept as it was")
    if write:
        copy_with_metadata(source_path, destination, temperature=temperature, operating_point=point,
                           conformal=result.conformal, calibration={
            "method": "temperature scaling: NLL minimised by bounded scalar search over log T",
            "data": str(index.root), "source": source_path.name,
            **{k: v for k, v in result.to_dict().items()
               if k not in ("checkpoint", "written", "output", "operating_point", "conformal")},
        })
    return result
