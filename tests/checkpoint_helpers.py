"""Real model checkpoints for evaluation tests, written without training (a fresh model is enough)."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from attnmel import create_model
from attnmel.checkpoints.format import save_model_checkpoint
from attnmel.checkpoints.meta import Architecture, CheckpointMeta
from attnmel.data.records import get_task
from attnmel.data.transforms import Preprocessing, resolve_normalization


def make_checkpoint(
    path: Path,
    *,
    seed: int = 0,
    name: str = "attnmel",
    task: str = "melanoma",
    image_size: int = 64,
    normalization: str = "isic2017",
    logit_scale: float = 1.0,
    **options,
) -> Path:
    """A MobileNetV2 checkpoint with 64 px preprocessing.

    Batch-norm statistics are first estimated on random inputs, as training would: with the
    default statistics a fresh network gives nearly the same output for every image.
    ``logit_scale`` multiplies the classifier, e.g. to make an over-confident model; ``options`` go
    to ``create_model``.
    """
    torch.manual_seed(seed)
    spec = get_task(task)
    model = create_model(name, spec.num_classes, backbone="mobilenet_v2", **options)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.momentum = None  # cumulative average
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(8, 3, image_size, image_size))
        model.classifier.weight.mul_(logit_scale)
        model.classifier.bias.mul_(logit_scale)
    mean, std = resolve_normalization(normalization)
    meta = CheckpointMeta(
        architecture=Architecture.of(model),
        task=spec.name,
        class_names=spec.class_names,
        score_columns=spec.score_columns,
        preprocessing=Preprocessing(0.8, image_size * 9 // 8, image_size, mean, std),
    )
    return save_model_checkpoint(path, model, meta)


def network_of(source, **settings) -> tuple[nn.Module, CheckpointMeta]:
    """The trained network and metadata behind ``source`` (on the CPU), through the one loader."""
    from attnmel import load_model

    loaded = load_model(source, device="cpu", **settings)
    return loaded.network, loaded.meta
