"""Bad input gets an error that names the file (or, when skipping was asked for, a recorded note)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from attnmel.data import read_dataset
from attnmel.data.images import read_image, read_mask
from attnmel.data.integrity import check_dataset
from attnmel.errors import DataError

from .conftest import make_isic2017_subset, subset_rows, synthetic_image, write_csv


def test_truncated_jpeg_names_the_file(tmp_path):
    buffer = io.BytesIO()
    Image.fromarray(np.full((64, 64, 3), 128, np.uint8)).save(buffer, format="JPEG")
    path = tmp_path / "ISIC_9999999.jpg"
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    with pytest.raises(DataError, match="truncated") as info:
        read_image(path)
    assert info.value.path == path and str(path) in str(info.value)


def test_zero_byte_and_non_image(tmp_path):
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    with pytest.raises(DataError, match="empty"):
        read_image(empty)
    text = tmp_path / "note.png"
    text.write_text("this is not a picture")
    with pytest.raises(DataError, match="not a readable image") as info:
        read_image(text)
    assert str(text) in str(info.value)


@pytest.mark.parametrize("mode", ["L", "RGBA", "I;16"])
def test_grayscale_rgba_and_16bit_become_rgb(tmp_path, mode):
    path = synthetic_image(tmp_path / f"img_{mode.replace(';', '')}.png", size=(40, 30), mode=mode)
    image = read_image(path)
    assert image.mode == "RGB" and image.size == (40, 30)


def test_16bit_scales_instead_of_clipping(tmp_path):
    array = np.full((20, 20), 65535, np.uint16)
    array[0, 0] = 0
    Image.fromarray(array).save(tmp_path / "x.png")
    rgb = np.asarray(read_image(tmp_path / "x.png"))
    assert rgb[1, 1, 0] == 255 and rgb[0, 0, 0] == 0


def test_mask_of_wrong_size(tmp_path):
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(tmp_path / "m.png")
    with pytest.raises(DataError, match="mask is 10x10 px but its image is 20x10 px") as info:
        read_mask(tmp_path / "m.png", (20, 10))
    assert info.value.path == tmp_path / "m.png"


def test_id_in_csv_without_image(tmp_path):
    root = make_isic2017_subset(tmp_path / "ds", n_train=3, n_val=1)
    missing = subset_rows("Training", 3)[1]["image_id"]
    (root / f"ISIC-2017_Training_Data/{missing}.jpg").unlink()
    with pytest.raises(DataError, match=f"{missing} is listed but has no image") as info:
        read_dataset(root)
    assert info.value.path.name == "ISIC-2017_Training_Part3_GroundTruth.csv"
    index = read_dataset(root, skip_bad=True)
    assert len(index.split("train")) == 2
    assert sorted(p.kind for p in index.problems) == ["missing_image", "orphan_mask"]


def test_image_without_label(tmp_path):
    root = make_isic2017_subset(tmp_path / "ds", n_train=2, n_val=1)
    stray = synthetic_image(root / "ISIC-2017_Training_Data/ISIC_0999999.jpg")
    with pytest.raises(DataError, match="has no label") as info:
        read_dataset(root)
    assert info.value.path == stray
    assert check_dataset(root).of_kind("unlabelled_image")[0].paths == (stray,)


def test_duplicate_ids(tmp_path):
    root = make_isic2017_subset(tmp_path / "ds", n_train=2, n_val=1)
    rows = subset_rows("Training", 2)
    write_csv(root / "ISIC-2017_Training_Part3_GroundTruth.csv", ["image_id", "melanoma", "seborrheic_keratosis"],
              [[r["image_id"], r["melanoma"], r["seborrheic_keratosis"]] for r in rows + rows[:1]])
    with pytest.raises(DataError, match="listed more than once"):
        read_dataset(root)


def test_nan_label_names_row(tmp_path):
    root = make_isic2017_subset(tmp_path / "ds", n_train=2, n_val=1)
    first = subset_rows("Training", 3)[0]["image_id"]
    write_csv(root / "ISIC-2017_Training_Part3_GroundTruth.csv", ["image_id", "melanoma", "seborrheic_keratosis"],
              [[first, "nan", "0.0"]])
    with pytest.raises(DataError, match=f"label of {first} in column 'melanoma' is NaN"):
        read_dataset(root)


def test_data_check_lists_unreadable_files(tmp_path):
    root = make_isic2017_subset(tmp_path / "ds", n_train=3, n_val=1)
    victim = root / f"ISIC-2017_Training_Data/{subset_rows('Training', 3)[0]['image_id']}.jpg"
    victim.write_bytes(victim.read_bytes()[:300])
    report = check_dataset(root)
    assert not report.ok
    assert [f.paths for f in report.of_kind("unreadable_image")] == [(victim,)]
    assert str(victim) in report.to_text()


def test_error_inside_a_dataloader_worker_still_names_the_file(tmp_path):
    """PyTorch re-raises a worker's exception as ``type(exc)(traceback_text)``; the file must stay named."""
    from torch.utils.data import DataLoader

    from attnmel.data.dataset import IsicDataset
    from attnmel.data.records import Sample

    good = synthetic_image(tmp_path / "good.png")
    bad = tmp_path / "bad.png"
    bad.write_bytes(good.read_bytes()[:200])
    dataset = IsicDataset([Sample("good", good, 0, "train"), Sample("bad", bad, 1, "train")], lambda pair: pair)
    with pytest.raises(DataError) as info:
        list(DataLoader(dataset, batch_size=1, num_workers=1))
    message = str(info.value)
    assert message.startswith(f"{bad}: image is truncated") and "\n" not in message
