"""``attnmel evaluate``: score a checkpoint (or an ensemble) on a dataset split and write what a paper needs.

Outputs in ``output_dir``: ``predictions.csv`` (ISIC scorer format: ``image`` + one probability
column per scored class), ``ground_truth.csv`` (same format, 0/1, to run the official scorer),
``metrics.json`` (classification metrics and calibration: ECE over equal-width bins, NLL),
``roc.png``, ``pr.png`` and ``reliability.png``. Each checkpoint's stored temperature is applied
(``use_temperature=False`` to see raw softmax outputs); ``tta`` averages the 8 dihedral views;
several checkpoints are averaged as an ensemble (``evaluation/ensemble.py``). With ``masks=True``
also ``attention_quality.csv`` (per-image Jaccard/Dice of each attention layer, or the CAM of a GAP
model, against the lesion mask) and its means in ``metrics.json``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from attnmel.data.images import verify_image
from attnmel.data.readers import read_dataset
from attnmel.errors import DataError
from attnmel.evaluation.attention_quality import (
    AttentionQuality,
    check_mask_threshold,
    collect_maps,
    score_predictions,
)
from attnmel.evaluation.calibration import DEFAULT_BINS, calibration_report
from attnmel.evaluation.ensemble import load_predictor
from attnmel.evaluation.inference import Predictions, eval_loader, resolve_device, run_inference
from attnmel.evaluation.metrics import classification_report
from attnmel.evaluation.plots import reliability_diagram, roc_and_pr_curves
from attnmel.io import atomic_write_json, atomic_write_text


@dataclass
class EvaluationResult:
    output_dir: Path
    metrics: dict[str, Any]
    predictions: Predictions
    files: dict[str, Path]
    attention_quality: AttentionQuality | None = None


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
    checkpoint: str | Path | Sequence[str | Path],
    data: str | Path,
    split: str,
    output_dir: str | Path,
    *,
    threshold: float = 0.5,
    tta: bool = False,
    use_temperature: bool = True,
    calibration_bins: int = DEFAULT_BINS,
    batch_size: int = 64,
    num_workers: int = 0,
    device: str = "auto",
    layout: str | None = None,
    progress: bool = True,
    masks: bool = False,
    mask_threshold: float = 0.5,
    trust_pickle: bool = False,
) -> EvaluationResult:
    """Metrics and files for ``checkpoint`` (a path, or several for an ensemble) on ``split`` of ``data``;
    with ``masks`` also the attention quality against the lesion masks (one inference pass for both)."""
    output_dir = Path(output_dir)
    if masks:
        check_mask_threshold(mask_threshold)
    torch_device = resolve_device(device)
    loaded = load_predictor(checkpoint, torch_device, tta=tta, use_temperature=use_temperature, trust_pickle=trust_pickle)
    class_names, score_columns = loaded.class_names, loaded.score_columns
    index = read_dataset(data, loaded.task, layout=layout)
    samples = index.split(split)
    if not samples:
        raise DataError(index.root, f"split {split!r} has no images.", "choose another split.")
    for sample in samples:  # a bad file fails here, naming itself, not inside a DataLoader worker
        verify_image(sample.image_path)
    quality = None
    if masks:
        predictions = collect_maps(loaded, samples, batch_size=batch_size, num_workers=num_workers,
                                   device=torch_device, progress=progress, desc=f"evaluate {split}")
        quality = score_predictions(predictions, mask_threshold)
    else:
        loader = eval_loader(samples, loaded.preprocessing, batch_size, num_workers)
        predictions = run_inference(loaded.predictor, loader, torch_device, progress=progress, desc=f"evaluate {split}")
    report = classification_report(predictions.labels, predictions.probabilities, class_names, score_columns, threshold)
    calibration = calibration_report(
        predictions.labels, predictions.probabilities, class_names, score_columns, calibration_bins
    )
    training = loaded.metadata[0].get("training", {})
    metrics = {
        "checkpoints": [str(p) for p in loaded.checkpoints],
        "members": loaded.members(),
        "tta": tta,
        "data": str(index.root),
        "layout": index.layout,
        "split": split,
        "images": len(samples),
        "run": training.get("run"),
        "paper_row": training.get("paper_row"),
        "prior": training.get("prior"),
        "threshold": threshold,
        "classification": report,
        "calibration": calibration,
    }
    output_dir.mkdir(parents=True, exist_ok=True)
    predicted, truth = scorer_frames(predictions, class_names, score_columns)
    files = {"predictions": output_dir / "predictions.csv", "ground_truth": output_dir / "ground_truth.csv"}
    atomic_write_text(files["predictions"], predicted.to_csv(index=False))
    atomic_write_text(files["ground_truth"], truth.to_csv(index=False))
    files.update(
        roc_and_pr_curves(predictions.labels, predictions.probabilities, class_names, score_columns, output_dir, split)
    )
    files.update(reliability_diagram(
        predictions.labels, predictions.probabilities, class_names, score_columns, output_dir, calibration_bins, split
    ))
    if quality is not None:
        metrics["attention_quality"] = quality.to_dict()
        files["attention_quality"] = quality.write_csv(output_dir / "attention_quality.csv")
    files["metrics"] = output_dir / "metrics.json"
    atomic_write_json(files["metrics"], _finite(metrics))
    return EvaluationResult(output_dir, metrics, predictions, files, quality)


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


def format_calibration(calibration: dict[str, Any]) -> str:
    """One line: top-label ECE, each scored class's ECE, and the NLL."""
    per_class = [f"{name} ECE {value['ece']:.4f}" for name, value in calibration.items() if isinstance(value, dict)]
    return (f"calibration ({calibration['bins']} equal-width bins): ECE {calibration['ece']:.4f} (top label), "
            + ", ".join([*per_class, f"NLL {calibration['nll']:.4f}"]))
