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
from attnmel.checkpoints.trust import ConformalSets, OperatingPoint, ThresholdRule
from attnmel.errors import CheckpointError, ConfigError
from attnmel.evaluation.operating_point import DEFAULT_RULE, DEFAULT_TARGET_SENSITIVITY, choose_operating_point
from attnmel.evaluation.trust import DEFAULT_ALPHA, fit_conformal, refuse_degenerate
from attnmel.inference import load_predictor, probabilities_from_logits, read_split
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


def calibrate_checkpoint(
    checkpoint: str | Path | None,
    data: str | Path,
    split: str = "val",
    *,
    tta: bool = False,
    n_bins: int = DEFAULT_BINS,
    write: bool = True,
    output: str | Path | None = None,
    rule: ThresholdRule = DEFAULT_RULE,
    target: float = DEFAULT_TARGET_SENSITIVITY,
    fixed: float = 0.5,
    alpha: float = DEFAULT_ALPHA,
    batch_size: int = 64,
    num_workers: int = 0,
    device: str = "auto",
    layout: str | None = None,
    progress: bool = True,
    trust_pickle: bool = False,
) -> CalibrationResult:
    """Fit temperature, operating point and conformal sets of ``checkpoint`` on ``split`` of ``data`` and
    (unless ``write=False``) write them with the same weights to a new checkpoint (``calibrated_output``).

    With ``tta`` the temperature is fitted to the 8-view average, as ``evaluate --tta`` will use it.
    """
    loaded = load_predictor(checkpoint, device, tta=tta, use_temperature=False, trust_pickle=trust_pickle)
    source, meta = loaded.sources[0], loaded.meta
    if write and is_pickle_checkpoint(source):
        raise CheckpointError(f"{source}: a pickle cannot store a calibration; convert it once with `attnmel export "
                              "--format safetensors --trust-pickle`, or pass --dry-run.")
    destination = calibrated_output(source, output) if write else None
    index, samples = read_split(data, split, meta.task, layout=layout)
    predictions = loaded.infer(samples, batch_size=batch_size, num_workers=num_workers, keep_logits=True,
                               progress=progress, desc="logits")
    logits, labels = torch.from_numpy(predictions.logits), predictions.labels
    refuse_degenerate(labels, list(meta.class_names), f"{index.root} ({split})")
    previous = meta.softmax_temperature
    temperature = fit_temperature(logits, labels)

    def probabilities(t: float) -> np.ndarray:
        return probabilities_from_logits(logits, t).mean(dim=0).numpy()

    def report(t: float) -> CalibrationReport:
        return calibration_report(labels, probabilities(t), meta.class_names, meta.score_columns, n_bins)

    described = f"{Path(index.root).name} {split}"
    fitted = probabilities(temperature)
    point = None
    if len(meta.class_names) == 2:
        point = choose_operating_point(labels == meta.positive_index, fitted[:, meta.positive_index], rule=rule,
                                       target=target, fixed=fixed, data=described)
    result = CalibrationResult(source, split, len(samples), tta, previous, temperature, report(previous),
                               report(temperature), write, destination, point,
                               fit_conformal(labels, fitted, alpha, described), str(index.root))
    if meta.ood_detector is not None:
        result.notes.append("the OOD detector (fitted on the training images) is kept as it was")
    if write:
        copy_with_metadata(source, destination, temperature=temperature, operating_point=point,
                           conformal=result.conformal, calibration={
            "method": "temperature scaling: NLL minimised by bounded scalar search over log T",
            "data": str(index.root), "source": source.name,
            **{k: v for k, v in result.to_dict().items()
               if k not in ("checkpoint", "written", "output", "operating_point", "conformal")},
        })
    return result
