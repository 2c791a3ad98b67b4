"""Presets and overrides."""

from __future__ import annotations

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
