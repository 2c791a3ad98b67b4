"""One leak detector: a training run and ``attnmel data check`` find the same photographs, lesions
and patients on two sides, each by its own placement of the images (``attnmel.data.leaks``)."""

from __future__ import annotations

import dataclasses
import io
import shutil

import pytest
from PIL import Image

from attnmel.data.integrity import check_datasets
from attnmel.data.leaks import Placed, find_matches, hash_images, near_identical_pairs, refuse_leaks
from attnmel.data.records import Sample
from attnmel.data.sources import SplitSpec
from attnmel.data.splits import prepare_data
from attnmel.errors import DataError

from .conftest import SAMPLE
from .layouts import make_two_sites

IMAGES = sorted((SAMPLE / "ISIC-2017_Validation_Data").glob("*.jpg"))


def _sample(path, image_id, side="train", **groups) -> Sample:
    return Sample(image_id=image_id, image_path=path, label=0, split=side, groups=groups)


def _reencoded(source, target, quality=70):
    """The same photograph as another file: decoded, saved again as a lower-quality JPEG."""
    buffer = io.BytesIO()
    Image.open(source).convert("RGB").save(buffer, "JPEG", quality=quality)
    target.write_bytes(buffer.getvalue())
    return target


@pytest.mark.parametrize("case", ["same pixels", "near-identical", "lesion_id", "patient_id", "different"])
def test_the_detector_finds_each_kind_and_only_across_the_sides_the_rule_names(tmp_path, case):
    first = _sample(IMAGES[0], "a", lesion_id="L1" if case == "lesion_id" else "L0", patient_id="P1")
    if case == "same pixels":
        other = _sample(shutil.copy(IMAGES[0], tmp_path / "copy.jpg"), "b")
    elif case == "near-identical":
        other = _sample(_reencoded(IMAGES[0], tmp_path / "copy.jpg"), "b")
    elif case == "lesion_id":
        other = _sample(IMAGES[1], "b", lesion_id="L1")
    elif case == "patient_id":
        other = _sample(IMAGES[1], "b", patient_id="P1")
        first = dataclasses.replace(first, groups={"patient_id": "P1"})
    else:
        other = _sample(IMAGES[1], "b", lesion_id="L2")
        first = dataclasses.replace(first, groups={})
    placed = [Placed(first, "train"), Placed(other, "val")]
    hash_images(placed)
    across = find_matches(placed, lambda a, b: a.side != b.side)
    alike = find_matches(placed, lambda a, b: False)
    if case == "different":
        assert across == [] and alike == []
        return
    assert [m.kind for m in across] == [case] and all(m.leak for m in across)
    assert [m.kind for m in alike] == [case] and not any(m.leak for m in alike)  # found, but not a leak there
    assert {(a.sample.image_id, b.sample.image_id) for a, b in across[0].pairs()} == {("a", "b"), ("b", "a")}


def test_refusing_and_dropping_name_the_same_training_images(tmp_path):
    train = [_sample(_reencoded(IMAGES[0], tmp_path / "t0.jpg"), "t0"), _sample(IMAGES[1], "t1", lesion_id="L9"),
             _sample(IMAGES[2], "t2")]
    judged = {"validation": [_sample(IMAGES[0], "v0", "val"), _sample(IMAGES[3], "v3", "val", lesion_id="L9")]}
    with pytest.raises(DataError) as caught:
        refuse_leaks(train, judged)
    message = str(caught.value)
    assert "near-identical" in message and "lesion_id L9" in message and "t2" not in message
    kept, lines = refuse_leaks(train, judged, leaks="drop")
    assert [s.image_id for s in kept] == ["t2"] and len(lines) == 2
    assert near_identical_pairs([train[0], judged["validation"][0], train[2]]) == [("t0", "v0")]


def test_a_run_and_data_check_find_the_same_shared_photograph(tmp_path):
    """The photograph a run refuses is the one ``data check`` reports as a leak, from the same hashes."""
    isic, ham = make_two_sites(tmp_path)
    val_image = next((isic / "ISIC-2017_Validation_Data").glob("*.jpg"))
    planted = next((ham / "HAM10000_images_part_1").glob("*.jpg"))
    _reencoded(val_image, planted)  # the same photograph, re-encoded, under a HAM10000 ID
    with pytest.raises(DataError) as caught:
        prepare_data([isic, ham], SplitSpec())
    assert str(planted) in str(caught.value) and str(val_image) in str(caught.value)
    report = check_datasets([isic, ham])
    found = [f for f in report.of_kind("similar_leak") if planted in f.paths and val_image in f.paths]
    assert len(found) == 1
