"""Exponential moving average of the weights (``train.ema_decay``), with torch's ``AveragedModel``.

After every optimiser step ``ema = decay * ema + (1 - decay) * weights``; the first step copies the
weights. Batch-norm running statistics are averaged the same way (``use_buffers=True``), so the
averaged model is evaluated with statistics that match its averaged weights instead of the last
step's. When EMA is on, validation, best-epoch selection and ``best.safetensors`` use the averaged
weights; the training state keeps both, so ``--resume`` continues the average exactly.
"""

from __future__ import annotations

from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from attnmel.errors import ConfigError


def create_ema(model: nn.Module, decay: float | None) -> AveragedModel | None:
    """An EMA copy of ``model`` (None when ``decay`` is None or 0, i.e. EMA off)."""
    if not decay:
        return None
    if not 0 < decay < 1:
        raise ConfigError(f"train.ema_decay must be between 0 and 1 (e.g. 0.998) or null, not {decay!r}.")
    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)
