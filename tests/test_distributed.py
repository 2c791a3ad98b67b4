"""Two CPU processes (torchrun, gloo) train the same model as one process with the same global batch."""

from __future__ import annotations

import csv
import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file, save_file

from attnmel.config import load_config
from attnmel.training.loop import train

from .conftest import REPO, make_isic2017_subset

# MobileNetV2 has batch norm in every block, so this checks the global batch-norm statistics; the
# lesion prior checks that its Dice is taken over the global batch. 6 images (2 melanomas, x4) =
# 12 keys = 2 global batches of 6 per epoch, 3 samples per process and step. ImageNet weights and a
# small learning rate keep float32 rounding from being amplified: from random weights, or at
# lr 0.01 on 6 images, two single-process runs that differ only in thread count already drift apart
# by 2% within 4 steps, which would leave nothing to compare.
SETTINGS = [
    "model.backbone=mobilenet_v2", "data.resize=72", "data.image_size=64", "data.num_workers=0", "data.roi=lesion",
    "data.pipeline=device", "optim.lr=0.0001", "train.batch_size=6", "train.eval_batch_size=4", "train.threads=1",
    # fp32: bf16 rounds the halves of a batch differently from the whole, which this test must not see
    "train.amp=false",
]


def _torchrun(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "attnmel", "train", *args, "--no-progress"]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)


def _model_state(run) -> torch.Tensor:
    """Every model parameter and batch-norm buffer of a run's last state, as one vector."""
    state = load_file(str(run / "last-state.safetensors"))
    return torch.cat([v.flatten().double() for k, v in sorted(state.items()) if k.startswith("s.1.") and v.is_floating_point()])


@pytest.mark.slow
def test_two_processes_reproduce_one_and_resume(tmp_path, mobilenet_weights):
    data = make_isic2017_subset(tmp_path / "ds", n_train=6, n_val=6)
    config = tmp_path / "tiny.yaml"
    config.write_text(load_config(None, [*SETTINGS, f"model.weights={mobilenet_weights}"]).to_yaml())
    single = train(load_config(config, ["train.epochs=2"]), data, tmp_path / "single", progress=False, log=lambda *_: None)

    # two processes: epoch 1 from scratch, then --resume for epoch 2
    first = _torchrun("--config", str(config), "--data", str(data), "--output", str(tmp_path / "ddp"), "--set", "train.epochs=1")
    assert first.returncode == 0, first.stderr[-3000:]
    assert first.stdout.count("epoch 1/1:") == 1  # rank 0 alone logs (and writes)
    second = _torchrun("--data", str(data), "--output", str(tmp_path / "ddp"), "--resume", "--set", "train.epochs=2")
    assert second.returncode == 0, second.stderr[-3000:]

    # Not bit-identical: float32 sums run in another order on half batches. Measured on this setup
    # (relative L2 distance to the single-process state): two processes 2.7e-5; one process with 2
    # threads instead of 1, 3.6e-6; two processes with per-process batch norm
    # (train.sync_batchnorm=false) 1.9e-2, and 20% off in train loss: this test catches that.
    expected, got = _model_state(tmp_path / "single"), _model_state(tmp_path / "ddp")
    assert ((got - expected).norm() / expected.norm()).item() < 2e-4

    with open(tmp_path / "ddp" / "metrics.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 2
    for mine, theirs in zip(rows, single.history, strict=True):
        for metric in ("val_roc_auc", "val_average_precision", "val_accuracy"):
            assert float(mine[metric]) == pytest.approx(theirs[metric], abs=1e-9), metric
        assert float(mine["train_loss"]) == pytest.approx(theirs["train_loss"], rel=1e-3)
        assert float(mine["train_prior_loss"]) == pytest.approx(theirs["train_prior_loss"], rel=1e-3)
        assert int(mine["train_prior_samples"]) == theirs["train_prior_samples"] > 0
        assert int(mine["train_images"]) == theirs["train_images"] == 12


def _batch_norm_worker(rank: int, port: int, out: str) -> None:
    """Rank ``rank`` of 2: half of a batch through conv + GlobalBatchNorm + conv + GlobalBatchNorm."""
    from attnmel.training.distributed import Distributed, GlobalBatchNorm

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE="2", LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    dist = Distributed.from_environment("cpu")
    try:
        net, images, target = _toy_problem()
        net = GlobalBatchNorm.convert(net)
        half = slice(rank, None, 2)
        # the mean over the whole batch is the average of the two halves' means
        (((net(images[half]) - target[half]) ** 2).mean() / 2).backward()
        grads = [dist.all_reduce_sum(p.grad.clone()) for p in net.parameters()]
        if rank == 0:
            running = {k: v for k, v in net.state_dict().items() if "running" in k}
            save_file({**{f"grad.{i}": g for i, g in enumerate(grads)}, **running}, out)
    finally:
        dist.close()


def _toy_problem():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.BatchNorm2d(8), torch.nn.ReLU(),
                              torch.nn.Conv2d(8, 4, 3), torch.nn.BatchNorm2d(4))
    generator = torch.Generator().manual_seed(1)
    return net, torch.randn(6, 3, 12, 12, generator=generator) * 3 + 1, torch.randn(6, 4, 8, 8, generator=generator)


@pytest.mark.slow
def test_global_batch_norm_matches_batch_norm_over_the_whole_batch(tmp_path):
    """No shared data needed: 2 gloo processes with half a batch each give one process's gradients
    and running statistics (torch's SyncBatchNorm refuses CPU tensors)."""
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    mp.spawn(_batch_norm_worker, args=(port, str(tmp_path / "ddp.safetensors")), nprocs=2)
    got = load_file(str(tmp_path / "ddp.safetensors"))
    net, images, target = _toy_problem()
    ((net(images) - target) ** 2).mean().backward()
    for i, p in enumerate(net.parameters()):
        torch.testing.assert_close(got[f"grad.{i}"], p.grad, rtol=1e-4, atol=1e-6)
    running = {k: v for k, v in net.state_dict().items() if "running" in k}
    assert running and all(torch.allclose(got[k], v, rtol=1e-5, atol=1e-6) for k, v in running.items())
