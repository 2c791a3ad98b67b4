"""PH2 (Mendonça et al. 2013) as distributed: ``PH2Dataset/PH2 Dataset images/IMDxxx/IMDxxx_Dermoscopic_Image/
IMDxxx.bmp``, the lesion mask ``IMDxxx_lesion/IMDxxx_lesion.bmp`` (``IMDxxx_roi/`` colour masks are not used)
and the label table ``PH2Dataset/PH2_dataset.txt``.

The table is not CSV: its cells are separated by ``||`` (or tabs), a legend follows the rows, and the
``Clinical Diagnosis`` column is 0 common nevus, 1 atypical nevus, 2 melanoma (task ``melanoma``: 2 is
melanoma; task ``ph2-3class``: the three). The dermoscopic criteria columns (asymmetry, pigment network,
...) are kept on each record. PH2 is an external test set: every image is in split ``test``.
"""

from __future__ import annotations

import re
from pathlib import Path

from attnmel.data.readers.common import Reading, ReadSplits, class_labels, pair_by_id, release_folder
from attnmel.data.readers.registry import register_layout
from attnmel.data.records import Task
from attnmel.errors import DataError

TABLE = "PH2_dataset.txt"
IMAGES = "PH2 Dataset images"
DIAGNOSES = {"0": "common_nevus", "1": "atypical_nevus", "2": "melanoma"}
CRITERIA = ("Asymmetry", "Pigment Network", "Dots/Globules", "Streaks", "Regression Areas", "Blue-Whitish Veil", "Colors")
_CASE = re.compile(r"^IMD\d+$")


def _release(root: Path) -> Path | None:
    return release_folder(root, "PH2Dataset", IMAGES, TABLE)


def _detect(root: Path) -> bool:
    return root.is_dir() and _release(root) is not None


@register_layout("ph2", detect=_detect, sources=("ph2",), expects="PH2Dataset/ (PH2)", priority=70)
def read_ph2(root: Path, task: Task, reading: Reading) -> ReadSplits:
    base = _release(root)
    if base is None or not (base / TABLE).is_file():
        xlsx = (base or root) / "PH2_dataset.xlsx"
        raise DataError((base or root) / TABLE, "the PH2 label table is missing" + (
            " (only PH2_dataset.xlsx is here)." if xlsx.is_file() else "."),
            "put PH2_dataset.txt from the PH2 archive next to 'PH2 Dataset images'.")
    table = base / TABLE
    parsed, unusable, criteria = [], set(), {}
    for line, case, record in _table_rows(table):
        diagnosis = record["Clinical Diagnosis"]
        if diagnosis not in DIAGNOSES:
            unusable.add(case)
            reading.bad(table, "bad_label", f"line {line}: Clinical Diagnosis of {case} is {diagnosis!r}, not 0 (common "
                                            "nevus), 1 (atypical nevus) or 2 (melanoma).", "use the table of the PH2 archive.")
            continue
        parsed.append((case, DIAGNOSES[diagnosis], diagnosis == "2"))
        criteria[case] = {name: record[name] for name in CRITERIA if record.get(name)}
    labels, left_out = class_labels(table, "test", parsed, task, reading)
    images, masks = _cases(base / IMAGES)
    samples = pair_by_id("test", labels, images, masks, reading, table, reported=frozenset(unusable | left_out))
    for sample in samples:
        sample.criteria = criteria.get(sample.image_id, {})
    return {"test": samples}


def _table_rows(table: Path) -> list[tuple[int, str, dict[str, str]]]:
    """(line, case, column -> value) for every case row; the header is the line naming ``Clinical Diagnosis``."""
    try:
        lines = table.read_text(encoding="utf-8-sig", errors="replace").splitlines()
    except OSError as exc:
        raise DataError(table, f"cannot read the label table ({exc.strerror or exc}).", "check the file.") from None
    header: list[str] | None = None
    rows = []
    for number, text in enumerate(lines, start=1):
        cells = _cells(text)
        if header is None:
            if "Clinical Diagnosis" in cells and "Name" in cells:
                header = cells
            continue
        if cells and _CASE.match(cells[0]):
            if len(cells) < header.index("Clinical Diagnosis") + 1:
                raise DataError(table, f"line {number} has {len(cells)} cells, fewer than the header's "
                                       f"{len(header)}.", "use the table of the PH2 archive.")
            rows.append((number, cells[0], dict(zip(header, cells, strict=False))))
    if header is None:
        raise DataError(table, "no header row naming 'Name' and 'Clinical Diagnosis'.", "use the table of the PH2 archive.")
    return rows


def _cells(text: str) -> list[str]:
    if "||" in text:
        return [cell.strip() for cell in text.strip().strip("|").split("||")]
    return [cell.strip() for cell in text.split("\t")] if "\t" in text else []


def _cases(folder: Path) -> tuple[dict[str, Path], dict[str, Path]]:
    """Case -> dermoscopic image and case -> lesion mask, from the one-folder-per-case tree."""
    images, masks = {}, {}
    if not folder.is_dir():
        raise DataError(folder, "the PH2 images folder is missing.", f"unpack the archive so that '{IMAGES}' is here.")
    for case in sorted(p for p in folder.iterdir() if p.is_dir() and _CASE.match(p.name)):
        image = next(iter(sorted((case / f"{case.name}_Dermoscopic_Image").glob(f"{case.name}.*"))), None)
        if image is None:  # a listed case without its image is reported when pairing
            continue
        images[case.name] = image
        mask = next(iter(sorted((case / f"{case.name}_lesion").glob(f"{case.name}_lesion.*"))), None)
        if mask is not None:
            masks[case.name] = mask
    return images, masks
