"""Issue 20: whatever is wrong in a manifest, ground truth or metadata CSV is one DataError naming the file
and the line (never a KeyError or a _csv.Error), labels such as ISIC 2019's ``1.00`` are read, a text label
is called text, and the mask note counts only masks whose image is not in the folder."""

from __future__ import annotations

import re
import shutil

import pytest

from attnmel.data import read_dataset
from attnmel.errors import DataError

from .conftest import make_isic2017_subset
from .layouts import (
    ISIC2019_HEADER,
    SAMPLE_IMAGES,
    make_ham10000,
    make_isic2019,
    make_isic_cli,
    make_manifest,
    sample_mask,
)


def _manifest(root):
    make_manifest(root, [("1", "train"), ("0", "train"), ("0", "val")])
    return root / "manifest.csv"


def _isic_cli(root):
    make_isic_cli(root, ["Melanoma Invasive", "Nevus", "Nevus"])
    return root / "metadata.csv"


def _ham10000(root):
    make_ham10000(root, [("mel", "L1"), ("nv", "L2"), ("nv", "L3")], masks=False)
    return root / "HAM10000_metadata.csv"


def _isic2017(root):
    make_isic2017_subset(root, n_train=3, n_val=2, masks=False)
    return root / "ISIC-2017_Training_Part3_GroundTruth.csv"


CSV_FILES = {"manifest": _manifest, "isic-cli": _isic_cli, "ham10000": _ham10000, "isic2017": _isic2017}


def _damage(csv_file, how):
    lines = csv_file.read_text().splitlines()
    if how == "short row":
        lines[2] = lines[2].split(",")[0]
    elif how == "unclosed quote":
        lines[2] = lines[2].replace(",", ',"', 1)
    else:
        fields = lines[2].split(",")
        lines[2] = ",".join([*fields[:-1], "x" * 140_000])
    csv_file.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("layout", sorted(CSV_FILES))
@pytest.mark.parametrize(("how", "message"), [
    ("short row", r"line 3 has 1 fields but the header has \d+ \(missing "),
    ("unclosed quote", "line 3: a quoted field is never closed"),
    ("huge field", "line 3: a field is longer than 131,072 characters"),
])
def test_damaged_csv_is_one_line_naming_file_and_line(tmp_path, layout, how, message):
    csv_file = CSV_FILES[layout](tmp_path / "ds")
    _damage(csv_file, how)
    with pytest.raises(DataError, match=message) as caught:
        read_dataset(tmp_path / "ds" if layout != "manifest" else csv_file)
    assert caught.value.path == csv_file
    assert "\n" not in str(caught.value)


def test_isic2019_labels_written_as_1_00_and_0_00(tmp_path):
    make_isic2019(tmp_path, [("MEL", None), ("NV", None), ("BCC", None)])
    truth = tmp_path / "ISIC_2019_Training_GroundTruth.csv"
    truth.write_text(truth.read_text().replace("1.0", "1.00").replace("0.0", "0.00"))
    assert "1.00" in truth.read_text()
    index = read_dataset(tmp_path, "isic2019-8class")
    assert [index.task.class_names[s.label] for s in index.split("train")] == ["MEL", "NV", "BCC"]


@pytest.mark.parametrize(("value", "said"), [
    ("maybe", "is the text 'maybe', not 0/1"), ("", "is empty"), ("NaN", "is NaN"), ("n/a", "is missing ('n/a')"), ("2", "is '2', not 0/1"),
])
def test_a_wrong_label_is_named_for_what_it_is(tmp_path, value, said):
    truth = _isic2017(tmp_path)
    lines = truth.read_text().splitlines()
    fields = lines[1].split(",")
    lines[1] = ",".join([fields[0], value, *fields[2:]])
    truth.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=re.escape(f"column 'melanoma' {said}")):
        read_dataset(tmp_path)


def test_mask_note_counts_only_masks_without_an_image(tmp_path):
    """A UNK image (read, left out of the task) keeps its mask out of the note; a mask of no image is in it."""
    make_isic2019(tmp_path, [("MEL", None), ("UNK", None)])
    masks = tmp_path / "ISIC2018_Task1_Training_GroundTruth"
    masks.mkdir()
    for image in SAMPLE_IMAGES[:2] + [SAMPLE_IMAGES[5]]:  # the two images of the dataset, and one of no image
        shutil.copy(sample_mask(image), masks / f"{image.stem}_segmentation.png")
    index = read_dataset(tmp_path, "isic2019-8class")
    notes = [p.message for p in index.problems if p.kind == "orphan_mask"]
    assert notes == [f"1 lesion masks have no image in this dataset (e.g. {SAMPLE_IMAGES[5].stem}_segmentation.png); ignored."]
    assert index.left_out == {"train": {"UNK": 1}}
    assert ISIC2019_HEADER[-1] == "UNK"
