"""Checkpoints: the typed metadata (``meta``), the safetensors format (``format``), trusted legacy
pickles (``legacy``), reading the network behind whatever a door is given (``loader``, under
``attnmel.load_model``) and model cards (``card``)."""

from attnmel.checkpoints.format import (
    BEST_FILE,
    checkpoint_paths,
    read_metadata,
    save_model_checkpoint,
    update_metadata,
)
from attnmel.checkpoints.loader import load_checkpoint, resolve_source
from attnmel.checkpoints.meta import Architecture, CheckpointMeta, TrainingRecord

__all__ = [
    "BEST_FILE",
    "Architecture",
    "CheckpointMeta",
    "TrainingRecord",
    "checkpoint_paths",
    "load_checkpoint",
    "read_metadata",
    "resolve_source",
    "save_model_checkpoint",
    "update_metadata",
]
