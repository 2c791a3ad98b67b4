"""The attention gate of AttnMel-CNN (Yan et al., IPMI 2019, eq. 1-3).

``c = phi(ReLU(W_l * L + up(W_g * G)))`` with 1x1 convolutions; the map is ``sigmoid(c)`` (the
paper's default) or a spatial softmax of ``c``. The global map is upsampled to the local map's own
size, so no input size is baked in.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

Normalization = Literal["sigmoid", "softmax"]


class AttentionGate(nn.Module):
    def __init__(
        self,
        local_channels: int,
        global_channels: int,
        hidden_channels: int = 256,
        normalize: Normalization = "sigmoid",
    ):
        super().__init__()
        if normalize not in ("sigmoid", "softmax"):
            raise ValueError(f"normalize must be 'sigmoid' or 'softmax', not {normalize!r}")
        self.normalize = normalize
        self.local_proj = nn.Conv2d(local_channels, hidden_channels, kernel_size=1, bias=False)
        self.global_proj = nn.Conv2d(global_channels, hidden_channels, kernel_size=1, bias=False)
        self.score = nn.Conv2d(hidden_channels, 1, kernel_size=1, bias=True)

    def compatibility(self, local: torch.Tensor, global_map: torch.Tensor) -> torch.Tensor:
        """Unnormalised scores ``c`` (N, 1, H, W) at the local map's resolution."""
        gated = F.interpolate(
            self.global_proj(global_map), size=local.shape[-2:], mode="bilinear", align_corners=False
        )
        return self.score(F.relu(self.local_proj(local) + gated))

    def forward(self, local: torch.Tensor, global_map: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (attention map (N, 1, H, W) in [0, 1], attended feature vector (N, C))."""
        scores = self.compatibility(local, global_map)
        if self.normalize == "softmax":
            n, _, h, w = scores.shape
            attention = torch.softmax(scores.flatten(1), dim=1).view(n, 1, h, w)
            attended = (attention * local).sum(dim=(2, 3))
        else:
            attention = torch.sigmoid(scores)
            attended = (attention * local).mean(dim=(2, 3))
        return attention, attended
