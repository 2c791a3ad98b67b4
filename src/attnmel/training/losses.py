"""Classification losses and the attention prior (Dice toward a region of interest)."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from attnmel.config import LossConfig
from attnmel.errors import ConfigError


class FocalLoss(nn.Module):
    """Focal loss (Lin et al. 2017) on softmax outputs, mean over the batch; gamma 0 is cross-entropy."""

    def __init__(self, gamma: float = 2.0, label_smoothing: float = 0.0):
        super().__init__()
        self.gamma = gamma
        self.label_smoothing = label_smoothing

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        log_p = -F.cross_entropy(logits, target, reduction="none")
        p = log_p.exp()
        if self.label_smoothing:
            ce = F.cross_entropy(logits, target, reduction="none", label_smoothing=self.label_smoothing)
        else:
            ce = -log_p
        return ((1 - p) ** self.gamma * ce).mean()


def classification_loss(config: LossConfig) -> nn.Module:
    if config.name == "focal":
        return FocalLoss(config.focal_gamma, config.label_smoothing)
    if config.name == "cross_entropy":
        return nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
    raise ConfigError(f"loss.name must be 'focal' or 'cross_entropy', not {config.name!r}.")


def pixel_noise(images: torch.Tensor, std: tuple[float, ...], max_levels: float) -> torch.Tensor:
    """``images`` (normalised) with Gaussian noise of a standard deviation drawn per image from
    [0, ``max_levels``] grey levels, as the same noise on the 0..255 pixels would give."""
    scale = images.new_tensor([1 / (255 * s) for s in std]).view(1, -1, 1, 1)
    levels = torch.rand(images.shape[0], 1, 1, 1, device=images.device, dtype=images.dtype) * max_levels
    return images + torch.randn_like(images) * levels * scale


def consistency_loss(logits: torch.Tensor, perturbed: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """How far the answers moved between two views of the same images, against how far apart the
    images' answers are: the mean squared change of the logits, over their variance across the
    batch (both after removing each image's mean over classes, the part a softmax ignores).

    A ratio, so that shrinking every logit, which a temperature fitted later would undo, does not
    lower it: a plain squared change was met that way (benchmarks/RESULTS.md)."""
    centred = logits - logits.mean(dim=1, keepdim=True)
    change = perturbed - perturbed.mean(dim=1, keepdim=True) - centred
    spread = (centred - centred.mean(dim=0, keepdim=True)).pow(2).sum(dim=1).mean()
    return change.pow(2).sum(dim=1).mean() / (spread + eps)


Reduce = Callable[[torch.Tensor], torch.Tensor]


def dice_loss(
    prediction: torch.Tensor, target: torch.Tensor, eps: float = 1e-6, reduce: Reduce | None = None
) -> torch.Tensor:
    """1 - Dice over the whole batch, as the original code computes it (soft, no thresholding).

    ``reduce`` sums the three terms over processes, so a distributed run scores the global batch.
    """
    terms = torch.stack([(prediction * target).sum(), prediction.sum(), target.sum()])
    if reduce is not None:
        terms = reduce(terms)
    return 1 - 2 * terms[0] / (terms[1] + terms[2] + eps)


def attention_prior_loss(
    attention: dict[str, torch.Tensor],
    region: torch.Tensor,
    has_region: torch.Tensor,
    weights: list[float],
    softmax_maps: bool = False,
    reduce: Reduce | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Weighted Dice between each attention map and the region average-pooled to the map's size.

    Only samples that carry a region contribute. Softmax maps sum to one, so each is rescaled by
    its maximum before the Dice (a sigmoid map is used as is). With ``reduce`` (a sum over
    processes) every process takes part even without a region of its own, and the Dice is that of
    the global batch.
    """
    if len(weights) != len(attention):
        raise ConfigError(
            f"loss.prior_weights has {len(weights)} values but the model has {len(attention)} attention maps "
            f"({list(attention)})."
        )
    total = region.new_zeros(())
    parts: dict[str, float] = {}
    keep = has_region.bool()
    if reduce is not None:
        present = reduce(keep.sum().to(region.dtype).view(1))[0] > 0
    elif not bool(keep.any()):
        return total, parts
    for (name, amap), weight in zip(attention.items(), weights, strict=True):
        amap = amap[keep]
        if softmax_maps:
            amap = amap / amap.amax(dim=(2, 3), keepdim=True).clamp_min(1e-12)
        pooled = F.adaptive_avg_pool2d(region[keep], amap.shape[-2:])
        term = dice_loss(amap, pooled, reduce=reduce)
        if reduce is not None:
            term = torch.where(present, term, torch.zeros_like(term))
        parts[name] = float(term.detach())
        total = total + weight * term
    return total, parts
