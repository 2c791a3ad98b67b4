"""What a run writes besides checkpoints: ``metrics.csv`` and TensorBoard.

TensorBoard gets, every epoch, the scalars of ``metrics.csv``, the precision-recall curve of each
scored class on validation, and the attention figures of a fixed set of validation images (the same
figure ``attnmel predict`` draws: colour bars in each map's own units, flat maps drawn flat, the
lesion outline); at the end of the run, its hyperparameters with its best validation metrics, so
runs can be compared in TensorBoard's HParams view. Only the main process writes.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from attnmel.io import atomic_write_text


class RunLog:
    def __init__(self, output_dir: Path, class_names: tuple[str, ...], score_columns: tuple[str, ...]):
        self.output_dir = output_dir
        self.class_names = class_names
        self.score_columns = score_columns
        self._writer = None

    @property
    def writer(self):
        if self._writer is None:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(str(self.output_dir / "tensorboard"))
        return self._writer

    def epoch(self, history: list[dict[str, Any]], labels: np.ndarray, probabilities: np.ndarray,
              figures: list[tuple[str, Image.Image]]) -> None:
        """The run's history so far to ``metrics.csv``; the last row, the PR curves and figures to TensorBoard."""
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(history[0].keys()))
        writer.writeheader()
        writer.writerows(history)
        atomic_write_text(self.output_dir / "metrics.csv", buffer.getvalue())
        row = history[-1]
        step = row["epoch"]
        for key, value in row.items():
            if isinstance(value, int | float) and not isinstance(value, bool) and key != "epoch":
                self.writer.add_scalar(key.replace("_", "/", 1), value, step)
        for column in self.score_columns:
            index = self.class_names.index(column)
            self.writer.add_pr_curve(f"val_pr/{column}", labels == index, probabilities[:, index], step)
        for name, image in figures:
            self.writer.add_image(f"attention/{name}", np.asarray(image), step, dataformats="HWC")
        self.writer.flush()

    def finish(self, hyperparameters: dict[str, Any], best: dict[str, Any]) -> None:
        """The run's hyperparameters beside its best epoch's metrics (TensorBoard HParams)."""
        scalars = {f"best/{k}": float(v) for k, v in best.items()
                   if isinstance(v, int | float) and not isinstance(v, bool) and v == v}
        self.writer.add_hparams(hyperparameters, scalars, run_name=".")
        self.close()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def flat_hyperparameters(config: dict[str, Any]) -> dict[str, Any]:
    """``section.key`` -> value, with what TensorBoard cannot hold (lists, None) written as text."""
    out: dict[str, Any] = {}
    for section, values in config.items():
        if isinstance(values, dict):
            for key, value in values.items():
                out[f"{section}.{key}"] = value if isinstance(value, bool | int | float | str) else str(value)
        elif isinstance(values, bool | int | float | str):
            out[section] = values
    return out
