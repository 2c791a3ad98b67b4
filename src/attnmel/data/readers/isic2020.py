"""ISIC 2020: ``ISIC_2020_Training_JPEG/train/`` (or ``train/``), ``ISIC_2020_Training_GroundTruth[_v2].csv``
with ``patient_id`` (and ``lesion_id``), and the listed duplicates."""

from __future__ import annotations

from pathlib import Path

from attnmel.data.readers.common import (
    Reading,
    ReadSplits,
    attribute_masks,
    class_labels,
    csv_rows,
    find_file,
    folder_names,
    group_values,
    image_files,
    lesion_masks,
    note_orphan_masks,
    pair_by_id,
    parse_flag,
    require_columns,
)
from attnmel.data.readers.registry import register_layout
from attnmel.data.records import Task
from attnmel.errors import DataError


def _detect(root: Path) -> bool:
    return any(n.startswith("ISIC_2020_") for n in folder_names(root))


@register_layout("isic2020", detect=_detect, sources=("isic2020",), expects="ISIC_2020_*", priority=60)
def read_isic2020(root: Path, task: Task, reading: Reading) -> ReadSplits:
    """``target`` is melanoma vs not; ``benign_malignant`` names the classes of ``isic2020-binary``.
    The corrected ``_v2`` ground truth (which adds ``lesion_id``) wins over the first release."""
    truth = find_file(root, "ISIC_2020_Training_GroundTruth_v2.csv") or find_file(
        root, "ISIC_2020_Training_GroundTruth.csv")
    if truth is None:
        raise DataError(root, "no ISIC_2020_Training_GroundTruth_v2.csv or ISIC_2020_Training_GroundTruth.csv.",
                        "download the ISIC 2020 training ground truth into the dataset folder.")
    folders = (root / "ISIC_2020_Training_JPEG" / "train", root / "train", root / "ISIC_2020_Training_JPEG")
    data = next((folder for folder in folders if folder.is_dir()), None)
    if data is None:
        raise DataError(root, "no ISIC_2020_Training_JPEG/train/ (or train/) images folder.",
                        "unpack ISIC_2020_Training_JPEG.zip into the dataset folder.")
    header, rows = csv_rows(truth)
    require_columns(truth, header, ("image_name", "target"), "use the official ISIC 2020 ground truth.")
    if task.source == "isic2020":
        require_columns(truth, header, ("benign_malignant",), f"task {task.name!r} names its classes by this column.")
    parsed, unusable, groups = [], set(), {}
    for row in rows:
        record = dict(zip(header, row, strict=False))
        image_id = record["image_name"]
        dataset_class = (record.get("benign_malignant") or "").lower()
        try:
            melanoma = parse_flag(record.get("target", ""), truth, image_id, "target")
            if task.source == "isic2020" and dataset_class not in ("benign", "malignant"):
                raise DataError(truth, f"benign_malignant of {image_id} is {record.get('benign_malignant')!r}.",
                                "use benign or malignant.")
        except DataError as exc:
            unusable.add(image_id)
            reading.bad(truth, "bad_label", exc.problem, exc.fix)
            continue
        parsed.append((image_id, dataset_class, melanoma))
        groups[image_id] = group_values(record)
    labels, left_out = class_labels(truth, "train", parsed, task, reading)
    masks = lesion_masks(root)
    images = image_files(data, reading)
    splits = {"train": pair_by_id("train", labels, images, masks, reading, truth,
                             attribute_masks(root), reported=frozenset(unusable | left_out), groups=groups,
                             orphan_masks=False)}
    note_orphan_masks(masks, images, reading)
    duplicates = find_file(root, "ISIC_2020_Training_Duplicates.csv")
    if duplicates is not None:
        header, rows = csv_rows(duplicates)
        require_columns(duplicates, header, ("image_name_1", "image_name_2"), "use the official duplicates list.")
        for row in rows:
            record = dict(zip(header, row, strict=False))
            if record.get("image_name_1") and record.get("image_name_2"):
                reading.duplicates.append((record["image_name_1"], record["image_name_2"]))
    return splits
