"""The samples a training run uses: its training and validation splits, read and checked up front
(``prepare_data``), and the record of them a run writes (``SplitRecord``, ``split.json``).

``prepare_data`` puts the data package's parts together: the run's datasets and their held-out
shares (``sources``), validation as the dataset's own split (``official``) or carved by a split
method (``split_methods``: ``fraction``, ``grouped``, fold K of N for cross-validation), the one leak
detector (``leaks``), the header checks (``preflight``) and the fingerprints (``fingerprints``). The
split is a pure function of the seed and the dataset.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from attnmel.data.fingerprints import fingerprint, learned_fingerprints
from attnmel.data.groups import group_labels, ungrouped
from attnmel.data.leaks import near_identical_pairs, official_leaks, refuse_leaks
from attnmel.data.masks import RoiSpec, has_region
from attnmel.data.preflight import preflight
from attnmel.data.readers import read_dataset
from attnmel.data.records import DatasetIndex, Problem, Sample
from attnmel.data.sources import DataSource, SplitSpec, data_sources, extra_training, hold_out
from attnmel.data.split_methods import fraction_split, grouped_split
from attnmel.errors import ConfigError, DataError
from attnmel.io import atomic_write_json

SPLIT_FILE = "split.json"


@dataclass(frozen=True)
class DatasetShare:
    """What one dataset gave a run (``split.json``'s ``datasets``)."""

    name: str
    root: str
    layout: str
    train: int
    val: int
    held_out: int
    #: images per class on the training side
    classes: dict[str, int]


@dataclass(frozen=True)
class SplitRecord:
    """Which images a run trained and validated on, and how they were chosen (``split.json``).

    Images of a dataset other than the first are listed as ``name/image_id``. ``fingerprints``
    hashes every side's IDs with the bytes of their files, and ``learned`` what else of each image
    changes what a run learns or selects on (``LEARNED``: its label, the dataset it came from, the
    masks the attention prior reads), so a resumed run can tell it is reading the data it started
    with, relabelled ground truth included. A record from before ``learned`` has none: what it
    cannot tell is said, not taken as the same (``training.loop.check_same_data``)."""

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
    #: every dataset of the run, the first giving validation
    datasets: tuple[DatasetShare, ...] = ()
    #: images of training datasets kept out of training (``data.held_out``)
    held_out: tuple[str, ...] = ()
    #: side -> sha256 of its sorted "ID file-sha256" lines
    fingerprints: dict[str, str] = field(default_factory=dict)
    #: side -> what (``LEARNED``) -> sha256 of its sorted "ID value" lines (``learned_fingerprints``)
    learned: dict[str, dict[str, str]] = field(default_factory=dict)
    #: training images left out because they are the same photograph as (or share a lesion with)
    #: an image the run is judged on (``data.leaks=drop``), one line each
    dropped: tuple[str, ...] = ()

    def describe(self) -> dict[str, Any]:
        """Everything but the image lists (what a checkpoint's metadata keeps)."""
        out = self.to_dict()
        for key in ("train", "val", "held_out", "data", "layout", "task"):
            out.pop(key)
        return out

    def to_dict(self) -> dict[str, Any]:
        out = {name: getattr(self, name) for name in self.__dataclass_fields__}
        out["train"], out["val"], out["held_out"] = list(self.train), list(self.val), list(self.held_out)
        out["dropped"] = list(self.dropped)
        out["datasets"] = [dataclasses.asdict(share) for share in self.datasets]
        return out

    def write(self, path: str | Path) -> Path:
        atomic_write_json(path, self.to_dict())
        return Path(path)

    @classmethod
    def read(cls, path: str | Path) -> SplitRecord:
        path = Path(path)
        try:
            payload = json.loads(path.read_text(encoding="utf-8"))
            for key in ("train", "val", "held_out", "dropped"):
                payload[key] = tuple(payload.get(key, ()))
            payload["datasets"] = tuple(DatasetShare(**share) for share in payload.get("datasets", ()))
            return cls(**payload)
        except FileNotFoundError:
            raise DataError(path, "no split record here.", "give a run folder trained by this attnmel version "
                                                           "(it writes split.json).") from None
        except (OSError, ValueError, TypeError, KeyError) as exc:
            raise DataError(path, f"not a split record ({exc}).", "restore the run's split.json.") from None

    def differences(self, other: SplitRecord) -> list[str]:
        """What differs between this run's images and ``other``'s, one phrase per side (empty: the same)."""
        out = []
        for side in sorted(set(self.fingerprints) | set(other.fingerprints)):
            if self.fingerprints.get(side) == other.fingerprints.get(side):
                continue
            mine, theirs = set(getattr(self, side, ())), set(getattr(other, side, ()))
            if mine != theirs:
                added, removed = sorted(theirs - mine), sorted(mine - theirs)
                example = (added or removed)[0]
                out.append(f"{side}: {len(added)} images added and {len(removed)} removed (e.g. {example})")
            else:
                out.append(f"{side}: the same image IDs, but the content of some files changed")
        for side in sorted(set(self.learned) & set(other.learned)):
            if self.fingerprints.get(side) != other.fingerprints.get(side):
                continue  # said above
            mine, theirs = self.learned[side], other.learned[side]
            changed = [what for what in sorted(set(mine) | set(theirs)) if mine.get(what) != theirs.get(what)]
            if changed:
                out.append(f"{side}: the same images, but their {' and '.join(changed)} changed")
        return out


@dataclass
class TrainingData:
    index: DatasetIndex
    train: list[Sample]
    val: list[Sample]
    problems: list[Problem] = field(default_factory=list)
    split: SplitRecord | None = None
    #: images of training datasets kept out of training for a check on unseen images
    held_out: list[Sample] = field(default_factory=list)
    #: the run's datasets, the first giving validation
    sources: list[DataSource] = field(default_factory=list)

    def summary(self, roi: RoiSpec | None) -> dict[str, Any]:
        names = self.index.task.class_names

        def describe(samples: list[Sample]) -> dict[str, Any]:
            counts = np.bincount([s.label for s in samples], minlength=len(names))
            out = {"images": len(samples), "classes": dict(zip(names, counts.tolist(), strict=True))}
            if roi is not None:
                out["with_prior"] = sum(has_region(s, roi) for s in samples)
            return out

        out = {
            "root": str(self.index.root),
            "layout": self.index.layout,
            "task": self.index.task.name,
            "train": describe(self.train),
            "val": describe(self.val),
            "skipped": sum(problem.kind != "leak" for problem in self.problems),
            "dropped": sum(problem.kind == "leak" for problem in self.problems),
            **({"split": self.split.describe()} if self.split is not None else {}),
        }
        if len(self.sources) > 1:
            out["datasets"] = {source.name: {"root": str(source.path), "train": describe(
                [s for s in self.train if s.dataset == source.name])} for source in self.sources}
        if self.held_out:
            out["held_out"] = describe(self.held_out)
        return out


def prepare_data(data: str | Path | Sequence[str | Path] | Mapping[str, str | Path], spec: SplitSpec,
                 *, check_duplicates: bool = True, workers: int | None = None) -> TrainingData:
    """Read every dataset, pick (or carve) train and validation from the first, add the other
    datasets' training images (less what ``spec.held_out`` keeps back), refuse a run whose
    training images are the same photographs as its validation or test images, and pre-flight
    every file."""
    sources = data_sources(data)
    mode, index, train, val, problems = _primary_split(sources[0], spec)
    held_out: list[Sample] = []
    layouts = {sources[0].name: index.layout}
    for source in sources[1:]:
        extra, kept_back, found, layouts[source.name] = extra_training(source, spec)
        train, held_out, problems = train + extra, held_out + kept_back, problems + found
    if sources[0].name in dict(spec.held_out):
        train, kept_back, found = hold_out(train, sources[0].name, dict(spec.held_out)[sources[0].name], spec)
        held_out, problems = held_out + kept_back, problems + found
    unknown = sorted(set(dict(spec.held_out)) - {source.name for source in sources})
    if unknown:
        raise ConfigError(f"data.held_out names {unknown}, which is not a dataset of this run "
                          f"({[source.name for source in sources]}).")
    test = index.splits.get("test", []) if len(sources) > 1 else []
    dropped: list[str] = []
    if len(sources) > 1 or held_out:
        judged = {"validation": val, "test": test, "held-out": held_out}
        train, dropped = refuse_leaks(train, judged, spec.leaks, check_duplicates, workers)
        problems += [Problem(None, "leak", f"dropped from training: {line}") for line in dropped]
    train, bad_train = preflight(train, spec.skip_bad, spec.roi)
    val, bad_val = preflight(val, spec.skip_bad, None)
    held_out, bad_held = preflight(held_out, spec.skip_bad, None)
    problems += bad_train + bad_val + bad_held
    if not train or not val:
        raise DataError(index.root, "training or validation split is empty after reading.", "check the dataset.")
    record = dataclasses.replace(_split_record(mode, index, spec, sources, layouts, train, val, held_out),
                                 dropped=tuple(dropped))
    return TrainingData(index, train, val, problems, record, held_out, sources)


def _primary_split(source: DataSource, spec: SplitSpec):
    """(mode, index, train, val, problems) of the dataset that gives validation."""
    index = read_dataset(source.path, spec.task, layout=spec.layout, skip_bad=spec.skip_bad)
    train = [dataclasses.replace(s, dataset=source.name) for s in index.split(spec.train_split)]
    # images left out of the task are one finding each in `data check`; a run logs one line per split
    problems = [p for p in index.problems if p.kind != "other_class"] + [
        Problem(index.root, "other_class", f"{name}: left out of task {index.task.name!r}: "
                                           + ", ".join(f"{cls} {n}" for cls, n in counts.items()))
        for name, counts in index.left_out.items()
    ]
    mode = spec.split
    if mode == "auto":
        mode = ("official" if spec.val_split and spec.val_split in index.splits
                else "fraction" if spec.val_fraction or spec.folds else "")
        if not mode:
            raise DataError(
                index.root,
                f"no validation split {spec.val_split!r} (splits: {sorted(index.splits)}).",
                "set data.val_fraction (e.g. 0.1) to carve one from training, or data.val_split to an existing split.",
            )
    if mode == "official":
        if not spec.val_split or spec.val_split not in index.splits:
            raise DataError(index.root, f"data.split is 'official' but there is no validation split {spec.val_split!r} "
                                        f"(splits: {sorted(index.splits)}).",
                            "set data.split to fraction or grouped to carve one from training.")
        val = [dataclasses.replace(s, dataset=source.name) for s in index.split(spec.val_split)]
        problems += official_leaks(index, spec.train_split, train, spec.val_split, val)
        return mode, index, train, val, problems
    if mode == "grouped":
        if spec.group_by is None:
            raise ConfigError("data.split 'grouped' needs data.group_by (lesion_id, patient_id or photograph).")
        if spec.group_by == "photograph":
            # near-identical photographs join the dataset's listed duplicates: one side, and counted as one group
            index = dataclasses.replace(index, duplicates=[*index.duplicates, *near_identical_pairs(train)])
        train_idx, val_idx, warned = grouped_split(index, train, spec.group_by, spec.val_fraction, spec.folds,
                                                   spec.fold, spec.seed)
        problems += warned
    else:
        train_idx, val_idx = fraction_split([s.label for s in train], spec.val_fraction, spec.folds, spec.fold, spec.seed)
    return mode, index, [train[i] for i in train_idx], [train[i] for i in val_idx], problems


def _split_record(mode: str, index: DatasetIndex, spec: SplitSpec, sources: list[DataSource], layouts: dict[str, str],
                  train: list[Sample], val: list[Sample], held_out: list[Sample]) -> SplitRecord:
    primary = sources[0].name

    def key(sample: Sample) -> str:
        return sample.image_id if sample.dataset in (None, primary) else f"{sample.dataset}/{sample.image_id}"

    groups = None
    if mode == "grouped":
        labels = group_labels([*train, *val], spec.group_by, index.duplicates)
        groups = {"train": len(set(labels[: len(train)].tolist())), "val": len(set(labels[len(train):].tolist()))}
    names = index.task.class_names
    shares = tuple(
        DatasetShare(source.name, str(source.path), layouts[source.name],
                     sum(s.dataset == source.name for s in train), sum(s.dataset == source.name for s in val),
                     sum(s.dataset == source.name for s in held_out),
                     {cls: sum(s.dataset == source.name and s.label == i for s in train) for i, cls in enumerate(names)})
        for source in sources
    ) if len(sources) > 1 or held_out else ()
    return SplitRecord(
        mode=mode, seed=spec.seed, data=str(index.root), layout=index.layout, task=index.task.name,
        train_split=spec.train_split, val_split=spec.val_split if mode == "official" else None,
        val_fraction=spec.val_fraction if mode != "official" and not spec.folds else None,
        group_by=spec.group_by if mode == "grouped" else None, folds=spec.folds if mode != "official" else None,
        fold=spec.fold if mode != "official" and spec.folds else None,
        train=tuple(key(s) for s in train), val=tuple(key(s) for s in val), groups=groups,
        ungrouped=ungrouped(train + val, spec.group_by) if mode == "grouped" else 0,
        datasets=shares, held_out=tuple(key(s) for s in held_out),
        fingerprints={side: fingerprint(samples, key) for side, samples in
                      (("train", train), ("val", val), ("held_out", held_out)) if samples},
        learned={side: learned_fingerprints(samples, key, spec.roi) for side, samples in
                 (("train", train), ("val", val), ("held_out", held_out)) if samples},
    )

