"""What every layout's reader shares: CSV reading, ground-truth flags, pairing images, masks, labels and
groups by image ID (never by position), and the ``Reading`` that collects problems."""

from __future__ import annotations

import csv
import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

from attnmel.data.images import IMAGE_SUFFIXES
from attnmel.data.records import GROUP_COLUMNS, Problem, Sample, Task
from attnmel.errors import DataError

#: what a reader returns: samples per split name
ReadSplits = dict[str, list[Sample]]
#: columns of the ISIC scorer's ground truth that are weights, not classes
SCORER_WEIGHT_COLUMNS = ("score_weight", "validation_weight")


MISSING_VALUES = ("", "nan", "na", "n/a", "none", "null")
ISIC_ID_PATTERN = re.compile(r"^(ISIC_\d+)")


class Reading:
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


def csv_rows(
    path: Path, header: bool = True, delimiter: str = ",", keep: Sequence[str] | None = None
) -> tuple[list[str], list[list[str]]]:
    """The header and the non-blank rows of a CSV, cells stripped: the one CSV reader every layout uses.

    The file is read line by line and, with ``keep``, only those columns are kept (in that order, a
    missing one is an error), so a metadata table of 400,000 rows and 55 columns costs what its
    useful columns cost. Whatever is wrong with the file is one ``DataError`` naming it and the line:
    not UTF-8, an unclosed quote, a field over the csv module's 131,072-character limit, a row
    shorter than the header (which would leave its last columns unread) or one with more filled
    fields than the header names."""
    rows: list[list[str]] = []
    line, indexes, names = 1, None, []
    try:
        with open(path, encoding="utf-8-sig", newline="") as handle:  # utf-8-sig: the BOM that Excel writes
            reader = csv.reader(handle, delimiter=delimiter, strict=True)
            for row in reader:
                if row and any(cell.strip() for cell in row):
                    row = [cell.strip() for cell in row]
                    if header and indexes is not None:
                        _check_width(path, line, row, names)
                        row = [row[i] for i in indexes]
                    elif header:
                        names = row
                        indexes = [_column(path, names, c) for c in keep] if keep else list(range(len(row)))
                        row = [row[i] for i in indexes]
                    rows.append(row)
                line = reader.line_num + 1
    except csv.Error as exc:
        problem = ("a field is longer than 131,072 characters" if "field limit" in str(exc)
                   else "a quoted field is never closed" if "end of data" in str(exc) else f"{exc}")
        raise DataError(path, f"line {line}: {problem}.",
                        "close the quote or fix the row (a text editor shows where the quotes pair up).") from None
    except UnicodeDecodeError:
        raise DataError(path, f"line {line}: the CSV is not UTF-8 text.", "re-save it as UTF-8 CSV.") from None
    except OSError as exc:
        raise DataError(path, f"cannot read CSV ({exc.strerror or exc}).", "check the file's permissions.") from None
    if not header:
        return [], rows
    if not rows:
        raise DataError(path, "CSV is empty.", "restore the ground-truth file from the dataset archive.")
    return rows[0], rows[1:]


def _column(path: Path, header: list[str], column: str) -> int:
    if column not in header:
        raise DataError(path, f"missing column {column!r} (found {header}).", "use the file as the release ships it.")
    return header.index(column)


def _check_width(path: Path, line: int, row: list[str], header: list[str]) -> None:
    """A short row would leave its last columns unread; extra filled cells belong to no column."""
    if len(row) < len(header):
        raise DataError(path, f"line {line} has {len(row)} fields but the header has {len(header)} "
                              f"(missing {', '.join(header[len(row):])}).",
                        "fill in the missing fields (an empty field still needs its comma).")
    if any(row[len(header):]):
        raise DataError(path, f"line {line} has {len(row)} fields but the header names {len(header)}.",
                        "remove the extra fields or quote the one that holds a comma.")
    del row[len(header):]


def parse_flag(value: str, path: Path, row_id: str, column: str) -> bool:
    """Parse an ISIC ground-truth flag: 0/1 in any number format (ISIC 2019 writes 1.00), benign/malignant,
    true/false."""
    text = value.strip().lower()
    if text in ("malignant", "true", "yes", "melanoma"):
        return True
    if text in ("benign", "false", "no"):
        return False
    try:
        number = float(text)
    except ValueError:
        number = None
    if number in (0.0, 1.0):
        return number == 1.0
    if text in MISSING_VALUES:
        hint = "NaN" if text == "nan" else "empty" if not text else f"missing ({value.strip()!r})"
    elif number is None or math.isnan(number):
        hint = f"the text {value.strip()!r}, not 0/1"
    else:
        hint = f"{value.strip()!r}, not 0/1"
    raise DataError(path, f"label of {row_id} in column {column!r} is {hint}.", "use 0/1 (or benign/malignant).")


def image_files(folder: Path, reading: Reading, strip: tuple[str, ...] = ()) -> dict[str, Path]:
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


def image_ids_in(folder: Path, strip: tuple[str, ...] = ()) -> set[str]:
    """The IDs of the image files in ``folder``, without the checks of ``image_files`` (for mask notes)."""
    if not folder.is_dir():
        return set()
    ids = set()
    for path in folder.iterdir():
        if path.suffix.lower() in IMAGE_SUFFIXES:
            image_id = path.stem
            for suffix in strip:
                image_id = image_id.removesuffix(suffix)
            ids.add(image_id)
    return ids


def masks_by_suffix(folder: Path, suffix: str) -> dict[str, Path]:
    if not folder.is_dir():
        return {}
    return {p.name[: -len(suffix)]: p for p in sorted(folder.glob(f"*{suffix}"))}


def attribute_masks(root: Path) -> dict[str, dict[str, Path]]:
    """ISIC 2018 Task 2 masks: ``<id>_attribute_<feature>.png`` in any ``ISIC2018_Task2_*GroundTruth*`` folder."""
    found: dict[str, dict[str, Path]] = {}
    for folder in sorted(root.glob("ISIC2018_Task2_*GroundTruth*")):
        for path in sorted(folder.glob("*_attribute_*.png")):
            image_id, _, feature = path.stem.partition("_attribute_")
            found.setdefault(image_id, {})[feature] = path
    return found


def pair_by_id(
    split: str,
    labels: dict[str, tuple[int, Path]],
    images: dict[str, Path],
    masks: dict[str, Path],
    reading: Reading,
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


def find_file(root: Path, name: str) -> Path | None:
    """``name`` in ``root`` or one folder down (official archives unpack into a folder of their own name)."""
    if (root / name).is_file():
        return root / name
    return next((path for path in sorted(root.glob(f"*/{name}")) if path.is_file()), None)


def lesion_masks(root: Path) -> dict[str, Path]:
    """ISIC 2018 Task 1 lesion masks (``<id>_segmentation.png``) by ID, from any Task 1 ground-truth folder
    and from HAM10000's segmentation folder."""
    found: dict[str, Path] = {}
    folders = [*sorted(root.glob("ISIC2018_Task1*GroundTruth*")), *sorted(root.glob("HAM10000_segmentations*"))]
    for folder in folders:
        for image_id, path in masks_by_suffix(folder, "_segmentation.png").items():
            found.setdefault(image_id, path)
    return found


def note_orphan_masks(masks: dict[str, Path], image_ids: Iterable[str], reading: Reading) -> None:
    """One note for the masks whose image is not in the dataset folder (Task 1 masks cover other images
    than Task 3); a mask of an image that is there but left out of the task is not one of them."""
    images = set(image_ids)
    orphans = [path for image_id, path in masks.items() if image_id not in images]
    if orphans:
        reading.note(orphans[0].parent, "orphan_mask",
                     f"{len(orphans)} lesion masks have no image in this dataset (e.g. {orphans[0].name}); ignored.")


def split_present(data: Path, truth: Path | None, split: str, reading: Reading) -> bool:
    """A split needs its images and its ground truth; one without the other is left out and noted
    (test ground truth is often published years after the images)."""
    if data.is_dir() and truth is not None:
        return True
    if data.is_dir():
        reading.note(data, "partial_split", f"the {split} images have no ground-truth CSV; split left out.")
    elif truth is not None:
        reading.note(truth, "partial_split", f"the {split} ground truth has no images folder ({data.name}); split left out.")
    return False


def require_columns(path: Path, header: list[str], columns: Iterable[str], fix: str) -> None:
    for column in columns:
        if column not in header:
            raise DataError(path, f"missing column {column!r} (found {header}).", fix)


def one_hot_classes(
    path: Path, header: list[str], rows: list[list[str]], classes: tuple[str, ...], reading: Reading
) -> tuple[list[tuple[str, str]], set[str]]:
    """(image ID, class) per row of an ISIC 2018/2019 one-hot ground truth, and the IDs of unusable rows.

    The class columns are read by name and must be exactly ``classes``: a renamed, missing or extra
    column is an error, never a guess."""
    require_columns(path, header, ["image"], "use the official ground-truth file.")
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
            marked = [c for c in columns if parse_flag(record.get(c, ""), path, image_id, c)]
            if len(marked) != 1:
                raise DataError(path, f"{image_id} is marked as {len(marked)} classes ({', '.join(marked) or 'none'}); "
                                      "the ground truth is one-hot.", "mark exactly one class per row.")
        except DataError as exc:
            unusable.add(image_id)
            reading.bad(path, "bad_label", exc.problem, exc.fix)
            continue
        parsed.append((image_id, marked[0]))
    return parsed, unusable


def class_labels(
    path: Path, split: str, rows: Iterable[tuple[str, str, bool]], task: Task, reading: Reading
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


def group_values(record: dict[str, str], columns: Iterable[str] = GROUP_COLUMNS) -> dict[str, str]:
    return {c: record[c] for c in columns if (record.get(c) or "").strip().lower() not in MISSING_VALUES}


def group_table(path: Path, id_column: str) -> dict[str, dict[str, str]]:
    """Image ID -> group values (lesion_id, patient_id) from a CSV that has them; empty values are no group."""
    header, rows = csv_rows(path)
    require_columns(path, header, [id_column], "use the official file.")
    table = {}
    for row in rows:
        record = dict(zip(header, row, strict=False))
        values = group_values(record)
        if values:
            table[record[id_column]] = values
    return table


def label_table(
    path: Path, rows: Iterable[tuple[str, bool, bool | None]], task: Task, reading: Reading
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


def folder_names(root: Path) -> set[str]:
    """The names directly inside ``root`` (none when it is not a folder): what detectors look at."""
    return {path.name for path in root.iterdir()} if root.is_dir() else set()


def release_folder(root: Path, release: str, *markers: str) -> Path | None:
    """Where a release's files are: ``root`` itself or its ``release`` folder (``--data`` may name either),
    whichever holds one of ``markers`` (relative paths); None when neither does or ``root`` is no folder."""
    for base in (root, root / release):
        if any((base / marker).exists() for marker in markers):
            return base
    return None
