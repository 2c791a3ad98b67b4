"""Readers of ISIC 2018 Task 3, HAM10000, ISIC 2019 and ISIC 2020, on small folders with the official
names and headers (real images, relabelled): counts per split and class, groups, masks, duplicates."""

from __future__ import annotations

import shutil

import pytest

from attnmel.data import read_dataset
from attnmel.data.images import read_image
from attnmel.errors import DataError

from .conftest import write_csv
from .layouts import (
    ISIC2018_HEADER,
    SAMPLE_IMAGES,
    make_ham10000,
    make_isic2018,
    make_isic2019,
    make_isic2020,
    sample_mask,
)

CLASSES_2018 = ["MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC"]


def _isic2018(root):
    """Training: 2 images per class, lesions of 1-2 images; Validation: one per class; Test images
    without ground truth (as the 2018 release first came)."""
    train = [(cls, f"HAM_{k // 2:07d}") for k, cls in enumerate(c for c in CLASSES_2018 for _ in range(2))]
    ids = make_isic2018(root, {"Training": train, "Validation": [(cls, None) for cls in CLASSES_2018]})
    test = root / "ISIC2018_Task3_Test_Input"
    test.mkdir()
    shutil.copy(SAMPLE_IMAGES[-1], test)
    return ids


def test_isic2018_counts_classes_groups_and_masks(tmp_path):
    ids = _isic2018(tmp_path)
    index = read_dataset(tmp_path, "isic2018-7class")
    assert index.layout == "isic2018" and sorted(index.splits) == ["train", "val"]
    summary = index.summary()["splits"]
    assert summary["train"]["classes"] == {cls: 2 for cls in CLASSES_2018}
    assert summary["val"]["classes"] == {cls: 1 for cls in CLASSES_2018}
    assert summary["train"]["groups"] == {"lesion_id": 7} and "groups" not in summary["val"]
    assert (summary["train"]["masks_present"], summary["val"]["masks_present"]) == (7, 4)
    train = index.split("train")
    assert [s.image_id for s in train] == ids["Training"]
    assert [index.task.class_names[s.label] for s in train] == [c for c in CLASSES_2018 for _ in range(2)]
    assert train[0].groups == {"lesion_id": "HAM_0000000"} == train[1].groups
    for sample in train + index.split("val"):   # masks are paired by ID, whatever folder they are in
        if sample.mask_path is not None:
            assert sample.mask_path.name == f"{sample.image_id}_segmentation.png"
            assert read_mask_fits(sample)
    assert [p.kind for p in index.problems] == ["partial_split"]    # test images without ground truth
    melanoma = read_dataset(tmp_path)
    assert melanoma.task.name == "melanoma"
    assert melanoma.summary()["splits"]["train"]["classes"] == {"other": 12, "melanoma": 2}


def read_mask_fits(sample) -> bool:
    from attnmel.data.images import read_mask

    image = read_image(sample.image_path)
    return read_mask(sample.mask_path, image.size).shape == (image.size[1], image.size[0])


def test_isic2018_header_is_read_by_name_and_rows_must_be_one_hot(tmp_path):
    make_isic2018(tmp_path, {"Training": [("MEL", None), ("NV", None), ("DF", None)]}, masks=False)
    truth = tmp_path / "ISIC2018_Task3_Training_GroundTruth" / "ISIC2018_Task3_Training_GroundTruth.csv"
    lines = truth.read_text().splitlines()
    # columns in another order are read by name
    reordered = ["image", *reversed(ISIC2018_HEADER[1:])]
    rows = [dict(zip(ISIC2018_HEADER, line.split(","), strict=True)) for line in lines[1:]]
    write_csv(truth, reordered, [[row[c] for c in reordered] for row in rows])
    index = read_dataset(tmp_path, "isic2018-7class")
    assert [index.task.class_names[s.label] for s in index.split("train")] == ["MEL", "NV", "DF"]
    # a renamed class column is an error naming the file, never a guess
    write_csv(truth, [c.replace("AKIEC", "AK") for c in ISIC2018_HEADER], [line.split(",") for line in lines[1:]])
    with pytest.raises(DataError, match="missing \\['AKIEC'\\]") as error:
        read_dataset(tmp_path, "isic2018-7class")
    assert error.value.path == truth
    # two classes marked in one row: an error, or a finding with skip_bad
    bad = [line.split(",") for line in lines[1:]]
    bad[1][1] = "1.0"
    write_csv(truth, ISIC2018_HEADER, bad)
    with pytest.raises(DataError, match="marked as 2 classes"):
        read_dataset(tmp_path, "isic2018-7class")
    skipped = read_dataset(tmp_path, "isic2018-7class", skip_bad=True)
    assert len(skipped.split("train")) == 2 and [p.kind for p in skipped.problems] == ["bad_label"]


def test_ham10000_dataverse_release(tmp_path):
    dx = ["mel", "nv", "nv", "bcc", "akiec", "bkl", "df", "vasc", "nv", "mel"]
    lesions = ["HAM_0000001", "HAM_0000002", "HAM_0000002", "HAM_0000003", "HAM_0000004", "HAM_0000005",
               "HAM_0000006", "HAM_0000007", "HAM_0000008", "HAM_0000001"]
    ids = make_ham10000(tmp_path, list(zip(dx, lesions, strict=True)))
    index = read_dataset(tmp_path, "isic2018-7class")
    assert index.layout == "ham10000" and list(index.splits) == ["train"]
    samples = index.split("train")
    assert sorted(s.image_id for s in samples) == sorted(ids)
    assert {s.image_path.parent.name for s in samples} == {"HAM10000_images_part_1", "HAM10000_images_part_2"}
    summary = index.summary()["splits"]["train"]
    assert summary["classes"] == {"MEL": 2, "NV": 3, "BCC": 1, "AKIEC": 1, "BKL": 1, "DF": 1, "VASC": 1}
    assert summary["groups"] == {"lesion_id": 8} and summary["masks_present"] == 10
    assert all(s.mask_path.name == f"{s.image_id}_segmentation.png" for s in samples)
    assert read_dataset(tmp_path).summary()["splits"]["train"]["classes"] == {"other": 8, "melanoma": 2}
    metadata = (tmp_path / "HAM10000_metadata.csv").read_text().replace(",nv,", ",naevus,", 1)
    (tmp_path / "HAM10000_metadata.csv").write_text(metadata)
    with pytest.raises(DataError, match="naevus"):
        read_dataset(tmp_path)


def test_isic2019_downsampled_names_unk_and_lesions(tmp_path):
    classes = ["MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC", "SCC", "UNK", "NV", "MEL", "UNK"]
    lesions = ["HAM_0000001", None, "MSK4_1", None, "BCN_1", None, None, None, None, "HAM_0000001", None, None]
    ids = make_isic2019(tmp_path, list(zip(classes, lesions, strict=True)))
    index = read_dataset(tmp_path, "isic2019-8class")
    assert index.layout == "isic2019"
    samples = {s.image_id: s for s in index.split("train")}
    assert sorted(samples) == sorted(i for i, c in zip(ids, classes, strict=True) if c != "UNK")
    assert samples[ids[2]].image_path.name == f"{ids[2]}_downsampled.jpg"
    summary = index.summary()["splits"]["train"]
    assert summary["classes"] == {"MEL": 2, "NV": 2, "BCC": 1, "AK": 1, "BKL": 1, "DF": 1, "VASC": 1, "SCC": 1}
    assert summary["left_out"] == {"UNK": 2} and summary["groups"] == {"lesion_id": 3}
    assert [p.kind for p in index.problems] == ["other_class", "other_class"]     # reported, not an error
    assert samples[ids[0]].groups == samples[ids[9]].groups == {"lesion_id": "HAM_0000001"}
    assert samples[ids[1]].groups == {}
    melanoma = read_dataset(tmp_path)                                              # UNK is not melanoma
    assert melanoma.summary()["splits"]["train"]["classes"] == {"other": 10, "melanoma": 2}


def test_isic2020_patients_lesions_duplicates_and_names(tmp_path):
    rows = [("benign", "IP_1", "IL_1"), ("benign", "IP_1", "IL_1"), ("malignant", "IP_1", "IL_2"),
            ("benign", "IP_2", "IL_3"), ("malignant", "IP_3", "IL_4"), ("benign", "IP_4", "IL_5")]
    ids = make_isic2020(tmp_path, rows, duplicates=[(3, 5)])
    # the first release (no lesion_id) beside the v2 file: v2 wins
    write_csv(tmp_path / "ISIC_2020_Training_GroundTruth.csv", ["image_name", "patient_id", "target"],
              [[i, "IP_9", "0"] for i in ids])
    index = read_dataset(tmp_path, "isic2020-binary")
    assert index.layout == "isic2020" and index.task.class_names == ("benign", "malignant")
    summary = index.summary()["splits"]["train"]
    assert summary["classes"] == {"benign": 4, "malignant": 2}
    assert summary["groups"] == {"lesion_id": 5, "patient_id": 4}
    assert index.duplicates == [(ids[3], ids[5])]
    samples = {s.image_id: s for s in index.split("train")}
    assert samples[ids[2]].groups == {"patient_id": "IP_1", "lesion_id": "IL_2"}
    assert read_dataset(tmp_path).summary()["splits"]["train"]["classes"] == {"other": 4, "melanoma": 2}


def test_isic2020_first_release_in_a_train_folder(tmp_path):
    make_isic2020(tmp_path, [("benign", "IP_1", ""), ("malignant", "IP_2", "")], folder="train", version="")
    index = read_dataset(tmp_path)
    assert index.layout == "isic2020"
    assert [s.groups for s in index.split("train")] == [{"patient_id": "IP_1"}, {"patient_id": "IP_2"}]
    assert [s.label for s in index.split("train")] == [0, 1]


def test_a_task_reads_only_datasets_that_name_its_classes(tmp_path, sample_data):
    with pytest.raises(DataError, match="isic2018 ground truth") as error:
        read_dataset(sample_data, "isic2018-7class")
    assert "'melanoma' or 'isic2017-3class'" in error.value.fix
    make_isic2018(tmp_path, {"Training": [("MEL", None), ("NV", None)]}, masks=False)
    for task in ("isic2019-8class", "isic2020-binary", "isic2017-3class"):
        with pytest.raises(DataError, match="does not have"):
            read_dataset(tmp_path, task)


def test_manifest_carries_groups_and_left_out_classes(tmp_path):
    images = SAMPLE_IMAGES[:3]
    write_csv(tmp_path / "manifest.csv", ["image", "label", "lesion_id", "patient_id"], [
        [str(images[0]), "MEL", "L1", "P1"], [str(images[1]), "SCC", "L1", ""], [str(images[2]), "UNK", "", "P2"],
    ])
    index = read_dataset(tmp_path, "isic2019-8class")
    assert [s.groups for s in index.split("all")] == [{"lesion_id": "L1", "patient_id": "P1"}, {"lesion_id": "L1"}]
    assert index.left_out == {"all": {"UNK": 1}}


def test_layouts_are_detected_from_their_official_names(tmp_path):
    from attnmel.data.readers import detect_layout

    make_isic2018(tmp_path / "a", {"Training": [("MEL", None)]}, masks=False)
    make_ham10000(tmp_path / "b", [("mel", "HAM_1")], masks=False)
    make_isic2019(tmp_path / "c", [("MEL", None)])
    make_isic2020(tmp_path / "d", [("benign", "IP_1", "IL_1")])
    assert [detect_layout(tmp_path / n) for n in "abcd"] == ["isic2018", "ham10000", "isic2019", "isic2020"]
    assert sample_mask(SAMPLE_IMAGES[0]).is_file()
