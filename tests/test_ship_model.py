"""scripts/ship_model.py end to end on two tiny sites: seeds trained and reused, the best chosen on
val, an fp16 file with its operating point, held-out check, release record, card and registry entry."""

from __future__ import annotations

import re

import pytest
import torch
import torchvision
from safetensors import safe_open

import attnmel
from attnmel.checkpoints.format import read_metadata
from attnmel.checkpoints.pretrained import REGISTRY_FILE, Registry
from attnmel.io import file_sha256

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
    tiny = [f"--set={key}={value}" for key, value in TINY_CONFIG.items() if key != "model.weights"]
    args = ["--data", str(isic), "--ham10000", str(ham), "--weights", str(weights), "--runs", str(tmp_path / "runs"),
            "--output", str(tmp_path / "out"), "--tag", "tiny-shipped", "--description", "a tiny test model",
            "--seeds", "0", "1", *tiny,
            "--set=data.held_out={ham10000: 0.3}"]

    assert ship_model.main([*args, "--train-only"]) == 0
    trained = {seed: (tmp_path / "runs" / f"seed{seed}" / "last-state.safetensors").stat().st_mtime_ns for seed in (0, 1)}
    assert ship_model.main(args) == 0
    # finished seeds are reused, not trained again
    assert trained == {seed: (tmp_path / "runs" / f"seed{seed}" / "last-state.safetensors").stat().st_mtime_ns
                       for seed in (0, 1)}

    target = tmp_path / "out" / "tiny-shipped.safetensors"
    with safe_open(str(target), framework="pt") as handle:
        dtypes = {handle.get_tensor(key).dtype for key in handle.keys()}
    assert torch.float16 in dtypes and torch.float32 not in dtypes
    assert re.search(rf"sha256 {file_sha256(target)}", capsys.readouterr().out)
    meta = read_metadata(target)
    release = meta.release
    selection = release["selection"]
    assert selection["seeds"] == [0, 1] and selection["chosen_seed"] in (0, 1)
    aucs = selection["val_roc_auc_per_seed"]
    assert aucs[str(selection["chosen_seed"])] == max(aucs.values())
    assert meta.training.seed == selection["chosen_seed"]
    assert meta.operating_point is not None and meta.operating_point.data.endswith("val")
    held = release["held_out_ham10000"]
    assert held["images"] > 0 and held["threshold"] == pytest.approx(meta.operating_point.threshold)
    assert release["fp16_file_on_val"]["probability_difference_to_fp32"]["max"] < 0.05
    assert "--seeds 0 1" in release["retrain"] and "test" in release["test_split"]
    card = target.with_suffix(".md").read_text()
    assert "HAM10000" in card and "CC BY-NC-SA 4.0" in card
    assert not target.with_suffix(".json").exists()
    registry = Registry.read(tmp_path / "out" / REGISTRY_FILE)  # the entry is data beside the file, no source edited
    assert registry.default == "tiny-shipped" and registry.weights["tiny-shipped"].verify() == target
    assert registry.weights["tiny-shipped"].card_path == target.with_suffix(".md")
    assert registry.weights["tiny-shipped"].description == "a tiny test model"

    answer = attnmel.load_model(target).predict(isic / "ISIC-2017_Validation_Data" / next(
        p.name for p in (isic / "ISIC-2017_Validation_Data").glob("*.jpg")))
    assert 0 <= answer.probability <= 1 and answer.threshold == pytest.approx(meta.operating_point.threshold)
