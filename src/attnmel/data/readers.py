"""Readers for datasets as users download them: images and masks are paired by ISIC ID, never by position.

Layouts (detected from the folder, or named explicitly):
- ``isic2017``: the 2017 challenge release (``ISIC-2017_{Training,Validation,Test_v2}_Data/``,
  ``*_Part1_GroundTruth/<id>_segmentation.png``, ``*_Part3_GroundTruth.csv``, optional Part 2
  superpixel features and ISIC 2018 Task 2 attribute masks);
- ``isic2016``: the ISBI 2016 release (``ISBI2016_ISIC_Part3_{Training,Test}_Data/``, header-less
  Part 3 CSVs with ``benign``/``malignant`` or ``0``/``1``, Part 1 ``<id>_Segmentation.png`` masks);
- ``isic-cli``: a folder written by ``isic image download`` (flat ``ISIC_*.jpg`` + ``metadata.csv``);
- ``manifest``: a CSV with ``image``, ``label`` and optional ``mask``, ``split``, ``image_id`` columns.
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Literal, get_args

from attnmel.data.images import IMAGE_SUFFIXES
from attnmel.data.records import DatasetIndex, Problem, Sample, Task, get_task
from attnmel.errors import DataError

Layout = Literal["isic2017", "isic2016", "isic-cli", "manifest"]
LAYOUTS: tuple[str, ...] = get_args(Layout)
ISIC2017_SPLITS = {"Training": "train", "Validation": "val", "Test_v2": "test", "Test": "test"}
ISIC2016_SPLITS = {"Training": "train", "Test": "test"}
_ID_PATTERN = re.compile(r"^(ISIC_\d+)")


class _Reading:
    """Collects problems; raises at once unless the user asked to skip bad entries."""

    def __init__(self, skip_bad: bool):
        self.skip_bad = skip_bad
        self.problems: list[Problem] = []

    def bad(self, path: Path | None, kind: str, problem: str, fix: str) -> None:
        if not self.skip_bad:
            raise DataError(path, problem, fix)
        self.problems.append(Problem(path, kind, f"{problem} (skipped)"))

    def note(self, path: Path | None, kind: str, message: str) -> None:
        self.problems.append(Problem(path, kind, message))


def detect_layout(root: Path) -> str:
    root = Path(root)
    if root.is_file():
        if root.suffix.lower() == ".csv":
            return "manifest"
        raise DataError(root, "a single file is not a dataset.", "pass a dataset folder or a manifest CSV.")
    if not root.is_dir():
        raise DataError(root, "dataset folder not found.", "check the path given with --data.")
    names = [p.name for p in root.iterdir()]
    if any(n.startswith("ISIC-2017_") and n.endswith("_Data") for n in names):
        return "isic2017"
    if any(n.startswith("ISBI2016_ISIC_Part3_") and n.endswith("_Data") for n in names):
        return "isic2016"
    if "metadata.csv" in names:
        return "isic-cli"
    if "manifest.csv" in names:
        return "manifest"
    raise DataError(
        root,
        "not a recognised dataset layout (expected ISIC-2017_*_Data/, ISBI2016_ISIC_Part3_*_Data/, "
        "an isic-cli folder with metadata.csv, or a manifest.csv)." if names else "the folder is empty.",
        "point --data at the folder you downloaded, or write a manifest CSV (see README: Data).",
    )


def read_dataset(
    root: str | Path,
    task: str | Task = "melanoma",
    *,
    layout: str | None = None,
    skip_bad: bool = False,
) -> DatasetIndex:
    """Read any supported layout into a ``DatasetIndex``.

    With ``skip_bad`` unusable entries (an ID without image, an image without label...) are
    left out and recorded in ``problems`` instead of raising.
    """
    root = Path(root)
    task = get_task(task) if isinstance(task, str) else task
    layout = layout or detect_layout(root)
    reading = _Reading(skip_bad)
    readers = {
        "isic2017": _read_isic2017,
        "isic2016": _read_isic2016,
        "isic-cli": _read_isic_cli,
        "manifest": _read_manifest,
    }
    if layout not in readers:
        raise DataError(root, f"unknown layout {layout!r}.", f"use one of {LAYOUTS}.")
    splits = readers[layout](root, task, reading)
    splits = {name: samples for name, samples in splits.items() if samples or not reading.skip_bad}
    if not any(splits.values()):
        raise DataError(root, "no labelled images found.", "check that images and ground-truth files are in place.")
    return DatasetIndex(root=root, layout=layout, task=task, splits=splits, problems=reading.problems)


# --------------------------------------------------------------------------------------------- helpers


def _read_text(path: Path) -> str:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(path, f"cannot read CSV ({exc}).", "check the file's permissions.") from None
    try:
        return raw.decode("utf-8-sig")  # tolerate the BOM that Excel writes
    except UnicodeDecodeError:
        raise DataError(path, "CSV is not UTF-8 text.", "re-save it as UTF-8 CSV.") from None


def _csv_rows(path: Path, header: bool = True) -> tuple[list[str], list[list[str]]]:
    text = _read_text(path)
    rows = [row for row in csv.reader(io.StringIO(text)) if row and any(cell.strip() for cell in row)]
    if header:
        if not rows:
            raise DataError(path, "CSV is empty.", "restore the ground-truth file from the dataset archive.")
        return [c.strip() for c in rows[0]], [[c.strip() for c in row] for row in rows[1:]]
    return [], [[c.strip() for c in row] for row in rows]


def _flag(value: str, path: Path, row_id: str, column: str) -> bool:
    """Parse an ISIC ground-truth flag: 0/1/0.0/1.0, benign/malignant, true/false."""
    text = value.strip().lower()
    if text in ("1", "1.0", "malignant", "true", "yes", "melanoma"):
        return True
    if text in ("0", "0.0", "benign", "false", "no"):
        return False
    try:
        number = float(text)
    except ValueError:
        number = math.nan
    hint = "NaN" if text in ("", "nan", "na", "n/a") or math.isnan(number) else f"{value!r} (not 0/1)"
    raise DataError(path, f"label of {row_id} in column {column!r} is {hint}.", "use 0/1 (or benign/malignant).")


def _image_files(folder: Path, reading: _Reading) -> dict[str, Path]:
    """ISIC ID -> image file for every image in ``folder`` (superpixel maps excluded)."""
    found: dict[str, Path] = {}
    if not folder.is_dir():
        return found
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() not in IMAGE_SUFFIXES or path.name.endswith("_superpixels.png"):
            continue
        image_id = path.stem
        if image_id in found:
            reading.bad(
                path, "duplicate_id",
                f"image ID {image_id} appears twice in {folder.name} (also {found[image_id].name}).",
                "keep one file per ID.",
            )
            continue
        found[image_id] = path
    return found


def _masks(folder: Path, suffix: str) -> dict[str, Path]:
    if not folder.is_dir():
        return {}
    return {p.name[: -len(suffix)]: p for p in sorted(folder.glob(f"*{suffix}"))}


def _attribute_masks(root: Path) -> dict[str, dict[str, Path]]:
    """ISIC 2018 Task 2 masks: ``<id>_attribute_<feature>.png`` in any ``ISIC2018_Task2_*GroundTruth*`` folder."""
    found: dict[str, dict[str, Path]] = {}
    for folder in sorted(root.glob("ISIC2018_Task2_*GroundTruth*")):
        for path in sorted(folder.glob("*_attribute_*.png")):
            image_id, _, feature = path.stem.partition("_attribute_")
            found.setdefault(image_id, {})[feature] = path
    return found


def _pair(
    split: str,
    labels: dict[str, tuple[int, Path]],
    images: dict[str, Path],
    masks: dict[str, Path],
    reading: _Reading,
    label_source: Path,
    attributes: dict[str, dict[str, Path]] | None = None,
    superpixels: dict[str, tuple[Path, Path]] | None = None,
    reported: frozenset[str] = frozenset(),
) -> list[Sample]:
    """Join labels, images and masks on the image ID, reporting what does not pair.

    ``reported`` holds IDs whose label problem was already recorded, so it is not reported twice.
    """
    samples = []
    for image_id, (label, _) in labels.items():
        image = images.get(image_id)
        if image is None:
            reading.bad(
                label_source,
                "missing_image",
                f"{image_id} is listed but has no image file in the {split} split.",
                "add the image or remove its row.",
            )
            continue
        mask = masks.get(image_id)
        samples.append(
            Sample(
                image_id=image_id,
                image_path=image,
                label=label,
                split=split,
                mask_path=mask,
                attribute_paths=dict((attributes or {}).get(image_id, {})),
                superpixel_paths=(superpixels or {}).get(image_id),
            )
        )
    for image_id, path in images.items():
        if image_id not in labels and image_id not in reported:
            reading.bad(
                path, "unlabelled_image", f"image {image_id} has no label in {label_source.name}.",
                f"add a row for {image_id} to {label_source.name} or move the image out of the folder.",
            )
    for image_id, path in masks.items():
        if image_id not in images:
            reading.note(path, "orphan_mask", f"mask without an image ({image_id}); ignored.")
    return samples


def _label_table(
    path: Path, rows: Iterable[tuple[str, bool, bool | None]], task: Task, reading: _Reading
) -> dict[str, tuple[int, Path]]:
    labels: dict[str, tuple[int, Path]] = {}
    for image_id, melanoma, keratosis in rows:
        if image_id in labels:
            reading.bad(path, "duplicate_id", f"{image_id} is listed more than once.", "keep one row per image.")
            continue
        label = task.label_from_flags(melanoma, keratosis)
        if label is None:
            reading.bad(
                path, "unlabelled_image", f"{image_id} has no label for task {task.name!r}.",
                "this task needs the seborrheic_keratosis column; use task 'melanoma'." if keratosis is None
                else "an image cannot be both melanoma and seborrheic keratosis.",
            )
            continue
        labels[image_id] = (label, path)
    return labels


# --------------------------------------------------------------------------------------------- ISIC 2017


def _read_isic2017(root: Path, task: Task, reading: _Reading) -> dict[str, list[Sample]]:
    attributes = _attribute_masks(root)
    splits: dict[str, list[Sample]] = {}
    for official, split in ISIC2017_SPLITS.items():
        data = root / f"ISIC-2017_{official}_Data"
        if not data.is_dir() or split in splits:
            continue
        truth = root / f"ISIC-2017_{official}_Part3_GroundTruth.csv"
        if not truth.is_file():
            raise DataError(truth, "ground-truth CSV is missing for this split.", "download the Part 3 ground truth.")
        header, rows = _csv_rows(truth)
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
                melanoma = _flag(record.get("melanoma", ""), truth, image_id, "melanoma")
                keratosis = _flag(record.get("seborrheic_keratosis", ""), truth, image_id, "seborrheic_keratosis") \
                    if has_sk else None
            except DataError as exc:
                unusable.add(image_id)
                reading.bad(truth, "bad_label", exc.problem, exc.fix)
                continue
            parsed.append((image_id, melanoma, keratosis))
        labels = _label_table(truth, parsed, task, reading)
        images = _image_files(data, reading)
        masks = _masks(root / f"ISIC-2017_{official}_Part1_GroundTruth", "_segmentation.png")
        part2 = root / f"ISIC-2017_{official}_Part2_GroundTruth"
        superpixels = {}
        if part2.is_dir():
            for features in sorted(part2.glob("*_features.json")):
                image_id = features.name[: -len("_features.json")]
                superpixel_png = data / f"{image_id}_superpixels.png"
                if superpixel_png.is_file():
                    superpixels[image_id] = (superpixel_png, features)
        splits[split] = _pair(split, labels, images, masks, reading, truth, attributes, superpixels, frozenset(unusable))
    return splits


# --------------------------------------------------------------------------------------------- ISIC 2016


def _read_isic2016(root: Path, task: Task, reading: _Reading) -> dict[str, list[Sample]]:
    splits: dict[str, list[Sample]] = {}
    for official, split in ISIC2016_SPLITS.items():
        data = root / f"ISBI2016_ISIC_Part3_{official}_Data"
        if not data.is_dir():
            continue
        truth = root / f"ISBI2016_ISIC_Part3_{official}_GroundTruth.csv"
        if not truth.is_file():
            raise DataError(truth, "ground-truth CSV is missing for this split.", "download the Part 3 ground truth.")
        _, rows = _csv_rows(truth, header=False)
        if rows and rows[0] and not _ID_PATTERN.match(rows[0][0]):
            rows = rows[1:]  # tolerate a header row added by hand
        parsed = []
        unusable: set[str] = set()
        for row in rows:
            try:
                if len(row) < 2:
                    raise DataError(truth, f"row {row} has no label column.", "rows are: ISIC_ID,label.")
                parsed.append((row[0], _flag(row[1], truth, row[0], "label"), None))
            except DataError as exc:
                unusable.add(row[0])
                reading.bad(truth, "bad_label", exc.problem, exc.fix)
        labels = _label_table(truth, parsed, task, reading)
        images = _image_files(data, reading)
        masks = _masks(root / f"ISBI2016_ISIC_Part1_{official}_GroundTruth", "_Segmentation.png")
        splits[split] = _pair(split, labels, images, masks, reading, truth, reported=frozenset(unusable))
    return splits


# --------------------------------------------------------------------------------------------- isic-cli


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


def _read_isic_cli(root: Path, task: Task, reading: _Reading) -> dict[str, list[Sample]]:
    metadata = root / "metadata.csv"
    header, rows = _csv_rows(metadata)
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
            reading.note(metadata, "other_class", f"{image_id} is not nevus, melanoma or seborrheic keratosis; left out.")
            continue
        parsed.append((image_id, melanoma, keratosis if keratosis is not None else False))
    labels = _label_table(metadata, parsed, task, reading)
    masks = _masks(root / "masks", "_segmentation.png")
    return {"all": _pair("all", labels, _image_files(root, reading), masks, reading, metadata, reported=frozenset(left_out))}


# --------------------------------------------------------------------------------------------- manifest


def _read_manifest(root: Path, task: Task, reading: _Reading) -> dict[str, list[Sample]]:
    manifest = root if root.is_file() else root / "manifest.csv"
    base = manifest.parent
    header, rows = _csv_rows(manifest)
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
        split = record.get("split") or "all"
        splits.setdefault(split, []).append(Sample(image_id, image_path, label, split, mask))
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
