"""Reading the network behind whatever a door is given: a run folder, a ``.safetensors`` checkpoint, a
trusted pickle, or the tag of a pretrained model shipped with attnmel (``attnmel.checkpoints.pretrained``).

This is the building block of ``attnmel.load_model`` (``attnmel.inference``), the one public way to get
a trained model; ``start_from_checkpoint`` loads a checkpoint's weights into a network being trained."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from attnmel.checkpoints.format import (
    _read_network,
    checkpoint_paths,
    is_pickle_checkpoint,
    load_weights_into,
    read_metadata,
    refuse_pickle,
)
from attnmel.checkpoints.meta import CheckpointMeta
from attnmel.checkpoints.pretrained import PRETRAINED, get_pretrained, is_pretrained_tag
from attnmel.errors import CheckpointError
from attnmel.io import file_sha256


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


def _load_network(
    source: str | Path | None,
    device: str | torch.device = "cpu",
    *,
    trust_pickle: bool = False,
    legacy=None,
) -> tuple[nn.Module, CheckpointMeta, Path]:
    """(network in eval mode on ``device``, its metadata, the file it came from): for ``attnmel.load_model``.

    Pickles are refused unless ``trust_pickle``; then ``legacy`` (``LegacyAssumptions``) says what
    to assume where a pickle holds no attnmel metadata.
    """
    path = resolve_source(source)
    if path.is_dir():  # a run folder: the file it answers with (ensemble keys hash members' files)
        path = checkpoint_paths(path)[0]
    if is_pickle_checkpoint(path):
        if not trust_pickle:
            raise refuse_pickle(path)
        from attnmel.checkpoints.legacy import load_legacy_checkpoint

        model, meta = load_legacy_checkpoint(path, device, legacy)
        return model, meta, path
    model, meta = _read_network(path, device)
    return model, meta, path


def load_checkpoint(
    source: str | Path | None,
    device: str | torch.device = "cpu",
    *,
    trust_pickle: bool = False,
    legacy=None,
) -> tuple[nn.Module, CheckpointMeta, Path]:
    """Deprecated (removed in the next release): ``attnmel.load_model(source)``, whose ``network``,
    ``meta`` and ``sources[0]`` are this triple."""
    warnings.warn("attnmel.checkpoints.load_checkpoint is deprecated and goes in the next release; use "
                  "attnmel.load_model(source): its .network, .meta and .sources[0].", DeprecationWarning, stacklevel=2)
    return _load_network(source, device, trust_pickle=trust_pickle, legacy=legacy)


def start_from_checkpoint(model: nn.Module, source: str, class_names: Sequence[str]) -> dict[str, Any]:
    """Load a trained checkpoint's weights into a freshly built ``model`` (fine-tuning), after checking
    that the architecture and the classes are the same; returns what it started from, for the record."""
    path, _ = checkpoint_paths(resolve_source(source))
    meta = read_metadata(path)
    own = model.architecture.to_dict()
    theirs = meta.architecture.to_dict()
    differing = sorted(key for key in own.keys() | theirs.keys() if key != "weights" and own.get(key) != theirs.get(key))
    if differing:
        raise CheckpointError(
            f"{path}: model.init_from is {meta.architecture.name} with "
            + ", ".join(f"{key}={theirs.get(key)!r}" for key in differing)
            + " but this run builds " + ", ".join(f"{key}={own.get(key)!r}" for key in differing)
            + "; set the model options to the checkpoint's or start from another checkpoint."
        )
    if list(meta.class_names) != list(class_names):
        raise CheckpointError(
            f"{path}: model.init_from was trained for the classes {list(meta.class_names)}, this run's task has "
            f"{list(class_names)}; fine-tune on data of the same task (data.task)."
        )
    load_weights_into(model, meta, path)
    return {"checkpoint": str(source), "sha256": file_sha256(path), "run": meta.training.run,
            "epoch": meta.training.epoch}
