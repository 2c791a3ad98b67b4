"""Optimiser options beyond the paper: AdamW, cosine with warm-up, layer-wise learning rates, label smoothing."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from attnmel import create_model
from attnmel.config import LossConfig, OptimConfig
from attnmel.errors import ConfigError
from attnmel.training.losses import classification_loss
from attnmel.training.optim import build_optimizer, build_scheduler, lr_factor, parameter_groups


def test_lr_factor_curves():
    cosine = OptimConfig(schedule="cosine", warmup_epochs=2)
    assert lr_factor(cosine, 0.0, 10) == pytest.approx(0.0, abs=1e-6)
    assert lr_factor(cosine, 1.0, 10) == pytest.approx(0.5)            # linear warm-up
    assert lr_factor(cosine, 2.0, 10) == pytest.approx(1.0)
    assert lr_factor(cosine, 6.0, 10) == pytest.approx(0.5)            # half-way through the cosine
    assert lr_factor(cosine, 10.0, 10) == pytest.approx(0.0, abs=1e-12)
    after_warmup = [lr_factor(cosine, 2 + 0.5 * i, 10) for i in range(17)]
    assert after_warmup == sorted(after_warmup, reverse=True)
    paper = OptimConfig(schedule="step", step_epochs=10, step_gamma=0.1)
    assert [lr_factor(paper, e, 50) for e in (0, 9.99, 10, 25)] == pytest.approx([1, 1, 0.1, 0.01])
    constant = OptimConfig(schedule="constant", warmup_epochs=1)
    assert (lr_factor(constant, 0.5, 5), lr_factor(constant, 3, 5)) == pytest.approx((0.5, 1.0))
    with pytest.raises(ConfigError, match="optim.schedule"):
        lr_factor(OptimConfig(schedule="linear"), 1, 5)


def test_parameter_groups_split_backbone_and_head():
    model = create_model("attnmel", backbone="mobilenet_v2")
    groups = {g["name"]: g for g in parameter_groups(model, OptimConfig(lr=1e-3, backbone_lr_scale=0.1))}
    backbone = {id(p) for n, p in model.named_parameters() if n.startswith("backbone.")}
    head = {id(p) for n, p in model.named_parameters() if not n.startswith("backbone.")}
    assert {id(p) for p in groups["backbone"]["params"]} == backbone
    assert {id(p) for p in groups["head"]["params"]} == head
    assert id(model.classifier.weight) in head and id(next(model.gates.parameters())) in head
    assert (groups["head"]["lr"], groups["backbone"]["lr"]) == pytest.approx((1e-3, 1e-4))


def test_adamw_with_warmup_and_cosine_drives_both_groups():
    model = create_model("gap", backbone="mobilenet_v2")
    config = OptimConfig(name="adamw", lr=1e-3, weight_decay=0.05, schedule="cosine", warmup_epochs=1,
                         backbone_lr_scale=0.1)
    optimizer = build_optimizer(model, config)
    assert isinstance(optimizer, torch.optim.AdamW) and optimizer.param_groups[0]["weight_decay"] == 0.05
    scheduler = build_scheduler(optimizer, config, steps_per_epoch=4, total_epochs=3)
    for step in range(12):
        lrs = {g["name"]: g["lr"] for g in optimizer.param_groups}
        assert lrs["head"] == pytest.approx(1e-3 * lr_factor(config, step / 4, 3))
        assert lrs["backbone"] == pytest.approx(0.1 * lrs["head"])
        optimizer.step()
        scheduler.step()
    with pytest.raises(ConfigError, match="optim.name"):
        build_optimizer(model, OptimConfig(name="rmsprop"))


def test_label_smoothing_in_both_losses():
    logits, target = torch.randn(8, 3), torch.randint(0, 3, (8,))
    smoothed = F.cross_entropy(logits, target, label_smoothing=0.1)
    torch.testing.assert_close(classification_loss(LossConfig(name="cross_entropy", label_smoothing=0.1))(logits, target), smoothed)
    focal_gamma0 = classification_loss(LossConfig(name="focal", focal_gamma=0.0, label_smoothing=0.1))
    torch.testing.assert_close(focal_gamma0(logits, target), smoothed)
    confident, right = torch.tensor([[8.0, -8.0]]), torch.tensor([0])
    plain = classification_loss(LossConfig(name="cross_entropy"))(confident, right)
    assert classification_loss(LossConfig(name="cross_entropy", label_smoothing=0.1))(confident, right) > plain + 0.5
