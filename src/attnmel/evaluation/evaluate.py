"""``attnmel evaluate``: score a checkpoint on a dataset split and write what a paper needs.

Outputs in ``output_dir``: ``predictions.csv`` (ISIC scorer format: ``image`` + one probability
column per scored class), ``ground_truth.csv`` (same format, 0/1, to run the official scorer),
``metrics.json``, ``roc.png`` and ``pr.png``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from attnmel.data.readers import read_dataset
from attnmel.errors import DataError
from attnmel.evaluation.inference import (
    Predictions,
    Preprocessing,
    eval_loader,
    resolve_device,
    run_inference,
)
from attnmel.evaluation.metrics import classification_report
from attnmel.evaluation.plots import roc_and_pr_curves
from attnmel.io import atomic_write_json, atomic_write_text
from attnmel.training.checkpoint import load_model_checkpoint


@dataclass
class EvaluationResult:
    output_dir: Path
    metrics: dict[str, Any]
    predictions: Predictions
    files: dict[str, Path]


def scorer_frames(predictions: Predictions, class_names: list[str], score_columns: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(predictions, ground truth) as the ISIC challenge scorer reads them."""
    indices = [class_names.index(c) for c in score_columns]
    predicted = pd.DataFrame({"image": predictions.image_ids})
    truth = pd.DataFrame({"image": predictions.image_ids})
    for column, index in zip(score_columns, indices, strict=True):
        predicted[column] = predictions.probabilities[:, index]
        truth[column] = (predictions.labels == index).astype(float)
    return predicted, truth


def evaluate_checkpoint(
    checkpoint: str | Path,
    data: str | Path,
    split: str,
    output_dir: str | Path,
    *,
    threshold: float = 0.5,
    batch_size: int = 64,
    num_workers: int = 0,
    device: str = "auto",
    layout: str | None = None,
    progress: bool = True,
    trust_pickle: bool = False,
) -> EvaluationResult:
    output_dir = Path(output_dir)
    torch_device = resolve_device(device)
    model, meta = load_model_checkpoint(checkpoint, torch_device, trust_pickle=trust_pickle)
    class_names, score_columns = list(meta["class_names"]), list(meta["score_columns"])
    index = read_dataset(data, meta["task"], layout=layout)
    samples = index.split(split)
    if not samples:
        raise DataError(index.root, f"split {split!r} has no images.", "choose another split.")
    preprocessing = Preprocessing.from_dict(meta["preprocessing"])
    loader = eval_loader(samples, preprocessing, batch_size, num_workers)
    predictions = run_inference(model, loader, torch_device, progress=progress, desc=f"evaluate {split}")
    report = classification_report(predictions.labels, predictions.probabilities, class_names, score_columns, threshold)
    metrics = {
        "checkpoint": str(checkpoint),
        "data": str(index.root),
        "split": split,
        "images": len(samples),
        "model": meta["architecture"],
        "threshold": threshold,
        "classification": report,
    }
    output_dir.mkdir(parents=True, exist_ok=True)
    predicted, truth = scorer_frames(predictions, class_names, score_columns)
    files = {"predictions": output_dir / "predictions.csv", "ground_truth": output_dir / "ground_truth.csv"}
    atomic_write_text(files["predictions"], predicted.to_csv(index=False))
    atomic_write_text(files["ground_truth"], truth.to_csv(index=False))
    files.update(
        roc_and_pr_curves(predictions.labels, predictions.probabilities, class_names, score_columns, output_dir, split)
    )
    files["metrics"] = output_dir / "metrics.json"
    atomic_write_json(files["metrics"], _finite(metrics))
    return EvaluationResult(output_dir, metrics, predictions, files)


def _finite(value: Any) -> Any:
    """JSON has no NaN: undefined metrics (one class only) are written as null."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    if isinstance(value, float | np.floating) and not np.isfinite(value):
        return None
    return value


def format_metrics(report: dict[str, dict[str, float]]) -> str:
    """A small aligned table of the classification report for the terminal."""
    keys = ["roc_auc", "average_precision", "accuracy", "sensitivity", "specificity", "balanced_accuracy",
            "precision", "sensitivity_at_90_specificity"]
    columns = [c for c in report if c != "multiclass" and isinstance(report[c], dict) and "roc_auc" in report[c]]
    lines = [f"{'metric':<32}" + "".join(f"{c:>22}" for c in columns)]
    for key in keys:
        lines.append(f"{key:<32}" + "".join(f"{report[c][key]:>22.4f}" for c in columns))
    if columns:
        lines.append(f"(threshold {report[columns[0]]['threshold']}: positive when probability > threshold)")
    return "\n".join(lines)
