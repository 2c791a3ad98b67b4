"""A CSV with ``image``, ``label`` and optional ``mask``, ``split``, ``image_id``, ``lesion_id``, ``patient_id``
columns (the file itself, or a folder holding ``manifest.csv``)."""

from __future__ import annotations

import math
from pathlib import Path

from attnmel.data.readers.common import Reading, ReadSplits, csv_rows, group_values
from attnmel.data.readers.registry import register_layout
from attnmel.data.records import Sample, Task
from attnmel.errors import DataError


def _detect(root: Path) -> bool:
    return root.suffix.lower() == ".csv" if root.is_file() else (root / "manifest.csv").is_file()


@register_layout("manifest", detect=_detect, sources=None, expects="a manifest.csv", priority=95)
def read_manifest(root: Path, task: Task, reading: Reading) -> ReadSplits:
    manifest = root if root.is_file() else root / "manifest.csv"
    base = manifest.parent
    header, rows = csv_rows(manifest)
    for column in ("image", "label"):
        if column not in header:
            raise DataError(manifest, f"missing column {column!r} (found {header}).", "columns: image,label[,mask,split,image_id].")
    splits: dict[str, list[Sample]] = {}
    seen: dict[str, Path] = {}
    for line, row in enumerate(rows, start=2):
        record = dict(zip(header, row, strict=False))
        image_path = _resolve(base, record["image"])
        image_id = record.get("image_id") or image_path.stem
        if image_id in seen:
            reading.bad(manifest, "duplicate_id", f"line {line}: image ID {image_id} appears twice.", "keep one row per image.")
            continue
        split = record.get("split") or "all"
        left_out = {name.lower(): name for name in task.left_out}
        if record["label"].strip().lower() in left_out:
            reading.leave_out(manifest, split, image_id, left_out[record["label"].strip().lower()], task)
            continue
        try:
            label = _manifest_label(record["label"], task, manifest, line)
        except DataError as exc:
            reading.bad(manifest, "bad_label", exc.problem, exc.fix)
            continue
        if label is None:
            reading.bad(manifest, "unlabelled_image", f"line {line}: {image_id} has no label.", "fill in the label column.")
            continue
        if not image_path.is_file():
            reading.bad(image_path, "missing_image", f"listed on line {line} of {manifest.name} but not found.", "fix the path or remove the row.")
            continue
        seen[image_id] = image_path
        mask = _resolve(base, record["mask"]) if record.get("mask") else None
        if mask is not None and not mask.is_file():
            reading.note(mask, "missing_mask", f"mask listed for {image_id} not found; treated as no mask.")
            mask = None
        splits.setdefault(split, []).append(Sample(image_id, image_path, label, split, mask, groups=group_values(record)))
    return splits


def _resolve(base: Path, value: str) -> Path:
    path = Path(value)
    return path if path.is_absolute() else base / path


def _manifest_label(value: str, task: Task, manifest: Path, line: int) -> int | None:
    text = value.strip().lower()
    if text in ("", "nan", "na", "n/a"):
        return None
    names = [n.lower() for n in task.class_names]
    if text in names:
        return names.index(text)
    if task.name == "melanoma" and text in ("benign", "malignant"):
        return int(text == "malignant")
    try:
        number = float(text)
    except ValueError:
        number = math.nan
    if number.is_integer() and 0 <= number < task.num_classes:
        return int(number)
    raise DataError(
        manifest,
        f"line {line}: label {value!r} is not one of 0..{task.num_classes - 1} or {list(task.class_names)}.",
        "fix the label column.",
    )
