"""Which device a command runs on, and the process-wide torch settings a run asks for.

Kept apart from training and evaluation because every door (train, evaluate, predict, serve)
resolves a device the same way.
"""

from __future__ import annotations

import os

import torch

from attnmel.errors import ConfigError


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` picks CUDA when present; anything else is handed to ``torch.device``."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"device {name!r} is not a torch device; use auto, cpu, cuda or cuda:N.") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} was asked for, but this machine has no CUDA GPU; use --device cpu.")
    return device


def configure_torch(threads: int | None = None, deterministic: bool = True) -> None:
    """Intra-op threads and (non-)deterministic kernels for this process."""
    if threads:
        torch.set_num_threads(threads)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    else:
        torch.backends.cudnn.benchmark = True
