"""Presets beyond the paper: options off in the paper rows, and the fine-tuning recipes end to end."""

from __future__ import annotations

import json

import pytest

from attnmel.checkpoints.format import read_metadata
from attnmel.cli import main
from attnmel.config import list_presets, load_config

from .conftest import SAMPLE, make_isic2017_subset

RECIPES = ("isic2017/attnmel-mobilenetv2-lesion", "isic2017/gap-mobilenetv2")
#: the recipe at the shipped model's input size and budget
SHIPPED = "isic2017/attnmel-shipped"


@pytest.mark.parametrize("preset", [p for p in list_presets() if p not in (*RECIPES, SHIPPED)])
def test_options_beyond_the_paper_are_off_in_the_paper_presets(preset):
    config = load_config(preset)
    assert config.train.ema_decay is None
    assert (config.optim.name, config.optim.schedule, config.optim.warmup_epochs) == ("sgd", "step", 0.0)
    assert (config.optim.backbone_lr_scale, config.loss.label_smoothing) == (1.0, 0.0)


def test_the_shipped_preset_is_the_recipe_at_its_own_backbone_size_budget_prior_data_and_robustness():
    recipe, shipped = load_config(RECIPES[0]).to_dict(), load_config(SHIPPED).to_dict()
    changed = {f"{section}.{key}" for section, values in shipped.items() if isinstance(values, dict)
               for key, value in values.items() if recipe[section][key] != value}
    assert changed == {"data.resize", "data.image_size", "train.epochs", "loss.prior_weights", "data.held_out",
                       "data.leaks", "data.jpeg_quality", "train.batchnorm_statistics", "data.dataset_weights",
                       "train.keep_epoch", "model.backbone", "data.normalization", "model.input_blur"}


def test_recipe_and_baseline_share_initialisation_optimiser_and_budget():
    recipe, baseline = (load_config(p) for p in RECIPES)
    assert (recipe.model.name, recipe.data.roi, recipe.loss.prior_weights) == ("attnmel", "lesion", [0.01, 0.1])
    assert recipe.train.ema_decay is None  # measured, did not help (benchmarks/RESULTS.md)
    assert (baseline.model.name, baseline.data.roi, baseline.train.ema_decay) == ("gap", None, None)
    for config in (recipe, baseline):
        assert (config.model.backbone, config.model.weights, config.data.normalization) == ("mobilenet_v2", "imagenet", "imagenet")
        assert (config.optim.name, config.optim.schedule, config.optim.warmup_epochs) == ("adamw", "cosine", 1.0)
    assert recipe.optim == baseline.optim
    assert (recipe.train.epochs, recipe.train.batch_size) == (baseline.train.epochs, baseline.train.batch_size)
    assert recipe.data.oversample == baseline.data.oversample == 4


def test_recipe_end_to_end_with_local_weights(mobilenet_weights, tmp_path, capsys):
    data = make_isic2017_subset(tmp_path / "data", n_train=8, n_val=6)
    run = tmp_path / "run"
    assert main([
        "train", "--config", RECIPES[0], "--data", str(data), "--output", str(run), "--no-progress",
        "--set", f"model.weights={mobilenet_weights}", "--set", "data.resize=72", "--set", "data.image_size=64",
        "--set", "train.epochs=1", "--set", "train.batch_size=4", "--set", "data.num_workers=0",
    ]) == 0
    meta = read_metadata(run)
    assert meta.training.prior == {"roi": "lesion", "weights": [0.01, 0.1]}
    assert meta.architecture.backbone == "mobilenet_v2"
    # calibrate needs more labelled images than this tiny run's val: the bundled sample's
    assert main(["calibrate", "--checkpoint", str(run), "--data", str(SAMPLE), "--tta"]) == 0
    calibrated = run / "best-calibrated.safetensors"
    assert read_metadata(calibrated).calibration["tta"] is True
    out = tmp_path / "eval"
    assert main(["evaluate", "--checkpoint", str(calibrated), "--data", str(data), "--tta", "--output", str(out),
                 "--json"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["tta"] is True and metrics["members"][0]["temperature"] == read_metadata(calibrated).temperature
    assert {"roc.png", "pr.png", "reliability.png", "predictions.csv"} <= {p.name for p in out.iterdir()}
    capsys.readouterr()
