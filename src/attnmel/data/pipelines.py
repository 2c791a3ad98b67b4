"""Where training and validation batches come from: two input pipelines behind one small interface.

- ``LoaderBatches`` (``data.pipeline: cpu``): per-sample decode (or cache read) and the v2
  transforms in DataLoader workers, pinned memory when training on CUDA.
- ``DeviceBatches`` (``data.pipeline: device``): the split is decoded once (or read from the
  cache) into one uint8 tensor, kept on the training device when it takes at most a quarter of
  the free memory there (else in shared host memory). Each batch is cropped, rotated, flipped and
  normalised where the model runs, in a few batched kernels (``data.batch_augment``). Workers only
  draw the per-sample parameters, and gather uint8 batches when the split lives on the host.

Both take the epoch's ``(index, seed)`` keys in order and yield the same dicts (``image``,
``mask``, ``has_mask``, ``label``, ``image_id``, ``index``) holding the same samples, so the choice
changes speed, not results. Their DataLoaders keep their workers across passes: a
``_Keys`` sampler is pointed at each pass's keys instead of building a new loader (and forking
new workers) every pass.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterator, Sequence
from typing import Literal

import torch
from torch.utils.data import DataLoader, Dataset, Sampler
from torchvision.transforms import v2

from attnmel.data.batch_augment import AugmentParams, augment_geometry, center_params, normalize, train_params
from attnmel.data.cache import CachedSplit, GeometryPair, decode_geometry
from attnmel.data.dataset import IsicDataset, collate_skipping
from attnmel.data.masks import RoiSpec
from attnmel.data.records import Sample
from attnmel.data.transforms import Preprocessing, Robustness, eval_augment, geometry, train_augment
from attnmel.errors import DataError
from attnmel.io import progress_bar

#: "cpu": per-sample transforms in DataLoader workers; "device": batches augmented where the model runs
Pipeline = Literal["cpu", "device"]
#: the largest share of the device's free memory a preloaded split may take
DEVICE_MEMORY_SHARE = 0.25

Key = tuple[int, int]


class _Keys(Sampler):
    """The keys of the current pass; reassigned each pass so the loader's workers can persist."""

    def __init__(self) -> None:
        self.keys: Sequence = ()

    def __iter__(self) -> Iterator:
        return iter(self.keys)

    def __len__(self) -> int:
        return len(self.keys)


class _Batches:
    """One pass: iterable with a length (for progress bars)."""

    def __init__(self, loader: DataLoader, finish: Callable[[dict], dict] | None = None):
        self.loader = loader
        self.finish = finish

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[dict]:
        return iter(self.loader) if self.finish is None else map(self.finish, self.loader)


class LoaderBatches:
    """Per-sample transforms in DataLoader workers (the reference path)."""

    def __init__(
        self,
        samples: Sequence[Sample],
        preprocessing: Preprocessing,
        roi: RoiSpec | None,
        *,
        cached: CachedSplit | None = None,
        num_workers: int = 0,
        pin_memory: bool = False,
        skip_bad: bool = False,
        robustness: Robustness | None = None,
    ):
        p = preprocessing
        decode = [] if cached is not None else [geometry(p.resize, p.crop_ratio)]
        load = None if cached is None else cached.load
        augment = train_augment(p.image_size, p.mean, p.std, robustness)
        self.train_dataset = IsicDataset(samples, v2.Compose([*decode, augment]), roi, load, skip_bad)
        self.eval_dataset = IsicDataset(samples, v2.Compose([*decode, eval_augment(p.image_size, p.mean, p.std)]), None, load,
                                        skip_bad)
        self.collate = collate_skipping if skip_bad else None
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        self._loaders: dict[tuple[str, int], tuple[_Keys, DataLoader]] = {}

    def _loader(self, which: str, batch_size: int, keys: Sequence) -> DataLoader:
        if (which, batch_size) not in self._loaders:
            sampler = _Keys()
            dataset = self.train_dataset if which == "train" else self.eval_dataset
            self._loaders[which, batch_size] = sampler, DataLoader(
                dataset, batch_size=batch_size, sampler=sampler, num_workers=self.num_workers,
                pin_memory=self.pin_memory, persistent_workers=self.num_workers > 0, collate_fn=self.collate,
            )
        sampler, loader = self._loaders[which, batch_size]
        sampler.keys = keys
        return loader

    def train(self, keys: Sequence[Key], batch_size: int) -> _Batches:
        return _Batches(self._loader("train", batch_size, keys))

    def evaluate(self, indices: Sequence[int], batch_size: int) -> _Batches:
        return _Batches(self._loader("eval", batch_size, indices))


class _Plan(Dataset):
    """Batch plans computed in workers: indices, labels and augmentation parameters of a chunk of
    keys, plus the uint8 pixels when the split is held on the host."""

    def __init__(self, source: DeviceBatches, augment: bool):
        self.labels = source.labels
        self.has_mask = source.has_mask
        self.image_ids = source.image_ids
        self.host_images = None if source.on_device else source.images
        self.host_masks = None if source.on_device else source.masks
        self.in_size = source.resize
        self.out_size = source.preprocessing.image_size
        self.augment = augment

    def __getitem__(self, chunk: list[Key]) -> dict:
        index = torch.tensor([key[0] for key in chunk], dtype=torch.long)
        if self.augment:
            params = train_params([key[1] for key in chunk], self.in_size, self.out_size)
        else:
            params = center_params(len(chunk), self.in_size, self.out_size)
        plan = {
            "index": index,
            "label": self.labels[index],
            "has_mask": self.has_mask[index],
            "image_id": [self.image_ids[i] for i in index.tolist()],
            "top": params.top,
            "left": params.left,
            "quarter_turns": params.quarter_turns,
            "hflip": params.hflip,
            "vflip": params.vflip,
        }
        if self.host_images is not None:
            plan["pixels"] = self.host_images.index_select(0, index)
            if self.host_masks is not None:
                plan["mask_pixels"] = self.host_masks.index_select(0, index)
        return plan


class _Chunks(Sampler):
    """Cuts the current pass's keys into batches; each batch is one item of ``_Plan``."""

    def __init__(self) -> None:
        self.keys: Sequence = ()
        self.batch_size = 1

    def __iter__(self) -> Iterator[list[Key]]:
        for start in range(0, len(self.keys), self.batch_size):
            yield list(self.keys[start:start + self.batch_size])

    def __len__(self) -> int:
        return math.ceil(len(self.keys) / self.batch_size)


class DeviceBatches:
    """A split decoded once and augmented a batch at a time on the training device."""

    def __init__(
        self,
        samples: Sequence[Sample],
        preprocessing: Preprocessing,
        roi: RoiSpec | None,
        device: torch.device,
        *,
        cached: CachedSplit | None = None,
        num_workers: int = 0,
        progress: bool = False,
        desc: str = "load",
        skip_bad: bool = False,
    ):
        self.preprocessing = preprocessing
        self.resize = preprocessing.resize
        self.device = device
        self.labels = torch.tensor([s.label for s in samples], dtype=torch.long)
        self.image_ids = [s.image_id for s in samples]
        load = cached.load if cached is not None else functools.partial(
            decode_geometry, roi=roi, resize=preprocessing.resize, crop_ratio=preprocessing.crop_ratio
        )
        images, masks, self.has_mask, self.skipped = preload(samples, load, self.resize, roi is not None, num_workers,
                                                             progress, desc, skip_bad)
        self.on_device = _fits_on(device, images.nbytes + (0 if masks is None else masks.nbytes))
        if self.on_device:
            images, masks = images.to(device), None if masks is None else masks.to(device)
        elif num_workers > 0:
            images.share_memory_()
            if masks is not None:
                masks.share_memory_()
        self.images, self.masks = images, masks
        self.num_workers = num_workers
        self._loaders: dict[bool, tuple[_Chunks, DataLoader]] = {}

    @property
    def placement(self) -> str:
        where = "the training device" if self.on_device and self.device.type != "cpu" else "host memory"
        return f"{len(self.labels)} images ({self.images.nbytes / 2**20:.0f} MiB uint8) in {where}"

    def _loader(self, augment: bool, keys: Sequence[Key], batch_size: int) -> DataLoader:
        if augment not in self._loaders:
            chunks = _Chunks()
            self._loaders[augment] = chunks, DataLoader(
                _Plan(self, augment), batch_size=None, sampler=chunks, num_workers=self.num_workers,
                pin_memory=self.device.type == "cuda", persistent_workers=self.num_workers > 0,
            )
        chunks, loader = self._loaders[augment]
        chunks.keys, chunks.batch_size = keys, batch_size
        return loader

    def train(self, keys: Sequence[Key], batch_size: int) -> _Batches:
        keys = [key for key in keys if key[0] not in self.skipped]
        return _Batches(self._loader(True, keys, batch_size), self._finish)

    def evaluate(self, indices: Sequence[int], batch_size: int) -> _Batches:
        keys = [(i, 0) for i in indices if i not in self.skipped]
        return _Batches(self._loader(False, keys, batch_size), self._finish)

    def _finish(self, plan: dict) -> dict:
        """Gather the batch's pixels and augment them on the device."""
        device = self.device
        if self.on_device:
            index = plan["index"].to(device, non_blocking=True)
            pixels = self.images.index_select(0, index)
            mask_pixels = None if self.masks is None else self.masks.index_select(0, index)
        else:
            pixels = plan["pixels"].to(device, non_blocking=True)
            mask_pixels = plan["mask_pixels"].to(device, non_blocking=True) if "mask_pixels" in plan else None
        params = AugmentParams(plan["top"], plan["left"], plan["quarter_turns"], plan["hflip"], plan["vflip"])
        size = self.preprocessing.image_size
        image = normalize(augment_geometry(pixels, params, size), self.preprocessing.mean, self.preprocessing.std)
        if mask_pixels is None:  # no region of interest: a zero view, not a batch-sized allocation
            mask = torch.zeros((), device=device).expand(len(plan["index"]), 1, size, size)
        else:
            mask = augment_geometry(mask_pixels, params, size).float()
        return {"image": image, "mask": mask, "has_mask": plan["has_mask"], "label": plan["label"],
                "image_id": plan["image_id"], "index": plan["index"]}


def _fits_on(device: torch.device, nbytes: int) -> bool:
    if device.type == "cpu":
        return True
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return nbytes <= DEVICE_MEMORY_SHARE * free
    return False


class _Preload(Dataset):
    def __init__(self, samples: Sequence[Sample], load: Callable[[Sample], GeometryPair], skip_bad: bool):
        self.samples, self.load, self.skip_bad = list(samples), load, skip_bad

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, bool] | str:
        try:
            image, mask, has_mask = self.load(self.samples[index])
        except DataError as exc:
            if not self.skip_bad:
                raise
            return str(exc)
        return image.as_subclass(torch.Tensor), mask.as_subclass(torch.Tensor), has_mask


def preload(
    samples: Sequence[Sample],
    load: Callable[[Sample], GeometryPair],
    resize: int,
    with_masks: bool,
    num_workers: int = 0,
    progress: bool = False,
    desc: str = "load",
    skip_bad: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor, dict[int, str]]:
    """Every sample's geometry as one uint8 tensor (N, 3, R, R), its regions (N, 1, R, R) and flags;
    with ``skip_bad`` also the samples that failed to decode (index -> message), left as zeros."""
    images = torch.zeros(len(samples), 3, resize, resize, dtype=torch.uint8)
    masks = torch.zeros(len(samples), 1, resize, resize, dtype=torch.uint8) if with_masks else None
    has_mask = torch.zeros(len(samples), dtype=torch.bool)
    skipped: dict[int, str] = {}
    loader = DataLoader(_Preload(samples, load, skip_bad), batch_size=None, num_workers=num_workers)
    for i, item in enumerate(progress_bar(loader, desc=desc, show=progress, unit="img", leave=False)):
        if isinstance(item, str):
            skipped[i] = item
            continue
        image, mask, found = item
        images[i] = image
        if masks is not None and found:
            masks[i] = mask
        has_mask[i] = bool(found)
    return images, masks, has_mask, skipped


BatchSource = LoaderBatches | DeviceBatches
