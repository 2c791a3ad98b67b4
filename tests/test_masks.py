"""Regions of interest: ISIC 2017 Part 2 superpixel features decoded exactly, errors that name the file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from attnmel.data.dataset import IsicDataset
from attnmel.data.images import read_superpixel_index
from attnmel.data.masks import (
    RoiSpec,
    has_region,
    read_superpixel_features,
    region_of_interest,
    superpixel_union,
)
from attnmel.data.readers import read_dataset
from attnmel.data.records import Sample
from attnmel.data.transforms import NORMALIZATION_PRESETS, geometry, train_augment
from attnmel.errors import ConfigError, DataError

from .conftest import write_csv

# A 6 x 9 image cut into six 3 x 3 superpixels (indices 0..5 row by row) ...
INDEX = np.repeat(np.repeat(np.arange(6).reshape(2, 3), 3, axis=0), 3, axis=1)
# ... whose annotation marks superpixel 1 as network, 4 as streaks and 5 as globules.
FEATURES = {
    "pigment_network": [0, 1, 0, 0, 0, 0],
    "negative_network": [0, 0, 0, 0, 0, 0],
    "milia_like_cyst": [0, 0, 0, 0, 0, 0],
    "streaks": [0, 0, 0, 0, 1, 0],
    "globules": [0, 0, 0, 0, 0, 1],
}


def encode_superpixels(index: np.ndarray) -> np.ndarray:
    """ISIC's encoding, written independently of the decoder: R = low byte, G = middle, B = high."""
    return np.stack([index & 0xFF, (index >> 8) & 0xFF, (index >> 16) & 0xFF], axis=-1).astype(np.uint8)


def write_superpixel_example(
    folder: Path, index=INDEX, features=FEATURES, name="ISIC_0000001", annotation_folder: Path | None = None
) -> tuple[Path, Path]:
    """``<name>_superpixels.png`` in ``folder`` and ``<name>_features.json`` beside it (or in ``annotation_folder``)."""
    annotation_folder = annotation_folder or folder
    for path in (folder, annotation_folder):
        path.mkdir(parents=True, exist_ok=True)
    png = folder / f"{name}_superpixels.png"
    Image.fromarray(encode_superpixels(index), mode="RGB").save(png)
    annotation = annotation_folder / f"{name}_features.json"
    annotation.write_text(json.dumps(features))
    return png, annotation


def test_superpixel_index_decodes_all_three_bytes(tmp_path):
    index = np.array([[0, 1, 255, 256], [257, 65535, 65536, 70000 + 3 * 65536]])
    png, _ = write_superpixel_example(tmp_path, index=index, features={"streaks": [0]})
    decoded = read_superpixel_index(png, (4, 2))
    assert decoded.dtype == np.int64 and np.array_equal(decoded, index)


def test_union_of_default_features_is_exact(tmp_path):
    png, annotation = write_superpixel_example(tmp_path)
    union = superpixel_union(png, annotation, RoiSpec("dermo").features, (9, 6))
    expected = np.zeros((6, 9), dtype=bool)
    expected[0:3, 3:6] = True  # superpixel 1: pigment network
    expected[3:6, 3:6] = True  # superpixel 4: streaks
    assert union.shape == (6, 9) and np.array_equal(union, expected)


def test_globules_are_selectable(tmp_path):
    png, annotation = write_superpixel_example(tmp_path)
    with_globules = superpixel_union(png, annotation, (*RoiSpec("dermo").features, "globules"), (9, 6))
    only_globules = superpixel_union(png, annotation, ("globules",), (9, 6))
    assert only_globules.sum() == 9 and only_globules[3:6, 6:9].all()
    assert np.array_equal(with_globules, superpixel_union(png, annotation, RoiSpec("dermo").features, (9, 6)) | only_globules)


def test_challenge_spelling_network_means_pigment_network(tmp_path):
    features = {"network": FEATURES["pigment_network"], "streaks": FEATURES["streaks"]}
    png, annotation = write_superpixel_example(tmp_path, features=features)
    assert read_superpixel_features(annotation).keys() == {"pigment_network", "streaks"}
    assert superpixel_union(png, annotation, ("pigment_network",), (9, 6)).sum() == 9


@pytest.mark.parametrize(
    ("features", "message"),
    [
        ({**FEATURES, "streaks": [0, 0, 0, 0, 1]}, "differ in length"),
        ({name: flags + [0] for name, flags in FEATURES.items()}, "have 7 entries but .* has 6 superpixels"),
        ({name: flags[:5] for name, flags in FEATURES.items()}, "have 5 entries but .* has 6 superpixels"),
        ({**FEATURES, "streaks": [0, 0, 0, 0, 2, 0]}, "'streaks' must be a list of 0/1 values"),
        ({**FEATURES, "streaks": "yes"}, "'streaks' must be a list of 0/1 values"),
        ({"melanoma": [1]}, "no dermoscopic-feature lists"),
        ([0, 1], "expected a JSON object"),
    ],
)
def test_bad_annotation_names_the_json_file(tmp_path, features, message):
    png, annotation = write_superpixel_example(tmp_path, features=features)
    with pytest.raises(DataError, match=message) as caught:
        superpixel_union(png, annotation, RoiSpec("dermo").features, (9, 6))
    assert caught.value.path == annotation


def test_unreadable_json_and_bad_superpixel_maps_name_their_file(tmp_path):
    png, annotation = write_superpixel_example(tmp_path)
    annotation.write_text("{not json")
    with pytest.raises(DataError, match="not a readable JSON") as caught:
        read_superpixel_features(annotation)
    assert caught.value.path == annotation

    png, annotation = write_superpixel_example(tmp_path)
    with pytest.raises(DataError, match="superpixel map is 9x6 px but its image is 10x6") as caught:
        superpixel_union(png, annotation, ("streaks",), (10, 6))
    assert caught.value.path == png

    Image.fromarray(INDEX.astype(np.uint8), mode="L").save(png)
    with pytest.raises(DataError, match="mode L") as caught:
        superpixel_union(png, annotation, ("streaks",), (9, 6))
    assert caught.value.path == png


def test_unknown_or_empty_feature_selection_is_a_config_error():
    with pytest.raises(ConfigError, match="unknown feature"):
        RoiSpec("dermo", ("pigment_network", "blue_white_veil"))
    with pytest.raises(ConfigError, match="empty"):
        RoiSpec("dermo", ())


def test_attribute_pngs_take_precedence_over_superpixels(tmp_path):
    png, annotation = write_superpixel_example(tmp_path)
    attribute = tmp_path / "ISIC_0000001_attribute_streaks.png"
    Image.fromarray(np.full((6, 9), 255, dtype=np.uint8)).save(attribute)
    sample = Sample("ISIC_0000001", tmp_path / "x.jpg", 0, "train", superpixel_paths=(png, annotation))
    assert has_region(sample, RoiSpec("dermo"))
    assert region_of_interest(sample, RoiSpec("dermo"), (9, 6)).sum() == 18
    sample.attribute_paths = {"streaks": attribute}
    assert region_of_interest(sample, RoiSpec("dermo"), (9, 6)).all()
    assert region_of_interest(Sample("x", tmp_path / "x.jpg", 0, "train"), RoiSpec("dermo"), (9, 6)) is None


def _part2_layout(root: Path) -> Path:
    """An ISIC 2017 layout with one 192 x 128 image whose red pixels are exactly its dermoscopic region."""
    height, width = 128, 192
    index = (np.arange(height)[:, None] // 32) * 6 + np.arange(width)[None, :] // 32  # 4 x 6 tiles of 32 px
    features = {name: [0] * 24 for name in FEATURES}
    features["pigment_network"][7] = features["streaks"][15] = features["milia_like_cyst"][16] = 1
    data = root / "ISIC-2017_Training_Data"
    write_superpixel_example(data, index=index, features=features,
                             annotation_folder=root / "ISIC-2017_Training_Part2_GroundTruth")
    region = np.isin(index, [7, 15, 16])
    image = np.zeros((height, width, 3), dtype=np.uint8)
    image[..., 0] = region * 255
    image[..., 1] = np.arange(width, dtype=np.uint8)[None, :]  # texture that is not the region
    Image.fromarray(image).save(data / "ISIC_0000001.png")
    write_csv(root / "ISIC-2017_Training_Part3_GroundTruth.csv", ["image_id", "melanoma", "seborrheic_keratosis"],
              [["ISIC_0000001", "1.0", "0.0"]])
    return root


@pytest.mark.parametrize("seed", range(4))
def test_superpixel_region_goes_through_the_training_transform_with_its_image(tmp_path, seed):
    index = read_dataset(_part2_layout(tmp_path))
    sample = index.split("train")[0]
    assert sample.superpixel_paths is not None and not sample.attribute_paths
    mean, std = NORMALIZATION_PRESETS["isic2017"]
    transform = lambda pair: train_augment(80, mean, std)(geometry(96, 0.8)(pair))  # noqa: E731
    item = IsicDataset([sample], transform, RoiSpec("dermo"))[(0, seed)]
    assert bool(item["has_mask"]) and item["mask"].shape == (1, 80, 80)
    red = item["image"][0] * std[0] + mean[0]
    mask = item["mask"][0].bool()
    assert mask.any() and (~mask).any()
    agree = ((red > 0.5) == mask).float().mean()
    assert agree > 0.97, f"region and image disagree on {1 - agree:.1%} of pixels"
    assert torch.equal(item["mask"].unique(), torch.tensor([0.0, 1.0]))
