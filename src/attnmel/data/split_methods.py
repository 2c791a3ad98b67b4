"""The three ways a run carves validation from training: a stratified random share
(``stratified_split``), stratified folds (``fraction_split``), and whole groups (``grouped_split``:
every image of a lesion or patient, and listed duplicates, on one side; scikit-learn's
``StratifiedGroupKFold``). Each is a pure function of the seed, the labels and the groups.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import torch
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

from attnmel.data.groups import group_labels
from attnmel.data.records import DatasetIndex, Problem, Sample
from attnmel.errors import ConfigError, DataError


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

