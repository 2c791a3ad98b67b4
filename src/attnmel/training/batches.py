"""The training run's input: the pipeline ``config.data`` asks for, built over the decode-once
cache when it is on (rank 0 builds the cache, the other processes then reuse it)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from attnmel.config import Config
from attnmel.data.cache import CachedSplit, GeometryCache
from attnmel.data.masks import RoiSpec
from attnmel.data.pipelines import BatchSource, DeviceBatches, LoaderBatches
from attnmel.data.records import Sample
from attnmel.data.transforms import Preprocessing
from attnmel.training.distributed import Distributed


def build_batch_sources(
    config: Config,
    train_samples: Sequence[Sample],
    val_samples: Sequence[Sample],
    preprocessing: Preprocessing,
    roi: RoiSpec | None,
    device: torch.device,
    dist: Distributed,
    *,
    progress: bool = False,
    log: Callable[[str], None] = print,
) -> tuple[BatchSource, BatchSource]:
    """The training and validation batch sources that ``config.data`` asks for."""
    data = config.data
    cached_train = cached_val = None
    if data.cache:
        cache = GeometryCache(data.cache_dir, data.resize, data.crop_ratio)

        def prepare() -> tuple[CachedSplit, CachedSplit]:
            options = {"num_workers": data.num_workers, "progress": progress, "update_index": dist.is_main,
                       "skip_bad": data.skip_bad}
            return (cache.prepare(train_samples, roi, desc="cache train", **options),
                    cache.prepare(val_samples, None, desc="cache val", **options))

        if dist.is_main:  # rank 0 builds; the others then find every entry present
            cached_train, cached_val = prepare()
            dist.barrier()
        else:
            dist.barrier()
            cached_train, cached_val = prepare()
        built = cached_train.images_built + cached_val.images_built
        log(f"cache {cache.root}: {built} of {len(train_samples) + len(val_samples)} images decoded now, the rest reused"
            + (f"; {cached_train.removed + cached_val.removed} stale entries removed" if cached_train.removed + cached_val.removed else ""))
    if data.pipeline == "cpu":
        pin = device.type == "cuda"
        return (
            LoaderBatches(train_samples, preprocessing, roi, cached=cached_train, num_workers=data.num_workers, pin_memory=pin,
                          skip_bad=data.skip_bad, robustness=data.robustness()),
            LoaderBatches(val_samples, preprocessing, None, cached=cached_val, num_workers=data.num_workers, pin_memory=pin,
                          skip_bad=data.skip_bad),
        )
    train, val = (
        DeviceBatches(samples, preprocessing, region, device, cached=cached, num_workers=data.num_workers,
                      progress=progress, desc=f"load {name}", skip_bad=data.skip_bad)
        for name, samples, region, cached in (("train", train_samples, roi, cached_train), ("val", val_samples, None, cached_val))
    )
    log(f"device pipeline: train {train.placement}; val {val.placement}")
    for name, source in (("train", train), ("val", val)):
        for message in source.skipped.values():
            log(f"warning: skipped an image of the {name} split that does not decode: {message}")
    return train, val
