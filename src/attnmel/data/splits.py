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

import dataclasses
import hashlib
import json
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

from attnmel.arguments import check_path_name
from attnmel.data.groups import group_labels, straddling, ungrouped
from attnmel.data.images import verify_image, verify_mask
from attnmel.data.masks import RoiSpec, has_region, region_paths
from attnmel.data.readers import read_dataset
from attnmel.data.records import GROUP_COLUMNS, SPLIT_JOINER, DatasetIndex, Problem, Sample, get_task
from attnmel.errors import ConfigError, DataError
from attnmel.io import atomic_write_json, file_sha256

SPLIT_FILE = "split.json"


@dataclass(frozen=True)
class SplitSpec:
    """Which images a run reads and how it picks validation (``DataConfig.split_spec()``); with
    several datasets, the first one gives validation and every one gives its ``train_split``."""

    task: str = "melanoma"
    #: layout of the first dataset (the others are detected)
    layout: str | None = None
    train_split: str = "train"
    val_split: str | None = "val"
    val_fraction: float | None = None
    split: str = "auto"
    group_by: str | None = None
    folds: int | None = None
    fold: int | None = None
    seed: int = 0
    skip_bad: bool = False
    roi: RoiSpec | None = None
    #: dataset name -> share of its training images kept out of training (whole groups)
    held_out: tuple[tuple[str, float], ...] = ()
    #: a training image that is the same photograph as one judged on: "refuse" the run, or "drop"
    #: it from training (said one line per image, listed in split.json)
    leaks: str = "refuse"


@dataclass(frozen=True)
class DataSource:
    """One dataset of a run: the name reports use and the folder (or manifest) as downloaded."""

    name: str
    path: Path


def data_sources(data: str | Path | Sequence[str | Path] | Mapping[str, str | Path],
                 numbered: bool = False) -> list[DataSource]:
    """``data`` as named datasets: a mapping keeps its names, ``NAME=PATH`` names itself, and a bare
    path is named after its folder (or manifest file), what ``--data`` repeated gives. Two datasets of
    one name are an error (a run's weights and held-out shares name them), or with ``numbered`` the
    second becomes ``name-2`` (an evaluation's table rows)."""
    if isinstance(data, Mapping):
        items = [(str(name), Path(path)) for name, path in data.items()]
    else:
        items = []
        for entry in [data] if isinstance(data, str | Path) else list(data):
            text = str(entry)
            name, sep, path = text.partition("=")
            if not (sep and name and "/" not in name and not Path(text).exists()):
                path = text
                name = (Path(text).stem if Path(text).is_file() else Path(text).resolve().name) or "dataset"
            items.append((name, Path(path)))
    if not items:
        raise ConfigError("no dataset given; pass --data PATH (repeat it, or NAME=PATH, for several).")
    sources: list[DataSource] = []
    taken: set[str] = set()
    for name, path in items:
        # the name becomes a folder (external validation) and part of split.json's keys: never '..' or 'a/b'
        check_path_name(name, f"dataset name (of {path})", "name the dataset with --data NAME=PATH, NAME a plain "
                                                           "name (letters, digits, - _ .)")
        base, k = name, 2
        while name in taken:
            if not numbered:
                raise ConfigError(f"two datasets are both called {base!r}; name them with --data NAME=PATH.")
            name, k = f"{base}-{k}", k + 1
        taken.add(name)
        sources.append(DataSource(name, path))
    return sources


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
    hashes every side's IDs with the bytes of their files, so a resumed run can tell it is reading
    the data it started with."""

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
        extra, kept_back, found, layouts[source.name] = _extra_training(source, spec)
        train, held_out, problems = train + extra, held_out + kept_back, problems + found
    if sources[0].name in dict(spec.held_out):
        train, kept_back, found = _hold_out(train, sources[0].name, dict(spec.held_out)[sources[0].name], spec)
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
        problems += _official_leaks(index, spec.train_split, train, spec.val_split, val)
        return mode, index, train, val, problems
    if mode == "grouped":
        if spec.group_by is None:
            raise ConfigError("data.split 'grouped' needs data.group_by (lesion_id, patient_id or photograph).")
        if spec.group_by == "photograph":
            from attnmel.data.integrity import near_identical_pairs

            # near-identical photographs join the dataset's listed duplicates: one side, and counted as one group
            index = dataclasses.replace(index, duplicates=[*index.duplicates, *near_identical_pairs(train)])
        train_idx, val_idx, warned = grouped_split(index, train, spec.group_by, spec.val_fraction, spec.folds,
                                                   spec.fold, spec.seed)
        problems += warned
    else:
        train_idx, val_idx = fraction_split([s.label for s in train], spec.val_fraction, spec.folds, spec.fold, spec.seed)
    return mode, index, [train[i] for i in train_idx], [train[i] for i in val_idx], problems


def _extra_training(source: DataSource, spec: SplitSpec) -> tuple[list[Sample], list[Sample], list[Problem], str]:
    """The training images of a dataset other than the first (less its held-out share)."""
    index = read_dataset(source.path, spec.task, skip_bad=spec.skip_bad)
    # a pooled split (train+val) takes the parts this dataset has: HAM10000 has one split, ISIC 2017 two
    parts = [part for part in spec.train_split.split(SPLIT_JOINER) if part in index.splits]
    if not parts:
        raise DataError(index.root, f"dataset {source.name!r} has no split {spec.train_split!r} to train on "
                                    f"(it has {sorted(index.splits)}).",
                        "give a dataset with a training split, or set data.train_split.")
    samples = [dataclasses.replace(s, dataset=source.name) for s in index.split(SPLIT_JOINER.join(parts))]
    problems = [p for p in index.problems if p.kind != "other_class"]
    share = dict(spec.held_out).get(source.name)
    if share is None:
        return samples, [], problems, index.layout
    kept, held, found = _hold_out(samples, source.name, share, spec)
    return kept, held, problems + found, index.layout


def held_out_images(source: DataSource, spec: SplitSpec) -> list[Sample]:
    """The images of ``source`` that ``spec.held_out`` keeps out of training: a site's unseen lesions,
    the same whether or not a run trains on the rest of that dataset."""
    _, held, _, _ = _extra_training(source, spec)
    return held


def _hold_out(samples: list[Sample], name: str, share: float, spec: SplitSpec
              ) -> tuple[list[Sample], list[Sample], list[Problem]]:
    """(kept, held out, notes): ``share`` of ``name``'s images, whole lesions (else patients) at a time."""
    mine = [s for s in samples if s.dataset == name]
    others = [s for s in samples if s.dataset != name]
    column = next((c for c in GROUP_COLUMNS if any(c in s.groups for s in mine)), None)
    problems: list[Problem] = []
    if column is None:
        keep, held = stratified_split([s.label for s in mine], share, spec.seed)
    else:
        index = DatasetIndex(Path(name), name, get_task(spec.task), {"train": mine})
        keep, held, problems = grouped_split(index, mine, column, share, None, None, spec.seed)
    return others + [mine[i] for i in keep], [dataclasses.replace(mine[i], split="held_out") for i in held], problems


def refuse_leaks(train: list[Sample], evaluated: Mapping[str, Sequence[Sample]], leaks: str = "refuse",
                 check_duplicates: bool = True, workers: int | None = None) -> tuple[list[Sample], list[str]]:
    """Training images that share a lesion or patient, or the same (or near-identical) pixels, with an
    image the run is judged on: stop the run (one line per pair, then the fix), or with
    ``leaks="drop"`` leave them out of training. Returns (training images, one line per image dropped)."""
    found: list[tuple[Sample, str]] = []
    for side, samples in evaluated.items():
        for column in GROUP_COLUMNS:
            both = straddling({"train": train, side: samples}, column)
            for value, where in both.items():
                culprits = [s for s in train if s.groups.get(column) == value]
                found += [(s, f"{column} {value} is in training ({s.dataset}/{s.image_id}) and in {side} "
                              f"({', '.join(where[side][:3])})") for s in culprits]
    if check_duplicates:
        from attnmel.data.integrity import duplicate_pairs

        found += [(a, f"{how}: training {a.dataset}/{a.image_id} ({a.image_path}) = {b.dataset}/{b.image_id} "
                      f"({b.image_path})") for a, b, how in duplicate_pairs(train, evaluated, workers=workers)]
    if not found:
        return train, []
    lines = [line for _, line in found]
    if leaks == "drop":
        leaving = {id(sample) for sample, _ in found}
        return [s for s in train if id(s) not in leaving], lines
    shown = lines[:50] + ([f"... and {len(lines) - 50} more"] if len(lines) > 50 else [])
    raise DataError(None, "training images that are also judged on:\n  " + "\n  ".join(shown) + "\n",
                    "leave them out of training with --set data.leaks=drop, remove them from one side (attnmel "
                    "data check A B lists them all), or choose other datasets.")


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
    )


def fingerprint(samples: Sequence[Sample], key=lambda s: s.image_id) -> str:
    """sha256 over each image's key and the sha256 of its file's bytes, in key order."""
    lines = sorted(f"{key(s)} {_file_hash(s.image_path)}" for s in samples)
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def _file_hash(path: Path) -> str:
    try:
        return file_sha256(path)
    except OSError as exc:
        raise DataError(path, f"cannot read the image ({exc.strerror or exc}).", "check the file.") from None


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
    if group_by != "photograph" and not any(group_by in s.groups for s in samples):
        raise DataError(index.root, f"no image of {index.layout} {samples[0].split if samples else ''} has a {group_by}.",
                        f"use a dataset that lists {group_by} (see README: Data), data.group_by=photograph, "
                        "or data.split=fraction.")
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
