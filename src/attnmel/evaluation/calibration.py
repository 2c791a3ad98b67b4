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
current folder for the shipped model): never over the input, never inside the installed package, and
never over a file that ``attnmel calibrate`` did not write (another run's ``best.safetensors``, a
user's model or its ``.json``): an existing file is replaced only when it is an earlier calibrated
checkpoint. ``output`` names the new file exactly (``.safetensors``, or no suffix to get one); a
folder is refused, not taken to mean the ``best.safetensors`` inside it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from attnmel.checkpoints.format import (
    CHECKPOINT_SUFFIXES,
    checkpoint_paths,
    copy_with_metadata,
    is_pickle_checkpoint,
    read_metadata,
)
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
from attnmel.outputs import check_output_file

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
    input (in the current folder when the input lies inside the installed package). Refused: a folder,
    a suffix other than ``.safetensors``, the input itself, the installed package, and a file (weights
    or ``.json``) that is not an earlier output of ``attnmel calibrate``."""
    source, source_sidecar = checkpoint_paths(source)
    if output is None:
        folder = Path.cwd() if _inside(source, PACKAGE_DIR) else source.parent
        output = folder / f"{source.stem}-calibrated.safetensors"
    output = Path(output)
    if output.is_dir():
        raise ConfigError(f"--output {output}: is an existing folder; name the new checkpoint file (e.g. "
                          f"{output / (source.stem + '-calibrated.safetensors')}).")
    if output.suffix not in ("", CHECKPOINT_SUFFIXES[0]):
        raise ConfigError(f"--output {output}: a calibrated checkpoint is a {CHECKPOINT_SUFFIXES[0]} file (with its "
                          f".json copy beside it); name it {output.name}{CHECKPOINT_SUFFIXES[0]} or another "
                          f"{CHECKPOINT_SUFFIXES[0]} file.")
    check_output_file(output)
    target, sidecar = checkpoint_paths(output)
    if {target.resolve(), sidecar.resolve()} & {source.resolve(), source_sidecar.resolve()}:
        raise ConfigError(f"--output {output} is the checkpoint being calibrated; calibrate never writes its input. "
                          "Name another file.")
    if _inside(target, PACKAGE_DIR):
        raise ConfigError(f"--output {output} lies inside the installed attnmel package, which attnmel never writes; "
                          "name a file elsewhere.")
    problem = _not_ours(target, sidecar)
    if problem is not None:
        raise ConfigError(f"--output {output}: {problem}; calibrate replaces only a checkpoint it wrote earlier. "
                          "Name a new file, or move that one away first.")
    return target


def _not_ours(target: Path, sidecar: Path) -> str | None:
    """Why writing ``target`` (and its ``sidecar``) would replace a file calibrate did not write, or None."""
    if target.is_symlink() or sidecar.is_symlink():
        return f"{target if target.is_symlink() else sidecar} is a link, which calibrate does not write through"
    if not target.exists():
        return f"{sidecar} already exists and is not the copy of a calibrated checkpoint" if sidecar.exists() else None
    try:
        meta = read_metadata(target)
    except CheckpointError:
        return f"{target} already exists and is not an attnmel checkpoint"
    if meta.calibration is None:
        return f"{target} already holds a checkpoint that attnmel calibrate did not write (a trained or exported model)"
    return None


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
    if write and path is not None:  # a refused --output is said before the images are read
        calibrated_output(path, output)
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
