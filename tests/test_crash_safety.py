"""A training run survives SIGKILL: resuming gives the uninterrupted run's weights and metrics, and a
write killed half-way never leaves a half-written checkpoint."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from attnmel.checkpoints import format as checkpoint_module
from attnmel.checkpoints.format import load_training_state, save_training_state
from attnmel.config import load_config
from attnmel.errors import TrainingError
from attnmel.io import atomic_path, atomic_write_bytes, remove_stale_temporaries
from attnmel.training.loop import Trainer, train

from .conftest import REPO, make_isic2017_subset, tiny

TINY = tiny("train.batch_size=2", "train.epochs=2", "data.sampler=uniform")

# Runs in a child process: real training, but the training dataset announces the third sample of
# epoch 2 (after epoch 1's checkpoint exists and two optimiser steps of epoch 2 are done) and
# then waits to be killed, so the kill always lands mid-epoch.
CHILD = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from attnmel.config import load_config
    from attnmel.data.dataset import IsicDataset
    from attnmel.training.loop import train

    data, output, overrides = sys.argv[1], Path(sys.argv[2]), sys.argv[3:]
    fetch = IsicDataset.__getitem__
    seen = []

    def announcing_getitem(self, key):
        if isinstance(key, tuple) and (output / "metrics.csv").exists():  # a training sample of epoch 2
            seen.append(key)
            if len(seen) == 5:
                print("MID-EPOCH-2", flush=True)
                time.sleep(600)
        return fetch(self, key)

    IsicDataset.__getitem__ = announcing_getitem
    train(load_config(None, overrides), data, output, progress=False, log=lambda *_: None)
    print("FINISHED", flush=True)
    """
)


def _config(epochs: int = 2):
    return load_config(None, [*TINY, f"train.epochs={epochs}"])


def _comparable(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if k not in ("seconds", "images_per_second")} for row in history]


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_equals_uninterrupted_run(tmp_path):
    data = make_isic2017_subset(tmp_path / "data", n_train=8, n_val=4)
    killed = tmp_path / "killed"
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(data), str(killed), *TINY],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    try:
        line = child.stdout.readline()
        assert line.strip() == "MID-EPOCH-2", f"child did not reach epoch 2: {line!r} {child.stderr.read()[-2000:]}"
        child.send_signal(signal.SIGKILL)
    finally:
        child.kill()
        child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL
    # What the kill left: epoch 1 complete, nothing of epoch 2.
    state = load_training_state(killed / "last-state.safetensors")
    assert state["epoch"] == 1 and len(state["history"]) == 1
    assert len((killed / "metrics.csv").read_text().strip().splitlines()) == 2

    leftover = killed / ".last-state.safetensors.k1ll3d.tmp"  # what a kill during a checkpoint write leaves
    leftover.write_bytes(b"\x00" * 128)
    resumed = train(_config(), data, killed, resume=True, progress=False, log=lambda *_: None)
    assert not leftover.exists()
    assert resumed.history[0] == state["history"][0]  # epoch 1 was continued from, not trained again
    full = train(_config(), data, tmp_path / "full", progress=False, log=lambda *_: None)

    for name in ("last-state.safetensors", "best.safetensors"):
        a, b = load_file(str(tmp_path / "full" / name)), load_file(str(killed / name))
        assert a.keys() == b.keys()
        for key in a:
            assert torch.equal(a[key], b[key]), f"{name}: {key} differs after resume"
    assert _comparable(resumed.history) == _comparable(full.history)
    assert (killed / "metrics.csv").read_text().splitlines()[0] == (tmp_path / "full" / "metrics.csv").read_text().splitlines()[0]


def test_failed_write_keeps_the_previous_file_and_no_temporary(tmp_path):
    target = tmp_path / "best.safetensors"
    atomic_write_bytes(target, b"complete old checkpoint")
    with pytest.raises(RuntimeError, match="disk full"):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half of the ne")
            raise RuntimeError("disk full")
    assert target.read_bytes() == b"complete old checkpoint"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.safetensors"]


def test_training_state_write_failing_mid_file_keeps_last_complete_state(tmp_path, monkeypatch):
    path = tmp_path / "last-state.safetensors"
    save_training_state(path, {"epoch": 1, "model": {"w": torch.ones(3)}})

    def half_written(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"\x00" * 64)  # a header's worth of bytes, then the process "dies"
        raise OSError("No space left on device")

    monkeypatch.setattr(checkpoint_module, "save_file", half_written)
    with pytest.raises(OSError, match="No space"):
        save_training_state(path, {"epoch": 2, "model": {"w": torch.zeros(3)}})
    state = load_training_state(path)
    assert state["epoch"] == 1 and torch.equal(state["model"]["w"], torch.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


# Loads attnmel/io.py on its own (no torch import), so the child starts in a fraction of a second.
WRITER = textwrap.dedent(
    """
    import importlib.util, sys, time
    spec = importlib.util.spec_from_file_location("atomic_io", sys.argv[2])
    atomic_io = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(atomic_io)
    with atomic_io.atomic_path(sys.argv[1]) as tmp:
        with open(tmp, "wb") as handle:
            handle.write(b"new" * 1000)
            handle.flush()
            print("WRITING", flush=True)
            time.sleep(600)
    """
)


def test_sigkill_during_a_write_leaves_the_old_file_and_a_removable_temporary(tmp_path):
    target = tmp_path / "last-state.safetensors"
    atomic_write_bytes(target, b"old complete state")
    io_module = REPO / "src" / "attnmel" / "io.py"
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(target), str(io_module)], stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout.readline().strip() == "WRITING"
        writer.send_signal(signal.SIGKILL)
    finally:
        writer.kill()
        writer.wait(timeout=30)
    assert target.read_bytes() == b"old complete state"
    leftovers = [p for p in tmp_path.iterdir() if p != target]
    assert len(leftovers) == 1 and leftovers[0].name.startswith(".last-state.safetensors.")
    assert remove_stale_temporaries(tmp_path) == leftovers
    assert [p.name for p in tmp_path.iterdir()] == [target.name]


def test_out_of_memory_suggests_a_smaller_batch(tmp_path, monkeypatch):
    data = make_isic2017_subset(tmp_path / "data", n_train=4, n_val=2)
    trainer = Trainer(_config(1), data, tmp_path / "run", progress=False, log=lambda *_: None)

    def out_of_memory(*args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(trainer, "_step", out_of_memory)
    with pytest.raises(TrainingError, match=r"ran out of memory at batch size 2; try --set train.batch_size=1"):
        trainer.run()
    assert not (tmp_path / "run" / "last-state.safetensors").exists()
