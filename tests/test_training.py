"""Training: repeatable, resumable, safe checkpoints, clear failures."""

from __future__ import annotations

import json

import pytest
import torch
import torchvision
from safetensors.torch import load_file

from attnmel.checkpoints.format import read_metadata
from attnmel.config import load_config
from attnmel.errors import CheckpointError, ConfigError, TrainingError
from attnmel.training.loop import train
from attnmel.training.losses import FocalLoss, attention_prior_loss, consistency_loss, dice_loss, pixel_noise

from .checkpoint_helpers import network_of
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
    model, _ = network_of(tmp_path / "run")
    assert model(torch.zeros(1, 3, 64, 64)).logits.shape == (1, 2)


def test_refuses_to_overwrite_a_run_and_refuses_pickles(tiny_data, tmp_path):
    _train(tiny_data, tmp_path / "run", epochs=1)
    with pytest.raises(CheckpointError, match="--resume"):
        _train(tiny_data, tmp_path / "run", epochs=1)
    torch.save({"state_dict": {}}, tmp_path / "legacy.pth")
    with pytest.raises(CheckpointError, match="pickle"):
        network_of(tmp_path / "legacy.pth")


def test_diverging_loss_stops_with_step_and_keeps_no_bad_checkpoint(tiny_data, tmp_path):
    with pytest.raises(TrainingError, match=r"loss became .* at epoch 1, step \d+"):
        _train(tiny_data, tmp_path / "run", ["optim.lr=1e30", "optim.momentum=0", "optim.nesterov=false"], epochs=1)
    assert not (tmp_path / "run" / "best.safetensors").exists()


def test_consistency_term_joins_the_loss_and_the_log(tiny_data, tmp_path):
    off = _train(tiny_data, tmp_path / "off", epochs=1).history[0]
    on = _train(tiny_data, tmp_path / "on", ["loss.consistency_weight=5"], epochs=1).history[0]
    assert off["train_consistency_loss"] == 0.0 and on["train_consistency_loss"] > 0
    expected = on["train_cls_loss"] + on["train_prior_loss"] + 5 * on["train_consistency_loss"]
    assert on["train_loss"] == pytest.approx(expected, rel=1e-4)
    assert on["train_images"] == off["train_images"]  # the noisy copies are not counted as images


def test_val_fraction_carves_stratified_validation(tiny_data, tmp_path):
    result = _train(tiny_data, tmp_path / "run", ["data.val_split=null", "data.val_fraction=0.3"], epochs=1)
    summary = read_metadata(result.best_checkpoint).training.data
    assert summary["train"]["images"] + summary["val"]["images"] == 10
    assert summary["val"]["classes"]["melanoma"] >= 1


def test_focal_loss_reduces_to_cross_entropy_at_gamma_0():
    logits, target = torch.randn(8, 2), torch.randint(0, 2, (8,))
    torch.testing.assert_close(FocalLoss(0.0)(logits, target), torch.nn.functional.cross_entropy(logits, target))
    assert FocalLoss(2.0)(logits, target) < FocalLoss(0.0)(logits, target)


def test_consistency_loss_counts_only_what_the_softmax_sees_and_ignores_scale():
    logits = torch.tensor([[0.0, 1.0], [0.0, -1.0], [2.0, 2.0], [1.0, 0.0]])
    assert float(consistency_loss(logits, logits)) == 0.0
    assert float(consistency_loss(logits, logits + torch.randn(4, 1))) == pytest.approx(0.0, abs=1e-6)
    moved = logits.clone()
    moved[:, 1] += 0.4  # every image's logit difference moves by 0.4
    # centred logits (-.5, .5), (.5, -.5), (0, 0), (.5, -.5): spread 0.34375; each change (-.2, .2): 0.08
    assert float(consistency_loss(logits, moved, eps=0)) == pytest.approx(0.08 / 0.34375)
    # shrinking every logit does not lower it (a temperature fitted later would undo the shrinking)
    assert float(consistency_loss(logits / 10, moved / 10, eps=0)) == pytest.approx(0.08 / 0.34375)


def test_pixel_noise_is_in_grey_levels_of_the_saved_image():
    std = (0.2, 0.25, 0.5)
    images = torch.zeros(256, 3, 16, 16)
    noise = pixel_noise(images, std, max_levels=4.0) * torch.tensor(std).view(1, 3, 1, 1) * 255
    per_image = noise.std(dim=(1, 2, 3))
    # levels drawn uniformly from [0, 4]: every image below 4 (with sampling slack), some near 0 and near 4
    assert float(per_image.max()) < 4.4 and float(per_image.min()) < 0.5 and float(per_image.max()) > 3.5
    assert 1.6 < float(per_image.mean()) < 2.4
    assert torch.equal(pixel_noise(images, std, max_levels=0.0), images)


def _trained_under_noise(weight: float) -> tuple[float, float]:
    """(consistency loss under fresh noise, accuracy) of a one-layer model after 60 steps.

    Half its channels start as edge detectors: silent on smooth images, loud on pixel noise, as the
    early layers of an ImageNet backbone are on dermoscopy. The label is in the brightness."""
    conv = torch.nn.Conv2d(3, 8, 3, padding=1)
    with torch.no_grad():
        conv.weight[4:] = 20 * torch.tensor([[0.0, -1, 0], [-1, 4, -1], [0, -1, 0]]).expand(4, 3, 3, 3)
    model = torch.nn.Sequential(conv, torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                                torch.nn.Linear(8, 2))
    labels = torch.tensor([0, 1] * 16)
    smooth = torch.nn.functional.interpolate(torch.randn(32, 3, 4, 4), size=32, mode="bilinear")
    images = smooth + labels.view(-1, 1, 1, 1) - 0.5
    std = (0.229, 0.224, 0.225)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    for _ in range(60):
        logits, noisy = model(torch.cat([images, pixel_noise(images, std, 3.0)])).chunk(2)
        loss = FocalLoss()(logits, labels) + weight * consistency_loss(logits, noisy)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        clean, noisy = model(images), model(pixel_noise(images, std, 3.0))
    return float(consistency_loss(clean, noisy)), float((clean.argmax(1) == labels).float().mean())


def test_consistency_term_steadies_the_answer_under_pixel_noise():
    loose, loose_accuracy = _trained_under_noise(0.0)
    steady, steady_accuracy = _trained_under_noise(3.0)
    assert steady < 0.2 * loose  # 0.06 or less of it on every seed tried
    assert steady_accuracy >= loose_accuracy - 0.1  # and the task is still learnt


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


def _conv_weights(path) -> dict[str, torch.Tensor]:
    return {k: v.float() for k, v in load_file(str(path)).items() if k.endswith("weight") and v.dim() == 4}


def test_fine_tuning_starts_from_a_trained_checkpoint_and_records_it(tiny_checkpoint, tiny_data, tmp_path):
    from attnmel.checkpoints.card import model_card, render_markdown
    from attnmel.io import file_sha256

    start = _conv_weights(tiny_checkpoint)
    # the same preset as the checkpoint, a learning rate too small to move the weights visibly
    settings = ["data.roi=lesion", "optim.lr=1e-9", f"model.init_from={tiny_checkpoint.parent}"]  # a run folder
    tuned = _train(tiny_data, tmp_path / "tuned", settings, epochs=1)
    fresh = _train(tiny_data, tmp_path / "fresh", settings[:2], epochs=1)
    after, other = _conv_weights(tuned.best_checkpoint), _conv_weights(fresh.best_checkpoint)
    assert all(torch.allclose(after[k], start[k], atol=1e-5) for k in start)
    assert not all(torch.allclose(other[k], start[k], atol=1e-3) for k in start)
    record = read_metadata(tuned.best_checkpoint).training.started_from
    assert record["sha256"] == file_sha256(tiny_checkpoint) and record["epoch"] == 1
    assert "fine-tuned from" in render_markdown(model_card(read_metadata(tuned.best_checkpoint)))
    resumed = _train(tiny_data, tmp_path / "tuned", settings, epochs=2, resume=True)
    assert read_metadata(resumed.best_checkpoint).training.started_from == record
    assert read_metadata(fresh.best_checkpoint).training.started_from is None


def test_fine_tuning_refuses_a_checkpoint_of_another_architecture(tiny_checkpoint, tiny_data, tmp_path):
    with pytest.raises(CheckpointError, match="attention_channels=256.*this run builds attention_channels=32"):
        _train(tiny_data, tmp_path / "run", ["model.attention_channels=32", f"model.init_from={tiny_checkpoint}"])
    assert not (tmp_path / "run").exists()


def test_a_resumed_run_may_use_other_threads_but_not_other_settings(tiny_data, tmp_path):
    _train(tiny_data, tmp_path / "run", epochs=1)
    resumed = _train(tiny_data, tmp_path / "run", ["train.threads=2"], epochs=2, resume=True)
    assert [row["epoch"] for row in resumed.history] == [1, 2]
    with pytest.raises(ConfigError, match="optim.lr"):
        _train(tiny_data, tmp_path / "run", ["optim.lr=0.5"], epochs=3, resume=True)


def _batchnorms(module: torch.nn.Module) -> list[torch.nn.BatchNorm2d]:
    return [m for m in module.modules() if isinstance(m, torch.nn.BatchNorm2d)]


@pytest.mark.parametrize("statistics", ["batch", "pretrained"])
def test_pretrained_batchnorm_statistics_stay_while_the_rest_learns(tiny_data, tmp_path, statistics):
    """train.batchnorm_statistics=pretrained leaves every running mean and variance of the initial
    weights as it was; the batch-norm scales and the convolutions still learn. "batch" moves them."""
    torch.manual_seed(3)
    start = torchvision.models.mobilenet_v2()
    for bn in _batchnorms(start):  # statistics no dermoscopy batch would give
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(2.0, 3.0)
    torch.save(start.features.state_dict(prefix="features."), tmp_path / "start.pth")
    result = _train(tiny_data, tmp_path / "run", [f"model.weights={tmp_path / 'start.pth'}",
                                                  f"train.batchnorm_statistics={statistics}"], epochs=1)
    model, _ = network_of(result.best_checkpoint)
    pairs = list(zip(_batchnorms(start.features), _batchnorms(model), strict=True))
    kept = [torch.equal(a.running_var, b.running_var.float()) and torch.equal(a.running_mean, b.running_mean.float())
            for a, b in pairs]
    assert all(kept) if statistics == "pretrained" else not any(kept)
    assert sum(not torch.equal(a.weight, b.weight) for a, b in pairs) > len(pairs) // 2  # the scales learn


def test_pretrained_batchnorm_statistics_need_pretrained_weights(tiny_data, tmp_path):
    with pytest.raises(ConfigError, match="train.batchnorm_statistics=pretrained .* set model.weights"):
        _train(tiny_data, tmp_path / "run", ["train.batchnorm_statistics=pretrained"], epochs=1)
