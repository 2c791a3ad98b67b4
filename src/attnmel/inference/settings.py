"""What every door asks of inference, said once: how to run the model (``InferenceSettings``) and
which images to run it on (``DataSplit``). Evaluate, calibrate, compare, out-of-fold predictions,
attention quality and predict take these instead of re-listing device, TTA, temperature, batch size
and the rest, so the options cannot drift apart between them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from attnmel.arguments import check_arguments


@dataclass(frozen=True)
class InferenceSettings:
    #: "auto", "cpu", "cuda", "cuda:1", "mps"
    device: str = "auto"
    #: average the 8 dihedral views
    tta: bool = False
    #: apply each checkpoint's calibrated temperature
    use_temperature: bool = True
    #: load pickled (legacy) checkpoints, which can run code: only files you trust
    trust_pickle: bool = False
    #: a two-class model answers positive when P(positive) is above this (None: the operating point
    #: stored in the checkpoint, else 0.5)
    threshold: float | None = None
    batch_size: int = 64
    #: DataLoader worker processes (0: read in the main process)
    workers: int = 0
    #: show progress bars
    progress: bool = True

    def __post_init__(self) -> None:
        check_arguments(threshold=self.threshold, batch_size=self.batch_size, num_workers=self.workers,
                        tta=self.tta)

    def replace(self, **changes: Any) -> InferenceSettings:
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class DataSplit:
    """One split of one dataset, as a door names it."""

    #: a dataset folder or a manifest CSV
    data: str | Path
    split: str = "val"
    #: the dataset layout (None: detected from the files)
    layout: str | None = None
    #: the task whose labels to read (None: the model's own task)
    task: str | None = None
