"""ISBI 2016: ``ISBI2016_ISIC_Part3_{Training,Test}_Data/``, header-less Part 3 CSVs with
``benign``/``malignant`` or ``0``/``1``, Part 1 ``<id>_Segmentation.png`` masks."""

from __future__ import annotations

from pathlib import Path

from attnmel.data.readers.common import (
    ISIC_ID_PATTERN,
    Reading,
    ReadSplits,
    csv_rows,
    folder_names,
    image_files,
    label_table,
    masks_by_suffix,
    pair_by_id,
    parse_flag,
)
from attnmel.data.readers.registry import register_layout
from attnmel.data.records import Task
from attnmel.errors import DataError

ISIC2016_SPLITS = {"Training": "train", "Test": "test"}


def _detect(root: Path) -> bool:
    return any(n.startswith("ISBI2016_ISIC_Part3_") and n.endswith("_Data") for n in folder_names(root))


@register_layout("isic2016", detect=_detect, sources=("isic2017",), expects="ISBI2016_ISIC_Part3_*_Data/", priority=20)
def read_isic2016(root: Path, task: Task, reading: Reading) -> ReadSplits:
    splits: ReadSplits = {}
    for official, split in ISIC2016_SPLITS.items():
        data = root / f"ISBI2016_ISIC_Part3_{official}_Data"
        if not data.is_dir():
            continue
        truth = root / f"ISBI2016_ISIC_Part3_{official}_GroundTruth.csv"
        if not truth.is_file():
            raise DataError(truth, "ground-truth CSV is missing for this split.", "download the Part 3 ground truth.")
        _, rows = csv_rows(truth, header=False)
        if rows and rows[0] and not ISIC_ID_PATTERN.match(rows[0][0]):
            rows = rows[1:]  # tolerate a header row added by hand
        parsed = []
        unusable: set[str] = set()
        for row in rows:
            try:
                if len(row) < 2:
                    raise DataError(truth, f"row {row} has no label column.", "rows are: ISIC_ID,label.")
                parsed.append((row[0], parse_flag(row[1], truth, row[0], "label"), None))
            except DataError as exc:
                unusable.add(row[0])
                reading.bad(truth, "bad_label", exc.problem, exc.fix)
        labels = label_table(truth, parsed, task, reading)
        images = image_files(data, reading)
        masks = masks_by_suffix(root / f"ISBI2016_ISIC_Part1_{official}_GroundTruth", "_Segmentation.png")
        splits[split] = pair_by_id(split, labels, images, masks, reading, truth, reported=frozenset(unusable))
    return splits
