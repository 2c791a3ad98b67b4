"""Presets and overrides."""

from __future__ import annotations

import re

import pytest

from attnmel.config import list_presets, load_config
from attnmel.errors import ConfigError

PAPER_ROWS = ["vgg16", "vgg16-gap", "melcnn", "attnmel", "attnmel-dermo", "attnmel-lesion", "attnmel-bkg"]


@pytest.mark.parametrize("row", PAPER_ROWS)
def test_isic2017_presets_follow_the_paper(row):
    config = load_config(f"isic2017/{row}")
    assert config.model.backbone == "vgg16_bn" and config.model.weights == "imagenet"
    assert (config.optim.name, config.optim.lr, config.optim.nesterov) == ("sgd", 0.01, True)
    assert (config.optim.schedule, config.optim.step_epochs, config.optim.step_gamma) == ("step", 10, 0.1)
    assert (config.train.epochs, config.train.batch_size, config.loss.name, config.loss.focal_gamma) == (50, 32, "focal", 2.0)
    assert (config.data.oversample, config.data.crop_ratio, config.data.resize, config.data.image_size) == (4, 0.8, 256, 224)
    assert config.loss.prior_weights == [0.001, 0.01]
    expected_roi = {"attnmel-dermo": "dermo", "attnmel-lesion": "lesion", "attnmel-bkg": "background"}.get(row)
    assert config.data.roi == expected_roi


def test_isic2016_presets_carve_validation():
    config = load_config("isic2016/attnmel-lesion")
    assert config.data.val_split is None and config.data.val_fraction == 0.1
    assert config.data.normalization == "isic2016"
    assert {f"isic2016/{r}" for r in PAPER_ROWS if r != "attnmel-dermo"} <= set(list_presets())


def test_overrides_and_unknown_keys(tmp_path):
    config = load_config("isic2017/attnmel", ["train.epochs=3", "model.weights=null", "data.roi=lesion"])
    assert (config.train.epochs, config.model.weights, config.data.roi) == (3, None, "lesion")
    with pytest.raises(ConfigError, match="unknown key"):
        load_config("isic2017/attnmel", ["train.epoch=3"])
    path = tmp_path / "mine.yaml"
    path.write_text("extends: missing.yaml\n")
    with pytest.raises(ConfigError, match="not found"):
        load_config(str(path))
    with pytest.raises(ConfigError, match="no such config"):
        load_config("isic2017/nope")


@pytest.mark.parametrize(("override", "message"), [
    ("train.select_metric=auc", "train.select_metric must be one of"),
    ("optim.schedule=cosin", "optim.schedule must be one of"),
    ("data.sampler=balanced", "data.sampler must be one of"),
    ("model.normalize=tanh", "model.normalize must be"),
    ("train.batch_size=0", "train.batch_size must be at least 1"),
    ("train.epochs=-1", "train.epochs must be at least 1"),
    ("data.crop_ratio=0", "data.crop_ratio must be a fraction in"),
    ("data.image_size=300", "data.image_size 300 is larger than data.resize 256"),
    ("train.epochs=five", "train.epochs must be int"),
    ("model.name=resnet", "Unknown model 'resnet'"),
    ("model.backbone=resnet18", "backbone"),
    ("data.task=isic2099", "data.task must be one of"),
    ("loss.prior_weights=[0.1]", "loss.prior_weights has 1 values but 'attnmel' has 2 attention maps"),
    ("model.attention_channels=0", "model.attention_channels must be a positive number"),
])
def test_a_bad_value_fails_when_the_config_is_built(override, message):
    with pytest.raises(ConfigError, match=re.escape(message)) as info:
        load_config("isic2017/attnmel-lesion", [override])
    assert "\n" not in str(info.value)


def test_a_model_option_the_model_does_not_take_is_refused():
    with pytest.raises(ConfigError, match="model 'gap' does not take normalize"):
        load_config("isic2017/gap-mobilenetv2", ["model.normalize=softmax"])
    with pytest.raises(ConfigError, match="needs a model with attention"):
        load_config("isic2017/gap-mobilenetv2", ["data.roi=lesion"])


def test_values_are_converted_to_their_declared_types():
    config = load_config("isic2017/attnmel", ["train.epochs=5.0", "optim.lr=1e-3", "optim.weight_decay=0"])
    assert config.train.epochs == 5 and isinstance(config.train.epochs, int)
    assert config.optim.lr == 0.001 and isinstance(config.optim.weight_decay, float)


def test_resume_overrides_go_through_the_same_checks(tmp_path):
    """``--resume`` without ``--config`` reads the run's config and applies --set like a new run."""
    from attnmel.checkpoints.format import save_training_state
    from attnmel.training.resume import STATE_FILE, run_config

    config = load_config(None, ["train.epochs=2"])
    save_training_state(tmp_path / STATE_FILE, {"config": config.to_dict(), "epoch": 1})
    assert run_config(tmp_path, ["train.epochs=5.0"]).train.epochs == 5
    with pytest.raises(ConfigError, match="unknown key"):
        run_config(tmp_path, ["trian.epochs=5"])
    with pytest.raises(ConfigError, match="train.select_metric must be one of"):
        run_config(tmp_path, ["train.select_metric=auc"])


def test_a_config_from_attnmel_0_1_0_with_attention_options_on_a_gap_model_still_resumes(tmp_path):
    from attnmel.checkpoints.format import save_training_state
    from attnmel.training.resume import STATE_FILE, run_config

    saved = load_config("isic2017/gap-mobilenetv2").to_dict()
    saved["model"].update(normalize="sigmoid", attention_channels=256)  # what 0.1.0 wrote for every model
    save_training_state(tmp_path / STATE_FILE, {"config": saved, "epoch": 1})
    assert run_config(tmp_path).model.normalize is None
