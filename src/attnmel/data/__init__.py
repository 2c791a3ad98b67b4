"""Data: dataset readers (official ISIC layouts, isic-cli folders, manifests), decoding, masks,
transforms, input pipelines, training splits, the decode-once cache and integrity checks.

Import the module you need (``attnmel.data.readers``, ...); the names below load on first use so
that light commands such as ``attnmel data check`` never import torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "LAYOUTS": "attnmel.data.readers",
    "detect_layout": "attnmel.data.readers",
    "read_dataset": "attnmel.data.readers",
    "TASKS": "attnmel.data.records",
    "DatasetIndex": "attnmel.data.records",
    "Sample": "attnmel.data.records",
    "Task": "attnmel.data.records",
    "get_task": "attnmel.data.records",
    "IsicDataset": "attnmel.data.dataset",
}

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'attnmel.data' has no attribute {name!r}")
