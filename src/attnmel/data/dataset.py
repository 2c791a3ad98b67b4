"""A torch ``Dataset`` over ``Sample`` records: decode, pair the region mask, transform jointly."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset, default_collate
from torchvision import tv_tensors
from torchvision.transforms.v2 import functional as F

from attnmel.data.images import read_image
from attnmel.data.masks import RoiSpec, region_of_interest
from attnmel.data.records import Sample
from attnmel.errors import DataError


def load_pair(sample: Sample, roi: RoiSpec | None) -> tuple[tv_tensors.Image, tv_tensors.Mask, bool]:
    """Decoded image (uint8, 3xHxW) and region mask (uint8, 1xHxW; zeros when absent)."""
    pil = read_image(sample.image_path)
    image = tv_tensors.Image(F.pil_to_tensor(pil))
    region = region_of_interest(sample, roi, pil.size) if roi is not None else None
    has_region = region is not None
    if region is None:
        region = np.zeros((pil.size[1], pil.size[0]), dtype=bool)
    mask = tv_tensors.Mask(torch.from_numpy(region.astype(np.uint8))[None])
    return image, mask, has_region


class IsicDataset(Dataset):
    """Yields dicts: ``image`` (float, normalised), ``mask`` (float 0/1, 1xHxW), ``has_mask``,
    ``label``, ``image_id``, ``index``.

    ``transform`` receives ``{"image": Image, "mask": Mask}`` and must transform both jointly.
    ``load`` replaces decoding (e.g. ``CachedSplit.load``, which returns the cached geometry).
    With ``skip_bad`` an image that fails to decode yields ``{"skipped": message, "index": i}``
    instead of raising; ``collate_skipping`` leaves it out of the batch and reports it.
    """

    def __init__(
        self,
        samples: Sequence[Sample],
        transform: Callable,
        roi: RoiSpec | None = None,
        load: Callable[[Sample], tuple[tv_tensors.Image, tv_tensors.Mask, bool]] | None = None,
        skip_bad: bool = False,
    ):
        self.samples = list(samples)
        self.transform = transform
        self.roi = roi
        self.load = load
        self.skip_bad = skip_bad

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def labels(self) -> list[int]:
        return [s.label for s in self.samples]

    def __getitem__(self, key: int | tuple[int, int]) -> dict:
        """``key`` is an index, or (index, seed): the seed fixes this sample's random augmentation,
        so an epoch does not depend on worker count, process count or resume point."""
        index, seed = key if isinstance(key, tuple) else (key, None)
        sample = self.samples[index]
        try:
            image, mask, has_mask = load_pair(sample, self.roi) if self.load is None else self.load(sample)
        except DataError as exc:
            if not self.skip_bad:
                raise
            return {"skipped": str(exc), "index": index}
        if seed is None:
            out = self.transform({"image": image, "mask": mask})
        else:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                out = self.transform({"image": image, "mask": mask})
        return {
            "image": out["image"].as_subclass(torch.Tensor),
            "mask": out["mask"].as_subclass(torch.Tensor).float(),
            "has_mask": torch.tensor(has_mask),
            "label": torch.tensor(sample.label, dtype=torch.long),
            "image_id": sample.image_id,
            "index": index,
        }


def collate_skipping(items: list[dict]) -> dict:
    """``default_collate`` of the samples that decoded; ``skipped`` lists the messages of those that did not."""
    good = [item for item in items if "skipped" not in item]
    batch = default_collate(good) if good else {}
    batch["skipped"] = [item["skipped"] for item in items if "skipped" in item]
    return batch
