"""Readers for datasets as users download them: images and masks are paired by ISIC ID, never by position.

Layouts (detected from the folder, or named explicitly):
- ``isic2017``: the 2017 challenge release (``ISIC-2017_{Training,Validation,Test_v2}_Data/``,
  ``*_Part1_GroundTruth/<id>_segmentation.png``, ``*_Part3_GroundTruth.csv``, optional Part 2
  superpixel features and ISIC 2018 Task 2 attribute masks);
- ``isic2016``: the ISBI 2016 release (``ISBI2016_ISIC_Part3_{Training,Test}_Data/``, header-less
  Part 3 CSVs with ``benign``/``malignant`` or ``0``/``1``, Part 1 ``<id>_Segmentation.png`` masks);
- ``isic2018``: ISIC 2018 Task 3 (``ISIC2018_Task3_{Training,Validation,Test}_Input/``, one-hot
  ``ISIC2018_Task3_*_GroundTruth.csv``, ``ISIC2018_Task3_*_LesionGroupings.csv``);
- ``ham10000``: the Dataverse release of the same images (``HAM10000_metadata.csv``,
  ``HAM10000_images_part_{1,2}/``);
- ``isic2019``: ``ISIC_2019_{Training,Test}_Input/`` (some files ``<id>_downsampled.jpg``), one-hot
  ground truth with ``UNK``, metadata with ``lesion_id``;
- ``isic2020``: ``ISIC_2020_Training_JPEG/train/`` (or ``train/``), ``ISIC_2020_Training_GroundTruth[_v2].csv``
  with ``patient_id`` (and ``lesion_id``), and the listed duplicates;
- ``isic-cli``: a folder written by ``isic image download`` (flat ``ISIC_*.jpg`` + ``metadata.csv``);
- ``manifest``: a CSV with ``image``, ``label`` and optional ``mask``, ``split``, ``image_id``,
  ``lesion_id``, ``patient_id`` columns.

The 2018-2020 layouts also pair ISIC 2018 Task 1 lesion masks (``ISIC2018_Task1*GroundTruth*/<id>_segmentation.png``,
or HAM10000's ``HAM10000_segmentations_lesion_tschandl/``) and Task 2 attribute masks by ID, wherever
they are in the dataset folder. A split with images but no ground truth (test sets whose labels came
out later) is left out and noted.
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Literal, get_args

from attnmel.data.images import IMAGE_SUFFIXES
from attnmel.data.records import (
    GROUP_COLUMNS,
    ISIC2018_CLASSES,
    TASKS,
    DatasetIndex,
    Problem,
    Sample,
    Task,
    get_task,
)
from attnmel.errors import DataError

Layout = Literal["isic2017", "isic2016", "isic2018", "ham10000", "isic2019", "isic2020", "isic-cli", "manifest"]
LAYOUTS: tuple[str, ...] = get_args(Layout)
ISIC2017_SPLITS = {"Training": "train", "Validation": "val", "Test_v2": "test", "Test": "test"}
ISIC2016_SPLITS = {"Training": "train", "Test": "test"}
ISIC2018_SPLITS = {"Training": "train", "Validation": "val", "Test": "test"}
ISIC2019_SPLITS = {"Training": "train", "Test": "test"}
#: columns of the ISIC scorer's ground truth that are weights, not classes
SCORER_WEIGHT_COLUMNS = ("score_weight", "validation_weight")
#: the ground truth each layout carries, i.e. the task sources it can label (None: any, by class name)
LAYOUT_SOURCES: dict[str, tuple[str, ...] | None] = {
    "isic2017": ("isic2017",), "isic2016": ("isic2017",), "isic-cli": ("isic2017",), "manifest": None,
    "isic2018": ("isic2018",), "ham10000": ("isic2018",), "isic2019": ("isic2019",), "isic2020": ("isic2020",),
}
_MISSING = ("", "nan", "na", "n/a", "none", "null")
_ID_PATTERN = re.compile(r"^(ISIC_\d+)")


class _Reading:
    """Collects problems; raises at once unless the user asked to skip bad entries."""

    def __init__(self, skip_bad: bool):
        self.skip_bad = skip_bad
        self.problems: list[Problem] = []
        self.left_out: dict[str, Counter[str]] = {}
        self.duplicates: list[tuple[str, str]] = []

    def bad(self, path: Path | None, kind: str, problem: str, fix: str) -> None:
        if not self.skip_bad:
            raise DataError(path, problem, fix)
        self.problems.append(Problem(path, kind, f"{problem} (skipped)"))

    def note(self, path: Path | None, kind: str, message: str) -> None:
        self.problems.append(Problem(path, kind, message))

    def leave_out(self, path: Path, split: str, image_id: str, dataset_class: str, task: Task) -> None:
        """An image of a class the task does not train on: counted per split and class, and noted."""
        self.left_out.setdefault(split, Counter())[dataset_class] += 1
        self.note(path, "other_class", f"{image_id} is {dataset_class}, which task {task.name!r} leaves out.")


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
    if "HAM10000_metadata.csv" in names:
        return "ham10000"
    if any(n.startswith("ISIC2018_Task3_") for n in names):
        return "isic2018"
    if any(n.startswith("ISIC_2019_") for n in names):
        return "isic2019"
    if any(n.startswith("ISIC_2020_") for n in names):
        return "isic2020"
    if "metadata.csv" in names:
        return "isic-cli"
    if "manifest.csv" in names:
        return "manifest"
    raise DataError(
        root,
        "not a recognised dataset layout (expected ISIC-2017_*_Data/, ISBI2016_ISIC_Part3_*_Data/, ISIC2018_Task3_*, "
        "HAM10000_metadata.csv, ISIC_2019_*, ISIC_2020_*, an isic-cli folder with metadata.csv, or a manifest.csv)."
        if names else "the folder is empty.",
        "point --data at the folder you downloaded, or write a manifest CSV (see README: Data).",
    )


def read_dataset(
    root: str | Path,
    task: str | Task = "melanoma",
    *,
    layout: str | None = None,
    skip_bad: bool = False,
    dataset: str | None = None,
) -> DatasetIndex:
    """Read any supported layout into a ``DatasetIndex``.

    With ``skip_bad`` unusable entries (an ID without image, an image without label...) are
    left out and recorded in ``problems`` instead of raising. Every sample's ``dataset`` is
    ``dataset`` (default: the layout's name).
    """
    root = Path(root)
    task = get_task(task) if isinstance(task, str) else task
    layout = layout or detect_layout(root)
    reading = _Reading(skip_bad)
    readers = {
        "isic2017": _read_isic2017,
        "isic2016": _read_isic2016,
        "isic2018": _read_isic2018,
        "ham10000": _read_ham10000,
        "isic2019": _read_isic2019,
        "isic2020": _read_isic2020,
        "isic-cli": _read_isic_cli,
        "manifest": _read_manifest,
    }
    if layout not in readers:
        raise DataError(root, f"unknown layout {layout!r}.", f"use one of {LAYOUTS}.")
    check_task_fits(root, layout, task)
    splits = readers[layout](root, task, reading)
    splits = {name: samples for name, samples in splits.items() if samples or not reading.skip_bad}
    for sample in (sample for samples in splits.values() for sample in samples):
        sample.dataset = dataset or layout
    if not any(splits.values()):
        raise DataError(root, "no labelled images found.", "check that images and ground-truth files are in place.")
    return DatasetIndex(
        root=root, layout=layout, task=task, splits=splits, problems=reading.problems,
        duplicates=reading.duplicates, left_out={split: dict(counts) for split, counts in reading.left_out.items()},
    )


def check_task_fits(root: Path, layout: str, task: Task) -> None:
    """A task that takes its classes from one dataset's ground truth reads only layouts that carry it."""
    sources = LAYOUT_SOURCES.get(layout)
    if task.source is None or sources is None or task.source in sources:
        return
    fitting = [name for name, other in TASKS.items() if other.source is None or other.source in sources]
    raise DataError(
        root,
        f"task {task.name!r} takes its classes from the {task.source} ground truth, which this {layout} dataset "
        "does not have.",
        f"use task {' or '.join(repr(name) for name in fitting)}.",
    )


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


def _image_files(folder: Path, reading: _Reading, strip: tuple[str, ...] = ()) -> dict[str, Path]:
    """ISIC ID -> image file for every image in ``folder`` (superpixel maps excluded); a name ending
    in one of ``strip`` (ISIC 2019's ``_downsampled``) is the image of the ID before it."""
    found: dict[str, Path] = {}
    if not folder.is_dir():
        return found
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() not in IMAGE_SUFFIXES or path.name.endswith("_superpixels.png"):
            continue
        image_id = path.stem
        for suffix in strip:
            image_id = image_id.removesuffix(suffix)
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
    groups: dict[str, dict[str, str]] | None = None,
    orphan_masks: bool = True,
) -> list[Sample]:
    """Join labels, images, masks and groups on the image ID, reporting what does not pair.

    ``reported`` holds IDs whose label problem was already recorded, so it is not reported twice.
    ``orphan_masks=False`` when ``masks`` serve every split (the caller notes orphans once).
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
                groups=dict((groups or {}).get(image_id, {})),
            )
        )
    for image_id, path in images.items():
        if image_id not in labels and image_id not in reported:
            reading.bad(
                path, "unlabelled_image", f"image {image_id} has no label in {label_source.name}.",
                f"add a row for {image_id} to {label_source.name} or move the image out of the folder.",
            )
    for image_id, path in masks.items() if orphan_masks else ():
        if image_id not in images:
            reading.note(path, "orphan_mask", f"mask without an image ({image_id}); ignored.")
    return samples


def _find_file(root: Path, name: str) -> Path | None:
    """``name`` in ``root`` or one folder down (official archives unpack into a folder of their own name)."""
    if (root / name).is_file():
        return root / name
    return next((path for path in sorted(root.glob(f"*/{name}")) if path.is_file()), None)


def _lesion_masks(root: Path) -> dict[str, Path]:
    """ISIC 2018 Task 1 lesion masks (``<id>_segmentation.png``) by ID, from any Task 1 ground-truth folder
    and from HAM10000's segmentation folder."""
    found: dict[str, Path] = {}
    folders = [*sorted(root.glob("ISIC2018_Task1*GroundTruth*")), *sorted(root.glob("HAM10000_segmentations*"))]
    for folder in folders:
        for image_id, path in _masks(folder, "_segmentation.png").items():
            found.setdefault(image_id, path)
    return found


def _note_orphan_masks(masks: dict[str, Path], splits: dict[str, list[Sample]], reading: _Reading) -> None:
    """One note for all masks without an image (Task 1 masks cover other images than Task 3)."""
    images = {sample.image_id for samples in splits.values() for sample in samples}
    orphans = [path for image_id, path in masks.items() if image_id not in images]
    if orphans:
        reading.note(orphans[0].parent, "orphan_mask",
                     f"{len(orphans)} lesion masks have no image in this dataset (e.g. {orphans[0].name}); ignored.")


def _split_present(data: Path, truth: Path | None, split: str, reading: _Reading) -> bool:
    """A split needs its images and its ground truth; one without the other is left out and noted
    (test ground truth is often published years after the images)."""
    if data.is_dir() and truth is not None:
        return True
    if data.is_dir():
        reading.note(data, "partial_split", f"the {split} images have no ground-truth CSV; split left out.")
    elif truth is not None:
        reading.note(truth, "partial_split", f"the {split} ground truth has no images folder ({data.name}); split left out.")
    return False


def _require(path: Path, header: list[str], columns: Iterable[str], fix: str) -> None:
    for column in columns:
        if column not in header:
            raise DataError(path, f"missing column {column!r} (found {header}).", fix)


def _one_hot_classes(
    path: Path, header: list[str], rows: list[list[str]], classes: tuple[str, ...], reading: _Reading
) -> tuple[list[tuple[str, str]], set[str]]:
    """(image ID, class) per row of an ISIC 2018/2019 one-hot ground truth, and the IDs of unusable rows.

    The class columns are read by name and must be exactly ``classes``: a renamed, missing or extra
    column is an error, never a guess."""
    _require(path, header, ["image"], "use the official ground-truth file.")
    columns = [c for c in header if c not in ("image", *SCORER_WEIGHT_COLUMNS)]
    missing, extra = [c for c in classes if c not in columns], [c for c in columns if c not in classes]
    if missing or extra:
        raise DataError(
            path,
            f"class columns are {columns}; this ground truth has {list(classes)}"
            + (f" (missing {missing})" if missing else "") + (f" (unexpected {extra})" if extra else "") + ".",
            "use the official ground-truth file; classes are read by name from its header.",
        )
    parsed: list[tuple[str, str]] = []
    unusable: set[str] = set()
    for row in rows:
        record = dict(zip(header, row, strict=False))
        image_id = record["image"]
        try:
            marked = [c for c in columns if _flag(record.get(c, ""), path, image_id, c)]
            if len(marked) != 1:
                raise DataError(path, f"{image_id} is marked as {len(marked)} classes ({', '.join(marked) or 'none'}); "
                                      "the ground truth is one-hot.", "mark exactly one class per row.")
        except DataError as exc:
            unusable.add(image_id)
            reading.bad(path, "bad_label", exc.problem, exc.fix)
            continue
        parsed.append((image_id, marked[0]))
    return parsed, unusable


def _class_labels(
    path: Path, split: str, rows: Iterable[tuple[str, str, bool]], task: Task, reading: _Reading
) -> tuple[dict[str, tuple[int, Path]], set[str]]:
    """Labels for ``task`` from (image ID, dataset class, is melanoma) rows, and the IDs left out of it."""
    labels: dict[str, tuple[int, Path]] = {}
    left_out: set[str] = set()
    for image_id, dataset_class, melanoma in rows:
        if image_id in labels or image_id in left_out:
            reading.bad(path, "duplicate_id", f"{image_id} is listed more than once.", "keep one row per image.")
            continue
        label = task.label_from_class(dataset_class, melanoma)
        if label is None:
            left_out.add(image_id)
            reading.leave_out(path, split, image_id, dataset_class, task)
            continue
        labels[image_id] = (label, path)
    return labels, left_out


def _group_values(record: dict[str, str], columns: Iterable[str] = GROUP_COLUMNS) -> dict[str, str]:
    return {c: record[c] for c in columns if (record.get(c) or "").strip().lower() not in _MISSING}


def _group_table(path: Path, id_column: str) -> dict[str, dict[str, str]]:
    """Image ID -> group values (lesion_id, patient_id) from a CSV that has them; empty values are no group."""
    header, rows = _csv_rows(path)
    _require(path, header, [id_column], "use the official file.")
    table = {}
    for row in rows:
        record = dict(zip(header, row, strict=False))
        values = _group_values(record)
        if values:
            table[record[id_column]] = values
    return table


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


# --------------------------------------------------------------------------------------------- ISIC 2018 / HAM10000


def _read_one_hot_release(
    root: Path, task: Task, reading: _Reading, splits_by_name: dict[str, str], classes: Sequence[str], *,
    data: str, truth: str, groups: str, strip: tuple[str, ...] = (),
) -> dict[str, list[Sample]]:
    """A release with one-hot ground truth per split (ISIC 2018 Task 3, ISIC 2019): ``data``, ``truth`` and
    ``groups`` name each split's image folder, ground-truth CSV and lesion-groups CSV (``{split}`` filled in)."""
    masks, attributes = _lesion_masks(root), _attribute_masks(root)
    splits: dict[str, list[Sample]] = {}
    for official, split in splits_by_name.items():
        folder = root / data.format(split=official)
        truth_file = _find_file(root, truth.format(split=official))
        if not _split_present(folder, truth_file, split, reading):
            continue
        header, rows = _csv_rows(truth_file)
        parsed, unusable = _one_hot_classes(truth_file, header, rows, classes, reading)
        labels, left_out = _class_labels(truth_file, split, ((i, c, c == "MEL") for i, c in parsed), task, reading)
        groups_file = _find_file(root, groups.format(split=official))
        group_table = _group_table(groups_file, "image") if groups_file is not None else {}
        images = _image_files(folder, reading, strip=strip)
        splits[split] = _pair(split, labels, images, masks, reading, truth_file, attributes,
                              reported=frozenset(unusable | left_out), groups=group_table, orphan_masks=False)
    _note_orphan_masks(masks, splits, reading)
    return splits


def _read_isic2018(root: Path, task: Task, reading: _Reading) -> dict[str, list[Sample]]:
    return _read_one_hot_release(
        root, task, reading, ISIC2018_SPLITS, ISIC2018_CLASSES, data="ISIC2018_Task3_{split}_Input",
        truth="ISIC2018_Task3_{split}_GroundTruth.csv", groups="ISIC2018_Task3_{split}_LesionGroupings.csv",
    )


def _read_ham10000(root: Path, task: Task, reading: _Reading) -> dict[str, list[Sample]]:
    """The Dataverse release: one metadata row per image (``dx`` in lower case), images in two parts."""
    metadata = root / "HAM10000_metadata.csv"
    header, rows = _csv_rows(metadata)
    _require(metadata, header, ("image_id", "dx"), "use the HAM10000_metadata.csv of the Dataverse release.")
    folders = sorted(p for p in root.iterdir() if p.is_dir() and p.name.lower().startswith("ham10000_images"))
    if not folders:
        raise DataError(root, "no HAM10000_images_part_1/ or HAM10000_images_part_2/ next to HAM10000_metadata.csv.",
                        "unpack the two image archives into the dataset folder.")
    images: dict[str, Path] = {}
    for folder in folders:
        for image_id, path in _image_files(folder, reading).items():
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
        groups[image_id] = _group_values(record)
    labels, left_out = _class_labels(metadata, "train", parsed, task, reading)
    masks = _lesion_masks(root)
    splits = {"train": _pair("train", labels, images, masks, reading, metadata, _attribute_masks(root),
                             reported=frozenset(unusable | left_out), groups=groups, orphan_masks=False)}
    _note_orphan_masks(masks, splits, reading)
    return splits


# --------------------------------------------------------------------------------------------- ISIC 2019


def _read_isic2019(root: Path, task: Task, reading: _Reading) -> dict[str, list[Sample]]:
    return _read_one_hot_release(
        root, task, reading, ISIC2019_SPLITS, TASKS["isic2019-8class"].dataset_classes,
        data="ISIC_2019_{split}_Input", truth="ISIC_2019_{split}_GroundTruth.csv",
        groups="ISIC_2019_{split}_Metadata.csv", strip=("_downsampled",),
    )


# --------------------------------------------------------------------------------------------- ISIC 2020


def _read_isic2020(root: Path, task: Task, reading: _Reading) -> dict[str, list[Sample]]:
    """``target`` is melanoma vs not; ``benign_malignant`` names the classes of ``isic2020-binary``.
    The corrected ``_v2`` ground truth (which adds ``lesion_id``) wins over the first release."""
    truth = _find_file(root, "ISIC_2020_Training_GroundTruth_v2.csv") or _find_file(
        root, "ISIC_2020_Training_GroundTruth.csv")
    if truth is None:
        raise DataError(root, "no ISIC_2020_Training_GroundTruth_v2.csv or ISIC_2020_Training_GroundTruth.csv.",
                        "download the ISIC 2020 training ground truth into the dataset folder.")
    folders = (root / "ISIC_2020_Training_JPEG" / "train", root / "train", root / "ISIC_2020_Training_JPEG")
    data = next((folder for folder in folders if folder.is_dir()), None)
    if data is None:
        raise DataError(root, "no ISIC_2020_Training_JPEG/train/ (or train/) images folder.",
                        "unpack ISIC_2020_Training_JPEG.zip into the dataset folder.")
    header, rows = _csv_rows(truth)
    _require(truth, header, ("image_name", "target"), "use the official ISIC 2020 ground truth.")
    if task.source == "isic2020":
        _require(truth, header, ("benign_malignant",), f"task {task.name!r} names its classes by this column.")
    parsed, unusable, groups = [], set(), {}
    for row in rows:
        record = dict(zip(header, row, strict=False))
        image_id = record["image_name"]
        dataset_class = (record.get("benign_malignant") or "").lower()
        try:
            melanoma = _flag(record.get("target", ""), truth, image_id, "target")
            if task.source == "isic2020" and dataset_class not in ("benign", "malignant"):
                raise DataError(truth, f"benign_malignant of {image_id} is {record.get('benign_malignant')!r}.",
                                "use benign or malignant.")
        except DataError as exc:
            unusable.add(image_id)
            reading.bad(truth, "bad_label", exc.problem, exc.fix)
            continue
        parsed.append((image_id, dataset_class, melanoma))
        groups[image_id] = _group_values(record)
    labels, left_out = _class_labels(truth, "train", parsed, task, reading)
    masks = _lesion_masks(root)
    splits = {"train": _pair("train", labels, _image_files(data, reading), masks, reading, truth,
                             _attribute_masks(root), reported=frozenset(unusable | left_out), groups=groups,
                             orphan_masks=False)}
    _note_orphan_masks(masks, splits, reading)
    duplicates = _find_file(root, "ISIC_2020_Training_Duplicates.csv")
    if duplicates is not None:
        header, rows = _csv_rows(duplicates)
        _require(duplicates, header, ("image_name_1", "image_name_2"), "use the official duplicates list.")
        for row in rows:
            record = dict(zip(header, row, strict=False))
            if record.get("image_name_1") and record.get("image_name_2"):
                reading.duplicates.append((record["image_name_1"], record["image_name_2"]))
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
            reading.leave_out(metadata, "all", image_id, "other diagnosis", task)
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
        splits.setdefault(split, []).append(Sample(image_id, image_path, label, split, mask, groups=_group_values(record)))
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
