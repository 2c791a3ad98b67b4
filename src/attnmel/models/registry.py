"""``create_model`` / ``list_models``: one name selects one architecture (as in timm).

Names are the paper's rows. ``gap``, ``melcnn`` and ``attnmel`` take any backbone of
``attnmel.models.backbones``; ``vgg16`` and ``vgg16-gap`` are VGG-16-BN by definition.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torchvision
from torch import nn

from attnmel.errors import ConfigError
from attnmel.models.backbones import build_torchvision_model, create_backbone
from attnmel.models.networks import AttnMelCNN, GapNet, MelCNN, VGG16Classifier


@dataclass(frozen=True)
class ModelEntry:
    name: str
    builder: Callable[..., nn.Module]
    default_backbone: str
    fixed_backbone: bool
    paper_row: str
    description: str


def _build_vgg16(backbone: str, num_classes: int, weights, **_: Any) -> nn.Module:
    vgg = build_torchvision_model(
        torchvision.models.vgg16_bn, torchvision.models.VGG16_BN_Weights.IMAGENET1K_V1, weights, "vgg16_bn"
    )
    return VGG16Classifier(vgg, num_classes)


def _build_gap(backbone: str, num_classes: int, weights, **_: Any) -> nn.Module:
    return GapNet(create_backbone(backbone, weights), num_classes)


def _build_melcnn(backbone: str, num_classes: int, weights, **_: Any) -> nn.Module:
    return MelCNN(create_backbone(backbone, weights), num_classes)


def _build_attnmel(
    backbone: str, num_classes: int, weights, normalize: str = "sigmoid", attention_channels: int = 256, **_: Any
) -> nn.Module:
    return AttnMelCNN(create_backbone(backbone, weights), num_classes, normalize, attention_channels)


_REGISTRY: dict[str, ModelEntry] = {
    entry.name: entry
    for entry in (
        ModelEntry("vgg16", _build_vgg16, "vgg16_bn", True, "VGG-16", "VGG-16-BN with its dense layers"),
        ModelEntry("vgg16-gap", _build_gap, "vgg16_bn", True, "VGG-16-GAP", "VGG-16-BN, GAP + linear (CAM)"),
        ModelEntry("gap", _build_gap, "vgg16_bn", False, "VGG-16-GAP", "any backbone, GAP + linear"),
        ModelEntry("melcnn", _build_melcnn, "vgg16_bn", False, "Mel-CNN", "multi-scale GAP, no attention"),
        ModelEntry("attnmel", _build_attnmel, "vgg16_bn", False, "AttnMel-CNN", "two attention gates"),
    )
}


def list_models() -> list[str]:
    return list(_REGISTRY)


def model_entry(name: str) -> ModelEntry:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ConfigError(f"Unknown model {name!r}; choose one of {list_models()}.") from None


def create_model(
    name: str,
    num_classes: int = 2,
    *,
    backbone: str | None = None,
    weights: str | Path | None = None,
    normalize: str = "sigmoid",
    attention_channels: int = 256,
) -> nn.Module:
    """Build a registered model.

    ``weights`` initialises the backbone: ``None`` (random), ``"imagenet"`` (torchvision's weights
    API; needs the network or a warm torch hub cache) or a path to a local state-dict file.
    """
    entry = model_entry(name)
    if backbone is None:
        backbone = entry.default_backbone
    elif entry.fixed_backbone and backbone != entry.default_backbone:
        raise ConfigError(f"Model {name!r} is defined on {entry.default_backbone}; use 'gap', 'melcnn' or 'attnmel' for {backbone}.")
    if normalize not in ("sigmoid", "softmax"):
        raise ConfigError(f"model.normalize must be 'sigmoid' or 'softmax', not {normalize!r}.")
    model = entry.builder(
        backbone=backbone,
        num_classes=num_classes,
        weights=None if weights is None else str(weights),
        normalize=normalize,
        attention_channels=attention_channels,
    )
    model.architecture = {
        "name": name,
        "backbone": backbone,
        "num_classes": num_classes,
        "normalize": normalize,
        "attention_channels": attention_channels,
    }
    return model
