"""Grad-CAM beside the learned attention: pytorch-grad-cam on the logits-only view of the model.

A reader can then see how the attention the model learned differs from a post-hoc saliency map.
The library min-max stretches every map; here the raw, non-negative Grad-CAM scores are kept
(``RawGradCAM``), so the figure can show their own scale and tell a flat map like any other.
pytorch-grad-cam is an optional extra: ``pip install 'attnmel[explain]'``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from attnmel.errors import AttnmelError
from attnmel.models import LogitsOnly

if TYPE_CHECKING:
    from attnmel.inference import LoadedModel

LAYER = "grad-cam"


def grad_cam(model: nn.Module, images: torch.Tensor, class_index: int) -> np.ndarray:
    """Raw Grad-CAM scores (N, h, w) of ``class_index`` at the model's last feature stage."""
    try:
        from pytorch_grad_cam import GradCAM
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
    except ImportError:
        raise AttnmelError("Grad-CAM needs the explain extras: pip install 'attnmel[explain]'.") from None

    class RawGradCAM(GradCAM):
        def compute_cam_per_layer(self, input_tensor, targets, eigen_smooth):
            activations = [a.cpu().data.numpy() for a in self.activations_and_grads.activations]
            grads = [g.cpu().data.numpy() for g in self.activations_and_grads.gradients]
            return [np.maximum(self.get_cam_image(input_tensor, layer, targets, a, g, eigen_smooth), 0)[:, None]
                    for layer, a, g in zip(self.target_layers, activations, grads, strict=True)]

        def aggregate_multi_layers(self, cam_per_target_layer):
            return np.mean(np.concatenate(cam_per_target_layer, axis=1), axis=1)

    network = getattr(model, "model", model)  # the CAM view of a GAP model wraps the network
    was_training = network.training
    network.eval()
    with torch.enable_grad(), RawGradCAM(model=LogitsOnly(network), target_layers=[network.last_stage()]) as cam:
        maps = cam(input_tensor=images, targets=[ClassifierOutputTarget(class_index)] * len(images))
    network.train(was_training)
    return np.asarray(maps, dtype=np.float32)


def grad_cam_of_views(loaded: LoadedModel, views: Sequence[np.ndarray]) -> np.ndarray:
    """Grad-CAM of the positive class (N, h, w) for the RGB uint8 views the model saw (S, S, 3) (a
    ``Prediction.view``): they are normalised again, without the geometry, and run through the first member."""
    mean = torch.tensor(loaded.preprocessing.mean).view(1, 3, 1, 1)
    std = torch.tensor(loaded.preprocessing.std).view(1, 3, 1, 1)
    batch = (torch.from_numpy(np.stack(views)).permute(0, 3, 1, 2).float() / 255 - mean) / std
    return grad_cam(loaded.predictor.models[0], batch.to(loaded.device), loaded.meta.positive_index)
