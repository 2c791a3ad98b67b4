"""The samples a training run uses: its training and validation splits, read and checked up front.

A run reads its dataset once, takes (or carves) training and validation, and checks every image
header and end marker (and every mask the attention prior will read) before the first step, so a
truncated download fails in seconds instead of hours into the run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from attnmel.data.images import verify_image, verify_mask
from attnmel.data.masks import RoiSpec, has_region, region_paths
from attnmel.data.readers import read_dataset
from attnmel.data.records import DatasetIndex, Problem, Sample
from attnmel.errors import ConfigError, DataError


@dataclass
class TrainingData:
    index: DatasetIndex
    train: list[Sample]
    val: list[Sample]
    problems: list[Problem] = field(default_factory=list)

    def summary(self, roi: RoiSpec | None) -> dict[str, Any]:
        names = self.index.task.class_names

        def describe(samples: list[Sample]) -> dict[str, Any]:
            counts = np.bincount([s.label for s in samples], minlength=len(names))
            out = {"images": len(samples), "classes": dict(zip(names, counts.tolist(), strict=True))}
            if roi is not None:
                out["with_prior"] = sum(has_region(s, roi) for s in samples)
            return out

        return {
            "root": str(self.index.root),
            "layout": self.index.layout,
            "task": self.index.task.name,
            "train": describe(self.train),
            "val": describe(self.val),
            "skipped": len(self.problems),
        }


def prepare_data(
    data: str | Path,
    *,
    task: str = "melanoma",
    layout: str | None = None,
    train_split: str = "train",
    val_split: str | None = "val",
    val_fraction: float | None = None,
    seed: int = 0,
    skip_bad: bool = False,
    roi: RoiSpec | None = None,
) -> TrainingData:
    """Read the dataset, pick (or carve, stratified) train and validation, and pre-flight every file."""
    index = read_dataset(data, task, layout=layout, skip_bad=skip_bad)
    train = index.split(train_split)
    if val_split and val_split in index.splits:
        val = index.split(val_split)
    elif val_fraction:
        train_idx, val_idx = stratified_split([s.label for s in train], val_fraction, seed)
        train, val = [train[i] for i in train_idx], [train[i] for i in val_idx]
    else:
        raise DataError(
            index.root,
            f"no validation split {val_split!r} (splits: {sorted(index.splits)}).",
            "set data.val_fraction (e.g. 0.1) to carve one from training, or data.val_split to an existing split.",
        )
    problems = list(index.problems)
    train, bad_train = preflight(train, skip_bad, roi)
    val, bad_val = preflight(val, skip_bad, None)
    problems += bad_train + bad_val
    if not train or not val:
        raise DataError(index.root, "training or validation split is empty after reading.", "check the dataset.")
    return TrainingData(index, train, val, problems)


def preflight(samples: list[Sample], skip_bad: bool, roi: RoiSpec | None) -> tuple[list[Sample], list[Problem]]:
    """Check every image's (and needed mask's) header and end, which is cheap; with ``skip_bad``
    the bad ones are left out and returned as problems instead of raising."""
    good, bad = [], []
    for sample in samples:
        try:
            size = verify_image(sample.image_path)
            for mask in region_paths(sample, roi) if roi is not None else []:
                verify_mask(mask, size)
        except DataError as exc:
            if not skip_bad:
                raise
            bad.append(Problem(exc.path, "unreadable_image", f"{exc.problem} (skipped)"))
            continue
        good.append(sample)
    return good, bad


def stratified_split(labels: Sequence[int], fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Split indices into (train, val) with ``fraction`` of each class in val."""
    if not 0 < fraction < 1:
        raise ConfigError(f"data.val_fraction must be between 0 and 1, not {fraction}.")
    generator = torch.Generator().manual_seed(seed)
    train: list[int] = []
    val: list[int] = []
    for label in sorted(set(labels)):
        members = [i for i, value in enumerate(labels) if value == label]
        order = torch.randperm(len(members), generator=generator).tolist()
        n_val = max(1, round(fraction * len(members))) if len(members) > 1 else 0
        val.extend(members[i] for i in order[:n_val])
        train.extend(members[i] for i in order[n_val:])
    return sorted(train), sorted(val)
