"""ISIC 2018 Task 3: ``ISIC2018_Task3_{Training,Validation,Test}_Input/``, one-hot
``ISIC2018_Task3_*_GroundTruth.csv``, ``ISIC2018_Task3_*_LesionGroupings.csv``; Task 1 lesion masks and Task 2
attribute masks are paired by ID wherever they are in the dataset folder. A split with images but no ground
truth (test sets whose labels came out later) is left out and noted."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from attnmel.data.readers.common import (
    Reading,
    ReadSplits,
    attribute_masks,
    class_labels,
    csv_rows,
    find_file,
    folder_names,
    group_table,
    image_files,
    image_ids_in,
    lesion_masks,
    note_orphan_masks,
    one_hot_classes,
    pair_by_id,
    split_present,
)
from attnmel.data.readers.registry import register_layout
from attnmel.data.records import ISIC2018_CLASSES, Task

ISIC2018_SPLITS = {"Training": "train", "Validation": "val", "Test": "test"}


def read_one_hot_release(
    root: Path, task: Task, reading: Reading, splits_by_name: dict[str, str], classes: Sequence[str], *,
    data: str, truth: str, groups: str, strip: tuple[str, ...] = (),
) -> ReadSplits:
    """A release with one-hot ground truth per split (ISIC 2018 Task 3, ISIC 2019): ``data``, ``truth`` and
    ``groups`` name each split's image folder, ground-truth CSV and lesion-groups CSV (``{split}`` filled in)."""
    masks, attributes = lesion_masks(root), attribute_masks(root)
    splits: ReadSplits = {}
    on_disk: set[str] = set()
    for official, split in splits_by_name.items():
        folder = root / data.format(split=official)
        on_disk |= image_ids_in(folder, strip)
        truth_file = find_file(root, truth.format(split=official))
        if not split_present(folder, truth_file, split, reading):
            continue
        header, rows = csv_rows(truth_file)
        parsed, unusable = one_hot_classes(truth_file, header, rows, classes, reading)
        labels, left_out = class_labels(truth_file, split, ((i, c, c == "MEL") for i, c in parsed), task, reading)
        groups_file = find_file(root, groups.format(split=official))
        groups_by_id = group_table(groups_file, "image") if groups_file is not None else {}
        images = image_files(folder, reading, strip=strip)
        splits[split] = pair_by_id(split, labels, images, masks, reading, truth_file, attributes,
                              reported=frozenset(unusable | left_out), groups=groups_by_id, orphan_masks=False)
    note_orphan_masks(masks, on_disk, reading)
    return splits


def _detect(root: Path) -> bool:
    return any(n.startswith("ISIC2018_Task3_") for n in folder_names(root))


@register_layout("isic2018", detect=_detect, sources=("isic2018",), expects="ISIC2018_Task3_*", priority=40)
def read_isic2018(root: Path, task: Task, reading: Reading) -> ReadSplits:
    return read_one_hot_release(
        root, task, reading, ISIC2018_SPLITS, ISIC2018_CLASSES, data="ISIC2018_Task3_{split}_Input",
        truth="ISIC2018_Task3_{split}_GroundTruth.csv", groups="ISIC2018_Task3_{split}_LesionGroupings.csv",
    )
