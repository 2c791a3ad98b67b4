"""``attnmel evaluate``: score a checkpoint (or an ensemble) on a dataset split and write what a paper needs.

Outputs in ``output_dir``: ``predictions.csv`` (ISIC scorer format: ``image`` + one probability
column per scored class), ``ground_truth.csv`` (same format, 0/1, to run the official scorer),
``metrics.json`` (classification metrics and calibration: ECE over equal-width bins, NLL),
``roc.png``, ``pr.png``, ``reliability.png`` (``confusion.png`` too for more than two classes). Each
checkpoint's stored temperature is applied (``use_temperature=False`` to see raw softmax outputs);
``tta`` averages the 8 dihedral views; several checkpoints are averaged as an ensemble
(``attnmel.inference.loading``). With ``masks=True``
also ``attention_quality.csv`` (per-image Jaccard/Dice of each attention layer, or the CAM of a GAP
model, against the lesion mask) and its means in ``metrics.json``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from attnmel.evaluation.attention_quality import (
    AttentionQuality,
    check_mask_threshold,
    collect_maps,
    score_predictions,
)
from attnmel.evaluation.plots import confusion_matrix_plot, reliability_diagram, roc_and_pr_curves
from attnmel.inference import Predictions, load_predictor, read_split
from attnmel.io import atomic_write_json, atomic_write_text
from attnmel.metrics.calibration import DEFAULT_BINS, CalibrationReport, calibration_report
from attnmel.metrics.classification import ClassificationReport, classification_report


@dataclass
class EvaluationResult:
    """What ``evaluate_checkpoint`` measured; ``to_dict()`` is ``metrics.json``."""

    output_dir: Path
    checkpoints: list[str]
    members: list[dict[str, Any]]
    tta: bool
    data: str
    layout: str
    split: str
    images: int
    run: str | None
    paper_row: str | None
    prior: dict[str, Any] | None
    threshold: float
    classification: ClassificationReport
    calibration: CalibrationReport
    predictions: Predictions
    files: dict[str, Path] = field(default_factory=dict)
    attention_quality: AttentionQuality | None = None
    #: images of the split left out of the task, by dataset class (ISIC 2019 UNK)
    left_out: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out = {
            "checkpoints": self.checkpoints,
            "members": self.members,
            "tta": self.tta,
            "data": self.data,
            "layout": self.layout,
            "split": self.split,
            "images": self.images,
            "run": self.run,
            "paper_row": self.paper_row,
            "prior": self.prior,
            "threshold": self.threshold,
            "classification": self.classification.to_dict(),
            "calibration": self.calibration.to_dict(),
        }
        if self.attention_quality is not None:
            out["attention_quality"] = self.attention_quality.to_dict()
        if self.left_out:
            out["left_out"] = self.left_out
        return out


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
    checkpoint: str | Path | None | Sequence[str | Path | None],
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
    """Metrics and files for ``checkpoint`` (a path, several for an ensemble, or None for the shipped
    model) on ``split`` of ``data``; with ``masks`` also the attention quality against the lesion
    masks (one inference pass for both)."""
    output_dir = Path(output_dir)
    if masks:
        check_mask_threshold(mask_threshold)
    loaded = load_predictor(checkpoint, device, tta=tta, use_temperature=use_temperature, trust_pickle=trust_pickle)
    class_names, score_columns = loaded.class_names, loaded.score_columns
    index, samples = read_split(data, split, loaded.task, layout=layout)
    quality = None
    if masks:
        predictions = collect_maps(loaded, samples, batch_size=batch_size, num_workers=num_workers,
                                   progress=progress, desc=f"evaluate {split}")
        quality = score_predictions(predictions, mask_threshold, kinds=loaded.map_kinds)
    else:
        predictions = loaded.infer(samples, batch_size=batch_size, num_workers=num_workers, progress=progress,
                                   desc=f"evaluate {split}")
    training = loaded.meta.training
    result = EvaluationResult(
        output_dir=output_dir,
        checkpoints=[str(p) for p in loaded.sources],
        members=loaded.members(),
        tta=tta,
        data=str(index.root),
        layout=index.layout,
        split=split,
        images=len(samples),
        run=training.run,
        paper_row=training.paper_row,
        prior=training.prior,
        threshold=threshold,
        classification=classification_report(predictions.labels, predictions.probabilities, class_names,
                                             score_columns, threshold),
        calibration=calibration_report(predictions.labels, predictions.probabilities, class_names, score_columns,
                                       calibration_bins),
        predictions=predictions,
        attention_quality=quality,
        left_out=dict(index.left_out.get(split, {})),
    )
    output_dir.mkdir(parents=True, exist_ok=True)
    predicted, truth = scorer_frames(predictions, class_names, score_columns)
    files = result.files
    files.update(predictions=output_dir / "predictions.csv", ground_truth=output_dir / "ground_truth.csv")
    atomic_write_text(files["predictions"], predicted.to_csv(index=False))
    atomic_write_text(files["ground_truth"], truth.to_csv(index=False))
    files.update(
        roc_and_pr_curves(predictions.labels, predictions.probabilities, class_names, score_columns, output_dir, split)
    )
    files.update(reliability_diagram(
        predictions.labels, predictions.probabilities, class_names, score_columns, output_dir, calibration_bins, split
    ))
    if result.classification.multiclass is not None:
        files.update(confusion_matrix_plot(result.classification.multiclass.confusion_matrix, class_names, output_dir, split))
    if quality is not None:
        files["attention_quality"] = quality.write_csv(output_dir / "attention_quality.csv")
    files["metrics"] = output_dir / "metrics.json"
    atomic_write_json(files["metrics"], result.to_dict())
    return result


def format_metrics(report: ClassificationReport) -> str:
    """A small aligned table of the classification report for the terminal."""
    keys = ["roc_auc", "average_precision", "accuracy", "sensitivity", "specificity", "balanced_accuracy",
            "precision", "sensitivity_at_90_specificity"]
    columns = list(report)
    lines = [f"{'metric':<32}" + "".join(f"{c:>22}" for c in columns)]
    for key in keys:
        lines.append(f"{key:<32}" + "".join(f"{getattr(report[c], key):>22.4f}" for c in columns))
    if columns:
        lines.append(f"(threshold {report[columns[0]].threshold}: positive when probability > threshold)")
    return "\n".join(lines)


def format_calibration(calibration: CalibrationReport) -> str:
    """One line: top-label ECE, each scored class's ECE, and the NLL."""
    per_class = [f"{name} ECE {value:.4f}" for name, value in calibration.class_ece.items()]
    return (f"calibration ({calibration.bins} equal-width bins): ECE {calibration.ece:.4f} (top label), "
            + ", ".join([*per_class, f"NLL {calibration.nll:.4f}"]))
