"""Small ISIC 2018, HAM10000, ISIC 2019 and ISIC 2020 folders with the official file names and headers.

The images are the real dermoscopy images of the bundled ISIC 2017 sample, relabelled, so that
decoding is real; the k-th image of a layout is ``SAMPLE_IMAGES[k]`` (IDs keep their ISIC number).
Each builder returns the image IDs it wrote, per split.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from .conftest import SAMPLE, make_isic2017_subset, write_csv

#: the 60 real images of the bundled sample, in a fixed order
SAMPLE_IMAGES: list[Path] = sorted(SAMPLE.glob("ISIC-2017_*_Data/ISIC_*.jpg"), key=lambda p: p.name)
ISIC2018_HEADER = ["image", "MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC"]
ISIC2019_HEADER = ["image", "MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC", "SCC", "UNK"]
HAM_HEADER = ["lesion_id", "image_id", "dx", "dx_type", "age", "sex", "localization"]
ISIC2020_HEADER = ["image_name", "patient_id", "lesion_id", "sex", "age_approx", "anatom_site_general_challenge",
                   "diagnosis", "benign_malignant", "target"]


def sample_mask(image: Path) -> Path:
    return image.parent.parent / image.parent.name.replace("_Data", "_Part1_GroundTruth") / f"{image.stem}_segmentation.png"


def _images(start: int, n: int) -> list[Path]:
    if start + n > len(SAMPLE_IMAGES):
        raise ValueError(f"the sample has {len(SAMPLE_IMAGES)} images; asked for {start + n}")
    return SAMPLE_IMAGES[start : start + n]


def _one_hot(header: list[str], image_id: str, cls: str) -> list[str]:
    return [image_id, *("1.0" if column == cls else "0.0" for column in header[1:])]


def make_isic2018(
    root: Path, splits: dict[str, list[tuple[str, str | None]]], *, masks: bool = True
) -> dict[str, list[str]]:
    """ISIC 2018 Task 3: ``splits`` maps Training/Validation/Test to (class, lesion_id) per image.

    Ground truth and lesion groupings inside ``ISIC2018_Task3_<Split>_GroundTruth/`` (as the archive
    unpacks), lesion masks as ISIC 2018 Task 1 ``<id>_segmentation.png`` for every other image."""
    ids: dict[str, list[str]] = {}
    start = 0
    for official, rows in splits.items():
        data = root / f"ISIC2018_Task3_{official}_Input"
        data.mkdir(parents=True)
        (data / "ATTRIBUTION.txt").write_text("ISIC Archive\n")
        truth = root / f"ISIC2018_Task3_{official}_GroundTruth"
        images = _images(start, len(rows))
        start += len(rows)
        ids[official] = [image.stem for image in images]
        for k, image in enumerate(images):
            shutil.copy(image, data / image.name)
            if masks and k % 2 == 0:
                target = root / f"ISIC2018_Task1_{official}_GroundTruth" / f"{image.stem}_segmentation.png"
                target.parent.mkdir(exist_ok=True)
                shutil.copy(sample_mask(image), target)
        write_csv(truth / f"ISIC2018_Task3_{official}_GroundTruth.csv", ISIC2018_HEADER,
                  [_one_hot(ISIC2018_HEADER, image.stem, cls) for image, (cls, _) in zip(images, rows, strict=True)])
        if any(lesion for _, lesion in rows):
            write_csv(truth / f"ISIC2018_Task3_{official}_LesionGroupings.csv", ["image", "lesion_id", "diagnosis_confirm_type"],
                      [[image.stem, lesion or "", "histopathology"] for image, (_, lesion) in zip(images, rows, strict=True)])
    return ids


def make_ham10000(root: Path, rows: list[tuple[str, str]], *, masks: bool = True, start: int = 0,
                  images: list[Path] | None = None) -> list[str]:
    """The Dataverse release: ``rows`` are (dx, lesion_id); images split over part_1 and part_2; the
    k-th row takes ``images[k]``, by default ``SAMPLE_IMAGES[start + k]``."""
    images = images or _images(start, len(rows))
    half = len(images) // 2
    for k, image in enumerate(images):
        part = root / f"HAM10000_images_part_{1 if k < half else 2}"
        part.mkdir(parents=True, exist_ok=True)
        shutil.copy(image, part / image.name)
        if masks:
            target = root / "HAM10000_segmentations_lesion_tschandl" / f"{image.stem}_segmentation.png"
            target.parent.mkdir(exist_ok=True)
            shutil.copy(sample_mask(image), target)
    write_csv(root / "HAM10000_metadata.csv", HAM_HEADER,
              [[lesion, image.stem, dx, "histo", "45.0", "male", "back"] for image, (dx, lesion) in zip(images, rows, strict=True)])
    return [image.stem for image in images]


def make_isic2019(root: Path, rows: list[tuple[str, str | None]]) -> list[str]:
    """ISIC 2019 training: ``rows`` are (class, lesion_id or None); every third image is ``<id>_downsampled.jpg``."""
    data = root / "ISIC_2019_Training_Input"
    data.mkdir(parents=True)
    images = _images(0, len(rows))
    for k, image in enumerate(images):
        shutil.copy(image, data / (f"{image.stem}_downsampled.jpg" if k % 3 == 2 else image.name))
    write_csv(root / "ISIC_2019_Training_GroundTruth.csv", ISIC2019_HEADER,
              [_one_hot(ISIC2019_HEADER, image.stem, cls) for image, (cls, _) in zip(images, rows, strict=True)])
    write_csv(root / "ISIC_2019_Training_Metadata.csv", ["image", "age_approx", "anatom_site_general", "lesion_id", "sex"],
              [[image.stem, "55.0", "anterior torso", lesion or "", "female"] for image, (_, lesion) in zip(images, rows, strict=True)])
    return [image.stem for image in images]


def make_isic2020(
    root: Path,
    rows: list[tuple[str, str, str]],
    *,
    duplicates: list[tuple[int, int]] = (),
    folder: str = "ISIC_2020_Training_JPEG/train",
    version: str = "_v2",
) -> list[str]:
    """ISIC 2020 training: ``rows`` are (benign_malignant, patient_id, lesion_id); ``duplicates`` are
    pairs of row positions written to ``ISIC_2020_Training_Duplicates.csv``."""
    data = root / folder
    data.mkdir(parents=True)
    images = _images(0, len(rows))
    for image in images:
        shutil.copy(image, data / image.name)
    header = ISIC2020_HEADER if version == "_v2" else [c for c in ISIC2020_HEADER if c != "lesion_id"]
    table = []
    for image, (kind, patient, lesion) in zip(images, rows, strict=True):
        record = {"image_name": image.stem, "patient_id": patient, "lesion_id": lesion, "sex": "male", "age_approx": "45.0",
                  "anatom_site_general_challenge": "torso", "diagnosis": "melanoma" if kind == "malignant" else "nevus",
                  "benign_malignant": kind, "target": "1" if kind == "malignant" else "0"}
        table.append([record[c] for c in header])
    write_csv(root / f"ISIC_2020_Training_GroundTruth{version}.csv", header, table)
    if duplicates:
        write_csv(root / "ISIC_2020_Training_Duplicates.csv", ["image_name_1", "image_name_2"],
                  [[images[a].stem, images[b].stem] for a, b in duplicates])
    return [image.stem for image in images]


def make_isic2016(root: Path, train: list[str], test: list[str]) -> dict[str, list[str]]:
    """ISBI 2016 Part 3: header-less ground truth with ``benign``/``malignant`` (or 0/1) per image, Part 1 masks."""
    ids: dict[str, list[str]] = {}
    start = 0
    for official, labels in (("Training", train), ("Test", test)):
        data = root / f"ISBI2016_ISIC_Part3_{official}_Data"
        masks = root / f"ISBI2016_ISIC_Part1_{official}_GroundTruth"
        data.mkdir(parents=True)
        masks.mkdir()
        images = _images(start, len(labels))
        start += len(labels)
        for image in images:
            shutil.copy(image, data / image.name)
            shutil.copy(sample_mask(image), masks / f"{image.stem}_Segmentation.png")
        write_csv(root / f"ISBI2016_ISIC_Part3_{official}_GroundTruth.csv", None,
                  [[image.stem, label] for image, label in zip(images, labels, strict=True)])
        ids[official] = [image.stem for image in images]
    return ids


def make_isic_cli(root: Path, diagnoses: list[str]) -> list[str]:
    """What ``isic image download`` writes: flat images and a metadata.csv with ``diagnosis_3``."""
    root.mkdir(parents=True)
    images = _images(0, len(diagnoses))
    for image in images:
        shutil.copy(image, root / image.name)
    write_csv(root / "metadata.csv", ["isic_id", "attribution", "diagnosis_1", "diagnosis_3"],
              [[image.stem, "ISIC", "Benign" if "Melanoma" not in d else "Malignant", d]
               for image, d in zip(images, diagnoses, strict=True)])
    return [image.stem for image in images]


def make_manifest(root: Path, labels: list[tuple[str, str]]) -> list[str]:
    """``manifest.csv`` with (label, split) per image, paths relative to the manifest."""
    (root / "images").mkdir(parents=True)
    images = _images(0, len(labels))
    for image in images:
        shutil.copy(image, root / "images" / image.name)
    write_csv(root / "manifest.csv", ["image", "label", "split"],
              [[f"images/{image.name}", label, split] for image, (label, split) in zip(images, labels, strict=True)])
    return [image.stem for image in images]


ISIC2024_HEADER = ["isic_id", "target", "patient_id", "age_approx", "sex", "anatom_site_general", "lesion_id",
                   "iddx_full", "tbp_lv_A", "tbp_lv_areaMM2", "attribution"]


def crop_jpeg(image: Path, side: int = 130) -> bytes:
    """A ~130 px JPEG crop of a real image, as the ISIC 2024 release stores its total-body-photo crops."""
    import io

    from PIL import Image

    with Image.open(image) as opened:
        crop = opened.convert("RGB").resize((side, side))
    buffer = io.BytesIO()
    crop.save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def write_hdf5(path: Path, entries: dict[str, bytes]) -> Path:
    """One scalar bytes dataset per key, as Kaggle's ``train-image.hdf5`` holds them."""
    import h5py
    import numpy as np

    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as handle:
        for key, data in entries.items():
            handle.create_dataset(key, data=np.void(data))
    return path


def make_isic2024(
    root: Path, rows: list[tuple[int, str, str | None, str]], *, hdf5: bool = True, test: bool = False
) -> list[str]:
    """ISIC 2024 training: ``rows`` are (target, patient_id, lesion_id or None, iddx_full); images in
    ``train-image.hdf5`` (or ``train-image/image/*.jpg``); with ``test``, unlabelled test files too."""
    images = _images(0, len(rows))
    entries = {image.stem: crop_jpeg(image) for image in images}
    if hdf5:
        write_hdf5(root / "train-image.hdf5", entries)
    else:
        (root / "train-image" / "image").mkdir(parents=True)
        for key, data in entries.items():
            (root / "train-image" / "image" / f"{key}.jpg").write_bytes(data)
    write_csv(root / "train-metadata.csv", ISIC2024_HEADER, [
        [image.stem, str(target), patient, "55", "male", "posterior torso", lesion or "", iddx, "20.5", "3.1", "ISIC"]
        for image, (target, patient, lesion, iddx) in zip(images, rows, strict=True)])
    if test:
        write_hdf5(root / "test-image.hdf5", {SAMPLE_IMAGES[-1].stem: crop_jpeg(SAMPLE_IMAGES[-1])})
        write_csv(root / "test-metadata.csv", ["isic_id", "patient_id"], [[SAMPLE_IMAGES[-1].stem, "IP_9"]])
    return [image.stem for image in images]


PH2_HEADER = ["Name", "Histological Diagnosis", "Clinical Diagnosis", "Asymmetry", "Pigment Network", "Dots/Globules",
              "Streaks", "Regression Areas", "Blue-Whitish Veil", "Colors"]


def make_ph2(root: Path, diagnoses: list[str], *, masks: bool = True) -> list[str]:
    """PH2 as distributed: BMP images and lesion masks in ``PH2 Dataset images/IMDxxx/...`` (spaces in the
    folder name), ``PH2_dataset.txt`` with ``||`` cells and the legend after the rows; ``diagnoses`` are the
    Clinical Diagnosis values (0, 1, 2)."""
    from PIL import Image

    base = root / "PH2Dataset"
    cases = []
    for k, (image, diagnosis) in enumerate(zip(_images(0, len(diagnoses)), diagnoses, strict=True)):
        case = f"IMD{k + 2:03d}"
        folder = base / "PH2 Dataset images" / case
        (folder / f"{case}_Dermoscopic_Image").mkdir(parents=True)
        (folder / f"{case}_roi").mkdir()
        with Image.open(image) as opened:
            opened.convert("RGB").save(folder / f"{case}_Dermoscopic_Image" / f"{case}.bmp")
        if masks:
            (folder / f"{case}_lesion").mkdir()
            with Image.open(sample_mask(image)) as mask:
                mask.convert("L").save(folder / f"{case}_lesion" / f"{case}_lesion.bmp")
        cases.append([case, "Melanoma" if diagnosis == "2" else "", diagnosis, "0", "AT", "A", "A", "A", "A", "3 4"])
    lines = ["|| " + " || ".join(PH2_HEADER) + " ||"] + ["|| " + " || ".join(row) + " ||" for row in cases]
    lines += ["", "Legends:", "Clinical Diagnosis: 0 - Common Nevus; 1 - Atypical Nevus; 2 - Melanoma"]
    (base / "PH2_dataset.txt").write_text("\n".join(lines) + "\n")
    return [row[0] for row in cases]


DERM7PT_HEADER = ["case_num", "diagnosis", "seven_point_score", "pigment_network", "streaks", "pigmentation",
                  "regression_structures", "dots_and_globules", "blue_whitish_veil", "vascular_structures",
                  "level_of_diagnostic_difficulty", "elevation", "location", "sex", "clinic", "derm", "notes", "management"]


def make_derm7pt(root: Path, diagnoses: list[str], splits: dict[str, list[int]] | None = None) -> list[str]:
    """Derm7pt's ``release_v0``: meta.csv, the index files of ``splits`` (name -> row indices), a clinical and a
    dermoscopic image per case; every other dermoscopic file is stored with another case than meta.csv says."""
    base = root / "release_v0"
    rows, ids = [], []
    for k, (image, diagnosis) in enumerate(zip(_images(0, 2 * len(diagnoses))[::2], diagnoses, strict=True)):
        folder = ["Aal", "Fgl", "NEL"][k % 3]
        derm, clinic = f"{folder}/{folder}{k:03d}.jpg", f"{folder}/{folder}c{k:03d}.jpg"
        on_disk = derm.upper() if k % 2 else derm
        for relative, source in ((on_disk, image), (clinic, SAMPLE_IMAGES[2 * k + 1])):
            target = base / "images" / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(source, target)
        ids.append(Path(derm).stem)
        rows.append([str(k), diagnosis, str(k % 4), "typical", "absent", "absent", "absent", "regular", "absent",
                     "absent", "low", "flat", "back", "female", clinic, derm, "", "excision"])
    write_csv(base / "meta" / "meta.csv", DERM7PT_HEADER, rows)
    for name, indexes in (splits or {}).items():
        write_csv(base / "meta" / f"{name}_indexes.csv", ["indexes"], [[str(i)] for i in indexes])
    return ids


#: HAM10000-like rows: (dx, lesion_id), two images for some lesions
HAM_ROWS = [("mel", "HAM_0"), ("nv", "HAM_1"), ("nv", "HAM_1"), ("bkl", "HAM_2"), ("mel", "HAM_3"), ("nv", "HAM_4"),
            ("nv", "HAM_5"), ("mel", "HAM_5"), ("nv", "HAM_6"), ("df", "HAM_7"), ("nv", "HAM_8"), ("mel", "HAM_9")]


def make_two_sites(root: Path, n_val: int = 6) -> tuple[Path, Path]:
    """An ISIC 2017 folder (10 train, ``n_val`` val) and a HAM10000 folder (``HAM_ROWS``) with no image in common."""
    isic = make_isic2017_subset(root / "isic2017", n_train=10, n_val=n_val)
    used = {p.stem for p in isic.rglob("ISIC_*.jpg")}
    make_ham10000(root / "ham10000", HAM_ROWS, images=[p for p in SAMPLE_IMAGES if p.stem not in used][:len(HAM_ROWS)])
    return isic, root / "ham10000"
