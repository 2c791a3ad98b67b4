"""Which device a command runs on, and the process-wide torch settings a run asks for.

Kept apart from training and evaluation because every door (train, evaluate, predict, serve)
resolves a device the same way.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

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


def bf16_supported(device: torch.device) -> bool:
    """Whether bf16 matmuls run natively here: a CUDA GPU that says so, or a CPU with AVX-512 BF16
    or AMX (oneDNN's own check). Elsewhere bf16 is emulated and slower than fp32."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    return False


@dataclass(frozen=True)
class FastPath:
    """What a training run does for speed: bf16 autocast (weights, optimiser and losses stay fp32)
    and channels_last memory; ``note`` says why, in one line."""

    amp: bool
    channels_last: bool
    note: str


def fast_path(device: torch.device, amp: bool | None, channels_last: bool | None) -> FastPath:
    """``None`` means automatic: both on where bf16 is native, else fp32 in the default layout."""
    native = bf16_supported(device)
    if amp is None:
        amp = native
    if channels_last is None:
        channels_last = amp
    if amp and not native:
        note = f"bf16 autocast on {device.type} without native bf16 (asked for with train.amp=true): expect it slower"
    elif amp:
        note = f"fast path: bf16 autocast{' + channels_last' if channels_last else ''} on {device.type} (native bf16)"
    elif native:
        note = f"fp32{' + channels_last' if channels_last else ''} (train.amp=false); this {device.type} has native bf16"
    else:
        note = f"fp32{' + channels_last' if channels_last else ''}: this {device.type} has no native bf16"
    return FastPath(amp, channels_last, note)
