"""Exponential moving average of the weights: the arithmetic, and what training does with it."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from attnmel.checkpoints.format import load_training_state, read_metadata
from attnmel.config import load_config
from attnmel.errors import ConfigError
from attnmel.training.ema import create_ema
from attnmel.training.loop import train

from .conftest import make_isic2017_subset, tiny

TINY = tiny("train.epochs=2")

BEYOND_PAPER = [
    "train.ema_decay=0.9", "optim.name=adamw", "optim.lr=1e-3", "optim.weight_decay=0.05", "optim.schedule=cosine",
    "optim.warmup_epochs=0.5", "optim.backbone_lr_scale=0.1", "loss.label_smoothing=0.1",
]


def test_ema_matches_a_hand_computation():
    model = nn.Sequential(nn.Linear(2, 1), nn.BatchNorm1d(1))
    ema = create_ema(model, 0.9)
    for value in (1.0, 2.0, 4.0):
        with torch.no_grad():
            model[0].weight.fill_(value)
            model[1].running_mean.fill_(10 * value)
        ema.update_parameters(model)
    # the first update copies; then ema = 0.9 * ema + 0.1 * weights
    expected = 0.9 * (0.9 * 1.0 + 0.1 * 2.0) + 0.1 * 4.0
    torch.testing.assert_close(ema.module[0].weight, torch.full((1, 2), expected))
    torch.testing.assert_close(ema.module[1].running_mean, torch.full((1,), 10 * expected))  # buffers too
    assert int(ema.n_averaged) == 3 and float(model[0].weight.detach()[0, 0]) == 4.0


def test_ema_decay_is_validated():
    model = nn.Linear(2, 1)
    assert create_ema(model, None) is None and create_ema(model, 0.0) is None
    for bad in (1.0, 1.5, -0.1):
        with pytest.raises(ConfigError, match="train.ema_decay"):
            create_ema(model, bad)


class _Crash(Exception):
    pass


def _crash_after_epoch_1(message: str) -> None:
    """A log callback that stops the run right after epoch 1 is saved, as a crash or kill would."""
    if message.startswith("epoch 1/"):
        raise _Crash


def _train(data, output, epochs=2, resume=False, log=lambda *_: None):
    # the cosine schedule spans train.epochs, so an interrupted run (not a shorter one) is resumed
    config = load_config(None, [*TINY, f"train.epochs={epochs}", *BEYOND_PAPER])
    return train(config, data, output, resume=resume, progress=False, log=log)


@pytest.mark.slow
def test_best_checkpoint_holds_ema_weights_and_resume_with_ema_is_exact(tmp_path):
    data = make_isic2017_subset(tmp_path / "ds", n_train=10, n_val=6)
    full = _train(data, tmp_path / "full")

    with pytest.raises(_Crash):
        _train(data, tmp_path / "split", log=_crash_after_epoch_1)
    state = load_training_state(tmp_path / "split" / "last-state.safetensors")
    assert state["epoch"] == 1
    best = load_file(str(tmp_path / "split" / "best.safetensors"))
    assert best.keys() == state["model"].keys()
    for key, value in best.items():
        torch.testing.assert_close(value, state["ema"][f"module.{key}"], rtol=0, atol=0)
    assert any(not torch.equal(value, state["model"][key]) for key, value in best.items() if value.is_floating_point())
    assert read_metadata(tmp_path / "split").training.ema_decay == 0.9

    resumed = _train(data, tmp_path / "split", resume=True)
    a = load_file(str(tmp_path / "full" / "last-state.safetensors"))
    b = load_file(str(tmp_path / "split" / "last-state.safetensors"))
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), f"{key} differs after resume"
    assert [r["val_roc_auc"] for r in full.history] == [r["val_roc_auc"] for r in resumed.history]
