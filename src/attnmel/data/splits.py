"""The samples a training run uses: its training and validation splits, read and checked up front.

A run reads its dataset once, takes (or carves) training and validation, and checks every image
header and end marker (and every mask the attention prior will read) before the first step, so a
truncated download fails in seconds instead of hours into the run.

Validation is the dataset's own split (``official``), a stratified random share of training
(``fraction``), or whole groups of training (``grouped``: every image of a lesion or patient, and
listed duplicates, on one side; scikit-learn's ``StratifiedGroupKFold``). ``fraction`` and
``grouped`` can also give fold K of N for cross-validation. The split is a pure function of the
seed and the dataset, and a run writes it to ``split.json`` (``SplitRecord``).
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

from attnmel.data.groups import group_labels, straddling, ungrouped
from attnmel.data.images import verify_image, verify_mask
from attnmel.data.masks import RoiSpec, has_region, region_paths
from attnmel.data.readers import read_dataset
from attnmel.data.records import GROUP_COLUMNS, DatasetIndex, Problem, Sample
from attnmel.errors import ConfigError, DataError
from attnmel.io import atomic_write_json

SPLIT_FILE = "split.json"


@dataclass(frozen=True)
class SplitRecord:
    """Which images a run trained and validated on, and how they were chosen (``split.json``)."""

    #: what was done: official, fraction or grouped ("auto" resolved)
    mode: str
    seed: int
    data: str
    layout: str
    task: str
    train_split: str
    val_split: str | None
    val_fraction: float | None
    group_by: str | None
    folds: int | None
    fold: int | None
    train: tuple[str, ...]
    val: tuple[str, ...]
    #: distinct groups on each side (grouped splits; listed duplicates merge groups)
    groups: dict[str, int] | None = None
    #: training images without a group value, each a group of its own
    ungrouped: int = 0

    def describe(self) -> dict[str, Any]:
        """Everything but the image lists (what a checkpoint's metadata keeps)."""
        out = self.to_dict()
        for key in ("train", "val", "data", "layout", "task"):
            out.pop(key)
        return out

    def to_dict(self) -> dict[str, Any]:
        out = {name: getattr(self, name) for name in self.__dataclass_fields__}
        out["train"], out["val"] = list(self.train), list(self.val)
        return out

    def write(self, path: str | Path) -> Path:
        atomic_write_json(path, self.to_dict())
        return Path(path)

    @classmethod
    def read(cls, path: str | Path) -> SplitRecord:
        path = Path(path)
        try:
            payload = json.loads(path.read_text(encoding="utf-8"))
            payload["train"], payload["val"] = tuple(payload["train"]), tuple(payload["val"])
            return cls(**payload)
        except FileNotFoundError:
            raise DataError(path, "no split record here.", "give a run folder trained by this attnmel version "
                                                           "(it writes split.json).") from None
        except (OSError, ValueError, TypeError, KeyError) as exc:
            raise DataError(path, f"not a split record ({exc}).", "restore the run's split.json.") from None


@dataclass
class TrainingData:
    index: DatasetIndex
    train: list[Sample]
    val: list[Sample]
    problems: list[Problem] = field(default_factory=list)
    split: SplitRecord | None = None

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
            **({"split": self.split.describe()} if self.split is not None else {}),
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
    split: str = "auto",
    group_by: str | None = None,
    folds: int | None = None,
    fold: int | None = None,
) -> TrainingData:
    """Read the dataset, pick (or carve) train and validation, and pre-flight every file."""
    index = read_dataset(data, task, layout=layout, skip_bad=skip_bad)
    train = index.split(train_split)
    # images left out of the task are one finding each in `data check`; a run logs one line per split
    problems = [p for p in index.problems if p.kind != "other_class"] + [
        Problem(index.root, "other_class", f"{name}: left out of task {index.task.name!r}: "
                                           + ", ".join(f"{cls} {n}" for cls, n in counts.items()))
        for name, counts in index.left_out.items()
    ]
    mode = split
    if mode == "auto":
        mode = "official" if val_split and val_split in index.splits else "fraction" if val_fraction or folds else ""
        if not mode:
            raise DataError(
                index.root,
                f"no validation split {val_split!r} (splits: {sorted(index.splits)}).",
                "set data.val_fraction (e.g. 0.1) to carve one from training, or data.val_split to an existing split.",
            )
    groups = None
    if mode == "official":
        if not val_split or val_split not in index.splits:
            raise DataError(index.root, f"data.split is 'official' but there is no validation split {val_split!r} "
                                        f"(splits: {sorted(index.splits)}).",
                            "set data.split to fraction or grouped to carve one from training.")
        val = index.split(val_split)
        problems += _official_leaks(index, train_split, train, val_split, val)
    else:
        if mode == "grouped":
            if group_by is None:
                raise ConfigError("data.split 'grouped' needs data.group_by (lesion_id or patient_id).")
            train_idx, val_idx, warned = grouped_split(index, train, group_by, val_fraction, folds, fold, seed)
            problems += warned
        else:
            train_idx, val_idx = fraction_split([s.label for s in train], val_fraction, folds, fold, seed)
        train, val = [train[i] for i in train_idx], [train[i] for i in val_idx]
    train, bad_train = preflight(train, skip_bad, roi)
    val, bad_val = preflight(val, skip_bad, None)
    problems += bad_train + bad_val
    if not train or not val:
        raise DataError(index.root, "training or validation split is empty after reading.", "check the dataset.")
    if mode == "grouped":
        labels = group_labels([*train, *val], group_by, index.duplicates)
        groups = {"train": len(set(labels[: len(train)].tolist())), "val": len(set(labels[len(train):].tolist()))}
    record = SplitRecord(
        mode=mode, seed=seed, data=str(index.root), layout=index.layout, task=index.task.name,
        train_split=train_split, val_split=val_split if mode == "official" else None,
        val_fraction=val_fraction if mode != "official" and not folds else None,
        group_by=group_by if mode == "grouped" else None, folds=folds if mode != "official" else None,
        fold=fold if mode != "official" and folds else None,
        train=tuple(s.image_id for s in train), val=tuple(s.image_id for s in val), groups=groups,
        ungrouped=ungrouped(train + val, group_by) if mode == "grouped" else 0,
    )
    return TrainingData(index, train, val, problems, record)


def fold_count(val_fraction: float | None, folds: int | None) -> int:
    """Folds to carve: ``folds`` when given, else the N whose one fold is nearest ``val_fraction``."""
    if folds:
        return folds
    if not val_fraction or not 0 < val_fraction < 1:
        raise ConfigError(f"data.val_fraction must be between 0 and 1 (or set data.folds), not {val_fraction}.")
    return max(2, round(1 / val_fraction))


def fraction_split(
    labels: Sequence[int], val_fraction: float | None, folds: int | None, fold: int | None, seed: int
) -> tuple[list[int], list[int]]:
    """A stratified random share of training, or fold ``fold`` of ``folds`` (scikit-learn's ``StratifiedKFold``)."""
    if not folds:
        return stratified_split(labels, val_fraction, seed)
    splitter = StratifiedKFold(folds, shuffle=True, random_state=seed % 2**32)
    try:
        train, val = list(splitter.split(np.zeros(len(labels)), labels))[fold or 0]
    except ValueError as exc:
        raise ConfigError(f"cannot make {folds} stratified folds of {len(labels)} images: {exc}") from None
    return sorted(train.tolist()), sorted(val.tolist())


def grouped_split(
    index: DatasetIndex,
    samples: list[Sample],
    group_by: str,
    val_fraction: float | None,
    folds: int | None,
    fold: int | None,
    seed: int,
) -> tuple[list[int], list[int], list[Problem]]:
    """Indices (train, val) of ``samples`` with every group on one side, stratified by class as far as
    the groups allow: fold ``fold`` (default 0) of ``StratifiedGroupKFold`` with ``fold_count`` folds.
    Listed duplicates (ISIC 2020) join their groups."""
    n_splits = fold_count(val_fraction, folds)
    if not any(group_by in s.groups for s in samples):
        raise DataError(index.root, f"no image of {index.layout} {samples[0].split if samples else ''} has a {group_by}.",
                        f"use a dataset that lists {group_by} (see README: Data), or data.split=fraction.")
    groups = group_labels(samples, group_by, index.duplicates)
    labels = np.array([s.label for s in samples])
    splitter = StratifiedGroupKFold(n_splits, shuffle=True, random_state=seed % 2**32)
    problems = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            train, val = list(splitter.split(np.zeros(len(samples)), labels, groups))[fold or 0]
        except ValueError as exc:
            raise DataError(index.root, f"cannot carve {n_splits} folds from {len(set(groups.tolist()))} {group_by} "
                                        f"groups ({exc}).", "use fewer folds or a larger data.val_fraction.") from None
    for warning in caught:
        problems.append(Problem(index.root, "split", f"grouped split: {warning.message}"))
    return sorted(train.tolist()), sorted(val.tolist()), problems


def _official_leaks(index: DatasetIndex, train_name: str, train: list[Sample], val_name: str,
                    val: list[Sample]) -> list[Problem]:
    """Warnings for lesions or patients that the dataset's own splits put on both sides."""
    problems = []
    for column in GROUP_COLUMNS:
        both = straddling({train_name: train, val_name: val}, column)
        if both:
            example = next(iter(both))
            problems.append(Problem(index.root, "leak", f"{len(both)} {column} groups have images in both {train_name} "
                                                        f"and {val_name} (e.g. {example}); validation metrics are "
                                                        "optimistic. data.split=grouped keeps groups together."))
    return problems


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


def stratified_split(labels: Sequence[int], fraction: float | None, seed: int) -> tuple[list[int], list[int]]:
    """Split indices into (train, val) with ``fraction`` of each class in val."""
    if fraction is None or not 0 < fraction < 1:
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
