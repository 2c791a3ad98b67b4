"""Running a model over samples: probabilities, and attention maps when asked for."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader
from torchvision.transforms import v2
from tqdm import tqdm

from attnmel.data.dataset import IsicDataset
from attnmel.data.masks import RoiSpec
from attnmel.data.records import Sample
from attnmel.data.transforms import eval_augment, geometry


@dataclass(frozen=True)
class Preprocessing:
    """The evaluation geometry and normalisation a model was trained with (stored in checkpoints)."""

    crop_ratio: float
    resize: int
    image_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "crop_ratio": self.crop_ratio,
            "resize": self.resize,
            "image_size": self.image_size,
            "mean": list(self.mean),
            "std": list(self.std),
        }

    @classmethod
    def from_dict(cls, payload: dict[str, Any]) -> Preprocessing:
        return cls(
            float(payload["crop_ratio"]),
            int(payload["resize"]),
            int(payload["image_size"]),
            tuple(payload["mean"]),
            tuple(payload["std"]),
        )

    def eval_transform(self) -> v2.Compose:
        return v2.Compose([geometry(self.resize, self.crop_ratio), eval_augment(self.image_size, self.mean, self.std)])


@dataclass
class Predictions:
    image_ids: list[str]
    labels: np.ndarray
    probabilities: np.ndarray
    #: raw attention maps by layer, (N, h, w), when requested
    attention: dict[str, np.ndarray] = field(default_factory=dict)
    #: region masks at input resolution (N, H, W) and whether each sample has one, when requested
    masks: np.ndarray | None = None
    has_mask: np.ndarray | None = None


def eval_loader(
    samples: Sequence[Sample],
    preprocessing: Preprocessing,
    batch_size: int = 64,
    num_workers: int = 0,
    roi: RoiSpec | None = None,
) -> DataLoader:
    dataset = IsicDataset(samples, preprocessing.eval_transform(), roi)
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers)


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


@torch.no_grad()
def run_inference(
    model: nn.Module,
    loader: DataLoader,
    device: torch.device | str = "cpu",
    *,
    keep_attention: bool = False,
    keep_masks: bool = False,
    progress: bool = False,
    desc: str = "eval",
) -> Predictions:
    model.eval()
    ids: list[str] = []
    labels: list[np.ndarray] = []
    probabilities: list[np.ndarray] = []
    attention: dict[str, list[np.ndarray]] = {}
    masks: list[np.ndarray] = []
    has_mask: list[np.ndarray] = []
    for batch in tqdm(loader, desc=desc, disable=not progress, leave=False, unit="batch"):
        output = model(batch["image"].to(device, non_blocking=True))
        probabilities.append(torch.softmax(output.logits.float(), dim=1).cpu().numpy())
        labels.append(batch["label"].numpy())
        ids.extend(batch["image_id"])
        if keep_attention:
            for name, amap in output.attention.items():
                attention.setdefault(name, []).append(amap[:, 0].float().cpu().numpy())
        if keep_masks:
            masks.append(batch["mask"][:, 0].numpy().astype(bool))
            has_mask.append(batch["has_mask"].numpy())
    return Predictions(
        image_ids=ids,
        labels=np.concatenate(labels) if labels else np.zeros(0, dtype=int),
        probabilities=np.concatenate(probabilities) if probabilities else np.zeros((0, 0)),
        attention={name: np.concatenate(maps) for name, maps in attention.items()},
        masks=np.concatenate(masks) if masks else None,
        has_mask=np.concatenate(has_mask) if has_mask else None,
    )
