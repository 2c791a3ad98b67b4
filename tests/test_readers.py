"""Dataset readers: real ISIC data where available, and small layouts built here."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from PIL import Image

from attnmel.data import read_dataset
from attnmel.data.images import read_mask
from attnmel.errors import DataError

from .conftest import SAMPLE, make_isic2017_subset, sample_rows, subset_rows, synthetic_image, write_csv


def test_real_isic2017_counts(isic2017):
    summary = read_dataset(isic2017).summary()["splits"]
    assert summary["train"]["images"] == 2000
    assert summary["train"]["classes"]["melanoma"] == 374
    assert summary["train"]["masks_present"] == 1800
    assert summary["val"]["images"] == 150
    assert summary["val"]["classes"]["melanoma"] == 30
    assert summary["val"]["masks_present"] == 121
    three = read_dataset(isic2017, "isic2017-3class").summary()["splits"]["train"]["classes"]
    assert three == {"nevus": 1372, "melanoma": 374, "seborrheic_keratosis": 254}


def test_real_isic2016_counts(isic2016):
    summary = read_dataset(isic2016).summary()["splits"]
    assert (summary["train"]["images"], summary["train"]["classes"]["melanoma"], summary["train"]["masks_present"]) == (846, 165, 806)
    assert (summary["test"]["images"], summary["test"]["classes"]["melanoma"], summary["test"]["masks_present"]) == (352, 71, 339)
    with pytest.raises(DataError, match="seborrheic_keratosis"):
        read_dataset(isic2016, "isic2017-3class")


def test_bundled_sample_reads_with_masks(sample_data):
    index = read_dataset(sample_data)
    assert index.layout == "isic2017"
    assert [len(index.split(s)) for s in ("train", "val")] == [40, 20]
    assert all(s.mask_path is not None and len(s.attribute_paths) == 5 for s in index.split("train"))


def test_masks_pair_by_id_not_by_position(tmp_path):
    """Remove one mask in the middle: every other image keeps its own mask."""
    root = make_isic2017_subset(tmp_path / "ds", n_train=6, n_val=2)
    rows = subset_rows("Training", 6)
    missing = rows[2]["image_id"]
    (root / f"ISIC-2017_Training_Part1_GroundTruth/{missing}_segmentation.png").unlink()
    index = read_dataset(root)
    for sample in index.split("train"):
        if sample.image_id == missing:
            assert sample.mask_path is None
        else:
            assert sample.mask_path.name == f"{sample.image_id}_segmentation.png"
            image = Image.open(sample.image_path)
            assert read_mask(sample.mask_path, image.size).shape == (image.size[1], image.size[0])
    assert index.summary()["splits"]["train"]["masks_missing"] == 1


def test_official_2017_folder_ignores_superpixel_maps(tmp_path):
    root = make_isic2017_subset(tmp_path / "ds", n_train=3, n_val=1)
    image_id = subset_rows("Training", 3)[0]["image_id"]
    synthetic_image(root / f"ISIC-2017_Training_Data/{image_id}_superpixels.png")
    assert len(read_dataset(root).split("train")) == 3


def _isic2016(root, train_labels, test_labels):
    rows = sample_rows("Training")
    for official, labels in (("Training", train_labels), ("Test", test_labels)):
        data = root / f"ISBI2016_ISIC_Part3_{official}_Data"
        data.mkdir(parents=True)
        gt = root / f"ISBI2016_ISIC_Part1_{official}_GroundTruth"
        gt.mkdir()
        chosen = rows[:3] if official == "Training" else rows[3:5]
        for row, _ in zip(chosen, labels, strict=False):
            shutil.copy(SAMPLE / f"ISIC-2017_Training_Data/{row['image_id']}.jpg", data)
            shutil.copy(SAMPLE / f"ISIC-2017_Training_Part1_GroundTruth/{row['image_id']}_segmentation.png",
                        gt / f"{row['image_id']}_Segmentation.png")
        write_csv(root / f"ISBI2016_ISIC_Part3_{official}_GroundTruth.csv", None,
                  [[row["image_id"], label] for row, label in zip(chosen, labels, strict=False)])
    return root


def test_isic2016_layout_with_word_and_number_labels(tmp_path):
    root = _isic2016(tmp_path / "ds", ["benign", "malignant", "benign"], ["0.0", "1.0"])
    index = read_dataset(root)
    assert index.layout == "isic2016"
    assert [s.label for s in index.split("train")] == [0, 1, 0]
    assert [s.label for s in index.split("test")] == [0, 1]
    assert all(s.mask_path is not None for s in index.split("train"))


def test_isic_cli_folder(tmp_path):
    root = tmp_path / "cli"
    rows = subset_rows("Training", 4)
    for row in rows:
        root.mkdir(exist_ok=True)
        shutil.copy(SAMPLE / f"ISIC-2017_Training_Data/{row['image_id']}.jpg", root)
    diagnoses = [
        ("Malignant", "Malignant melanocytic proliferations (Melanoma)", "Melanoma Invasive"),
        ("Benign", "Benign melanocytic proliferations", "Nevus"),
        ("Benign", "Benign epidermal proliferations", "Seborrheic keratosis"),
        ("Malignant", "Malignant adnexal epithelial proliferations - Follicular", "Basal cell carcinoma"),
    ]
    write_csv(root / "metadata.csv", ["isic_id", "attribution", "diagnosis_1", "diagnosis_2", "diagnosis_3"],
              [[r["image_id"], "ISIC", *d] for r, d in zip(rows, diagnoses, strict=True)])
    index = read_dataset(root)
    assert index.layout == "isic-cli"
    assert [s.label for s in index.split("all")] == [1, 0, 0, 0]
    three = read_dataset(root, "isic2017-3class")
    assert [s.label for s in three.split("all")] == [1, 0, 2]
    assert any(p.kind == "other_class" for p in three.problems)


def test_isic_cli_legacy_diagnosis_column(tmp_path):
    root = tmp_path / "cli"
    rows = subset_rows("Training", 2)
    root.mkdir()
    for row in rows:
        shutil.copy(SAMPLE / f"ISIC-2017_Training_Data/{row['image_id']}.jpg", root)
    write_csv(root / "metadata.csv", ["isic_id", "benign_malignant", "diagnosis"],
              [[rows[0]["image_id"], "malignant", "melanoma"], [rows[1]["image_id"], "benign", "nevus"]])
    assert [s.label for s in read_dataset(root).split("all")] == [1, 0]


def test_manifest_with_masks_splits_spaces_and_unicode(tmp_path):
    root = tmp_path / "my data"
    rows = subset_rows("Training", 3)
    (root / "imgs ü").mkdir(parents=True)
    for row in rows:
        shutil.copy(SAMPLE / f"ISIC-2017_Training_Data/{row['image_id']}.jpg", root / "imgs ü")
    shutil.copy(SAMPLE / f"ISIC-2017_Training_Part1_GroundTruth/{rows[0]['image_id']}_segmentation.png", root / "m.png")
    write_csv(root / "list.csv", ["image", "label", "mask", "split"], [
        [f"imgs ü/{rows[0]['image_id']}.jpg", "melanoma", "m.png", "train"],
        [f"imgs ü/{rows[1]['image_id']}.jpg", "0", "", "train"],
        [str(root / f"imgs ü/{rows[2]['image_id']}.jpg"), "1", "", "val"],
    ])
    index = read_dataset(root / "list.csv")
    assert index.layout == "manifest"
    assert [s.label for s in index.split("train")] == [1, 0]
    assert index.split("train")[0].mask_path == root / "m.png"
    assert index.split("val")[0].image_id == rows[2]["image_id"]


def test_layout_detection_errors(tmp_path):
    with pytest.raises(DataError, match="empty"):
        read_dataset(tmp_path)
    (tmp_path / "x.txt").write_text("hi")
    with pytest.raises(DataError, match="not a recognised dataset layout"):
        read_dataset(tmp_path)
    with pytest.raises(DataError, match="not found"):
        read_dataset(tmp_path / "missing")


def test_mask_binarisation_accepts_0_1_and_antialiased(tmp_path):
    zero_one = np.zeros((10, 12), np.uint8)
    zero_one[2:5, 3:7] = 1
    Image.fromarray(zero_one).save(tmp_path / "a.png")
    assert read_mask(tmp_path / "a.png", (12, 10)).sum() == 12
    soft = np.zeros((10, 12), np.uint8)
    soft[2:5, 3:7] = 200
    soft[0, 0] = 60
    Image.fromarray(soft).save(tmp_path / "b.png")
    assert read_mask(tmp_path / "b.png").sum() == 12
