"""Loading any model a door is given: a run folder, a ``.safetensors`` checkpoint, a trusted pickle,
or the tag of a pretrained model shipped with attnmel (``attnmel.checkpoints.pretrained``)."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from attnmel.checkpoints.format import is_pickle_checkpoint, load_model_checkpoint, refuse_pickle
from attnmel.checkpoints.meta import CheckpointMeta
from attnmel.checkpoints.pretrained import PRETRAINED, get_pretrained, is_pretrained_tag
from attnmel.errors import CheckpointError


def resolve_source(source: str | Path | None) -> Path:
    """The file behind ``source``: a path as given, or a pretrained tag's verified file (the default
    pretrained model when ``source`` is None)."""
    if is_pretrained_tag(source):
        return get_pretrained(source).verify()
    path = Path(source)
    if not path.exists():
        tags = ", ".join(PRETRAINED) or "none"
        raise CheckpointError(f"{path}: no such checkpoint file or run folder (pretrained tags: {tags}).")
    return path


def load_checkpoint(
    source: str | Path | None,
    device: str | torch.device = "cpu",
    *,
    trust_pickle: bool = False,
    legacy=None,
) -> tuple[nn.Module, CheckpointMeta, Path]:
    """(model in eval mode on ``device``, its metadata, the file it came from).

    Pickles are refused unless ``trust_pickle``; then ``legacy`` (``LegacyAssumptions``) says what
    to assume where a pickle holds no attnmel metadata.
    """
    path = resolve_source(source)
    if is_pickle_checkpoint(path):
        if not trust_pickle:
            raise refuse_pickle(path)
        from attnmel.checkpoints.legacy import load_legacy_checkpoint

        model, meta = load_legacy_checkpoint(path, device, legacy)
        return model, meta, path
    model, meta = load_model_checkpoint(path, device)
    return model, meta, path
