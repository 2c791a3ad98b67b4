"""A folder written by ``isic image download`` (flat ``ISIC_*.jpg`` + ``metadata.csv``)."""

from __future__ import annotations

from pathlib import Path

from attnmel.data.readers.common import (
    Reading,
    ReadSplits,
    csv_rows,
    folder_names,
    image_files,
    label_table,
    masks_by_suffix,
    pair_by_id,
)
from attnmel.data.readers.registry import register_layout
from attnmel.data.records import Task
from attnmel.errors import DataError


def _detect(root: Path) -> bool:
    return "metadata.csv" in folder_names(root)


def _diagnosis_flags(record: dict[str, str]) -> tuple[bool | None, bool | None, bool]:
    """(melanoma, seborrheic keratosis, nevus) from isic-cli metadata; None where unknowable."""
    texts = [v.lower() for k, v in record.items() if k.startswith("diagnosis") and v]
    melanoma = any("melanoma" in t for t in texts)
    keratosis = any("seborrheic keratosis" in t or "seborrheic_keratosis" in t for t in texts)
    nevus = any("nevus" in t or "naevus" in t for t in texts)
    if not texts:
        benign_malignant = record.get("benign_malignant", "").lower()
        if benign_malignant == "benign":
            return False, None, False
        return None, None, False
    return melanoma, keratosis, nevus


# generic name: tried after every release-specific layout
@register_layout("isic-cli", detect=_detect, sources=("isic2017",), expects="an isic-cli folder with metadata.csv",
                 priority=90)
def read_isic_cli(root: Path, task: Task, reading: Reading) -> ReadSplits:
    metadata = root / "metadata.csv"
    header, rows = csv_rows(metadata)
    if "isic_id" not in header:
        raise DataError(metadata, f"missing column 'isic_id' (found {header}).", "use the metadata.csv isic-cli wrote.")
    if not any(c.startswith("diagnosis") or c == "benign_malignant" for c in header):
        raise DataError(metadata, "no diagnosis columns, so no labels.", "download with isic-cli's full metadata.")
    parsed = []
    left_out: set[str] = set()
    for row in rows:
        record = dict(zip(header, row, strict=False))
        image_id = record["isic_id"]
        melanoma, keratosis, nevus = _diagnosis_flags(record)
        if melanoma is None:
            left_out.add(image_id)
            reading.bad(metadata, "unlabelled_image", f"{image_id} has no diagnosis.", "drop it or add a diagnosis.")
            continue
        if task.name != "melanoma" and not (melanoma or keratosis or nevus):
            left_out.add(image_id)
            reading.leave_out(metadata, "all", image_id, "other diagnosis", task)
            continue
        parsed.append((image_id, melanoma, keratosis if keratosis is not None else False))
    labels = label_table(metadata, parsed, task, reading)
    masks = masks_by_suffix(root / "masks", "_segmentation.png")
    return {"all": pair_by_id("all", labels, image_files(root, reading), masks, reading, metadata, reported=frozenset(left_out))}
