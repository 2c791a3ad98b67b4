"""Run configuration: YAML presets -> typed dataclasses, with ``extends`` and ``--set`` overrides.

A preset names one paper row (``configs/isic2017/attnmel-lesion.yaml``). Presets may ``extends:``
another file (path relative to the preset). Unknown keys are errors, so a typo never silently
falls back to a default. The resolved config is saved beside every run.
"""

from __future__ import annotations

import copy
import dataclasses
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from attnmel.errors import ConfigError


@dataclass
class ModelConfig:
    name: str = "attnmel"
    backbone: str | None = None
    #: None (random init), "imagenet" (torchvision weights API), or a local state-dict path
    weights: str | None = None
    normalize: str = "sigmoid"
    attention_channels: int = 256


@dataclass
class DataConfig:
    task: str = "melanoma"
    layout: str | None = None
    train_split: str = "train"
    val_split: str | None = "val"
    #: carve a stratified validation split from training when the dataset has none (ISIC 2016)
    val_fraction: float | None = None
    crop_ratio: float = 0.8
    resize: int = 256
    image_size: int = 224
    #: preset name (isic2017, isic2016, imagenet), stats JSON path, or {mean, std}
    normalization: Any = "isic2017"
    sampler: str = "oversample"
    oversample: int = 4
    num_workers: int = 2
    skip_bad: bool = False
    #: region of interest for the attention prior: null, lesion, dermo, background
    roi: str | None = None
    dermo_features: list[str] = field(
        default_factory=lambda: ["pigment_network", "negative_network", "milia_like_cyst", "streaks"]
    )
    #: "cpu": per-sample transforms in DataLoader workers; "device": the split is decoded once, held
    #: in memory and augmented a whole batch at a time on the training device (same samples)
    pipeline: str = "cpu"
    #: keep the decoded geometry (0.8 centre crop, resize) on disk, keyed by file content
    cache: bool = False
    #: where the cache lives (default: $ATTNMEL_CACHE_DIR or ~/.cache/attnmel)
    cache_dir: str | None = None


@dataclass
class OptimConfig:
    name: str = "sgd"
    lr: float = 0.01
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 1e-4
    #: "step" (x gamma every step_epochs, the paper), "cosine", or "constant"
    schedule: str = "step"
    step_epochs: int = 10
    step_gamma: float = 0.1
    warmup_epochs: float = 0.0
    #: learning rate of the pretrained backbone relative to the new head (1 = same, the paper)
    backbone_lr_scale: float = 1.0


@dataclass
class LossConfig:
    #: "focal" (the paper, gamma 2) or "cross_entropy"
    name: str = "focal"
    focal_gamma: float = 2.0
    label_smoothing: float = 0.0
    #: Dice weights of the attention prior per gated layer, shallow to deep (paper: 0.001, 0.01)
    prior_weights: list[float] = field(default_factory=lambda: [0.001, 0.01])


@dataclass
class TrainConfig:
    epochs: int = 50
    passes_per_epoch: int = 1
    #: the global batch; under torchrun each of N processes takes batch_size / N of it
    batch_size: int = 32
    eval_batch_size: int = 64
    seed: int = 0
    device: str = "auto"
    #: metric that selects the best checkpoint on validation
    select_metric: str = "roc_auc"
    deterministic: bool = True
    threads: int | None = None
    #: exponential moving average of the weights (e.g. 0.998); validation, selection and the best
    #: checkpoint then use the averaged weights. null = off (the paper)
    ema_decay: float | None = None
    #: bf16 autocast for the forward pass (losses stay in fp32)
    amp: bool = False
    channels_last: bool = False
    #: torch.compile the training forward/backward
    compile: bool = False
    #: batch-norm statistics over the global batch when training on several processes
    sync_batchnorm: bool = True


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


def _coerce(section_type: type, values: dict, where: str) -> dict:
    """Coerce YAML scalars to the declared field types (YAML reads ``1e-4`` as a string)."""
    hints = typing.get_type_hints(section_type)
    out = {}
    for key, value in values.items():
        allowed = typing.get_args(hints[key]) or (hints[key],)
        if value is None or type(value) in allowed or Any in allowed:
            out[key] = value
            continue
        if float in allowed and isinstance(value, int | str) and not isinstance(value, bool):
            try:
                out[key] = float(value)
                continue
            except ValueError:
                pass
        if int in allowed and isinstance(value, float) and value.is_integer():
            out[key] = int(value)
            continue
        if str in allowed and isinstance(value, int | float) and not isinstance(value, bool):
            out[key] = str(value)
            continue
        if list in allowed or typing.get_origin(hints[key]) is list:
            if isinstance(value, list):
                out[key] = value
                continue
        names = " or ".join("null" if t is type(None) else getattr(t, "__name__", str(t)) for t in allowed)
        raise ConfigError(f"{where}.{key} must be {names}, not {value!r}.")
    return out


def config_from_dict(payload: dict, source: str = "config") -> Config:
    payload = dict(payload)
    payload.pop("extends", None)
    top = {f.name for f in dataclasses.fields(Config)}
    unknown = set(payload) - top
    if unknown:
        raise ConfigError(f"{source}: unknown key(s) {sorted(unknown)}; allowed: {sorted(top)}.")
    kwargs: dict[str, Any] = {}
    for key, value in payload.items():
        if key in _SECTION_TYPES:
            if value is None:
                value = {}
            if not isinstance(value, dict):
                raise ConfigError(f"{source}: section {key!r} must be a mapping.")
            section_type = _SECTION_TYPES[key]
            allowed = {f.name for f in dataclasses.fields(section_type)}
            bad = set(value) - allowed
            if bad:
                raise ConfigError(f"{source}: unknown key(s) {sorted(bad)} in {key!r}; allowed: {sorted(allowed)}.")
            kwargs[key] = section_type(**_coerce(section_type, value, f"{source}: {key}"))
        else:
            kwargs[key] = value
    return Config(**kwargs)


def _deep_merge(base: dict, override: dict) -> dict:
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _read_yaml(path: Path, seen: tuple[Path, ...] = ()) -> dict:
    path = path.resolve()
    if path in seen:
        raise ConfigError(f"{path}: 'extends' loops back to itself.")
    try:
        payload = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found.") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc}).") from None
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


def load_config(name_or_path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    payload = _read_yaml(resolve_config_path(name_or_path)) if name_or_path else {}
    for text in overrides or []:
        keys, value = parse_override(text)
        node = payload
        for key in keys[:-1]:
            node = node.setdefault(key, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {text!r}: {key!r} is not a section.")
        node[keys[-1]] = value
    return config_from_dict(payload, str(name_or_path or "overrides"))
