"""Derm7pt (Kawahara et al. 2019) as distributed: ``release_v0/meta/meta.csv`` (``case_num``, ``diagnosis``,
the seven criteria, ``seven_point_score``, ``clinic``, ``derm``, ...), ``release_v0/meta/{train,valid,test}
_indexes.csv`` (row indices of meta.csv: the official splits) and the images under ``release_v0/images/``.

Layout ``derm7pt`` reads the dermoscopic image (``derm``); ``derm7pt-clinic`` (chosen by name, never
detected) the clinical photograph of the same lesion. Melanoma is any diagnosis starting with "melanoma".
The seven criteria and the score are kept on each record (``Sample.criteria``: image-level labels of the
dermoscopic structures); ``case_num`` is the lesion group. Paths in meta.csv and the names on disk differ
in case for some files, so a path that is not found as written is looked up without regard to case.
"""

from __future__ import annotations

from pathlib import Path

from attnmel.data.readers.common import (
    Reading,
    ReadSplits,
    class_labels,
    csv_rows,
    pair_by_id,
    release_folder,
    require_columns,
)
from attnmel.data.readers.registry import register_layout
from attnmel.data.records import Task
from attnmel.errors import DataError

CRITERIA = ("pigment_network", "streaks", "pigmentation", "regression_structures", "dots_and_globules",
            "blue_whitish_veil", "vascular_structures", "seven_point_score")
SPLITS = {"train": "train", "valid": "val", "test": "test"}
#: every diagnosis of the release; another one is an error, not a guess
DIAGNOSES = (
    "basal cell carcinoma", "blue nevus", "clark nevus", "combined nevus", "congenital nevus", "dermal nevus",
    "dermatofibroma", "lentigo", "melanoma", "melanoma (in situ)", "melanoma (less than 0.76 mm)",
    "melanoma (0.76 to 1.5 mm)", "melanoma (more than 1.5 mm)", "melanoma metastasis", "melanosis", "miscellaneous",
    "recurrent nevus", "reed or spitz nevus", "seborrheic keratosis", "vascular lesion",
)


def _release(root: Path) -> Path | None:
    return release_folder(root, "release_v0", "meta/meta.csv")


def _detect(root: Path) -> bool:
    return root.is_dir() and _release(root) is not None


@register_layout("derm7pt", detect=_detect, sources=("derm7pt",), expects="release_v0/meta/meta.csv (Derm7pt)", priority=70)
def read_derm7pt(root: Path, task: Task, reading: Reading) -> ReadSplits:
    return _read(root, task, reading, "derm")


@register_layout("derm7pt-clinic", detect=None, sources=("derm7pt",), priority=71, modality="clinical photographs (Derm7pt clinic view)")
def read_derm7pt_clinic(root: Path, task: Task, reading: Reading) -> ReadSplits:
    return _read(root, task, reading, "clinic")


def _read(root: Path, task: Task, reading: Reading, view: str) -> ReadSplits:
    base = _release(root)
    if base is None:
        raise DataError(root / "release_v0" / "meta" / "meta.csv", "the Derm7pt label table is missing.",
                        "point --data at release_v0/ (or the folder holding it) as unpacked from the archive.")
    meta = base / "meta" / "meta.csv"
    header, rows = csv_rows(meta)
    require_columns(meta, header, ("case_num", "diagnosis", view), "use the meta.csv of the Derm7pt release.")
    splits_of = _official_splits(base / "meta", len(rows))
    files = _CaseInsensitive(base / "images")
    parsed: dict[str, list[tuple[str, str, bool]]] = {}
    images: dict[str, Path] = {}
    criteria, groups, unusable = {}, {}, set()
    for row_index, row in enumerate(rows):
        record = dict(zip(header, row, strict=True))
        image_id = Path(record[view]).stem
        diagnosis = record["diagnosis"].lower()
        if diagnosis not in DIAGNOSES:
            unusable.add(image_id)
            reading.bad(meta, "bad_label", f"line {row_index + 2}: diagnosis of case {record['case_num']} is "
                                           f"{record['diagnosis']!r}, not a Derm7pt diagnosis.", "use the release's meta.csv.")
            continue
        split = splits_of.get(row_index, "all")
        parsed.setdefault(split, []).append((image_id, diagnosis, diagnosis.startswith("melanoma")))
        criteria[image_id] = {name: record[name] for name in CRITERIA if record.get(name)}
        groups[image_id] = {"lesion_id": f"derm7pt-{record['case_num']}"}
        if (path := files.find(record[view])) is not None:
            images[image_id] = path
    splits: ReadSplits = {}
    for split, entries in parsed.items():
        labels, left_out = class_labels(meta, split, entries, task, reading)
        split_images = {image_id: images[image_id] for image_id in labels if image_id in images}
        splits[split] = pair_by_id(split, labels, split_images, {}, reading, meta, reported=frozenset(unusable | left_out),
                                   groups=groups)
        for sample in splits[split]:
            sample.criteria = criteria[sample.image_id]
    return splits


def _official_splits(meta: Path, n_rows: int) -> dict[int, str]:
    """Row index of meta.csv -> split, from the release's index files (none: every row in split ``all``)."""
    splits: dict[int, str] = {}
    for name, split in SPLITS.items():
        path = meta / f"{name}_indexes.csv"
        if not path.is_file():
            continue
        header, rows = csv_rows(path)
        require_columns(path, header, ("indexes",), "use the release's index file.")
        for (value,) in (row[header.index("indexes"):header.index("indexes") + 1] for row in rows):
            if not value.isdigit() or int(value) >= n_rows:
                raise DataError(path, f"index {value!r} is not a row of meta.csv (0..{n_rows - 1}).",
                                "use the index files of the same release as meta.csv.")
            if splits.setdefault(int(value), split) != split:
                raise DataError(path, f"row {value} of meta.csv is in two splits.", "use the release's index files.")
    return splits


class _CaseInsensitive:
    """Finds ``images/<relative path>`` as written, else by a case-insensitive match (listed once, on demand)."""

    def __init__(self, root: Path):
        self.root = root
        self._lower: dict[str, Path] | None = None

    def find(self, relative: str) -> Path | None:
        path = self.root / relative
        if path.is_file():
            return path
        if self._lower is None:
            self._lower = {p.relative_to(self.root).as_posix().lower(): p for p in self.root.rglob("*") if p.is_file()}
        return self._lower.get(relative.replace("\\", "/").lower())
