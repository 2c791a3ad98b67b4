"""Running a model over samples: probabilities, and attention maps when asked for.

Every path from logits to probabilities (training validation, evaluate, calibrate, predict, the
HTTP service) goes through ``probabilities_from_logits``, so a checkpoint's fitted temperature is
applied the same way everywhere. A ``Predictor`` is what turns a batch into probabilities: one
model or an ensemble, each member with its temperature, optionally under test-time augmentation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from attnmel.data.dataset import IsicDataset
from attnmel.data.masks import RoiSpec
from attnmel.data.records import Sample
from attnmel.data.transforms import Preprocessing, denormalize
from attnmel.errors import AttnmelError
from attnmel.inference.trust import feature_tap
from attnmel.inference.tta import dihedral_view, undo_view, view_indices
from attnmel.io import progress_bar


def probabilities_from_logits(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Softmax of ``logits / temperature`` over the last axis (temperature 1: the plain softmax).

    The temperature is fitted on validation by ``attnmel calibrate`` and stored in the checkpoint
    (``CheckpointMeta.softmax_temperature``).
    """
    if not temperature > 0:
        raise ValueError(f"temperature must be positive, not {temperature!r}")
    return torch.softmax(logits.float() / temperature, dim=-1)


class NonFiniteOutputError(AttnmelError):
    """A model answered NaN or infinity: an error in every door, never a class."""


@dataclass
class Predictor:
    """One model or an ensemble, each member with its temperature, optionally under 8-view TTA.

    Probabilities are averaged over members and views (each view's softmax at the member's
    temperature). Attention maps are turned back to the input's orientation (``tta.undo_view``)
    and averaged per layer name over the members and views that produce that layer.
    ``input_affine`` re-normalises the batch for a member trained with other mean/std:
    ``x * scale + shift`` (None: use the batch as it is).
    """

    models: Sequence[nn.Module]
    temperatures: Sequence[float] | None = None
    tta: bool = False
    input_affine: Sequence[tuple[torch.Tensor, torch.Tensor] | None] | None = None

    def __post_init__(self) -> None:
        n = len(self.models)
        self.temperatures = list(self.temperatures) if self.temperatures is not None else [1.0] * n
        self.input_affine = list(self.input_affine) if self.input_affine is not None else [None] * n
        if not n or len(self.temperatures) != n or len(self.input_affine) != n:
            raise ValueError("a Predictor needs at least one model, and one temperature and input_affine per model")

    @torch.no_grad()
    def __call__(self, images: torch.Tensor, tta: bool | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(probabilities (N, C), attention maps by layer (N, 1, h, w)) for a normalised batch."""
        probabilities, attention, _ = self.forward(images, tta)
        return probabilities, attention

    @torch.no_grad()
    def forward(
        self, images: torch.Tensor, tta: bool | None = None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor]:
        """Probabilities, attention maps, and the raw logits of every member and view (M*V, N, C);
        ``tta`` overrides the predictor's own setting for this batch.

        A non-finite probability is an error (``NonFiniteOutputError``), never a class."""
        total: torch.Tensor | None = None
        sums: dict[str, torch.Tensor] = {}
        counts: dict[str, int] = {}
        logits = []
        views = view_indices(self.tta if tta is None else tta)
        for model, temperature, affine in zip(self.models, self.temperatures, self.input_affine, strict=True):
            model.eval()
            x = images if affine is None else images * affine[0].to(images) + affine[1].to(images)
            for index in views:
                output = model(dihedral_view(x, index))
                logits.append(output.logits.float())
                p = probabilities_from_logits(output.logits, temperature)
                total = p if total is None else total + p
                for name, amap in output.attention.items():
                    amap = undo_view(amap.float(), index)
                    if name in sums and amap.shape != sums[name].shape:  # same layer name, other backbone's rounding
                        amap = F.interpolate(amap, size=sums[name].shape[-2:], mode="bilinear", align_corners=False)
                    sums[name] = sums[name] + amap if name in sums else amap
                    counts[name] = counts.get(name, 0) + 1
        assert total is not None  # at least one model and one view
        probabilities = total / (len(self.models) * len(views))
        if not bool(torch.isfinite(probabilities).all()):
            raise NonFiniteOutputError(
                "the model produced NaN or infinite probabilities; its weights or the input are broken "
                "(check the checkpoint with `attnmel export`, or use an earlier epoch's)."
            )
        return probabilities, {name: sums[name] / counts[name] for name in sums}, torch.stack(logits)


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
    #: raw logits of every member and view (M*V, N, C), when requested
    logits: np.ndarray | None = None
    #: the uint8 views the model saw (N, S, S, 3), when requested
    views: np.ndarray | None = None
    #: images left out because they did not decode (``data.skip_bad``), one message each
    skipped: list[str] = field(default_factory=list)
    #: the pooled features the classifiers received (N, D; ``attnmel.inference.trust.Tapped.features``), when requested
    features: np.ndarray | None = None
    #: ``attnmel.inference.trust.image_statistics`` of the views (N, K), with the features
    image_statistics: np.ndarray | None = None


def eval_loader(
    samples: Sequence[Sample],
    preprocessing: Preprocessing,
    batch_size: int = 64,
    num_workers: int = 0,
    roi: RoiSpec | None = None,
) -> DataLoader:
    dataset = IsicDataset(samples, preprocessing.eval_transform(), roi)
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers)


@torch.no_grad()
def run_inference(
    model: nn.Module | Predictor,
    loader: DataLoader,
    device: torch.device | str = "cpu",
    *,
    keep_attention: bool = False,
    keep_masks: bool = False,
    keep_logits: bool = False,
    views_of: Preprocessing | None = None,
    progress: bool = False,
    desc: str = "eval",
    keep_features: bool = False,
    statistics_of: Preprocessing | None = None,
) -> Predictions:
    """Probabilities (and optionally attention maps, region masks, raw logits, and with ``views_of`` the
    uint8 views the model saw, undoing that preprocessing's normalisation; with ``keep_features`` the pooled
    features, and with ``statistics_of`` too the views' pixel statistics) for every sample of ``loader``."""
    predictor = model if isinstance(model, Predictor) else Predictor([model])
    ids: list[str] = []
    labels: list[np.ndarray] = []
    probabilities: list[np.ndarray] = []
    attention: dict[str, list[np.ndarray]] = {}
    masks: list[np.ndarray] = []
    has_mask: list[np.ndarray] = []
    logits: list[np.ndarray] = []
    views: list[np.ndarray] = []
    skipped: list[str] = []
    features: list[np.ndarray] = []
    statistics: list[np.ndarray] = []
    for batch in progress_bar(loader, desc=desc, show=progress, leave=False, unit="batch"):
        skipped += batch.get("skipped", [])
        if "image" not in batch:
            continue
        with feature_tap(predictor.models if keep_features else []) as tapped:
            batch_probabilities, batch_attention, batch_logits = predictor.forward(batch["image"].to(device, non_blocking=True))
        if tapped.calls:
            features.append(tapped.features())
            if statistics_of is not None:
                statistics.append(tapped.statistics(statistics_of.mean, statistics_of.std))
        probabilities.append(batch_probabilities.cpu().numpy())
        if keep_logits:
            logits.append(batch_logits.cpu().numpy())
        labels.append(batch["label"].numpy())
        ids.extend(batch["image_id"])
        if keep_attention:
            for name, amap in batch_attention.items():
                attention.setdefault(name, []).append(amap[:, 0].float().cpu().numpy())
        if keep_masks:
            masks.append(batch["mask"][:, 0].numpy().astype(bool))
            has_mask.append(batch["has_mask"].numpy())
        if views_of is not None:
            views.append(denormalize(batch["image"], views_of.mean, views_of.std))
    return Predictions(
        image_ids=ids,
        labels=np.concatenate(labels) if labels else np.zeros(0, dtype=int),
        probabilities=np.concatenate(probabilities) if probabilities else np.zeros((0, 0)),
        attention={name: np.concatenate(maps) for name, maps in attention.items()},
        masks=np.concatenate(masks) if masks else None,
        has_mask=np.concatenate(has_mask) if has_mask else None,
        logits=np.concatenate(logits, axis=1) if logits else None,
        views=np.concatenate(views) if views else None,
        skipped=skipped,
        features=np.concatenate(features) if features else None,
        image_statistics=np.concatenate(statistics) if statistics else None,
    )
