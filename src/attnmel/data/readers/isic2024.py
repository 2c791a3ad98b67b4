"""ISIC 2024 Challenge (SLICE-3D), the Kaggle release: ``train-image.hdf5`` (one dataset per ``isic_id``
holding the encoded JPEG) and/or ``train-image/image/<isic_id>.jpg``, ``train-metadata.csv`` (``isic_id``,
``target``, ``patient_id``, ``lesion_id`` where known, ``iddx_full``, the ``tbp_*`` columns, ...), and
``test-image.hdf5`` + ``test-metadata.csv`` without labels (left out and noted).

The images are ~130 px crops of 3D total-body photographs, not dermoscopy: the layout's modality says
so, and ``data check`` repeats it. ``target`` is malignant (melanoma, basal and squamous cell carcinoma)
vs benign, task ``isic2024-binary``; task ``melanoma`` reads melanoma from ``iddx_full``. ``patient_id``
and ``lesion_id`` are kept as groups, so grouped splits and folds keep a patient's lesions together.
The HDF5 file is read lazily, one entry at a time (``attnmel.data.hdf5``): nothing is extracted.
"""

from __future__ import annotations

import csv
from pathlib import Path

from attnmel.data.hdf5 import entry_keys
from attnmel.data.readers.common import (
    Reading,
    ReadSplits,
    class_labels,
    csv_rows,
    find_file,
    group_values,
    image_files,
    pair_by_id,
    parse_flag,
)
from attnmel.data.readers.registry import register_layout
from attnmel.data.records import GROUP_COLUMNS, Task
from attnmel.errors import DataError

METADATA = "train-metadata.csv"
MODALITY = "3D total-body photography crops (~130 px), not dermoscopy"


def _detect(root: Path) -> bool:
    return root.is_dir() and find_file(root, METADATA) is not None


@register_layout("isic2024", detect=_detect, sources=("isic2024",), expects="train-metadata.csv (ISIC 2024)",
                 priority=70, modality=MODALITY)
def read_isic2024(root: Path, task: Task, reading: Reading) -> ReadSplits:
    metadata = find_file(root, METADATA)
    if metadata is None:
        raise DataError(root, f"no {METADATA}, so no labels.", "download train-metadata.csv into the dataset folder.")
    base = metadata.parent
    present = _header(metadata)
    groups = [column for column in GROUP_COLUMNS if column in present]
    diagnosis = ["iddx_full"] if task.source is None else []
    if diagnosis and "iddx_full" not in present:
        raise DataError(metadata, "task 'melanoma' reads melanoma from iddx_full, which this file does not have.",
                        "use task 'isic2024-binary' (target: malignant vs benign).")
    _, rows = csv_rows(metadata, keep=["isic_id", "target", *diagnosis, *groups])
    parsed, unusable, groups_by_id = [], set(), {}
    for image_id, target, *rest in rows:
        try:
            malignant = parse_flag(target, metadata, image_id, "target")
        except DataError as exc:
            unusable.add(image_id)
            reading.bad(metadata, "bad_label", exc.problem, exc.fix)
            continue
        melanoma = "melanoma" in rest[0].lower() if diagnosis else malignant
        parsed.append((image_id, "malignant" if malignant else "benign", melanoma))
        groups_by_id[image_id] = group_values(dict(zip(groups, rest[len(diagnosis):], strict=True)))
    labels, left_out = class_labels(metadata, "train", parsed, task, reading)
    samples = pair_by_id("train", labels, _images(base, "train", reading), {}, reading, metadata,
                         reported=frozenset(unusable | left_out), groups=groups_by_id)
    if any((base / name).exists() for name in ("test-metadata.csv", "test-image.hdf5", "test-image")):
        reading.note(base, "partial_split", "the test images have no labels (test-metadata.csv has no target); "
                                            "split left out.")
    return {"train": samples}


def _header(path: Path) -> list[str]:
    with open(path, encoding="utf-8-sig", newline="") as handle:
        return [name.strip() for name in next(csv.reader([handle.readline()]), [])]


def _images(base: Path, split: str, reading: Reading) -> dict[str, Path]:
    """ID -> image: entries of ``<split>-image.hdf5`` (as ``<file>/<key>`` paths), else ``<split>-image/image/*.jpg``."""
    container = base / f"{split}-image.hdf5"
    if container.is_file():
        return {key: container / key for key in entry_keys(container)}
    folder = base / f"{split}-image" / "image"
    if not folder.is_dir():
        raise DataError(base, f"no {split}-image.hdf5 nor {split}-image/image/ beside {METADATA}.",
                        "download train-image.hdf5 (or the JPEG folder) of the ISIC 2024 release.")
    return image_files(folder, reading)
