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

from attnmel.errors import ConfigError


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
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ConfigError(f"batch_size must be a whole number of at least 1, not {self.batch_size!r}.")
        if isinstance(self.workers, bool) or not isinstance(self.workers, int) or self.workers < 0:
            raise ConfigError(f"workers must be a whole number of at least 0, not {self.workers!r}.")

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
