"""Training on several datasets: the union with its per-dataset record, weights, held-out lesions,
refusal of photographs shared with validation, runs bound to their data, and the CPU fast path."""

from __future__ import annotations

import json
import shutil
from collections import Counter

import pytest
import torch
from PIL import Image

from attnmel import devices
from attnmel.checkpoints.format import read_metadata
from attnmel.config import load_config
from attnmel.data.masks import RoiSpec
from attnmel.data.sampling import epoch_indices, epoch_size
from attnmel.data.sources import SplitSpec, data_sources
from attnmel.data.splits import SplitRecord, prepare_data
from attnmel.errors import CheckpointError, ConfigError, DataError, TrainingError
from attnmel.training.loop import train

from .conftest import make_isic2017_subset, tiny
from .layouts import make_ham10000, make_two_sites


@pytest.fixture
def two_sites(tmp_path):
    return make_two_sites(tmp_path)


def test_two_datasets_give_the_union_with_a_record_of_each(two_sites, tmp_path):
    isic, ham = two_sites
    data = prepare_data([isic, ham], SplitSpec(roi=RoiSpec("lesion")))
    assert len(data.train) == 10 + 12 and len(data.val) == 6
    assert Counter(s.dataset for s in data.train) == {"isic2017": 10, "ham10000": 12}
    assert {s.dataset for s in data.val} == {"isic2017"}
    record = data.split
    shares = {share.name: share for share in record.datasets}
    assert (shares["isic2017"].train, shares["isic2017"].val, shares["ham10000"].train) == (10, 6, 12)
    assert shares["ham10000"].classes == {"other": 8, "melanoma": 4} and shares["ham10000"].layout == "ham10000"
    assert sum(k.startswith("ham10000/") for k in record.train) == 12
    assert set(record.fingerprints) == {"train", "val"}
    assert SplitRecord.read(record.write(tmp_path / "split.json")) == record
    summary = data.summary(RoiSpec("lesion"))
    assert summary["datasets"]["ham10000"]["train"]["classes"]["melanoma"] == 4


def test_names_come_from_folders_or_name_equals_path(two_sites):
    isic, ham = two_sites
    assert [s.name for s in data_sources([isic, f"site2={ham}"])] == ["isic2017", "site2"]
    with pytest.raises(ConfigError, match="both called"):
        data_sources([isic, isic])


def test_a_photograph_shared_by_training_and_validation_is_refused_with_both_paths(two_sites):
    isic, ham = two_sites
    val_image = next((isic / "ISIC-2017_Validation_Data").glob("*.jpg"))
    planted = next((ham / "HAM10000_images_part_1").glob("*.jpg"))
    shutil.copy(val_image, planted)  # the same pixels under a HAM10000 ID
    with pytest.raises(DataError) as caught:
        prepare_data([isic, ham], SplitSpec())
    message = str(caught.value)
    assert str(planted) in message and str(val_image) in message and "same pixels" in message
    assert "data.leaks=drop" in message
    dropped = prepare_data([isic, ham], SplitSpec(leaks="drop"))
    assert planted.stem not in {s.image_id for s in dropped.train} and len(dropped.split.dropped) == 1


def test_held_out_lesions_never_train_and_lesions_never_span_train_and_judged(two_sites):
    isic, ham = two_sites
    for seed in range(4):
        data = prepare_data([isic, ham], SplitSpec(seed=seed, held_out=(("ham10000", 0.3),)))
        lesions = lambda samples: {s.groups["lesion_id"] for s in samples if "lesion_id" in s.groups}  # noqa: E731
        assert data.held_out and not lesions(data.train) & lesions(data.held_out)
        assert len(data.train) + len(data.held_out) == 22
        assert {s.dataset for s in data.held_out} == {"ham10000"}
        assert {share.name: share.held_out for share in data.split.datasets}["ham10000"] == len(data.held_out)
    with pytest.raises(ConfigError, match="not a dataset of this run"):
        prepare_data([isic, ham], SplitSpec(held_out=(("ham", 0.3),)))


def test_a_lesion_in_training_and_in_validation_is_refused(tmp_path):
    """Two releases of one archive share lesion IDs: a lesion of the second's training images that is
    in the first's validation split would leak."""
    from .layouts import make_isic2018

    make_isic2018(tmp_path / "a", {"Training": [("MEL", "L_1"), ("NV", "L_2"), ("NV", "L_3")],
                                   "Validation": [("MEL", "L_4"), ("NV", "L_5")]}, masks=False)
    make_ham10000(tmp_path / "b", [("nv", "L_4"), ("nv", "L_6"), ("mel", "L_7")], masks=False, start=10)
    with pytest.raises(DataError, match="lesion_id L_4 is in training"):
        prepare_data([tmp_path / "a", tmp_path / "b"], SplitSpec(task="isic2018-7class"))


def test_dataset_weights_draw_each_dataset_its_share_every_epoch():
    labels = [0] * 40 + [1] * 10 + [0] * 100
    datasets = ["a"] * 50 + ["b"] * 100
    for epoch in range(3):
        order = epoch_indices(labels, "oversample", torch.Generator().manual_seed(epoch), factor=4,
                              datasets=datasets, weights={"b": 0.25})
        drawn = Counter(datasets[i] for i in order)
        assert drawn == {"a": 40 + 4 * 10, "b": 25}
        assert len(order) == epoch_size(labels, "oversample", factor=4, datasets=datasets, weights={"b": 0.25})
    plain = epoch_indices(labels, "oversample", torch.Generator().manual_seed(0), factor=4)
    assert len(plain) == 180


def test_dataset_weights_and_held_out_shares_are_checked_where_read():
    with pytest.raises(ConfigError, match="dataset_weights.ham10000 must be positive"):
        load_config(None, ["data.dataset_weights={ham10000: 0}"])
    with pytest.raises(ConfigError, match="held_out.ham10000"):
        load_config(None, ["data.held_out={ham10000: 1.5}"])
    with pytest.raises(ConfigError, match="jpeg_quality"):
        load_config(None, ["data.jpeg_quality=[90, 10]"])
    config = load_config(None, ["data.dataset_weights={ham10000: 0.5}", "data.held_out={ham10000: 0.1}"])
    assert config.data.split_spec(3).held_out == (("ham10000", 0.1),) and config.data.split_spec(3).seed == 3


def _train(data, output, *extra, resume=False, log=None):
    config = load_config(None, [*tiny("train.epochs=1", "data.roi=lesion", "loss.prior_weights=[0.01, 0.1]",
                                      "model.name=attnmel"), *extra])
    return train(config, data, output, resume=resume, progress=False, log=log or (lambda *_: None))


def test_a_run_on_two_datasets_writes_both_to_split_json(two_sites, tmp_path):
    isic, ham = two_sites
    result = _train([isic, ham], tmp_path / "run", "data.dataset_weights={ham10000: 0.5}")
    record = json.loads((tmp_path / "run" / "split.json").read_text())
    assert [d["name"] for d in record["datasets"]] == ["isic2017", "ham10000"]
    data = read_metadata(result.best_checkpoint).training.data
    assert data["datasets"]["ham10000"]["train"]["images"] == 12 and data["train"]["images"] == 22


def test_resuming_on_other_data_is_refused_naming_what_differs(two_sites, tmp_path):
    isic, ham = two_sites
    _train([isic, ham], tmp_path / "run")
    before = (tmp_path / "run" / "split.json").read_bytes()
    with pytest.raises(CheckpointError, match="cannot resume on other data.*train: 0 images added and 12 removed"):
        _train([isic], tmp_path / "run", "train.epochs=2", resume=True)
    changed = next((ham / "HAM10000_images_part_2").glob("*.jpg"))
    Image.open(changed).save(changed, quality=60)  # same picture and size, other bytes
    with pytest.raises(CheckpointError, match="content of some files changed"):
        _train([isic, ham], tmp_path / "run", "train.epochs=2", resume=True)
    assert (tmp_path / "run" / "split.json").read_bytes() == before  # the run's own record is kept


def test_a_run_that_dropped_shared_photographs_resumes(two_sites, tmp_path):
    isic, ham = two_sites
    val_image = next((isic / "ISIC-2017_Validation_Data").glob("*.jpg"))
    shutil.copy(val_image, next((ham / "HAM10000_images_part_1").glob("*.jpg")))
    _train([isic, ham], tmp_path / "run", "data.leaks=drop")
    result = _train([isic, ham], tmp_path / "run", "data.leaks=drop", "train.epochs=2", resume=True)
    assert [row["epoch"] for row in result.history] == [1, 2]
    assert len(json.loads((tmp_path / "run" / "split.json").read_text())["dropped"]) == 1


def test_without_native_bf16_training_falls_back_to_fp32_and_says_so(tiny_data_dir, monkeypatch, tmp_path):
    lines = []
    monkeypatch.setattr(devices, "bf16_supported", lambda device: False)
    _train(tiny_data_dir, tmp_path / "run", log=lines.append)
    assert [line for line in lines if line.startswith(("fp32", "bf16", "fast path"))] == [
        "fp32: this cpu has no native bf16"]
    monkeypatch.setattr(devices, "bf16_supported", lambda device: True)
    lines.clear()
    _train(tiny_data_dir, tmp_path / "run2", log=lines.append)
    assert "fast path: bf16 autocast + channels_last on cpu (native bf16)" in lines


def test_divergence_before_any_epoch_says_no_checkpoint_was_written(tiny_data_dir, tmp_path):
    with pytest.raises(TrainingError) as caught:
        _train(tiny_data_dir, tmp_path / "run", "optim.lr=1e30", "optim.name=sgd", "optim.warmup_epochs=0")
    assert "no checkpoint was written" in str(caught.value) and "last good checkpoint" not in str(caught.value)


@pytest.fixture
def tiny_data_dir(tmp_path):
    return make_isic2017_subset(tmp_path / "ds", n_train=10, n_val=6)
