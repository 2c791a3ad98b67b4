"""Training: repeatable, resumable, safe checkpoints, clear failures."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from attnmel.checkpoints.format import load_model_checkpoint, read_metadata
from attnmel.config import load_config
from attnmel.errors import CheckpointError, TrainingError
from attnmel.training.loop import train
from attnmel.training.losses import FocalLoss, attention_prior_loss, dice_loss

from .conftest import make_isic2017_subset, tiny

TINY = tiny("train.epochs=2")


@pytest.fixture
def tiny_data(tmp_path):
    return make_isic2017_subset(tmp_path / "ds", n_train=10, n_val=6)


def _train(data, output, extra=(), resume=False, epochs=2):
    config = load_config(None, [*TINY, f"train.epochs={epochs}", *extra])
    return train(config, data, output, resume=resume, progress=False, log=lambda *_: None)


@pytest.mark.slow
def test_same_seed_same_weights_and_resume_is_exact(tiny_data, tmp_path):
    full = _train(tiny_data, tmp_path / "full")
    again = _train(tiny_data, tmp_path / "again")
    _train(tiny_data, tmp_path / "split", epochs=1)
    resumed = _train(tiny_data, tmp_path / "split", resume=True, epochs=2)
    a = load_file(str(tmp_path / "full" / "last-state.safetensors"))
    for other in ("again", "split"):
        b = load_file(str(tmp_path / other / "last-state.safetensors"))
        assert a.keys() == b.keys()
        for key in a:
            assert torch.equal(a[key], b[key]), f"{other}: {key} differs"
    assert [r["val_roc_auc"] for r in full.history] == [r["val_roc_auc"] for r in again.history]
    assert [r["val_roc_auc"] for r in full.history] == [r["val_roc_auc"] for r in resumed.history]


def test_run_folder_contents_and_checkpoint_metadata(tiny_data, tmp_path):
    result = _train(tiny_data, tmp_path / "run", ["data.roi=lesion"], epochs=1)
    names = {p.name for p in (tmp_path / "run").iterdir()}
    assert {"best.safetensors", "best.json", "last-state.safetensors", "metrics.csv", "config.yaml", "tensorboard"} <= names
    meta = read_metadata(result.best_checkpoint)
    sidecar = json.loads((tmp_path / "run" / "best.json").read_text())
    assert meta.to_dict() == sidecar
    assert meta.class_names == ("other", "melanoma") and meta.architecture.backbone == "mobilenet_v2"
    assert meta.preprocessing.image_size == 64
    assert meta.training.data["train"]["with_prior"] == 10
    model, _ = load_model_checkpoint(tmp_path / "run")
    assert model(torch.zeros(1, 3, 64, 64)).logits.shape == (1, 2)


def test_refuses_to_overwrite_a_run_and_refuses_pickles(tiny_data, tmp_path):
    _train(tiny_data, tmp_path / "run", epochs=1)
    with pytest.raises(CheckpointError, match="--resume"):
        _train(tiny_data, tmp_path / "run", epochs=1)
    torch.save({"state_dict": {}}, tmp_path / "legacy.pth")
    with pytest.raises(CheckpointError, match="pickle"):
        load_model_checkpoint(tmp_path / "legacy.pth")


def test_diverging_loss_stops_with_step_and_keeps_no_bad_checkpoint(tiny_data, tmp_path):
    with pytest.raises(TrainingError, match=r"loss became .* at epoch 1, step \d+"):
        _train(tiny_data, tmp_path / "run", ["optim.lr=1e30", "optim.momentum=0", "optim.nesterov=false"], epochs=1)
    assert not (tmp_path / "run" / "best.safetensors").exists()


def test_val_fraction_carves_stratified_validation(tiny_data, tmp_path):
    result = _train(tiny_data, tmp_path / "run", ["data.val_split=null", "data.val_fraction=0.3"], epochs=1)
    summary = read_metadata(result.best_checkpoint).training.data
    assert summary["train"]["images"] + summary["val"]["images"] == 10
    assert summary["val"]["classes"]["melanoma"] >= 1


def test_focal_loss_reduces_to_cross_entropy_at_gamma_0():
    logits, target = torch.randn(8, 2), torch.randint(0, 2, (8,))
    torch.testing.assert_close(FocalLoss(0.0)(logits, target), torch.nn.functional.cross_entropy(logits, target))
    assert FocalLoss(2.0)(logits, target) < FocalLoss(0.0)(logits, target)


def test_prior_loss_uses_only_samples_with_a_region():
    maps = {"a": torch.full((2, 1, 4, 4), 0.5), "b": torch.full((2, 1, 2, 2), 0.5)}
    region = torch.zeros(2, 1, 16, 16)
    region[0, :, :8] = 1
    total, parts = attention_prior_loss(maps, region, torch.tensor([True, False]), [0.001, 0.01])
    expected_a = dice_loss(maps["a"][:1], torch.nn.functional.adaptive_avg_pool2d(region[:1], 4))
    assert parts["a"] == pytest.approx(float(expected_a))
    none, _ = attention_prior_loss(maps, region, torch.tensor([False, False]), [0.001, 0.01])
    assert float(none) == 0.0 and float(total) > 0


def test_tensorboard_holds_figures_pr_curves_and_hyperparameters(tiny_data, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    _train(tiny_data, tmp_path / "run", ["data.roi=lesion", "train.tensorboard_figures=2"], epochs=2)
    events = EventAccumulator(str(tmp_path / "run" / "tensorboard"), size_guidance={"images": 0, "tensors": 0})
    events.Reload()
    tags = events.Tags()
    figures = [t for t in tags["images"] if t.startswith("attention/")]
    assert len(figures) == 2 and all(len(events.Images(t)) == 2 for t in figures)  # two images, every epoch
    image = events.Images(figures[0])[-1]
    assert image.width > 2.5 * image.height  # the view and two attention maps side by side
    assert any(t.startswith("val_pr/melanoma") for t in tags["tensors"])
    assert "val/roc_auc" in tags["scalars"]
    hparams = EventAccumulator(str(tmp_path / "run" / "tensorboard"))
    hparams.Reload()
    assert {"_hparams_/experiment", "_hparams_/session_start_info"} <= set(hparams.PluginTagToContent("hparams"))
