"""The datasets researchers validate on now, read as downloaded: ISIC 2024 (SLICE-3D, HDF5), PH2 and
Derm7pt, built from real ISIC images with each release's quirks."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader
from torchvision.transforms import v2

from attnmel.data import read_dataset
from attnmel.data.dataset import IsicDataset
from attnmel.data.images import read_image, read_mask, verify_image
from attnmel.errors import DataError

from .conftest import REPO
from .layouts import SAMPLE_IMAGES, crop_jpeg, make_derm7pt, make_isic2024, make_ph2, write_hdf5

MEL = "Malignant::Malignant melanocytic proliferations (Melanoma)::Melanoma Invasive"
BCC = "Malignant::Malignant adnexal epithelial proliferations - Follicular::Basal cell carcinoma"
ISIC2024_ROWS = [(1, "IP_1", "IL_1", MEL), (0, "IP_1", None, "Benign"), (1, "IP_2", "IL_2", BCC), (0, "IP_3", None, "Benign")]


# --------------------------------------------------------------------------------------------- ISIC 2024


def test_isic2024_targets_groups_modality_and_unlabelled_test(tmp_path):
    ids = make_isic2024(tmp_path, ISIC2024_ROWS, test=True)
    index = read_dataset(tmp_path, "isic2024-binary")
    assert index.layout == "isic2024"
    train = index.split("train")
    assert [s.image_id for s in train] == ids and [s.label for s in train] == [1, 0, 1, 0]
    assert [s.groups for s in train] == [{"patient_id": "IP_1", "lesion_id": "IL_1"}, {"patient_id": "IP_1"},
                                         {"patient_id": "IP_2", "lesion_id": "IL_2"}, {"patient_id": "IP_3"}]
    summary = index.summary()
    assert "not dermoscopy" in summary["modality"]
    assert summary["splits"]["train"]["groups"] == {"lesion_id": 2, "patient_id": 3}
    assert [p.kind for p in index.problems] == ["partial_split"]
    # task melanoma reads iddx_full: the basal cell carcinoma is malignant but not melanoma
    assert [s.label for s in read_dataset(tmp_path).split("train")] == [1, 0, 0, 0]
    image = read_image(train[0].image_path)
    assert image.size == (130, 130) and train[0].image_path.parent.name == "train-image.hdf5"
    assert verify_image(train[0].image_path) == (130, 130)


def test_isic2024_jpeg_folder_reads_the_same_images(tmp_path):
    make_isic2024(tmp_path / "h", ISIC2024_ROWS)
    make_isic2024(tmp_path / "j", ISIC2024_ROWS, hdf5=False)
    from_hdf5, from_files = (read_dataset(tmp_path / n, "isic2024-binary").split("train") for n in "hj")
    assert [s.image_path.suffix for s in from_files] == [".jpg"] * 4
    for a, b in zip(from_hdf5, from_files, strict=True):
        assert (a.image_id, a.label, a.groups) == (b.image_id, b.label, b.groups)
        assert np.array_equal(np.asarray(read_image(a.image_path)), np.asarray(read_image(b.image_path)))


def test_isic2024_key_without_metadata_and_row_without_image(tmp_path):
    make_isic2024(tmp_path, ISIC2024_ROWS)
    stray = SAMPLE_IMAGES[10].stem
    entries = {s: crop_jpeg(p) for s, p in ((p.stem, p) for p in SAMPLE_IMAGES[:3] + [SAMPLE_IMAGES[10]])}
    write_hdf5(tmp_path / "train-image.hdf5", entries)  # image 4 has a row but no entry; image 11 an entry but no row
    with pytest.raises(DataError, match=f"{SAMPLE_IMAGES[3].stem} is listed but has no image"):
        read_dataset(tmp_path, "isic2024-binary")
    (tmp_path / "train-metadata.csv").write_text(
        "\n".join(line for line in (tmp_path / "train-metadata.csv").read_text().splitlines()
                  if SAMPLE_IMAGES[3].stem not in line) + "\n")
    with pytest.raises(DataError, match=f"image {stray} has no label in train-metadata.csv") as caught:
        read_dataset(tmp_path, "isic2024-binary")
    assert caught.value.path == tmp_path / "train-image.hdf5" / stray
    skipped = read_dataset(tmp_path, "isic2024-binary", skip_bad=True)
    assert len(skipped.split("train")) == 3 and any(p.kind == "unlabelled_image" for p in skipped.problems)


def test_isic2024_missing_metadata_and_melanoma_without_diagnosis(tmp_path):
    make_isic2024(tmp_path, ISIC2024_ROWS)
    metadata = tmp_path / "train-metadata.csv"
    lines = metadata.read_text().splitlines()
    column = lines[0].split(",").index("iddx_full")
    metadata.write_text("\n".join(",".join(c for k, c in enumerate(line.split(",")) if k != column) for line in lines))
    with pytest.raises(DataError, match="use task 'isic2024-binary'"):
        read_dataset(tmp_path)
    assert len(read_dataset(tmp_path, "isic2024-binary").split("train")) == 4
    (tmp_path / "train-image.hdf5").unlink()
    with pytest.raises(DataError, match="no train-image.hdf5 nor train-image/image/"):
        read_dataset(tmp_path, "isic2024-binary")
    metadata.unlink()
    (tmp_path / "notes.txt").write_text("images elsewhere")
    with pytest.raises(DataError, match="not a recognised dataset layout"):
        read_dataset(tmp_path)
    with pytest.raises(DataError, match="no train-metadata.csv"):
        read_dataset(tmp_path, layout="isic2024")



def test_isic2024_images_decode_in_dataloader_workers(tmp_path):
    make_isic2024(tmp_path, ISIC2024_ROWS)
    samples = read_dataset(tmp_path, "isic2024-binary").split("train")
    dataset = IsicDataset(samples, v2.Compose([v2.Resize((64, 64)), v2.ToDtype(torch.float32, scale=True)]))
    batches = list(DataLoader(dataset, batch_size=2, num_workers=2))
    assert sum(len(b["label"]) for b in batches) == 4
    assert all(b["image"].shape[1:] == (3, 64, 64) for b in batches)


def test_streaming_a_small_hdf5_stays_far_below_a_gigabyte(tmp_path):
    """The benchmark's own measure, on 200 images, in a fresh process (the 20,000-image figure is in RESULTS.md)."""
    result = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "isic2024_memory.py"), "--images", "200", "--workers", "2",
         "--folder", str(tmp_path / "bench"), "--json"],
        capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(REPO / "src")},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    measured = json.loads(result.stdout.strip().splitlines()[-1])
    assert measured["images"] == 200
    assert 0 < measured["peak_mb"] < 1024


# --------------------------------------------------------------------------------------------- PH2


def test_ph2_bmp_images_masks_three_classes_and_criteria(tmp_path):
    cases = make_ph2(tmp_path, ["0", "1", "2", "0"])
    for data in (tmp_path, tmp_path / "PH2Dataset"):  # the folder it was unpacked into, or the release's own
        index = read_dataset(data, "ph2-3class")
        assert index.layout == "ph2" and list(index.splits) == ["test"]
        test = index.split("test")
        assert [s.image_id for s in test] == cases
        assert [index.task.class_names[s.label] for s in test] == ["common_nevus", "atypical_nevus", "melanoma",
                                                                     "common_nevus"]
    sample = test[2]
    assert " " in str(sample.image_path.parent) and sample.image_path.suffix == ".bmp"
    image = read_image(sample.image_path)
    assert read_mask(sample.mask_path, image.size).any()
    assert sample.criteria == {"Asymmetry": "0", "Pigment Network": "AT", "Dots/Globules": "A", "Streaks": "A",
                               "Regression Areas": "A", "Blue-Whitish Veil": "A", "Colors": "3 4"}
    assert [s.label for s in read_dataset(tmp_path).split("test")] == [0, 0, 1, 0]
    with pytest.raises(DataError, match="ph2-3class"):
        read_dataset(SAMPLE_IMAGES[0].parent.parent, "ph2-3class")


def test_ph2_missing_table_and_unknown_diagnosis(tmp_path):
    make_ph2(tmp_path, ["0", "2"])
    table = tmp_path / "PH2Dataset" / "PH2_dataset.txt"
    table.write_text(table.read_text().replace("|| 2 ||", "|| 5 ||"))
    with pytest.raises(DataError, match=r"line 3: Clinical Diagnosis of IMD003 is '5', not 0 \(common nevus\)"):
        read_dataset(tmp_path)
    table.unlink()
    with pytest.raises(DataError, match="the PH2 label table is missing") as caught:
        read_dataset(tmp_path)
    assert caught.value.path == table


# --------------------------------------------------------------------------------------------- Derm7pt


def test_derm7pt_official_splits_criteria_mixed_case_and_clinic_view(tmp_path):
    diagnoses = ["melanoma (less than 0.76 mm)", "clark nevus", "melanoma metastasis", "blue nevus", "lentigo"]
    ids = make_derm7pt(tmp_path, diagnoses, {"train": [0, 3], "valid": [1], "test": [2, 4]})
    for data in (tmp_path, tmp_path / "release_v0"):
        index = read_dataset(data)
        assert index.layout == "derm7pt"
        assert {split: [s.image_id for s in samples] for split, samples in index.splits.items()} == {
            "train": [ids[0], ids[3]], "val": [ids[1]], "test": [ids[2], ids[4]]}
    assert [s.label for s in index.split("test")] == [1, 0]
    odd = index.split("val")[0]  # stored as AAL/AAL001.JPG, listed as Aal/Aal001.jpg
    assert odd.image_path.name == odd.image_path.name.upper() and read_image(odd.image_path).size
    assert odd.criteria["pigment_network"] == "typical" and odd.criteria["seven_point_score"] == "1"
    assert len(odd.criteria) == 8 and odd.groups == {"lesion_id": "derm7pt-1"}
    clinic = read_dataset(tmp_path, layout="derm7pt-clinic")
    assert clinic.summary()["modality"].startswith("clinical")
    assert all("c" in s.image_id[3:] for samples in clinic.splits.values() for s in samples)
    with pytest.raises(DataError, match="isic2018-7class"):
        read_dataset(tmp_path, "isic2018-7class")


def test_derm7pt_unknown_diagnosis_missing_image_and_missing_table(tmp_path):
    ids = make_derm7pt(tmp_path, ["melanoma", "clark nevus"])
    meta = tmp_path / "release_v0" / "meta" / "meta.csv"
    meta.write_text(meta.read_text().replace("clark nevus", "unicorn nevus"))
    with pytest.raises(DataError, match="line 3: diagnosis of case 1 is 'unicorn nevus', not a Derm7pt diagnosis"):
        read_dataset(tmp_path)
    meta.write_text(meta.read_text().replace("unicorn nevus", "clark nevus"))
    next((tmp_path / "release_v0" / "images").rglob(f"{ids[0]}.jpg")).unlink()
    with pytest.raises(DataError, match=f"{ids[0]} is listed but has no image"):
        read_dataset(tmp_path)
    meta.unlink()
    with pytest.raises(DataError, match="the Derm7pt label table is missing"):
        read_dataset(tmp_path / "release_v0", layout="derm7pt")


def test_data_check_says_modality_and_counts_criteria(tmp_path):
    from attnmel.data.integrity import check_dataset

    make_derm7pt(tmp_path / "d", ["melanoma", "clark nevus", "lentigo"])
    make_isic2024(tmp_path / "i", ISIC2024_ROWS)
    derm7pt = check_dataset(tmp_path / "d", decode=False)
    assert derm7pt.to_dict()["datasets"][0]["splits"]["all"]["criteria"]["pigment_network"] == {"typical": 3}
    assert "pigment_network: typical 3" in derm7pt.to_text()
    assert "images: 3D total-body photography crops (~130 px), not dermoscopy" in check_dataset(
        tmp_path / "i", "isic2024-binary", decode=False).to_text()
