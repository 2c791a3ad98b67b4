"""HAM10000, the Dataverse release of the ISIC 2018 images: ``HAM10000_metadata.csv`` (``dx`` in lower case),
``HAM10000_images_part_{1,2}/``, lesion masks in ``HAM10000_segmentations_lesion_tschandl/``."""

from __future__ import annotations

from pathlib import Path

from attnmel.data.readers.common import (
    Reading,
    ReadSplits,
    attribute_masks,
    class_labels,
    csv_rows,
    folder_names,
    group_values,
    image_files,
    lesion_masks,
    note_orphan_masks,
    pair_by_id,
    require_columns,
)
from attnmel.data.readers.registry import register_layout
from attnmel.data.records import ISIC2018_CLASSES, Task
from attnmel.errors import DataError


def _detect(root: Path) -> bool:
    return "HAM10000_metadata.csv" in folder_names(root)


# before isic2018: a HAM10000 folder may also hold ISIC 2018 files
@register_layout("ham10000", detect=_detect, sources=("isic2018",), expects="HAM10000_metadata.csv", priority=30)
def read_ham10000(root: Path, task: Task, reading: Reading) -> ReadSplits:
    """The Dataverse release: one metadata row per image (``dx`` in lower case), images in two parts."""
    metadata = root / "HAM10000_metadata.csv"
    header, rows = csv_rows(metadata)
    require_columns(metadata, header, ("image_id", "dx"), "use the HAM10000_metadata.csv of the Dataverse release.")
    folders = sorted(p for p in root.iterdir() if p.is_dir() and p.name.lower().startswith("ham10000_images"))
    if not folders:
        raise DataError(root, "no HAM10000_images_part_1/ or HAM10000_images_part_2/ next to HAM10000_metadata.csv.",
                        "unpack the two image archives into the dataset folder.")
    images: dict[str, Path] = {}
    for folder in folders:
        for image_id, path in image_files(folder, reading).items():
            if image_id in images:
                reading.bad(path, "duplicate_id", f"image ID {image_id} is in {images[image_id].parent.name} and "
                                                  f"{folder.name}.", "keep one file per ID.")
                continue
            images[image_id] = path
    classes = {name.lower(): name for name in ISIC2018_CLASSES}
    parsed, unusable, groups = [], set(), {}
    for row in rows:
        record = dict(zip(header, row, strict=False))
        image_id, dx = record["image_id"], (record.get("dx") or "").lower()
        if dx not in classes:
            unusable.add(image_id)
            reading.bad(metadata, "bad_label", f"diagnosis (dx) of {image_id} is {record.get('dx')!r}, not one of "
                                               f"{sorted(classes)}.", "use the official HAM10000 metadata.")
            continue
        parsed.append((image_id, classes[dx], dx == "mel"))
        groups[image_id] = group_values(record)
    labels, left_out = class_labels(metadata, "train", parsed, task, reading)
    masks = lesion_masks(root)
    splits = {"train": pair_by_id("train", labels, images, masks, reading, metadata, attribute_masks(root),
                             reported=frozenset(unusable | left_out), groups=groups, orphan_masks=False)}
    note_orphan_masks(masks, images, reading)
    return splits
