"""The datasets a run reads and what it asks of them: ``--data`` as named datasets (``data_sources``),
which split of each it trains on (``extra_training``), the share of each held out for a check on
unseen lesions, whole groups at a time (``hold_out``, ``held_out_images``), and how validation is
picked (``SplitSpec``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from attnmel.arguments import check_path_name
from attnmel.data.masks import RoiSpec
from attnmel.data.readers import read_dataset
from attnmel.data.records import GROUP_COLUMNS, SPLIT_JOINER, DatasetIndex, Problem, Sample, get_task
from attnmel.data.split_methods import grouped_split, stratified_split
from attnmel.errors import ConfigError, DataError


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


def extra_training(source: DataSource, spec: SplitSpec) -> tuple[list[Sample], list[Sample], list[Problem], str]:
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
    kept, held, found = hold_out(samples, source.name, share, spec)
    return kept, held, problems + found, index.layout


def held_out_images(source: DataSource, spec: SplitSpec) -> list[Sample]:
    """The images of ``source`` that ``spec.held_out`` keeps out of training: a site's unseen lesions,
    the same whether or not a run trains on the rest of that dataset."""
    _, held, _, _ = extra_training(source, spec)
    return held


def hold_out(samples: list[Sample], name: str, share: float, spec: SplitSpec
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

