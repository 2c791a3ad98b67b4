"""Checkpoint metadata: one typed, versioned record, built and validated in one place.

Every checkpoint carries a ``CheckpointMeta`` (embedded in its safetensors header, copied to a
JSON sidecar). ``from_dict`` is the only way metadata is read back, and it checks every field
against sane ranges; ``check_weights`` checks it against the tensors it travels with. A
violation is a ``CheckpointError`` with one line per field, naming the file: metadata that
disagrees with its weights would otherwise be a silent wrong answer (e.g. P(other) reported as
P(melanoma)).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

import torch

from attnmel.checkpoints.trust import (
    TRUST_KINDS,
    ConformalSets,
    OodDetector,
    OperatingPoint,
    TrustFields,
    check_mode,
)
from attnmel.data.transforms import Preprocessing
from attnmel.errors import CheckpointError
from attnmel.models.registry import Architecture
from attnmel.version import __version__

FORMAT = "attnmel-checkpoint"
FORMAT_VERSION = 1


def attnmel_version() -> str:
    return __version__


#: which epoch a run kept (``train.keep_epoch``): its best by val ROC AUC, or its last, chosen on nothing
KeptEpoch = Literal["best", "last"]


@dataclass(frozen=True)
class TrainingRecord:
    """How the model was trained (``None`` where unknown, e.g. a converted pickle)."""

    run: str | None = None
    paper_row: str | None = None
    epoch: int | None = None
    #: how ``epoch`` was chosen: whether its validation metrics are optimistic depends on it
    kept_epoch: KeptEpoch | None = None
    seed: int | None = None
    ema_decay: float | None = None
    backbone_weights: str | None = None
    #: dataset summary: root, layout, task, per-split images and classes, images with a prior region
    data: dict[str, Any] | None = None
    #: attention prior: {"roi", "weights"}
    prior: dict[str, Any] | None = None
    #: the trained checkpoint the run was fine-tuned from (``model.init_from``): file, sha256, run, epoch
    started_from: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, payload: dict[str, Any] | None) -> TrainingRecord:
        payload = payload or {}
        kept = payload.get("kept_epoch")
        if kept is not None and kept not in get_args(KeptEpoch):
            raise ValueError(f"kept_epoch {kept!r} is not one of {', '.join(get_args(KeptEpoch))}")
        return cls(**{f.name: payload.get(f.name) for f in dataclasses.fields(cls)})


@dataclass(frozen=True)
class CheckpointMeta:
    architecture: Architecture
    task: str
    class_names: tuple[str, ...]
    #: probability columns of the ISIC scorer format, positive class first
    score_columns: tuple[str, ...]
    preprocessing: Preprocessing
    training: TrainingRecord = field(default_factory=TrainingRecord)
    #: validation metrics of the kept epoch: {"val": {<class>: {...}, "val_nll": ...}}
    metrics: dict[str, Any] = field(default_factory=dict)
    #: softmax temperature fitted by ``attnmel calibrate`` (None: never calibrated, i.e. 1)
    temperature: float | None = None
    calibration: dict[str, Any] | None = None
    #: for models converted from a pickle: where from and what was assumed
    legacy: dict[str, Any] | None = None
    #: for models shipped with attnmel: tag, licence, provenance of the initial weights, how the
    #: checkpoint was chosen and the command that retrains it (rendered in the model card)
    release: dict[str, Any] | None = None
    #: the decision threshold and the rule that chose it (None: 0.5)
    operating_point: OperatingPoint | None = None
    #: out-of-distribution score on the pooled features (None: no OOD check available)
    ood_detector: OodDetector | None = None
    #: split conformal prediction sets (None: no sets)
    conformal: ConformalSets | None = None
    #: the three fields above are those of plain answers (one network, one view); the fields fitted for
    #: other modes (``attnmel.checkpoints.trust.trust_mode``: TTA, an ensemble) by mode
    trust_modes: dict[str, TrustFields] = field(default_factory=dict)
    attnmel_version: str = field(default_factory=attnmel_version)
    format_version: int = FORMAT_VERSION

    @property
    def positive_class(self) -> str:
        return self.score_columns[0]

    @property
    def positive_index(self) -> int:
        return self.class_names.index(self.positive_class)

    @property
    def softmax_temperature(self) -> float:
        return 1.0 if self.temperature is None else self.temperature

    def trust_for(self, mode: str) -> TrustFields | None:
        """The fields fitted for ``mode`` (None: none were fitted for it). Plain answers have the
        checkpoint's own fields, whatever of them it carries."""
        if mode == "plain":
            return TrustFields(self.operating_point, self.ood_detector, self.conformal)
        return self.trust_modes.get(mode)

    def with_trust(self, mode: str, fields: TrustFields) -> CheckpointMeta:
        """A copy whose ``mode`` answers use ``fields``."""
        if mode == "plain":
            return self.replace(operating_point=fields.operating_point, ood_detector=fields.ood_detector,
                                conformal=fields.conformal)
        return self.replace(trust_modes={**self.trust_modes, check_mode(mode): fields})

    def replace(self, **changes: Any) -> CheckpointMeta:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        out = {
            "format": FORMAT,
            "format_version": self.format_version,
            "attnmel_version": self.attnmel_version,
            "architecture": self.architecture.to_dict(),
            "task": self.task,
            "class_names": list(self.class_names),
            "score_columns": list(self.score_columns),
            "preprocessing": self.preprocessing.to_dict(),
            "training": self.training.to_dict(),
            "metrics": self.metrics,
        }
        for key in ("temperature", "calibration", "legacy", "release"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        for key in TRUST_KINDS:
            if getattr(self, key) is not None:
                out[key] = getattr(self, key).to_dict()
        if self.trust_modes:
            out["trust_modes"] = {mode: fields.to_dict() for mode, fields in self.trust_modes.items()}
        return out

    @classmethod
    def from_dict(cls, payload: Any, source: str | Path) -> CheckpointMeta:
        """Read and validate metadata; every bad field is one line of the ``CheckpointError``."""
        if not isinstance(payload, dict):
            raise CheckpointError(f"{source}: its metadata is not a JSON object; re-export the checkpoint.")
        if payload.get("format") != FORMAT:
            raise CheckpointError(f"{source}: not an attnmel model checkpoint (format {payload.get('format')!r}).")
        version = payload.get("format_version", 0)
        if not isinstance(version, int) or version > FORMAT_VERSION:
            raise CheckpointError(f"{source}: written by a newer attnmel ({payload.get('attnmel_version')}); upgrade attnmel.")
        problems: list[str] = []

        def read(name: str, parse):
            try:
                return parse(payload.get(name))
            except (ValueError, TypeError, KeyError, AttributeError) as exc:
                problems.append(f"{source}: metadata field '{name}': {_sentence(exc)}")
                return None

        architecture = read("architecture", _architecture)
        class_names = read("class_names", _names)
        score_columns = read("score_columns", _names)
        preprocessing = read("preprocessing", _preprocessing)
        temperature = read("temperature", _temperature)
        task = read("task", _task)
        training = read("training", lambda v: TrainingRecord.from_dict(_mapping(v, optional=True)))
        metrics = read("metrics", lambda v: _mapping(v, optional=True) or {})
        for name in ("calibration", "legacy", "release"):
            read(name, lambda v: _mapping(v, optional=True))
        trust = {name: read(name, lambda v, kind=kind: None if v is None else kind.from_dict(v))
                 for name, kind in TRUST_KINDS.items()}
        trust["trust_modes"] = read("trust_modes", _trust_modes) or {}
        if architecture is not None and class_names is not None and len(class_names) != architecture.num_classes:
            problems.append(f"{source}: metadata field 'class_names': {len(class_names)} names for a model with "
                            f"{architecture.num_classes} outputs")
        if class_names is not None and score_columns is not None:
            unknown = [c for c in score_columns if c not in class_names]
            if unknown:
                problems.append(f"{source}: metadata field 'score_columns': {unknown} are not among the class names "
                                f"{list(class_names)}")
        if problems:
            raise CheckpointError("\n".join(problems) + "\nFix: re-export the checkpoint from its run, or restore "
                                                        "the original file.")
        return cls(
            architecture=architecture,
            task=task,
            class_names=class_names,
            score_columns=score_columns,
            preprocessing=preprocessing,
            training=training,
            metrics=metrics,
            temperature=temperature,
            calibration=payload.get("calibration"),
            legacy=payload.get("legacy"),
            release=payload.get("release"),
            **trust,
            attnmel_version=str(payload.get("attnmel_version", "unknown")),
            format_version=version,
        )

    def check_weights(self, model: torch.nn.Module, state: dict[str, torch.Tensor], source: str | Path) -> None:
        """The tensors must be exactly those of the model this metadata describes."""
        own = model.state_dict()
        self._check_trust(state, source)
        missing = [k for k in own if k not in state]
        unexpected = [k for k in state if k not in own]
        if missing or unexpected:
            raise CheckpointError(
                f"{source}: weights do not fit {self.architecture.name} ({len(missing)} missing, {len(unexpected)} "
                f"unexpected keys, e.g. {(missing or unexpected)[0]!r}); metadata field 'architecture' does not "
                "describe these weights."
            )
        for key, tensor in state.items():
            if tuple(tensor.shape) != tuple(own[key].shape):
                field_name = "architecture.num_classes" if key.startswith("classifier") else "architecture"
                raise CheckpointError(
                    f"{source}: metadata field '{field_name}' disagrees with the weights: {key} has shape "
                    f"{tuple(tensor.shape)}, the model described needs {tuple(own[key].shape)}."
                )
            if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
                raise CheckpointError(f"{source}: tensor {key} holds NaN or infinite values; the model cannot give "
                                      "meaningful answers. Use an earlier checkpoint of the run.")

    def _check_trust(self, state: dict[str, torch.Tensor], source: str | Path) -> None:
        """The OOD statistics of one-network modes must describe this model's pooled features (the
        classifier's input; an ensemble's are checked when it is assembled); a threshold or prediction
        sets need the classes they speak of."""
        weight = state.get("classifier.weight", state.get("classifier.0.weight"))
        pooled = int(weight.shape[1]) if weight is not None and weight.ndim == 2 else None
        modes = {"plain": self.trust_for("plain"), **self.trust_modes}
        for mode, fields in modes.items():
            where = _field_name(mode, "ood_detector")
            dim = None if fields.ood_detector is None else fields.ood_detector.feature_dim
            if pooled is not None and dim is not None and mode in ("plain", "tta") and dim != pooled:
                raise CheckpointError(
                    f"{source}: metadata field '{where}' describes {dim} features but the model pools {pooled}; "
                    "refit it (attnmel calibrate --fit detector) or restore the original file.")
            if fields.operating_point is not None and len(self.class_names) != 2:
                raise CheckpointError(f"{source}: metadata field '{_field_name(mode, 'operating_point')}' is a "
                                      f"two-class threshold but the model has {len(self.class_names)} classes; "
                                      "restore the original file.")
            sets = fields.conformal
            if sets is not None and sets.per_class is not None and set(sets.per_class) != set(self.class_names):
                raise CheckpointError(f"{source}: metadata field '{_field_name(mode, 'conformal')}' has quantiles for "
                                      f"{sorted(sets.per_class)}, not the classes {list(self.class_names)}; restore "
                                      "the original file.")


def _field_name(mode: str, key: str) -> str:
    return key if mode == "plain" else f"trust_modes.{mode}.{key}"


def _trust_modes(value: Any) -> dict[str, TrustFields]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValueError(f"{value!r} is not a JSON object of mode -> fields")
    out = {}
    for mode, fields in value.items():
        if mode == "plain":
            raise ValueError("plain answers use the top-level fields, not trust_modes.plain")
        try:
            out[check_mode(mode)] = TrustFields.from_dict(fields)
        except ValueError as exc:
            raise ValueError(f"{str(mode)[:40]}: {exc}") from None
    return out


def _sentence(exc: Exception) -> str:
    text = str(exc).strip().strip("'\"") or type(exc).__name__
    return text[0].lower() + text[1:]


def _mapping(value: Any, optional: bool = False) -> dict[str, Any] | None:
    if value is None and optional:
        return None
    if not isinstance(value, dict):
        raise ValueError(f"{value!r} is not a JSON object")
    return value


def _architecture(value: Any) -> Architecture:
    return Architecture.from_dict(_mapping(value))


def _names(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list | tuple) or not value or not all(isinstance(v, str) and v for v in value):
        raise ValueError(f"{value!r} is not a non-empty list of names")
    if len(set(value)) != len(value):
        raise ValueError(f"{list(value)} repeats a name")
    return tuple(value)


def _task(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{value!r} is not a task name")
    return value


def _preprocessing(value: Any) -> Preprocessing:
    payload = _mapping(value)
    for key in ("crop_ratio", "resize", "image_size"):
        if not isinstance(payload.get(key), int | float) or isinstance(payload.get(key), bool):
            raise ValueError(f"{key} {payload.get(key)!r} is not a number")
    for key in ("resize", "image_size"):
        if not float(payload[key]).is_integer():
            raise ValueError(f"{key} {payload[key]!r} is not a whole number of pixels")
    for key in ("mean", "std"):
        values = payload.get(key)
        if not isinstance(values, list | tuple) or not all(isinstance(v, int | float) and not isinstance(v, bool)
                                                            for v in values):
            raise ValueError(f"{key} {values!r} is not a list of numbers")
    preprocessing = Preprocessing.from_dict(payload)
    problems = preprocessing.problems()
    if problems:
        raise ValueError("; ".join(problems))
    return preprocessing


def _temperature(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{value!r} is not a finite number above 0")
    return float(value)
