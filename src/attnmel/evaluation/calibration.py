"""``attnmel calibrate``: refit a checkpoint's temperature, decision threshold, prediction sets and
OOD detector on labelled data (e.g. a user's own site), writing a NEW checkpoint.

Temperature scaling divides the logits by one scalar T > 0 fitted by minimising the negative
log-likelihood (``attnmel.metrics.calibration.fit_temperature``); it makes the probabilities honest
without changing their order. The operating point is then chosen on the same data at the new
temperature by a stated rule (``attnmel.evaluation.operating_point``), and the class-conditional
split conformal sets are refitted; the OOD detector is kept, or refitted from training-like images
given with ``CalibrationFit.detector_data`` (its thresholds from the calibration data). Each of them
can be refitted alone (``CalibrationFit.fit``); all go through ``attnmel.evaluation.trust.fit_trust``.
Data that cannot identify these (one class, fewer than ``MIN_IMAGES`` images or ``MIN_PER_CLASS`` of
a class) is refused, saying why.

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

import torch

from attnmel.checkpoints.format import (
    CHECKPOINT_SUFFIXES,
    checkpoint_paths,
    copy_with_metadata,
    is_pickle_checkpoint,
    read_metadata,
)
from attnmel.checkpoints.loader import resolve_source
from attnmel.checkpoints.meta import CheckpointMeta
from attnmel.checkpoints.trust import ConformalSets, OodDetector, OperatingPoint, ThresholdRule, TrustFields
from attnmel.errors import CheckpointError, ConfigError
from attnmel.evaluation.operating_point import DEFAULT_RULE, DEFAULT_TARGET_SENSITIVITY
from attnmel.evaluation.split_predictions import predict_split
from attnmel.evaluation.trust import (
    DEFAULT_ALPHA,
    DetectorData,
    Fit,
    FittingData,
    TrustOptions,
    detector_data,
    fit_trust,
)
from attnmel.inference import DataSplit, InferenceSettings, probabilities_from_logits
from attnmel.metrics.calibration import (
    DEFAULT_BINS,
    TEMPERATURE_BOUNDS,
    CalibrationReport,
    calibration_report,
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
    ood_detector: OodDetector | None = None
    #: what was refitted (the rest kept as it was)
    fitted: tuple[str, ...] = ()
    #: the mode of answering the fields are for (plain, tta)
    mode: str = "plain"

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
            "ood_detector": None if self.ood_detector is None else {
                "fitted_on": self.ood_detector.fitted_on, "threshold_on": self.ood_detector.threshold_on,
                "flagged_share": self.ood_detector.flagged_share, "rule": self.ood_detector.rule},
            "fitted": list(self.fitted),
            "mode": self.mode,
            "notes": list(self.notes),
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
    """What ``calibrate`` fits (``fit``: by default the temperature, the operating point and the sets,
    and the OOD detector too when ``detector_data`` is given) and by which rules."""

    n_bins: int = DEFAULT_BINS
    rule: ThresholdRule = DEFAULT_RULE
    #: the sensitivity the "sensitivity" rule reaches
    target: float = DEFAULT_TARGET_SENSITIVITY
    #: the threshold of the "fixed" rule
    fixed: float = 0.5
    alpha: float = DEFAULT_ALPHA
    #: what to refit (None: temperature, threshold and sets, plus the detector when ``detector_data`` is given)
    fit: tuple[Fit, ...] | None = None
    #: training-like images the OOD detector learns (its thresholds come from the calibration data)
    detector_data: tuple[DataSplit, ...] = ()

    def options(self) -> TrustOptions:
        fit = self.fit if self.fit is not None else \
            ("temperature", "threshold", "sets", *(("detector",) if self.detector_data else ()))
        if "detector" in fit and not self.detector_data:
            raise ConfigError("--fit detector needs training-like images: give them with --detector-data DATASET "
                              "(its --detector-split, default train).")
        return TrustOptions(fit=tuple(fit), rule=self.rule, target=self.target, fixed=self.fixed, alpha=self.alpha)


def calibrate_checkpoint(
    checkpoint: str | Path | None,
    source: DataSplit,
    fit: CalibrationFit = CalibrationFit(),
    settings: InferenceSettings = InferenceSettings(),
    write: bool = True,
    output: str | Path | None = None,
) -> CalibrationResult:
    """Refit what ``fit`` names (``attnmel.evaluation.trust.fit_trust``) of ``checkpoint`` on ``source``
    and (unless ``write=False``) write them with the same weights to a new checkpoint
    (``calibrated_output``), never over the input.

    The fields are those of the mode the answers are computed in: with ``settings.tta`` the 8-view
    average's (the temperature fitted to it, as ``evaluate --tta`` will use it), stored as the TTA
    mode's fields; otherwise the plain ones. The logits are read without any stored temperature. A new
    temperature makes the other modes' thresholds and sets stale: they are dropped (their detectors,
    which read features, are kept), and the result says so.
    """
    options = fit.options()
    path = resolve_source(checkpoint) if checkpoint is not None else None
    if write and path is not None and is_pickle_checkpoint(path):
        raise CheckpointError(f"{path}: a pickle cannot store a calibration; convert it once with `attnmel export "
                              "--format safetensors --trust-pickle`, or pass --dry-run.")
    if write and path is not None:  # a refused --output is said before the images are read
        calibrated_output(path, output)
    detecting = "detector" in options.fit
    run = predict_split(checkpoint, source, settings.replace(use_temperature=False),
                        keep=("logits", *(("features",) if detecting else ())), desc="logits")
    split, tta, index, samples, predictions = source.split, settings.tta, run.index, run.samples, run.predictions
    loaded = run.loaded
    source_path, meta = loaded.sources[0], loaded.meta
    destination = calibrated_output(source_path, output) if write else None
    logits, labels = torch.from_numpy(predictions.logits), predictions.labels
    previous = meta.softmax_temperature
    mode = loaded.trust_mode(tta)
    described = f"{Path(index.root).name} {split}"
    data = FittingData(labels, probabilities_from_logits(logits, previous).mean(dim=0).double().numpy(), described,
                       predictions.logits,
                       DetectorData.of(predictions, described) if detecting else None)
    train = detector_data(loaded, fit.detector_data, settings.replace(use_temperature=False)) if detecting else None
    fitted = fit_trust(data, meta.class_names, meta.positive_class, options=options, detector_train=train,
                       current=mode.usable)
    temperature = fitted.temperature if fitted.temperature is not None else previous

    def report(t: float) -> CalibrationReport:
        return calibration_report(labels, probabilities_from_logits(logits, t).mean(dim=0).numpy(), meta.class_names,
                                  meta.score_columns, fit.n_bins)

    fields = fitted.fields
    result = CalibrationResult(source_path, split, len(samples), tta, previous, temperature, report(previous),
                               report(temperature), write, destination, fields.operating_point, fields.conformal,
                               str(index.root), list(fitted.notes), fields.ood_detector, options.fit, mode.shown)
    updated = meta.with_trust(mode.key, fields)
    if not math.isclose(temperature, previous, rel_tol=1e-9):
        updated, dropped = _drop_stale(updated, mode.key)
        if dropped:
            result.notes.append(f"the temperature changed, so the thresholds and sets fitted for {', '.join(dropped)} "
                                "answers no longer hold: they are dropped (their detectors are kept); refit them with "
                                "calibrate in that mode")
    if write:
        copy_with_metadata(source_path, destination, operating_point=updated.operating_point,
                           temperature=temperature if fitted.temperature is not None else meta.temperature,
                           conformal=updated.conformal, ood_detector=updated.ood_detector,
                           trust_modes=updated.trust_modes, calibration={
            "method": "temperature scaling: NLL minimised by bounded scalar search over log T",
            "data": str(index.root), "source": source_path.name,
            **{k: v for k, v in result.to_dict().items()
               if k not in ("checkpoint", "written", "output", "operating_point", "conformal", "ood_detector")},
        })
    return result


def _drop_stale(meta: CheckpointMeta, fitted: str) -> tuple[CheckpointMeta, list[str]]:
    """``meta`` without the thresholds and sets of every mode but ``fitted`` (fitted at another temperature)."""
    dropped = []
    for mode in ["plain", *meta.trust_modes]:
        fields = meta.trust_for(mode)
        if mode == fitted or fields is None or (fields.operating_point is None and fields.conformal is None):
            continue
        meta = meta.with_trust(mode, TrustFields(None, fields.ood_detector, None))
        dropped.append(mode)
    return meta, dropped
