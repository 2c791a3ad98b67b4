"""One DDP step against a plain step, in a process of its own (NCCL on a GPU, gloo on a CPU)."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from pathlib import Path

from .files import write_json
from .settings import ENTRY, Settings, Task, torch_device
from .supervise import child_env, run_child

#: seconds the DDP check's process may take (NCCL's start included) before it counts as hung
DDP_TIMEOUT = 90


def check_ddp(s: Settings) -> str:
    """One DDP step in a process of its own, so that a hung collective costs DDP_TIMEOUT, not the task."""
    spec = Path(s.work) / "tasks" / "ddp.json"
    write_json(spec, {"settings": asdict(s), "task": asdict(Task("ddp", "ddp", DDP_TIMEOUT))})
    result_path = Path(s.work) / "results" / "ddp.json"
    result_path.unlink(missing_ok=True)
    status, tail = run_child([sys.executable, str(ENTRY), "--child", str(spec)], DDP_TIMEOUT,
                             lambda line: print(line, flush=True), "  [ddp] ", child_env(s))
    result = json.loads(result_path.read_text()) if result_path.is_file() else {}
    if status != "ok":
        raise AssertionError(result.get("error") or f"the DDP process was {status}" + (f": {tail[-1]}" if tail else ""))
    return result["detail"]


def task_ddp(s: Settings, task: Task, save) -> None:
    """A process group of one (NCCL on CUDA, gloo on CPU): a DDP step of AttnMel-CNN-Lesion on
    MobileNetV2 in bf16 + channels_last, with the library's batch-norm conversion and its
    differentiable all-reduce of the prior's Dice terms, must equal the same step without DDP.
    One process is all one GPU allows (NCCL refuses two ranks on one device); with one process
    SyncBatchNorm computes local statistics, so its cross-GPU kernels stay untested here."""
    import copy
    import socket

    import torch
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    from attnmel import create_model
    from attnmel.training.distributed import GlobalBatchNorm, _sum_over_ranks
    from attnmel.training.losses import FocalLoss, attention_prior_loss

    device, size = torch_device(s), 32 if s.smoke else 224
    if device.type == "cuda":
        torch.cuda.set_device(device.index or 0)
        device = torch.device("cuda", device.index or 0)
    backend = "nccl" if device.type == "cuda" else "gloo"
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=1)
    try:
        torch.manual_seed(0)
        base = create_model("attnmel", 2, backbone="mobilenet_v2")
        plain = copy.deepcopy(base)
        converted = (torch.nn.SyncBatchNorm.convert_sync_batchnorm(copy.deepcopy(base)) if device.type == "cuda"
                     else GlobalBatchNorm.convert(copy.deepcopy(base)))
        plain = plain.to(device).to(memory_format=torch.channels_last)
        converted = converted.to(device).to(memory_format=torch.channels_last)
        ddp = DistributedDataParallel(converted, device_ids=[device.index] if device.type == "cuda" else None,
                                      gradient_as_bucket_view=True)
        x = torch.randn(4, 3, size, size, device=device).contiguous(memory_format=torch.channels_last)
        labels = torch.tensor([0, 1, 0, 1], device=device)
        region = (torch.rand(4, 1, size, size, device=device) > 0.5).float()
        has_region = torch.tensor([True, True, False, True], device=device)

        def step(model, reduce):
            optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
            with torch.autocast(device.type, dtype=torch.bfloat16):
                out = model(x)
            prior, _ = attention_prior_loss({k: v.float() for k, v in out.attention.items()}, region, has_region,
                                            [0.01, 0.1], reduce=reduce)
            loss = FocalLoss(2.0)(out.logits.float(), labels) + prior
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            return loss.detach()

        loss_ddp = step(ddp, _sum_over_ranks)
        loss_plain = step(plain, None)
        a = torch.cat([p.detach().flatten().float() for p in converted.parameters()])
        b = torch.cat([p.detach().flatten().float() for p in plain.parameters()])
        difference = float((a - b).norm() / b.norm())
        if not difference < 1e-4 or not torch.isfinite(loss_ddp):
            raise AssertionError(f"the DDP step moved the weights elsewhere: relative difference {difference:.2e}")
        total = torch.ones(3, device=device)
        dist.all_reduce(total)
        gathered: list = [None]
        dist.all_gather_object(gathered, {"rank": 0})
        probe_tensor = torch.ones(3, device=device, requires_grad=True)
        _sum_over_ranks(probe_tensor * 2).sum().backward()
        if total.tolist() != [1.0, 1.0, 1.0] or gathered != [{"rank": 0}] or probe_tensor.grad.tolist() != [2.0, 2.0, 2.0]:
            raise AssertionError("a collective returned a wrong value")
        version = f" {nccl_version()}" if backend == "nccl" else ""
        detail = (f"{backend}{version}, 1 process: DDP step = plain step (relative difference {difference:.1e}, loss "
                  f"{loss_ddp.item():.4f} vs {loss_plain.item():.4f}); all_reduce, all_gather_object and the "
                  "differentiable all-reduce answer right")
        print(detail, flush=True)
        save(backend=backend, detail=detail)
    finally:
        dist.destroy_process_group()


def nccl_version() -> str:
    import torch

    version = torch.cuda.nccl.version()
    return ".".join(map(str, version)) if isinstance(version, tuple) else str(version)
