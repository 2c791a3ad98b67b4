"""Optimiser and learning-rate schedule from ``OptimConfig``.

The schedule is one ``LambdaLR`` stepped every iteration, with the factor a function of the
fractional epoch: the paper's x0.1-every-10-epochs step, cosine, constant, each with optional
linear warm-up. Its state is a step counter, so resuming is exact.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from attnmel.config import OptimConfig
from attnmel.errors import ConfigError


def parameter_groups(model: nn.Module, config: OptimConfig) -> list[dict]:
    """Backbone parameters at ``lr * backbone_lr_scale``, everything else (the new head) at ``lr``."""
    backbone: list[nn.Parameter] = []
    head: list[nn.Parameter] = []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        (backbone if name.startswith(("backbone.", "features.")) else head).append(param)
    groups = [{"params": head, "lr": config.lr, "name": "head"}]
    if backbone:
        groups.append({"params": backbone, "lr": config.lr * config.backbone_lr_scale, "name": "backbone"})
    return groups


def build_optimizer(model: nn.Module, config: OptimConfig) -> torch.optim.Optimizer:
    groups = parameter_groups(model, config)
    if config.name == "sgd":
        if config.nesterov and config.momentum <= 0:
            raise ConfigError("optim.nesterov needs optim.momentum > 0; set optim.nesterov=false for plain SGD.")
        return torch.optim.SGD(
            groups, lr=config.lr, momentum=config.momentum, nesterov=config.nesterov, weight_decay=config.weight_decay
        )
    if config.name == "adamw":
        return torch.optim.AdamW(groups, lr=config.lr, weight_decay=config.weight_decay)
    raise ConfigError(f"optim.name must be 'sgd' or 'adamw', not {config.name!r}.")


def lr_factor(config: OptimConfig, epoch: float, total_epochs: int) -> float:
    """Multiplier of the base learning rate at fractional ``epoch``."""
    if config.warmup_epochs > 0 and epoch < config.warmup_epochs:
        return (epoch + 1e-8) / config.warmup_epochs
    if config.schedule == "step":
        return config.step_gamma ** math.floor(epoch / max(config.step_epochs, 1))
    if config.schedule == "cosine":
        span = max(total_epochs - config.warmup_epochs, 1e-8)
        progress = min(max((epoch - config.warmup_epochs) / span, 0.0), 1.0)
        return 0.5 * (1 + math.cos(math.pi * progress))
    if config.schedule == "constant":
        return 1.0
    raise ConfigError(f"optim.schedule must be 'step', 'cosine' or 'constant', not {config.schedule!r}.")


def build_scheduler(
    optimizer: torch.optim.Optimizer, config: OptimConfig, steps_per_epoch: int, total_epochs: int
) -> torch.optim.lr_scheduler.LambdaLR:
    lr_factor(config, 0.0, total_epochs)  # validate the schedule name before training starts
    steps = max(steps_per_epoch, 1)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(config, step / steps, total_epochs))
