"""The paper's model rows as ``nn.Module``s that all return one ``ModelOutput``.

- ``GapNet``: GAP of the last stage + linear (VGG-16-GAP, the CAM baseline; "plain" fine-tuning).
- ``MelCNN``: GAP of the three stages concatenated + linear (multi-scale, no attention).
- ``AttnMelCNN``: two attention gates on the stride-8/16 stages, gated by the stride-32 stage,
  concatenated with GAP of the stride-32 stage + one linear classifier.
- ``VGG16Classifier``: torchvision VGG-16-BN with its dense layers (the paper's first row).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
import torchvision
from torch import nn

from attnmel.errors import ConfigError
from attnmel.models.attention import AttentionGate, Normalization
from attnmel.models.backbones import StagedBackbone, build_torchvision_model, create_backbone
from attnmel.models.registry import register_model


class ModelOutput(NamedTuple):
    """Logits (N, classes) and attention maps (N, 1, h, w) by layer name (empty without attention).

    A NamedTuple rather than a dataclass so DDP, ``torch.compile``, tracing and ONNX export all
    flatten it without help.
    """

    logits: torch.Tensor
    attention: dict[str, torch.Tensor]


def _gap(x: torch.Tensor) -> torch.Tensor:
    return x.mean(dim=(2, 3))


class StagedClassifier(nn.Module):
    """Shared plumbing: a staged backbone and a head that reads its taps."""

    def __init__(self, backbone: StagedBackbone, num_classes: int):
        super().__init__()
        self.backbone = backbone
        self.num_classes = num_classes

    @property
    def attention_layers(self) -> list[str]:
        return []

    def forward_features(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.backbone(x)

    def last_stage(self) -> nn.Module:
        """The module whose output is the last feature map (target for Grad-CAM)."""
        return self.backbone.stages[self.backbone.spec.global_name]


class GapNet(StagedClassifier):
    def __init__(self, backbone: StagedBackbone, num_classes: int):
        super().__init__(backbone, num_classes)
        self.classifier = nn.Linear(backbone.channels[backbone.spec.global_name], num_classes)

    def forward(self, x: torch.Tensor) -> ModelOutput:
        features = self.forward_features(x)[self.backbone.spec.global_name]
        return ModelOutput(self.classifier(_gap(features)), {})

    def forward_with_cam(self, x: torch.Tensor, class_index: int = 1) -> ModelOutput:
        """Logits and the CAM of ``class_index`` as attention layer ``cam``, from one backbone pass."""
        features = self.forward_features(x)[self.backbone.spec.global_name]
        weights = self.classifier.weight[class_index].view(1, -1, 1, 1)
        cam = (features * weights).sum(dim=1, keepdim=True)
        return ModelOutput(self.classifier(_gap(features)), {"cam": cam})

    def class_activation_map(self, x: torch.Tensor, class_index: int = 1) -> torch.Tensor:
        """CAM (Zhou et al. 2016): classifier weights of ``class_index`` applied to the last feature map."""
        return self.forward_with_cam(x, class_index).attention["cam"]


class MelCNN(StagedClassifier):
    def __init__(self, backbone: StagedBackbone, num_classes: int):
        super().__init__(backbone, num_classes)
        self.classifier = nn.Linear(sum(backbone.spec.stage_channels), num_classes)

    def forward(self, x: torch.Tensor) -> ModelOutput:
        taps = self.forward_features(x)
        pooled = torch.cat([_gap(taps[name]) for name in self.backbone.spec.stage_names], dim=1)
        return ModelOutput(self.classifier(pooled), {})


class AttnMelCNN(StagedClassifier):
    def __init__(
        self,
        backbone: StagedBackbone,
        num_classes: int,
        normalize: Normalization = "sigmoid",
        attention_channels: int = 256,
    ):
        super().__init__(backbone, num_classes)
        spec = backbone.spec
        channels = backbone.channels
        self.normalize = normalize
        self.gates = nn.ModuleDict(
            {
                name: AttentionGate(channels[name], channels[spec.global_name], attention_channels, normalize)
                for name in spec.local_names
            }
        )
        self.classifier = nn.Linear(sum(spec.stage_channels), num_classes)

    @property
    def attention_layers(self) -> list[str]:
        return list(self.gates.keys())

    def forward(self, x: torch.Tensor) -> ModelOutput:
        taps = self.forward_features(x)
        global_map = taps[self.backbone.spec.global_name]
        attention: dict[str, torch.Tensor] = {}
        vectors = [_gap(global_map)]
        for name, gate in self.gates.items():
            attention[name], attended = gate(taps[name], global_map)
            vectors.append(attended)
        # Order as in the paper's code: [g, g1, g2] = GAP(pool-5), attended pool-3, attended pool-4.
        return ModelOutput(self.classifier(torch.cat(vectors, dim=1)), attention)


class VGG16Classifier(nn.Module):
    """torchvision's VGG-16-BN including its three dense layers, last layer resized to ``num_classes``."""

    def __init__(self, vgg: Any, num_classes: int):  # a torchvision VGG (untyped)
        super().__init__()
        vgg.classifier[6] = nn.Linear(vgg.classifier[6].in_features, num_classes)
        self.features = vgg.features
        self.avgpool = vgg.avgpool
        self.classifier = vgg.classifier
        self.num_classes = num_classes

    @property
    def attention_layers(self) -> list[str]:
        return []

    def last_stage(self) -> nn.Module:
        return self.features

    def forward(self, x: torch.Tensor) -> ModelOutput:
        pooled = self.avgpool(self.features(x))
        return ModelOutput(self.classifier(torch.flatten(pooled, 1)), {})


class LogitsOnly(nn.Module):
    """A view of any attnmel model whose ``forward`` returns logits alone.

    pytorch-grad-cam, captum and most other attribution tools expect a tensor, not a structure.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x).logits


class WithClassActivationMap(nn.Module):
    """A view of a GAP model whose output carries the CAM of one class as the attention layer ``cam``,
    so everything that reads attention maps (overlays, attention quality) reads CAMs too."""

    def __init__(self, model: GapNet, class_index: int = 1):
        super().__init__()
        self.model = model
        self.class_index = class_index

    @property
    def attention_layers(self) -> list[str]:
        return ["cam"]

    def forward(self, x: torch.Tensor) -> ModelOutput:
        return self.model.forward_with_cam(x, self.class_index)


def with_maps(model: nn.Module, class_index: int = 1) -> nn.Module:
    """``model`` itself when it has attention; its CAM view when it is a GAP model; else unchanged."""
    return WithClassActivationMap(model, class_index) if isinstance(model, GapNet) else model


# ----------------------------------------------------------------------------------------- registry
# The paper's rows. ``weights`` initialises the backbone (None, "imagenet" or a local file).

_VGG = ("vgg16_bn",)


@register_model("vgg16", paper_row="VGG-16", description="VGG-16-BN with its dense layers", backbones=_VGG)
def vgg16(num_classes: int = 2, *, backbone: str = "vgg16_bn", weights: str | None = None) -> nn.Module:
    vgg = build_torchvision_model(
        torchvision.models.vgg16_bn, torchvision.models.VGG16_BN_Weights.IMAGENET1K_V1, weights, backbone
    )
    return VGG16Classifier(vgg, num_classes)


@register_model("vgg16-gap", paper_row="VGG-16-GAP", description="VGG-16-BN, GAP + linear (CAM)", backbones=_VGG)
def vgg16_gap(num_classes: int = 2, *, backbone: str = "vgg16_bn", weights: str | None = None) -> nn.Module:
    return GapNet(create_backbone(backbone, weights), num_classes)


@register_model("gap", paper_row="VGG-16-GAP", description="any backbone, GAP + linear")
def gap(num_classes: int = 2, *, backbone: str = "vgg16_bn", weights: str | None = None,
        input_blur: float = 0.0) -> nn.Module:
    return GapNet(create_backbone(backbone, weights, input_blur), num_classes)


@register_model("melcnn", paper_row="Mel-CNN", description="multi-scale GAP, no attention")
def melcnn(num_classes: int = 2, *, backbone: str = "vgg16_bn", weights: str | None = None,
           input_blur: float = 0.0) -> nn.Module:
    return MelCNN(create_backbone(backbone, weights, input_blur), num_classes)


@register_model("attnmel", paper_row="AttnMel-CNN", description="two attention gates")
def attnmel(
    num_classes: int = 2,
    *,
    backbone: str = "vgg16_bn",
    weights: str | None = None,
    normalize: Normalization = "sigmoid",
    attention_channels: int = 256,
    input_blur: float = 0.0,
) -> nn.Module:
    if normalize not in ("sigmoid", "softmax"):
        raise ConfigError(f"model.normalize must be 'sigmoid' or 'softmax', not {normalize!r}.")
    if not isinstance(attention_channels, int) or attention_channels < 1:
        raise ConfigError(f"model.attention_channels must be a positive whole number, not {attention_channels!r}.")
    return AttnMelCNN(create_backbone(backbone, weights, input_blur), num_classes, normalize, attention_channels)

