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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from attnmel.arguments import check_arguments, path_name
from attnmel.errors import DataError
from attnmel.evaluation.attention_quality import (
    AttentionQuality,
    score_predictions,
)
from attnmel.evaluation.plots import confusion_matrix_plot, reliability_diagram, roc_and_pr_curves
from attnmel.evaluation.split_predictions import predict_split
from attnmel.evaluation.trust import TrustReport, trust_report
from attnmel.inference import DataSplit, InferenceSettings, Predictions
from attnmel.io import atomic_write_json, atomic_write_text
from attnmel.metrics.calibration import DEFAULT_BINS, CalibrationReport, calibration_report
from attnmel.metrics.challenge2024 import DEFAULT_MIN_TPR, check_min_tpr, top_k_sensitivity
from attnmel.metrics.classification import ClassificationReport, MulticlassMetrics, classification_report
from attnmel.metrics.intervals import (
    EvaluationIntervals,
    Interval,
    IntervalSettings,
    classification_intervals,
    mean_interval,
)
from attnmel.outputs import OutputSet, check_output_dir


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
    #: ISIC 2024's secondary metric, where the dataset has patient ids (``metrics.challenge2024``)
    top_k_sensitivity: float | None = None
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
        if self.top_k_sensitivity is not None:
            out["top_15_sensitivity_per_patient"] = self.top_k_sensitivity
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


@dataclass(frozen=True)
class EvaluationOptions:
    """What ``evaluate`` measures and writes besides the classification metrics."""

    calibration_bins: int = DEFAULT_BINS
    #: also score the attention against the lesion masks (one inference pass for both)
    masks: bool = False
    mask_threshold: float = 0.5
    #: confidence intervals (None: none)
    intervals: IntervalSettings | None = IntervalSettings()
    #: one figure per image in ``figures/``
    figures: bool = False
    #: the pAUC (ISIC 2024) is the area above this true-positive rate
    min_tpr: float = DEFAULT_MIN_TPR


def evaluate_checkpoint(
    checkpoint: str | Path | None | Sequence[str | Path | None],
    source: DataSplit,
    output_dir: str | Path,
    options: EvaluationOptions = EvaluationOptions(),
    settings: InferenceSettings = InferenceSettings(),
    log: Callable[[str], None] | None = print,
) -> EvaluationResult:
    """Metrics and files for ``checkpoint`` (a path, several for an ensemble, or None for the shipped
    model) on ``source``; with ``options.masks`` also the attention quality against the lesion masks
    (one inference pass for both); with ``options.intervals`` (None: none) their confidence intervals;
    with ``options.figures`` one figure per image in ``figures/`` (the view, each map with its scale, the
    lesion outline and Jaccard with ``masks``, P(positive) and the truth). The files are one output set
    (``attnmel.outputs``); ``log`` hears which stale files of an earlier run were moved aside."""
    split, calibration_bins = source.split, options.calibration_bins
    check_min_tpr(options.min_tpr)
    check_arguments(threshold=settings.threshold, mask_threshold=options.mask_threshold,
                    calibration_bins=calibration_bins)
    output_dir = check_output_dir(output_dir)
    run = predict_split(checkpoint, source, settings, roi="lesion" if options.masks else None,
                        keep=("attention", "features", *(("views",) if options.figures else ())),
                        desc=f"evaluate {split}")
    loaded, index, samples, predictions = run.loaded, run.index, run.samples, run.predictions
    class_names, score_columns = loaded.class_names, loaded.score_columns
    threshold, threshold_rule = loaded.decision_threshold(settings.threshold)
    trust = trust_report(loaded, predictions, threshold, threshold_rule)
    threshold = 0.5 if threshold is None else threshold  # arg-max models: the scorer's columns at 0.5
    quality = score_predictions(predictions, options.mask_threshold, kinds=loaded.map_kinds) if options.masks else None
    training = loaded.meta.training
    result = EvaluationResult(
        output_dir=output_dir,
        checkpoints=[str(p) for p in loaded.sources],
        members=loaded.members(),
        tta=settings.tta,
        data=str(index.root),
        layout=index.layout,
        split=split,
        images=len(samples),
        run=training.run,
        paper_row=training.paper_row,
        prior=training.prior,
        threshold=threshold,
        classification=classification_report(predictions.labels, predictions.probabilities, class_names,
                                             score_columns, threshold, options.min_tpr),
        calibration=calibration_report(predictions.labels, predictions.probabilities, class_names, score_columns,
                                       calibration_bins),
        predictions=predictions,
        attention_quality=quality,
        left_out=dict(index.left_out.get(split, {})),
        setup=model_setup(loaded.metadata),
        top_k_sensitivity=patient_retrieval(samples, predictions, class_names.index(score_columns[0])),
        trust=trust,
    )
    if options.intervals is not None:
        result.intervals = evaluation_intervals(predictions.labels, predictions.probabilities, class_names,
                                                score_columns, threshold, calibration_bins, quality, options.intervals,
                                                options.min_tpr)
    if options.figures:  # image IDs name the figures: checked before the folder is touched
        check_figure_names(predictions.image_ids, index.root)
    outputs = OutputSet(output_dir, "evaluate", known=EVALUATE_FILES, log=log)
    write_evaluation(result, loaded, outputs, options.figures, samples)
    return result


def check_figure_names(image_ids: Sequence[str], data: Path) -> None:
    """Each image ID is a plain file name (``path_name``), so ``figures/<id>.png`` is a file of figures/."""
    for image_id in image_ids:
        problem = path_name(image_id)
        if problem is not None:
            raise DataError(data, f"image ID {image_id!r} {problem}, so it cannot name its figure in figures/.",
                            "give the image a plain ID (a manifest's image_id column), or evaluate without --figures.")


#: what ``evaluate`` may write into its folder (moved aside when a re-run does not write it)
EVALUATE_FILES = ("predictions.csv", "ground_truth.csv", "criteria.csv", "trust.csv", "metrics.json",
                  "attention_quality.csv", "roc.png", "pr.png", "reliability.png", "confusion.png", "figures/")


def write_evaluation(result: EvaluationResult, loaded, outputs: OutputSet, figures: bool,
                     samples: Sequence[Any]) -> None:
    """The evaluation's files as one output set; ``metrics.json`` and then the manifest last."""
    predictions, quality, split, folder = result.predictions, result.attention_quality, result.split, outputs.folder
    class_names, score_columns = loaded.class_names, loaded.score_columns
    bins = result.calibration.bins
    predicted, truth = scorer_frames(predictions, class_names, score_columns)
    files = result.files
    figure_paths = [outputs.path(f"figures/{image_id}.png") for image_id in predictions.image_ids] if figures else []
    files.update(predictions=outputs.path("predictions.csv"), ground_truth=outputs.path("ground_truth.csv"))
    atomic_write_text(files["predictions"], predicted.to_csv(index=False))
    atomic_write_text(files["ground_truth"], truth.to_csv(index=False))
    if any(sample.criteria for sample in samples):  # Derm7pt's seven criteria, to join on image
        files["criteria"] = outputs.path("criteria.csv")
        atomic_write_text(files["criteria"],
                          pd.DataFrame([{"image": s.image_id, **s.criteria} for s in samples]).to_csv(index=False))
    plots = roc_and_pr_curves(predictions.labels, predictions.probabilities, class_names, score_columns, folder, split)
    plots.update(reliability_diagram(predictions.labels, predictions.probabilities, class_names, score_columns, folder,
                                     bins, split))
    if result.classification.multiclass is not None:
        plots.update(confusion_matrix_plot(result.classification.multiclass.confusion_matrix, class_names, folder, split))
    files.update({name: outputs.add(path) for name, path in plots.items()})
    if quality is not None:
        files["attention_quality"] = quality.write_csv(outputs.path("attention_quality.csv"))
    if result.trust is not None:
        files["trust"] = outputs.path("trust.csv")
        atomic_write_text(files["trust"], pd.DataFrame(result.trust.rows).to_csv(index=False))
    if figures:
        files["figures"] = write_figures(result, loaded, figure_paths)
    files["metrics"] = outputs.path("metrics.json")
    atomic_write_json(files["metrics"], result.to_dict())
    outputs.commit(split=split, images=result.images)


def patient_retrieval(samples: Sequence[Any], predictions: Predictions, positive: int) -> float | None:
    """Top-15 sensitivity per patient of the ``positive`` class, where the samples have patient ids."""
    patients = {s.image_id: s.groups["patient_id"] for s in samples if "patient_id" in s.groups}
    known = [i for i, image in enumerate(predictions.image_ids) if image in patients]
    if not known:
        return None
    return top_k_sensitivity(predictions.labels[known] == positive, predictions.probabilities[known, positive],
                             [patients[predictions.image_ids[i]] for i in known])


def write_figures(result: EvaluationResult, loaded, paths: Sequence[Path]) -> Path:
    """One figure per image of an evaluation (``attnmel.visualize``), at ``paths`` (one per image, named by
    image ID, from the output set); returns their folder."""
    from attnmel.io import atomic_write_bytes
    from attnmel.visualize import ImageFigure, png_bytes

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
        jaccard = {layer: float(quality.jaccard[layer][i]) for layer in quality.layers} if scored else None
        image = ImageFigure(
            image_id, predictions.views[i], {name: maps[i] for name, maps in predictions.attention.items()},
            loaded.map_kinds, positive, float(p[names.index(positive)]), predicted,
            truth=names[int(predictions.labels[i])], lesion_mask=predictions.masks[i] if scored else None,
            jaccard=jaccard,
        ).draw()
        atomic_write_bytes(paths[i], png_bytes(image))
    return paths[0].parent if paths else Path("figures")


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
            "precision", "sensitivity_at_90_specificity", "partial_auc"]
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
    quality: AttentionQuality | None, settings: IntervalSettings, min_tpr: float = DEFAULT_MIN_TPR,
) -> EvaluationIntervals:
    """Intervals of the classification metrics and ECE, and of each attention layer's mean Jaccard/Dice
    (over the images with a mask)."""
    found = classification_intervals(labels, probabilities, class_names, score_columns, threshold, bins, settings,
                                     min_tpr)
    if quality is None:
        return found
    attention = {
        layer: {metric: mean_interval(scores[layer][quality.has_mask], settings)
                for metric, scores in (("jaccard", quality.jaccard), ("dice", quality.dice))}
        for layer in quality.layers
    }
    return dataclasses.replace(found, attention_quality=attention)
