"""ISIC 2017: ``ISIC-2017_{Training,Validation,Test_v2}_Data/``, ``*_Part1_GroundTruth/<id>_segmentation.png``,
``*_Part3_GroundTruth.csv``, optional Part 2 superpixel features and ISIC 2018 Task 2 attribute masks."""

from __future__ import annotations

from pathlib import Path

from attnmel.data.readers.common import (
    Reading,
    ReadSplits,
    attribute_masks,
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

ISIC2017_SPLITS = {"Training": "train", "Validation": "val", "Test_v2": "test", "Test": "test"}


def _detect(root: Path) -> bool:
    return any(n.startswith("ISIC-2017_") and n.endswith("_Data") for n in folder_names(root))


@register_layout("isic2017", detect=_detect, sources=("isic2017",), expects="ISIC-2017_*_Data/", priority=10)
def read_isic2017(root: Path, task: Task, reading: Reading) -> ReadSplits:
    attributes = attribute_masks(root)
    splits: ReadSplits = {}
    for official, split in ISIC2017_SPLITS.items():
        data = root / f"ISIC-2017_{official}_Data"
        if not data.is_dir() or split in splits:
            continue
        truth = root / f"ISIC-2017_{official}_Part3_GroundTruth.csv"
        if not truth.is_file():
            raise DataError(truth, "ground-truth CSV is missing for this split.", "download the Part 3 ground truth.")
        header, rows = csv_rows(truth)
        for column in ("image_id", "melanoma"):
            if column not in header:
                raise DataError(truth, f"missing column {column!r} (found {header}).", "use the official Part 3 file.")
        has_sk = "seborrheic_keratosis" in header
        parsed = []
        unusable: set[str] = set()
        for row in rows:
            record = dict(zip(header, row, strict=False))
            image_id = record["image_id"]
            try:
                melanoma = parse_flag(record.get("melanoma", ""), truth, image_id, "melanoma")
                keratosis = parse_flag(record.get("seborrheic_keratosis", ""), truth, image_id, "seborrheic_keratosis") \
                    if has_sk else None
            except DataError as exc:
                unusable.add(image_id)
                reading.bad(truth, "bad_label", exc.problem, exc.fix)
                continue
            parsed.append((image_id, melanoma, keratosis))
        labels = label_table(truth, parsed, task, reading)
        images = image_files(data, reading)
        masks = masks_by_suffix(root / f"ISIC-2017_{official}_Part1_GroundTruth", "_segmentation.png")
        part2 = root / f"ISIC-2017_{official}_Part2_GroundTruth"
        superpixels = {}
        if part2.is_dir():
            for features in sorted(part2.glob("*_features.json")):
                image_id = features.name[: -len("_features.json")]
                superpixel_png = data / f"{image_id}_superpixels.png"
                if superpixel_png.is_file():
                    superpixels[image_id] = (superpixel_png, features)
        splits[split] = pair_by_id(split, labels, images, masks, reading, truth, attributes, superpixels, frozenset(unusable))
    return splits
