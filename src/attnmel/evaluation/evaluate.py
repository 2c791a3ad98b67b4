"""``attnmel evaluate``: score a checkpoint (or an ensemble) on a dataset split and write what a paper needs.

Outputs in ``output_dir``: ``predictions.csv`` (ISIC scorer format: ``image`` + one probability
column per scored class), ``ground_truth.csv`` (same format, 0/1, to run the official scorer),
``metrics.json`` (classification metrics and calibration: ECE over equal-width bins, NLL),
``roc.png``, ``pr.png``, ``reliability.png`` (``confusion.png`` too for more than two classes). Unless
``intervals`` is None, ``metrics.json`` also holds an ``intervals`` block (``attnmel.metrics.intervals``:
DeLong for ROC AUC, a stratified bootstrap for the rest, the attention means included). Each
checkpoint's stored temperature is applied (``use_temperature=False`` to see raw softmax outputs);
``tta`` averages the 8 dihedral views; several checkpoints are averaged as an ensemble
(``attnmel.inference.loading``). With ``masks=True``
also ``attention_quality.csv`` (per-image Jaccard/Dice of each attention layer, or the CAM of a GAP
model, against the lesion mask) and its means in ``metrics.json``.
"""

from __future__ import annotations

import dataclasses
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
from attnmel.evaluation.trust import TrustReport, trust_report
from attnmel.evaluation.plots import confusion_matrix_plot, reliability_diagram, roc_and_pr_curves
from attnmel.inference import Predictions, load_predictor, read_split
from attnmel.io import atomic_write_json, atomic_write_text
from attnmel.metrics.calibration import DEFAULT_BINS, CalibrationReport, calibration_report
from attnmel.metrics.classification import ClassificationReport, MulticlassMetrics, classification_report
from attnmel.metrics.intervals import (
    EvaluationIntervals,
    Interval,
    IntervalSettings,
    classification_intervals,
    mean_interval,
)


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
    intervals: EvaluationIntervals | None = None
    #: what was evaluated, for reports: ``model_setup`` (backbone, input size, training images)
    setup: dict[str, Any] = field(default_factory=dict)
    #: the threshold's rule, OOD flags, attention warnings and prediction-set coverage (``attnmel.evaluation.trust``)
    trust: TrustReport | None = None

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
        out.update(self.setup)
        if self.intervals is not None:
            out["intervals"] = self.intervals.to_dict()
        if self.trust is not None:
            out["trust"] = self.trust.to_dict()
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
    threshold: float | None = None,
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
    intervals: IntervalSettings | None = IntervalSettings(),
    figures: bool = False,
) -> EvaluationResult:
    """Metrics and files (and ``trust.csv``: each image's OOD score and flag, prediction set and attention
    warning) for ``checkpoint`` (a path, several for an ensemble, or None for the shipped
    model) on ``split`` of ``data``; with ``masks`` also the attention quality against the lesion
    masks (one inference pass for both); with ``intervals`` (None: none) their confidence intervals; with
    ``figures`` one figure per image in ``figures/`` (the view, each map with its scale, the lesion outline
    and Jaccard with ``masks``, P(positive) and the truth)."""
    output_dir = Path(output_dir)
    if masks:
        check_mask_threshold(mask_threshold)
    loaded = load_predictor(checkpoint, device, tta=tta, use_temperature=use_temperature, trust_pickle=trust_pickle)
    class_names, score_columns = loaded.class_names, loaded.score_columns
    threshold, threshold_rule = loaded.decision_threshold(threshold)
    index, samples = read_split(data, split, loaded.task, layout=layout)
    quality = None
    if masks:
        predictions = collect_maps(loaded, samples, batch_size=batch_size, num_workers=num_workers,
                                   progress=progress, desc=f"evaluate {split}", keep_views=figures)
        quality = score_predictions(predictions, mask_threshold, kinds=loaded.map_kinds)
    else:
        predictions = loaded.infer(samples, batch_size=batch_size, num_workers=num_workers, progress=progress,
                                   keep_attention=True, keep_views=figures, desc=f"evaluate {split}",
                                   keep_features=True)
    trust = trust_report(loaded, predictions, threshold, threshold_rule)
    threshold = 0.5 if threshold is None else threshold  # arg-max models: the scorer's columns at 0.5
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
        setup=model_setup(loaded.metadata),
        trust=trust,
    )
    if intervals is not None:
        result.intervals = evaluation_intervals(predictions.labels, predictions.probabilities, class_names,
                                                score_columns, threshold, calibration_bins, quality, intervals)
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
    files["trust"] = output_dir / "trust.csv"
    atomic_write_text(files["trust"], pd.DataFrame(trust.rows).to_csv(index=False))
    if figures:
        files["figures"] = write_figures(result, loaded, output_dir / "figures")
    files["metrics"] = output_dir / "metrics.json"
    atomic_write_json(files["metrics"], result.to_dict())
    return result


def write_figures(result: EvaluationResult, loaded, folder: Path) -> Path:
    """One figure per image of an evaluation (``attnmel.figures``), named by image ID."""
    from attnmel.evaluation.predict import figure_for
    from attnmel.figures import png_bytes
    from attnmel.inference import Prediction
    from attnmel.io import atomic_write_bytes

    predictions, quality = result.predictions, result.attention_quality
    names, positive = loaded.class_names, loaded.meta.positive_class
    other = names[1 - names.index(positive)] if len(names) == 2 else None
    for i, image_id in enumerate(predictions.image_ids):
        p = predictions.probabilities[i]
        scored = quality is not None and bool(quality.has_mask[i])
        if other is None:
            predicted = names[int(p.argmax())]
        else:  # two classes: the scorer's rule, positive above the threshold
            predicted = positive if p[names.index(positive)] > result.threshold else other
        prediction = Prediction(
            source=image_id, probabilities=dict(zip(names, map(float, p), strict=True)), predicted_class=predicted,
            positive_class=positive, raw_attention={name: maps[i] for name, maps in predictions.attention.items()},
            view=predictions.views[i], view_box=(0, 0, 0, 0), image_size=(0, 0),
        )
        jaccard = {layer: float(quality.jaccard[layer][i]) for layer in quality.layers} if scored else None
        image = figure_for(prediction, loaded.map_kinds, truth=names[int(predictions.labels[i])],
                           lesion_mask=predictions.masks[i] if scored else None, jaccard=jaccard)
        atomic_write_bytes(folder / f"{image_id}.png", png_bytes(image))
    return folder


def default_output_dir(checkpoints: Sequence[str | Path] | None, split: str, tta: bool = False) -> Path:
    """``<first checkpoint's run>/eval-<split>[-tta][-ensemble]``, or ``./eval-<split>[-tta]`` for the shipped model."""
    name = f"eval-{split}" + ("-tta" if tta else "") + ("-ensemble" if checkpoints and len(checkpoints) > 1 else "")
    if not checkpoints:
        return Path(name)
    first = Path(checkpoints[0])
    return (first if first.is_dir() else first.parent) / name


def format_metrics(report: ClassificationReport, intervals: EvaluationIntervals | None = None) -> str:
    """A small aligned table of the classification report for the terminal, with ``value [low, high]``
    where an interval was computed."""
    keys = ["roc_auc", "average_precision", "accuracy", "sensitivity", "specificity", "balanced_accuracy",
            "precision", "sensitivity_at_90_specificity"]
    columns = list(report)
    width = 22 if intervals is None else 26

    def cell(column: str, key: str) -> str:
        interval = (intervals.classification.get(column, {}) if intervals is not None else {}).get(key)
        return interval.format() if interval is not None else f"{getattr(report[column], key):.4f}"

    lines = [f"{'metric':<32}" + "".join(f"{c:>{width}}" for c in columns)]
    for key in keys:
        lines.append(f"{key:<32}" + "".join(f"{cell(c, key):>{width}}" for c in columns))
    if columns:
        lines.append(f"(threshold {report[columns[0]].threshold}: positive when probability > threshold)")
    if intervals is not None:
        lines.append(f"({intervals_note(intervals)})")
    return "\n".join(lines)


def format_multiclass(metrics: MulticlassMetrics) -> str:
    """One line: the ISIC 2018/2019 ranking metric and the macro averages."""
    return (f"balanced multiclass accuracy {metrics.balanced_accuracy:.4f} (arg-max; ISIC 2018/2019 ranking), "
            f"accuracy {metrics.accuracy:.4f}, macro ROC AUC {metrics.macro_roc_auc:.4f}, "
            f"macro AP {metrics.macro_average_precision:.4f}"
            + (f", {metrics.undecided} undecided (tied top probability)" if metrics.undecided else ""))


def intervals_note(intervals: EvaluationIntervals) -> str:
    settings = intervals.settings
    return (f"[low, high]: {settings.level:.0%} intervals; ROC AUC by DeLong, the rest by a bootstrap stratified "
            f"by class, {settings.resamples} resamples ({settings.method}), seed {settings.seed}")


def format_calibration(calibration: CalibrationReport, intervals: EvaluationIntervals | None = None) -> str:
    """One line: top-label ECE, each scored class's ECE, and the NLL (ECEs with their intervals if given)."""
    def ece(value: float, interval: Interval | None) -> str:
        return interval.format() if interval is not None else f"{value:.4f}"

    class_ece = intervals.class_ece if intervals is not None else {}
    per_class = [f"{name} ECE {ece(value, class_ece.get(name))}" for name, value in calibration.class_ece.items()]
    top = ece(calibration.ece, intervals.ece if intervals is not None else None)
    return (f"calibration ({calibration.bins} equal-width bins): ECE {top} (top label), "
            + ", ".join([*per_class, f"NLL {calibration.nll:.4f}"]))


def format_attention_quality(quality: AttentionQuality, intervals: EvaluationIntervals | None = None) -> str:
    """``quality.to_string()``, with each mean's interval when given."""
    if intervals is None or not intervals.attention_quality:
        return quality.to_string()
    lines = quality.to_string().splitlines()[:1]
    lines.append(f"{'layer':<12}{'Jaccard':>24}{'Dice':>24}")
    for layer in quality.layers:
        found = intervals.attention_quality.get(layer, {})
        jaccard, dice = found.get("jaccard"), found.get("dice")
        lines.append(f"{layer:<12}"
                     f"{jaccard.format() if jaccard else format(quality.mean(layer), '.4f'):>24}"
                     f"{dice.format() if dice else format(quality.mean(layer, 'dice'), '.4f'):>24}")
    return "\n".join(lines)


def model_setup(metadata: Sequence[Any]) -> dict[str, Any]:
    """Backbone, input size and training-set size of the evaluated checkpoint(s), for reports that
    set a run beside others (``attnmel report``): a 40-image 80-px run must not pass for a full one."""
    first = metadata[0]
    data = first.training.data or {}
    backbones = list(dict.fromkeys(meta.architecture.backbone for meta in metadata))
    return {
        "architecture": first.architecture.name,
        "backbone": "+".join(str(b) for b in backbones),
        "image_size": first.preprocessing.image_size,
        "train_images": (data.get("train") or {}).get("images"),
        "train_data": data.get("layout"),
    }


def evaluation_intervals(
    labels, probabilities, class_names: Sequence[str], score_columns: Sequence[str], threshold: float, bins: int,
    quality: AttentionQuality | None, settings: IntervalSettings,
) -> EvaluationIntervals:
    """Intervals of the classification metrics and ECE, and of each attention layer's mean Jaccard/Dice
    (over the images with a mask)."""
    found = classification_intervals(labels, probabilities, class_names, score_columns, threshold, bins, settings)
    if quality is None:
        return found
    attention = {
        layer: {metric: mean_interval(scores[layer][quality.has_mask], settings)
                for metric, scores in (("jaccard", quality.jaccard), ("dice", quality.dice))}
        for layer in quality.layers
    }
    return dataclasses.replace(found, attention_quality=attention)
