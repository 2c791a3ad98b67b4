"""Run configuration: YAML presets -> typed dataclasses, with ``extends`` and ``--set`` overrides.

A preset names one paper row (``configs/isic2017/attnmel-lesion.yaml``). Presets may ``extends:``
another file (path relative to the preset). Every value is checked when the config is built,
before any image is read: unknown keys, wrong types, choices outside their ``Literal`` and values
outside their range are one-line ``ConfigError``s naming the key, so a typo never silently falls
back to a default. ``apply_overrides`` is the one way ``--set`` values enter, for a new run and
for ``--resume`` alike. The resolved config is saved beside every run.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import yaml

from attnmel.data.masks import DEFAULT_DERMO_FEATURES, DermoFeature, RoiKind, RoiSpec
from attnmel.data.pipelines import Pipeline
from attnmel.data.readers import Layout
from attnmel.data.records import TASKS, GroupBy, SplitMode
from attnmel.data.sampling import Sampler
from attnmel.data.sources import SplitSpec
from attnmel.data.transforms import MAX_INPUT, MIN_INPUT, Preprocessing, Robustness, resolve_normalization
from attnmel.errors import ConfigError
from attnmel.metrics.classification import SelectMetric
from attnmel.models.attention import Normalization
from attnmel.models.backbones import RANDOM_WEIGHTS

OptimizerName = Literal["sgd", "adamw"]
LeakPolicy = Literal["refuse", "drop"]
#: "step" (x gamma every step_epochs, the paper), "cosine", or "constant"
Schedule = Literal["step", "cosine", "constant"]
#: "focal" (the paper, gamma 2) or "cross_entropy"
LossName = Literal["focal", "cross_entropy"]
#: what batch norm normalises by while training: each batch (updating the running statistics, torch's
#: default) or the pretrained running statistics, kept as they are
BatchNormStatistics = Literal["batch", "pretrained"]
KeepEpoch = Literal["best", "last"]


@dataclass
class ModelConfig:
    #: a registered model (``attnmel info``)
    name: str = "attnmel"
    #: None: the model's default backbone
    backbone: str | None = None
    #: backbone initialisation: None (random), "imagenet" (torchvision's weights API), or a local state-dict path
    weights: str | None = None
    #: attention options (attnmel only); None: the model's default (sigmoid, 256)
    normalize: Normalization | None = None
    attention_channels: int | None = None
    #: sigma in input pixels of a fixed Gaussian low-pass in front of the backbone, which keeps pixel
    #: noise and re-compression from moving the answer; None: the model's default (0, off)
    input_blur: float | None = None
    #: a trained attnmel checkpoint (file, run folder or pretrained tag) whose weights start the run,
    #: e.g. to fine-tune the shipped model on a site's own images; its architecture and classes must
    #: be this run's. None: start from ``weights``
    init_from: str | None = None

    def options(self) -> dict[str, Any]:
        """The options passed to ``create_model``: those set, and nothing else."""
        values = {"backbone": self.backbone, "weights": self.weights, "normalize": self.normalize,
                  "attention_channels": self.attention_channels, "input_blur": self.input_blur}
        return {key: value for key, value in values.items() if value is not None}


@dataclass
class DataConfig:
    task: str = "melanoma"
    layout: Layout | None = None
    train_split: str = "train"
    val_split: str | None = "val"
    #: carve a stratified validation split from training when the dataset has none (ISIC 2016)
    val_fraction: float | None = None
    #: how validation is chosen: "auto" (val_split when the dataset has it, else val_fraction of training),
    #: "official" (val_split), "fraction" (stratified random share of training), "grouped" (whole groups)
    split: SplitMode = "auto"
    #: grouped splits keep every image of one lesion or one patient, or each photograph with its
    #: near-identical copies, on one side
    group_by: GroupBy | None = None
    #: cross-validation (split fraction or grouped): validate on fold ``fold`` of ``folds``
    folds: int | None = None
    fold: int | None = None
    crop_ratio: float = 0.8
    resize: int = 256
    image_size: int = 224
    #: a preset of ``attnmel.data.transforms.NORMALIZATION_PRESETS``, stats JSON path, or {mean, std}
    normalization: Any = "isic2017"
    sampler: Sampler = "oversample"
    oversample: int = 4
    num_workers: int = 2
    skip_bad: bool = False
    #: region of interest for the attention prior: null, lesion, dermo, background
    roi: RoiKind | None = None
    dermo_features: list[DermoFeature] = field(default_factory=lambda: list(DEFAULT_DERMO_FEATURES))
    #: "cpu": per-sample transforms in DataLoader workers; "device": the split is decoded once, held
    #: in memory and augmented a whole batch at a time on the training device (same samples)
    pipeline: Pipeline = "cpu"
    #: keep the decoded geometry (0.8 centre crop, resize) on disk, keyed by file content
    cache: bool = False
    #: where the cache lives (default: $ATTNMEL_CACHE_DIR or ~/.cache/attnmel)
    cache_dir: str | None = None
    #: several training datasets (``attnmel train --data NAME=PATH`` repeated): how often each one's
    #: images are drawn relative to the others (1 = as many as it has; unlisted datasets 1)
    dataset_weights: dict[str, float] = field(default_factory=dict)
    #: a share of a training dataset's images kept out of training, whole lesions (or patients) at a
    #: time, to check on unseen images of that site (written to split.json as ``held_out``)
    held_out: dict[str, float] = field(default_factory=dict)
    #: training-time re-encoding as JPEG with a quality drawn from [low, high] (null: off): what a
    #: camera or a re-save changes is not a lesion
    jpeg_quality: list[int] | None = None
    #: a training image that is the same photograph as (or shares a lesion with) an image the run is
    #: judged on: "refuse" stops the run, "drop" leaves it out of training (several datasets or held_out)
    leaks: LeakPolicy = "refuse"
    #: probability that a training image is re-encoded (with ``jpeg_quality``)
    jpeg_probability: float = 0.5
    #: training-time Gaussian pixel noise, its standard deviation in grey levels (0: off): a grey level
    #: of noise must not move the answer
    noise_levels: float = 0.0
    #: probability that a training image gets the noise; below 1, so that batch statistics see clean
    #: and noisy images alike (noise on every image made clean validation collapse: RESULTS.md)
    noise_probability: float = 0.5

    def roi_spec(self) -> RoiSpec | None:
        return None if self.roi is None else RoiSpec(self.roi, tuple(self.dermo_features))

    def split_spec(self, seed: int) -> SplitSpec:
        """Which images a run reads and how it picks validation (``attnmel.data.splits.prepare_data``)."""
        return SplitSpec(task=self.task, layout=self.layout, train_split=self.train_split, val_split=self.val_split,
                         val_fraction=self.val_fraction, split=self.split, group_by=self.group_by, folds=self.folds,
                         fold=self.fold, seed=seed, skip_bad=self.skip_bad, roi=self.roi_spec(),
                         held_out=tuple(sorted(self.held_out.items())), leaks=self.leaks)

    def robustness(self) -> Robustness:
        quality = None if self.jpeg_quality is None else (self.jpeg_quality[0], self.jpeg_quality[1])
        return Robustness(quality, self.jpeg_probability, self.noise_levels, self.noise_probability)

    def preprocessing(self) -> Preprocessing:
        mean, std = resolve_normalization(self.normalization)
        return Preprocessing(self.crop_ratio, self.resize, self.image_size, mean, std)


@dataclass
class OptimConfig:
    name: OptimizerName = "sgd"
    lr: float = 0.01
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 1e-4
    schedule: Schedule = "step"
    step_epochs: int = 10
    step_gamma: float = 0.1
    warmup_epochs: float = 0.0
    #: learning rate of the pretrained backbone relative to the new head (1 = same, the paper)
    backbone_lr_scale: float = 1.0


@dataclass
class LossConfig:
    name: LossName = "focal"
    focal_gamma: float = 2.0
    label_smoothing: float = 0.0
    #: Dice weights of the attention prior per gated layer, shallow to deep (paper: 0.001, 0.01)
    prior_weights: list[float] = field(default_factory=lambda: [0.001, 0.01])
    #: stability training (Zheng et al., CVPR 2016): each training image is also seen with pixel
    #: noise, and how far that moves its logits (against their spread over the batch) is added at
    #: this weight (0: off, the paper)
    consistency_weight: float = 0.0
    #: the noise of that second view: Gaussian, standard deviation drawn per image up to this many grey levels
    consistency_noise: float = 3.0


@dataclass
class TrainConfig:
    epochs: int = 50
    passes_per_epoch: int = 1
    #: the global batch; under torchrun each of N processes takes batch_size / N of it
    batch_size: int = 32
    eval_batch_size: int = 64
    seed: int = 0
    #: auto, cpu, cuda or cuda:N
    device: str = "auto"
    #: metric that selects the best checkpoint on validation
    select_metric: SelectMetric = "roc_auc"
    #: which epoch ``best.safetensors`` keeps: the "best" by ``select_metric`` on validation, or the
    #: "last" (no choice made on validation: what cross-validation's out-of-fold scores need)
    keep_epoch: KeepEpoch = "best"
    deterministic: bool = True
    threads: int | None = None
    #: exponential moving average of the weights (e.g. 0.998); validation, selection and the best
    #: checkpoint then use the averaged weights. null = off (the paper)
    ema_decay: float | None = None
    #: bf16 autocast for the forward pass (weights, optimiser state and losses stay fp32); null:
    #: on where the device has native bf16 (a recent CPU or GPU), fp32 elsewhere (``devices.fast_path``)
    amp: bool | None = None
    #: channels_last memory for the model and its inputs; null: with amp
    channels_last: bool | None = None
    #: torch.compile the training forward/backward
    compile: bool = False
    #: batch-norm statistics over the global batch when training on several processes
    sync_batchnorm: bool = True
    #: "pretrained" keeps the initial weights' running statistics (batch norm runs as at inference,
    #: its scale and shift still learn): re-estimated on low-contrast dermoscopy they scale every
    #: channel up, pixel noise with it. "batch": torch's default
    batchnorm_statistics: BatchNormStatistics = "batch"
    #: validation images (with a lesion mask) whose attention figures go to TensorBoard every epoch
    tensorboard_figures: int = 4


@dataclass
class Config:
    name: str = "attnmel"
    description: str = ""
    paper_row: str | None = None
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


_SECTION_TYPES = {
    "model": ModelConfig,
    "data": DataConfig,
    "optim": OptimConfig,
    "loss": LossConfig,
    "train": TrainConfig,
}

#: (section.key, lowest, highest, what the bound means); None: unbounded on that side
_RANGES: tuple[tuple[str, float | None, float | None, str], ...] = (
    ("model.attention_channels", 1, None, "a positive number of channels"),
    ("data.val_fraction", 0, 1, "a fraction strictly between 0 and 1"),
    ("data.folds", 2, None, "at least 2"),
    ("data.fold", 0, None, "0 or more (and below data.folds)"),
    ("data.crop_ratio", 0, 1, "a fraction in (0, 1]"),
    ("data.resize", MIN_INPUT, MAX_INPUT, f"a size from {MIN_INPUT} to {MAX_INPUT} px"),
    ("data.image_size", MIN_INPUT, MAX_INPUT, f"a size from {MIN_INPUT} to {MAX_INPUT} px"),
    ("data.oversample", 1, None, "a factor of at least 1"),
    ("data.num_workers", 0, None, "0 or more worker processes"),
    ("data.jpeg_probability", 0, 1, "a probability from 0 to 1"),
    ("data.noise_levels", 0, 64, "0 (off) to 64 grey levels"),
    ("data.noise_probability", 0, 1, "a probability from 0 to 1"),
    ("optim.lr", 0, None, "positive"),
    ("optim.momentum", 0, 1, "in [0, 1)"),
    ("optim.weight_decay", 0, None, "0 or more"),
    ("optim.step_epochs", 1, None, "at least 1"),
    ("optim.step_gamma", 0, 1, "in (0, 1]"),
    ("optim.warmup_epochs", 0, None, "0 or more"),
    ("optim.backbone_lr_scale", 0, None, "0 or more"),
    ("loss.focal_gamma", 0, None, "0 or more"),
    ("loss.label_smoothing", 0, 1, "in [0, 1)"),
    ("loss.consistency_weight", 0, None, "0 (off) or more"),
    ("loss.consistency_noise", 0, 64, "0 to 64 grey levels"),
    ("train.epochs", 1, None, "at least 1"),
    ("train.passes_per_epoch", 1, None, "at least 1"),
    ("train.batch_size", 1, None, "at least 1"),
    ("train.eval_batch_size", 1, None, "at least 1"),
    ("train.seed", 0, None, "0 or more"),
    ("train.threads", 1, None, "at least 1 (or null for torch's choice)"),
    ("train.ema_decay", 0, 1, "strictly between 0 and 1 (or null for off)"),
    ("train.tensorboard_figures", 0, 64, "0 (off) to 64 images"),
)
#: bounds that exclude the bound itself
_OPEN = {("data.val_fraction", 0), ("data.val_fraction", 1), ("data.crop_ratio", 0), ("optim.lr", 0),
         ("optim.momentum", 1), ("optim.step_gamma", 0), ("loss.label_smoothing", 1), ("train.ema_decay", 0),
         ("train.ema_decay", 1)}


def _type_name(hint: Any) -> str:
    if get_origin(hint) is Literal:
        return " or ".join(repr(v) for v in get_args(hint))
    if get_origin(hint) is list:
        return f"a list of {_type_name(get_args(hint)[0])}"
    if get_origin(hint) is dict:
        return f"a mapping of {_type_name(get_args(hint)[0])} to {_type_name(get_args(hint)[1])}"
    return "null" if hint is type(None) else getattr(hint, "__name__", str(hint))


def _coerce(hint: Any, value: Any, where: str) -> Any:
    """``value`` converted to ``hint`` (YAML reads ``1e-4`` as a string), or a ``ConfigError`` naming ``where``."""
    origin = get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = get_args(hint)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _coerce(option, value, where)
            except ConfigError as exc:
                errors.append(exc)
        raise ConfigError(f"{where} must be {' or '.join(_type_name(o) for o in options)}, not {value!r}.")
    if hint is Any:
        return value
    if origin is Literal:
        if value not in get_args(hint):
            raise ConfigError(f"{where} must be one of {list(get_args(hint))}, not {value!r}.")
        return value
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{where} must be {_type_name(hint)}, not {value!r}.")
        return [_coerce(get_args(hint)[0], item, f"{where}[{i}]") for i, item in enumerate(value)]
    if origin is dict:
        key_type, value_type = get_args(hint)
        if not isinstance(value, dict):
            raise ConfigError(f"{where} must be {_type_name(hint)}, not {value!r}.")
        return {_coerce(key_type, key, f"{where} key"): _coerce(value_type, item, f"{where}.{key}")
                for key, item in value.items()}
    if hint is bool:
        if isinstance(value, bool):
            return value
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif hint is float:
        if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
            return float(value)
        if isinstance(value, str):
            try:
                number = float(value)
            except ValueError:
                number = math.nan
            if math.isfinite(number):
                return number
    elif hint is str:
        if isinstance(value, str):
            return value
        if isinstance(value, int | float) and not isinstance(value, bool):
            return str(value)
    raise ConfigError(f"{where} must be {_type_name(hint)}, not {value!r}.")


def _section(section_type: type, values: Any, where: str) -> Any:
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise ConfigError(f"{where}: section must be a mapping, not {values!r}.")
    hints = typing.get_type_hints(section_type)
    allowed = [f.name for f in dataclasses.fields(section_type)]
    unknown = sorted(set(values) - set(allowed))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; allowed: {allowed}.")
    return section_type(**{key: _coerce(hints[key], value, f"{where}.{key}") for key, value in values.items()})


def config_from_dict(payload: dict, source: str = "config") -> Config:
    """Build and check a ``Config``; every problem is a ``ConfigError`` naming ``source`` and the key."""
    if not isinstance(payload, dict):
        raise ConfigError(f"{source}: a config must be a mapping.")
    payload = dict(payload)
    payload.pop("extends", None)
    top = {f.name for f in dataclasses.fields(Config)}
    unknown = set(payload) - top
    if unknown:
        raise ConfigError(f"{source}: unknown key(s) {sorted(unknown)}; allowed: {sorted(top)}.")
    kwargs: dict[str, Any] = {}
    for key, value in payload.items():
        if key in _SECTION_TYPES:
            kwargs[key] = _section(_SECTION_TYPES[key], value, f"{source}: {key}")
        else:
            kwargs[key] = _coerce(str | None, value, f"{source}: {key}")
    config = Config(**kwargs)
    validate(config, source)
    return config


def validate(config: Config, source: str = "config") -> None:
    """Ranges and choices that need more than a type: model names and options, tasks, sizes, priors."""
    for key, low, high, meaning in _RANGES:
        section, name = key.split(".")
        value = getattr(getattr(config, section), name)
        if value is None:
            continue
        too_low = low is not None and (value <= low if (key, low) in _OPEN else value < low)
        too_high = high is not None and (value >= high if (key, high) in _OPEN else value > high)
        if too_low or too_high:
            raise ConfigError(f"{source}: {key} must be {meaning}, not {value!r}.")
    data = config.data
    if data.image_size > data.resize:
        raise ConfigError(f"{source}: data.image_size {data.image_size} is larger than data.resize {data.resize}; "
                          "the model's crop is taken from the resized image.")
    if data.task not in TASKS:
        raise ConfigError(f"{source}: data.task must be one of {sorted(TASKS)}, not {data.task!r}.")
    _validate_split(data, source)
    if config.train.select_metric == "balanced_multiclass_accuracy" and TASKS[data.task].num_classes < 3:
        raise ConfigError(f"{source}: train.select_metric 'balanced_multiclass_accuracy' needs a task with more than "
                          f"two classes; {data.task!r} has {TASKS[data.task].num_classes}.")
    if any(w < 0 or not math.isfinite(w) for w in config.loss.prior_weights):
        raise ConfigError(f"{source}: loss.prior_weights must be 0 or more, not {config.loss.prior_weights}.")
    _validate_datasets(data, source)
    if data.roi == "dermo" and not data.dermo_features:
        raise ConfigError(f"{source}: data.dermo_features is empty; the dermo region needs at least one feature.")
    try:
        resolve_normalization(data.normalization)
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    if (config.train.batchnorm_statistics == "pretrained" and config.model.weights in RANDOM_WEIGHTS
            and not config.model.init_from):
        raise ConfigError(f"{source}: train.batchnorm_statistics=pretrained keeps the statistics of pretrained weights, "
                          "but the model starts from random ones; set model.weights or model.init_from.")
    layers = _attention_layers(config, source)
    if data.roi is not None:
        if not layers:
            raise ConfigError(f"{source}: data.roi={data.roi!r} needs a model with attention; "
                              f"{config.model.name!r} has none.")
        if len(config.loss.prior_weights) != len(layers):
            raise ConfigError(f"{source}: loss.prior_weights has {len(config.loss.prior_weights)} values but "
                              f"{config.model.name!r} has {len(layers)} attention maps ({layers}).")


def _validate_split(data: DataConfig, source: str) -> None:
    """The split keys must describe one way of choosing validation."""
    if (data.fold is None) != (data.folds is None):
        raise ConfigError(f"{source}: data.fold and data.folds go together (fold K of N; attnmel train --fold K --folds N).")
    if data.folds is not None:
        if data.fold >= data.folds:
            raise ConfigError(f"{source}: data.fold must be below data.folds ({data.folds}), not {data.fold}.")
        if data.split not in ("fraction", "grouped"):
            raise ConfigError(f"{source}: cross-validation folds need data.split grouped (with data.group_by) or "
                              f"fraction, not {data.split!r}.")
    if data.split == "grouped" and data.group_by is None:
        raise ConfigError(f"{source}: data.split 'grouped' needs data.group_by (lesion_id, patient_id or photograph).")
    if data.group_by is not None and data.split != "grouped":
        raise ConfigError(f"{source}: data.group_by is only used by data.split 'grouped', not {data.split!r}; "
                          "set data.split=grouped.")
    if data.split in ("fraction", "grouped") and data.val_fraction is None and data.folds is None:
        raise ConfigError(f"{source}: data.split {data.split!r} needs data.val_fraction (e.g. 0.2) or data.folds.")
    if data.split == "official" and not data.val_split:
        raise ConfigError(f"{source}: data.split 'official' needs data.val_split (the dataset's validation split).")


def _validate_datasets(data: DataConfig, source: str) -> None:
    """Weights, held-out shares and training augmentations that a run can honour."""
    for name, weight in data.dataset_weights.items():
        if not weight > 0:
            raise ConfigError(f"{source}: data.dataset_weights.{name} must be positive, not {weight!r}; "
                              "leave a dataset out of --data instead of weighting it 0.")
    for name, share in data.held_out.items():
        if not 0 < share < 1:
            raise ConfigError(f"{source}: data.held_out.{name} must be a fraction strictly between 0 and 1, not {share!r}.")
    if data.jpeg_quality is not None and (
            len(data.jpeg_quality) != 2 or not 1 <= data.jpeg_quality[0] <= data.jpeg_quality[1] <= 100):
        raise ConfigError(f"{source}: data.jpeg_quality must be [low, high] with 1 <= low <= high <= 100, "
                          f"not {data.jpeg_quality!r}.")
    if (data.jpeg_quality is not None or data.noise_levels > 0) and data.pipeline == "device":
        raise ConfigError(f"{source}: data.jpeg_quality and data.noise_levels need data.pipeline=cpu (they run per "
                          "image in the loader workers).")


def _attention_layers(config: Config, source: str) -> list[str]:
    """The model's attention layers, from a skeleton built on the meta device (no memory, no weights)."""
    import torch

    from attnmel.models.registry import _create_model  # attnmel.create_model is a layer above

    options = {k: v for k, v in config.model.options().items() if k != "weights"}
    try:
        with torch.device("meta"):
            model = _create_model(config.model.name, TASKS[config.data.task].num_classes, **options)
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    return list(model.attention_layers)


def _deep_merge(base: dict, override: dict) -> dict:
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


class _RepeatedKey(yaml.YAMLError):
    pass


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, except that a key given twice in one mapping is an error (PyYAML keeps
    the last one silently, so a config could say two things and mean one)."""

    def construct_mapping(self, node, deep=False):
        lines: dict = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, str | int | float | bool) and key in lines:
                raise _RepeatedKey(f"key {key!r} appears twice (lines {lines[key]} and {key_node.start_mark.line + 1})")
            lines[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep)


def _read_yaml(path: Path, seen: tuple[Path, ...] = ()) -> dict:
    path = path.resolve()
    if path in seen:
        raise ConfigError(f"{path}: 'extends' loops back to itself.")
    try:
        payload = yaml.load(path.read_text(encoding="utf-8"), Loader=_UniqueKeyLoader) or {}  # noqa: S506 - a SafeLoader
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found.") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the config ({exc}).") from None
    except _RepeatedKey as exc:
        raise ConfigError(f"{path}: {exc}; keep one (YAML would silently use the last).") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({' '.join(str(exc).split())}).") from None
    if not isinstance(payload, dict):
        raise ConfigError(f"{path}: a config must be a YAML mapping.")
    parent = payload.get("extends")
    if parent:
        payload = _deep_merge(_read_yaml(path.parent / parent, (*seen, path)), payload)
    return payload


def preset_root() -> Path:
    return Path(str(resources.files("attnmel") / "configs"))


def list_presets() -> list[str]:
    root = preset_root()
    return sorted(str(p.relative_to(root).with_suffix("")) for p in root.rglob("*.yaml") if not p.name.startswith("_"))


def resolve_config_path(name_or_path: str | Path) -> Path:
    """A YAML path, or a preset name such as ``isic2017/attnmel-lesion`` shipped with the package."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    preset = preset_root() / f"{name_or_path}.yaml"
    if preset.is_file():
        return preset
    raise ConfigError(f"{name_or_path}: no such config file or preset; presets: {', '.join(list_presets())}.")


def parse_override(text: str) -> tuple[list[str], Any]:
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like section.key=value (e.g. train.epochs=5).")
    key, raw = text.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw != "" else None
    except yaml.YAMLError:
        value = raw
    return key.strip().split("."), value


def apply_overrides(payload: dict, overrides: list[str] | None) -> dict:
    """``payload`` (a config as a mapping) with each ``section.key=value`` set; the result is checked
    by ``config_from_dict`` like any other config."""
    payload = copy.deepcopy(payload)
    for text in overrides or []:
        keys, value = parse_override(text)
        node = payload
        for key in keys[:-1]:
            node = node.setdefault(key, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {text!r}: {key!r} is not a section.")
        node[keys[-1]] = value
    return payload


def load_config(name_or_path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    payload = _read_yaml(resolve_config_path(name_or_path)) if name_or_path else {}
    return config_from_dict(apply_overrides(payload, overrides), str(name_or_path or "overrides"))
