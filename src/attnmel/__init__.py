"""attnmel: interpretable melanoma recognition from dermoscopy images with learned visual attention.

The names below are imported on first use, so ``import attnmel`` (and ``attnmel --version``) does
not pay for importing torch.
"""

from __future__ import annotations

import importlib
from typing import Any

from attnmel.version import __version__

_LAZY = {
    "LogitsOnly": "attnmel.models",
    "ModelOutput": "attnmel.models",
    "create_model": "attnmel.checkpoints.pretrained",
    "list_backbones": "attnmel.models",
    "list_models": "attnmel.models",
    "register_model": "attnmel.models",
    "list_pretrained": "attnmel.checkpoints.pretrained",
    "load_model": "attnmel.inference",
    "LoadedModel": "attnmel.inference",
    "Prediction": "attnmel.inference",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'attnmel' has no attribute {name!r}")
