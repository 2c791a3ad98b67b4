"""Several processes, one run: PyTorch DDP under ``torchrun``.

    torchrun --nproc_per_node 8 -m attnmel train --config ... --data ... --output ...
    torchrun --nnodes 2 --nproc_per_node 8 --rdzv-backend c10d --rdzv-endpoint HOST:29500 -m attnmel train ...

N processes reproduce one process that trains with the same global batch:

- ``train.batch_size`` is the global batch; each rank takes ``batch_size / N`` of every step.
- The epoch's key order stays global (a pure function of seed and epoch). It is cut to whole
  global batches, and rank r takes positions r, r+N, r+2N, ... (``DistributedSampler``'s layout),
  so step s of all ranks together is exactly the global batch s of a single process.
- DDP averages gradients; batch-norm statistics are those of the global batch (``nn.SyncBatchNorm``
  on GPUs, ``GlobalBatchNorm`` below on CPUs, where torch's SyncBatchNorm refuses to run); the
  attention-prior Dice sums its terms over the global batch; logged losses are global means.
- Validation: rank r scores val samples r, r+N, ...; the probabilities are gathered (in the
  original order) and every rank computes the metrics on the full set, as one process would.
- Rank 0 alone writes the run folder and shows progress. ``--output`` (and ``data.cache_dir``)
  must be on a filesystem every node sees, as usual for multi-node jobs; ``--resume`` reads it on
  every rank, and may use a different number of processes.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from attnmel.devices import resolve_device
from attnmel.errors import ConfigError


@dataclass
class Distributed:
    """This process's place in the run; with one process every method is a no-op."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    owns_group: bool = False

    @classmethod
    def from_environment(cls, device_name: str = "auto") -> Distributed:
        """Join the process group that ``torchrun`` describes in the environment (if any)."""
        world_size = int(os.environ.get("WORLD_SIZE", "1"))
        if world_size <= 1:
            return cls()
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        owns = False
        if not dist.is_initialized():
            backend = "nccl" if resolve_device(device_name).type == "cuda" else "gloo"
            if backend == "nccl":
                torch.cuda.set_device(local_rank)
            dist.init_process_group(backend)
            owns = True
        return cls(dist.get_rank(), dist.get_world_size(), local_rank, owns)

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def device(self, name: str = "auto") -> torch.device:
        device = resolve_device(name)
        if self.enabled and device.type == "cuda" and device.index is None:
            device = torch.device("cuda", self.local_rank)
        return device

    def close(self) -> None:
        if self.owns_group and dist.is_initialized():
            dist.destroy_process_group()
            self.owns_group = False

    # ------------------------------------------------------------------ data

    def per_rank_batch(self, global_batch: int) -> int:
        if global_batch % self.world_size:
            raise ConfigError(
                f"train.batch_size {global_batch} is the global batch and must divide evenly over "
                f"{self.world_size} processes; use a multiple of {self.world_size}."
            )
        return global_batch // self.world_size

    def shard(self, keys: Sequence, global_batch: int) -> list:
        """This rank's keys: whole global batches of the global order, positions rank, rank+N, ..."""
        keys = list(keys)
        if len(keys) > global_batch:
            keys = keys[: len(keys) // global_batch * global_batch]
        if len(keys) < self.world_size:
            raise ConfigError(f"{len(keys)} training samples cannot be shared by {self.world_size} processes.")
        return keys[self.rank :: self.world_size]

    def eval_indices(self, count: int) -> list[int]:
        return list(range(self.rank, count, self.world_size))

    # ------------------------------------------------------------------ collectives

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def all_reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        if self.enabled:
            dist.all_reduce(tensor)
        return tensor

    def differentiable_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sum over ranks that passes gradients back to every rank's share."""
        return _sum_over_ranks(tensor) if self.enabled else tensor

    def gather_rows(self, array: np.ndarray) -> np.ndarray:
        """Reassemble rows scored on ``eval_indices`` of every rank into the original order."""
        if not self.enabled:
            return array
        parts: list = [None] * self.world_size
        dist.all_gather_object(parts, np.asarray(array))
        total = sum(len(p) for p in parts)
        out = np.empty((total, *parts[0].shape[1:]), dtype=parts[0].dtype)
        for rank, part in enumerate(parts):
            out[rank :: self.world_size] = part
        return out

    # ------------------------------------------------------------------ model

    def prepare_model(self, model: nn.Module, device: torch.device, sync_batchnorm: bool) -> nn.Module:
        """Batch norm over the global batch (before the optimiser sees the parameters)."""
        if not (self.enabled and sync_batchnorm):
            return model
        if device.type == "cuda":
            return nn.SyncBatchNorm.convert_sync_batchnorm(model)
        return GlobalBatchNorm.convert(model)

    def wrap(self, model: nn.Module, device: torch.device) -> nn.Module:
        if not self.enabled:
            return model
        from torch.nn.parallel import DistributedDataParallel

        return DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None, gradient_as_bucket_view=True
        )


def _sum_over_ranks(tensor: torch.Tensor) -> torch.Tensor:
    """All-reduce (sum) whose backward all-reduces the gradient (torch's functional collectives)."""
    from torch.distributed import _functional_collectives as funcol

    return funcol.all_reduce(tensor, "sum", dist.group.WORLD)


class GlobalBatchNorm(nn.BatchNorm2d):
    """``BatchNorm2d`` whose training statistics are those of the global batch over all ranks.

    torch's ``nn.SyncBatchNorm`` runs on GPUs only (torch 2.x raises "SyncBatchNorm expected input
    tensor to be on GPU" for CPU tensors), so CPU (gloo) runs use this: the per-channel sums are
    all-reduced with autograd-aware collectives, which also sum the gradients of the statistics.
    Two passes (mean, then centred squares) keep the variance as accurate as the local version.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        dims = (0, 2, 3)
        x32 = x if x.dtype == torch.float64 else x.float()
        count = torch.tensor([x32.numel() / x32.shape[1]], dtype=x32.dtype, device=x.device)
        sums = _sum_over_ranks(torch.cat([x32.sum(dims), count]))
        n = sums[-1]
        mean = sums[:-1] / n
        centred = x32 - mean.view(1, -1, 1, 1)
        var = _sum_over_ranks((centred * centred).sum(dims)) / n
        y = centred * torch.rsqrt(var + self.eps).view(1, -1, 1, 1)
        if self.affine:
            y = y * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
                unbiased = var * (n / (n - 1).clamp_min(1))
                self.running_mean.mul_(1 - factor).add_(mean.detach(), alpha=factor)
                self.running_var.mul_(1 - factor).add_(unbiased.detach(), alpha=factor)
        return y.to(x.dtype)

    @classmethod
    def convert(cls, module: nn.Module) -> nn.Module:
        """Replace every ``BatchNorm2d`` in ``module`` (sharing its parameters and buffers)."""
        if type(module) is nn.BatchNorm2d:
            out = cls(module.num_features, module.eps, module.momentum, module.affine, module.track_running_stats)
            out.load_state_dict(module.state_dict())
            if module.affine:
                out.weight, out.bias = module.weight, module.bias
            out.train(module.training)
            return out
        for name, child in module.named_children():
            module.add_module(name, cls.convert(child))
        return module
