"""``attnmel compare A B``: the same images scored by two models, and whether they really differ.

A and B are each a checkpoint (``best.safetensors``, a run folder or a pretrained tag; scored here
on ``--data``/``--split``), an evaluation folder written by ``attnmel evaluate`` or a
``predictions.csv`` in the ISIC scorer format (its ``ground_truth.csv`` beside it, or ``truth``).
Both must cover exactly the same images; otherwise the comparison stops and names what differs.

For every scored class both have: each metric's difference B - A with its paired interval and
p-value (DeLong's test for ROC AUC, a paired stratified bootstrap for the rest:
``attnmel.metrics.paired``) and McNemar's exact test at the threshold. With per-image attention
scores on both sides (``--masks`` for checkpoints; ``attention_quality.csv`` beside an
evaluation's predictions) the mean Jaccard and Dice per layer are compared by the paired bootstrap
over the images that have a mask. Checkpoints are imported lazily: comparing two CSVs needs no torch.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from attnmel.errors import ConfigError, DataError
from attnmel.io import atomic_write_json, atomic_write_text
from attnmel.metrics.challenge2024 import DEFAULT_MIN_TPR, check_min_tpr
from attnmel.metrics.intervals import IntervalSettings
from attnmel.metrics.paired import (
    Difference,
    McNemarTest,
    mcnemar_test,
    paired_differences,
    paired_mean_difference,
)
from attnmel.outputs import MANIFEST, OutputSet, read_manifest

if TYPE_CHECKING:  # comparing prediction files needs no torch: inference is imported when a checkpoint is scored
    from attnmel.inference import DataSplit, InferenceSettings

#: rows of the table, in order, with the direction that is better
METRIC_LABELS = {
    "roc_auc": "ROC AUC (DeLong)",
    "roc_auc_bootstrap": "ROC AUC (bootstrap)",
    "average_precision": "average precision",
    "sensitivity": "sensitivity",
    "specificity": "specificity",
    "balanced_accuracy": "balanced accuracy",
    "sensitivity_at_90_specificity": "sensitivity at 90% specificity",
    "ece": "ECE of the class probability (lower is better)",
    "partial_auc": "pAUC above the minimum TPR (ISIC 2024)",
}


@dataclass
class ScoredImages:
    """One side of a comparison: per-image scores, truth and (optionally) attention scores."""

    name: str
    #: "checkpoint" or "predictions"
    kind: str
    #: image -> probability per scored class
    scores: pd.DataFrame
    #: image -> 0/1 per scored class
    truth: pd.DataFrame | None
    #: "jaccard" / "dice" -> layer -> per-image scores (NaN without a mask), indexed like ``scores``
    attention: dict[str, dict[str, pd.Series]] = field(default_factory=dict)
    mask_threshold: float | None = None
    #: what was evaluated, when known (backbone, input size, training images, split)
    setup: dict[str, Any] = field(default_factory=dict)


#: the commands whose output folders hold predictions compare can read
EVALUATE_COMMANDS = ("evaluate",)
#: the ground truth ``evaluate`` writes with each predictions file
TRUTH_OF = {"predictions.csv": "ground_truth.csv", "oof_predictions.csv": "oof_ground_truth.csv"}


def _read_table(path: Path, what: str) -> pd.DataFrame:
    try:
        frame = pd.read_csv(path)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise DataError(path, f"cannot read this {what} ({exc}).", "point at a CSV written by attnmel evaluate.") from None
    if "image" not in frame.columns:
        raise DataError(path, f"this {what} has no 'image' column (the ISIC scorer format: image, then one "
                              "column per scored class).", "point at a CSV written by attnmel evaluate.")
    if frame["image"].duplicated().any():
        twice = frame["image"][frame["image"].duplicated()].iloc[0]
        raise DataError(path, f"image {twice!r} appears twice.", "keep one row per image.")
    frame = frame.set_index(frame["image"].astype(str)).drop(columns="image")
    return frame


def _numeric(frame: pd.DataFrame, path: Path, what: str, binary: bool) -> pd.DataFrame:
    columns = [c for c in frame.columns if c != "has_mask"]
    try:
        values = frame[columns].astype(float)
    except ValueError:
        raise DataError(path, f"the {what} has a value that is not a number.", "fix or regenerate the file.") from None
    bad = ~np.isfinite(values.to_numpy()) | (values.to_numpy() < 0) | (values.to_numpy() > 1)
    if binary:
        bad |= ~np.isin(values.to_numpy(), (0.0, 1.0))
    if bad.any():
        row, column = np.argwhere(bad)[0]
        raise DataError(path, f"{values.index[row]} has {columns[column]} = {values.iat[row, column]}; "
                              f"the {what} needs {'0 or 1' if binary else 'probabilities in [0, 1]'}.",
                        "fix or regenerate the file.")
    return values


def read_predictions(path: str | Path, truth: str | Path | None = None) -> ScoredImages:
    """A ``predictions.csv`` (or the evaluation folder holding it), its ground truth, and the
    per-image attention scores and setup that ``attnmel evaluate`` wrote with it.

    From a folder written by attnmel only the files its output manifest names are read (never a
    stale file an earlier run left); a CSV of one's own (no manifest beside it) is read alone, with
    ``truth`` or the ``ground_truth.csv`` beside it."""
    path = Path(path)
    folder = path if path.is_dir() else path.parent
    written = read_manifest(folder, EVALUATE_COMMANDS) if path.is_dir() or (folder / MANIFEST).is_file() else None
    if written is None:
        predictions, own_truth, metrics_path, quality_csv = path, folder / "ground_truth.csv", None, None
    else:
        chosen = next((n for n in TRUTH_OF if n in written.files), "predictions.csv") if path.is_dir() else path.name
        predictions = written.require(chosen)
        own_truth, metrics_path, quality_csv = (written.get(name) for name in (
            TRUTH_OF.get(chosen, "ground_truth.csv"), "metrics.json", "attention_quality.csv"))
    truth_path = Path(truth) if truth is not None else own_truth
    if truth_path is None or not truth_path.is_file():
        raise DataError(truth_path or folder / "ground_truth.csv", "no ground truth for these predictions.",
                        "put ground_truth.csv (ISIC scorer format) beside them or pass --truth FILE.")
    scores = _numeric(_read_table(predictions, "predictions CSV"), predictions, "predictions CSV", binary=False)
    labels = _numeric(_read_table(truth_path, "ground truth CSV"), truth_path, "ground truth CSV", binary=True)
    _check_truth_covers(scores, labels, truth_path)
    side = ScoredImages(str(path), "predictions", scores, labels)
    metrics: dict[str, Any] = {}
    if metrics_path is not None and predictions.name == "predictions.csv":
        try:
            metrics = json.loads(metrics_path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            metrics = {}
    side.setup = {k: metrics[k] for k in ("split", "backbone", "image_size", "train_images", "tta") if k in metrics}
    if quality_csv is not None and predictions.name == "predictions.csv":
        frame = _read_table(quality_csv, "attention quality CSV")
        for metric in ("jaccard", "dice"):
            side.attention[metric] = {
                column[: -len(metric) - 1]: pd.to_numeric(frame[column], errors="coerce")
                for column in frame.columns if column.endswith(f"_{metric}")
            }
        threshold = (metrics.get("attention_quality") or {}).get("threshold")
        side.mask_threshold = float(threshold) if threshold is not None else None
    return side


def _check_truth_covers(scores: pd.DataFrame, labels: pd.DataFrame, truth_path: Path) -> None:
    """Every scored image has a row and every scored class a column in the ground truth."""
    missing_columns = [c for c in scores.columns if c not in labels.columns]
    if missing_columns:
        raise DataError(truth_path, f"the ground truth has no column {missing_columns[0]!r}, which the predictions "
                                    f"score (its columns: {', '.join(labels.columns) or 'none'}).",
                        "use the ground truth of the same task and split.")
    missing = [image for image in scores.index if image not in labels.index]
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise DataError(truth_path, f"the ground truth has no row for {len(missing)} scored image(s): {shown}.",
                        "use the ground truth of the same split.")


def score_checkpoint(checkpoint: str, source: DataSplit, *, masks: bool = False, mask_threshold: float = 0.5,
                     settings: InferenceSettings | None = None) -> ScoredImages:
    """Score ``source`` with a checkpoint (with attention quality when ``masks``; ``settings`` default: no
    progress bars)."""
    from attnmel.evaluation.attention_quality import check_mask_threshold, score_predictions
    from attnmel.evaluation.evaluate import model_setup, scorer_frames
    from attnmel.evaluation.split_predictions import predict_split
    from attnmel.inference import InferenceSettings

    settings = settings or InferenceSettings(progress=False)

    if masks:
        check_mask_threshold(mask_threshold)
    run = predict_split(checkpoint, source, settings, roi="lesion" if masks else None,
                        desc=f"compare {Path(str(checkpoint)).name}")
    loaded, predictions, split, tta = run.loaded, run.predictions, source.split, settings.tta
    predicted, truth = scorer_frames(predictions, loaded.class_names, loaded.score_columns)
    side = ScoredImages(str(checkpoint), "checkpoint", predicted.set_index("image"), truth.set_index("image"),
                        setup={"split": split, "tta": tta, **model_setup(loaded.metadata)})
    if masks:
        quality = score_predictions(predictions, mask_threshold, kinds=loaded.map_kinds)
        index = pd.Index(quality.image_ids)
        side.attention = {"jaccard": {layer: pd.Series(v, index=index) for layer, v in quality.jaccard.items()},
                          "dice": {layer: pd.Series(v, index=index) for layer, v in quality.dice.items()}}
        side.mask_threshold = mask_threshold
    return side


def is_predictions(source: str) -> bool:
    """A CSV file, or a folder with predictions (or an output manifest) and no checkpoint."""
    path = Path(source)
    if path.is_file():
        return path.suffix.lower() == ".csv"
    return (path.is_dir() and ((path / "predictions.csv").is_file() or (path / MANIFEST).is_file())
            and not (path / "best.safetensors").is_file())


def load_side(source: str, split: DataSplit | None, *, truth: str | Path | None = None, **scoring: Any) -> ScoredImages:
    """One side of a comparison: a predictions CSV (or evaluation folder) as it is, or a checkpoint scored on
    ``split`` (``scoring``: the options of ``score_checkpoint``)."""
    if is_predictions(source):
        return read_predictions(source, truth)
    if split is None:
        raise ConfigError(f"{source} is a checkpoint: give --data (and --split) to score it, or pass the "
                          "predictions.csv that `attnmel evaluate` wrote.")
    return score_checkpoint(source, split, **scoring)


# ---------------------------------------------------------------------- the comparison


@dataclass
class PairComparison:
    """B against A on the same images; every difference is B - A."""

    a: str
    b: str
    a_setup: dict[str, Any]
    b_setup: dict[str, Any]
    images: int
    settings: IntervalSettings
    threshold: float
    bins: int
    #: scored class -> its positives among the images
    positives: dict[str, int]
    #: scored class -> metric -> difference
    classes: dict[str, dict[str, Difference]]
    mcnemar: dict[str, McNemarTest]
    #: "layer" (or "layer_a vs layer_b") -> "jaccard" / "dice" -> difference
    attention: dict[str, dict[str, Difference]] = field(default_factory=dict)
    attention_images: int = 0
    notes: list[str] = field(default_factory=list)
    #: the minimum sensitivity of ``partial_auc`` (ISIC 2024's pAUC)
    min_tpr: float = DEFAULT_MIN_TPR

    @property
    def alpha(self) -> float:
        return 1 - self.settings.level

    def to_dict(self) -> dict[str, Any]:
        return {
            "a": self.a, "b": self.b, "a_setup": self.a_setup, "b_setup": self.b_setup, "images": self.images,
            "difference": "b - a", "intervals": {**self.settings.to_dict(), "stratified_by": "true class",
                                                 "roc_auc": "delong"},
            "threshold": self.threshold, "bins": self.bins, "min_tpr": self.min_tpr, "positives": self.positives,
            "classes": {c: {m: d.to_dict() for m, d in metrics.items()} for c, metrics in self.classes.items()},
            "mcnemar": {c: test.to_dict() for c, test in self.mcnemar.items()},
            "attention_quality": {layer: {m: d.to_dict() for m, d in metrics.items()}
                                  for layer, metrics in self.attention.items()},
            "attention_images": self.attention_images,
            "notes": self.notes,
        }

    def _row(self, scope: str, label: str, d: Difference) -> str:
        return (f"| {scope} | {label} | {_number(d.a)} | {_number(d.b)} | "
                f"{d.difference.format(3, 3, sign=True)} | {format_p(d.p_value)} | {d.test} | "
                f"{'yes' if d.significant() else 'no'} |")

    def to_markdown(self) -> str:
        level = f"{self.settings.level:.0%}"
        lines = [f"A: {self.a}{_setup_text(self.a_setup)}", f"B: {self.b}{_setup_text(self.b_setup)}", "",
                 f"{self.images} images, the same for both; " + ", ".join(
                     f"{n} {c}" for c, n in self.positives.items()) + ". Differences are B - A with "
                 f"{level} intervals (DeLong for ROC AUC; otherwise a paired bootstrap stratified by class, "
                 f"{self.settings.resamples} resamples, {self.settings.method}, seed {self.settings.seed}).", "",
                 f"| class | metric | A | B | B - A [{level} CI] | p | test | significant (p < {self.alpha:g}) |",
                 "|---|---|---|---|---|---|---|---|"]
        for column, metrics in self.classes.items():
            lines += [self._row(column, METRIC_LABELS.get(m, m), d) for m, d in metrics.items()]
        for column, test in self.mcnemar.items():
            lines.append(
                f"| {column} | accuracy at {test.threshold:g} (McNemar) | {_number(test.accuracy_a)} | "
                f"{_number(test.accuracy_b)} | {test.accuracy_b - test.accuracy_a:+.3f} "
                f"({test.only_a_correct} only A right, {test.only_b_correct} only B right) | "
                f"{format_p(test.p_value)} | mcnemar exact | {'yes' if test.p_value < self.alpha else 'no'} |")
        if self.attention:
            lines += ["", f"Attention quality over the {self.attention_images} images with a mask:", "",
                      f"| layer | metric | A | B | B - A [{level} CI] | p | test | significant (p < {self.alpha:g}) |",
                      "|---|---|---|---|---|---|---|---|"]
            for layer, metrics in self.attention.items():
                lines += [self._row(layer, metric.capitalize(), d) for metric, d in metrics.items()]
        lines += ["", self.verdict()]
        lines += [f"Note: {note}" for note in self.notes]
        return "\n".join(lines)

    def verdict(self) -> str:
        """One sentence per kind: what differs significantly and what does not."""
        found: list[str] = []
        not_found: list[str] = []
        for column, metrics in self.classes.items():
            for metric, d in metrics.items():
                if metric == "roc_auc_bootstrap":
                    continue
                (found if d.significant() else not_found).append(f"{column} {METRIC_LABELS.get(metric, metric)}")
        for layer, metrics in self.attention.items():
            for metric, d in metrics.items():
                (found if d.significant() else not_found).append(f"{layer} {metric}")
        alpha = f"{self.alpha:g}"
        text = (f"Significant at {alpha}: {', '.join(found)}." if found else
                f"No difference is significant at {alpha}.")
        if found and not_found:
            text += f" Not significant: {', '.join(not_found)}."
        return text + " (Each test is on its own; with many metrics a few small p-values arise by chance.)"


def _number(value: float) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.3f}"


def format_p(p: float) -> str:
    if p is None or not math.isfinite(p):
        return "n/a"
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


def _setup_text(setup: dict[str, Any]) -> str:
    parts = [str(setup[k]) for k in ("backbone",) if setup.get(k)]
    if setup.get("image_size"):
        parts.append(f"{setup['image_size']} px")
    if setup.get("train_images"):
        parts.append(f"trained on {setup['train_images']} images")
    if setup.get("split"):
        parts.append(f"split {setup['split']}")
    if setup.get("tta"):
        parts.append("8-view TTA")
    return f" ({', '.join(parts)})" if parts else ""


def _check_same_images(a: ScoredImages, b: ScoredImages) -> list[str]:
    only_a = sorted(set(a.scores.index) - set(b.scores.index))
    only_b = sorted(set(b.scores.index) - set(a.scores.index))
    if only_a or only_b:
        def some(ids: list[str]) -> str:
            return ", ".join(ids[:5]) + (f" and {len(ids) - 5} more" if len(ids) > 5 else "") if ids else "none"

        raise DataError(b.name, f"A ({a.name}) and B score different images: {len(a.scores)} against "
                                f"{len(b.scores)}; only in A: {some(only_a)}; only in B: {some(only_b)}.",
                        "compare predictions of the same split (the same --data and --split for both).")
    return sorted(a.scores.index)


def _truth(a: ScoredImages, b: ScoredImages, images: list[str], columns: list[str]) -> pd.DataFrame:
    truths = [side.truth.loc[images, columns] for side in (a, b) if side.truth is not None]
    if len(truths) == 2 and not truths[0].equals(truths[1]):
        differing = truths[0].index[(truths[0] != truths[1]).any(axis=1)]
        raise DataError(b.name, f"A and B come with different ground truths for {len(differing)} images "
                                f"(e.g. {differing[0]}).", "compare predictions of the same split.")
    return truths[0]


def compare_scored(
    a: ScoredImages,
    b: ScoredImages,
    *,
    threshold: float = 0.5,
    bins: int = 15,
    settings: IntervalSettings | None = None,
    layers: Sequence[tuple[str, str]] | None = None,
    min_tpr: float = DEFAULT_MIN_TPR,
) -> PairComparison:
    """The paired comparison of two scored sides (``layers``: attention layer pairs (A's, B's);
    default: the layers both have)."""
    settings = settings or IntervalSettings()
    check_min_tpr(min_tpr)
    images = _check_same_images(a, b)
    columns = [c for c in a.scores.columns if c in set(b.scores.columns)]
    if not columns:
        raise DataError(b.name, f"A scores {', '.join(a.scores.columns)} but B {', '.join(b.scores.columns)}: "
                                "no class in common.", "compare models trained for the same task.")
    truth = _truth(a, b, images, columns)
    strata = truth.astype(int).astype(str).agg("".join, axis=1).to_numpy()
    classes, mcnemar, positives = {}, {}, {}
    for column in columns:
        positive = truth[column].to_numpy() == 1
        score_a = a.scores.loc[images, column].to_numpy()
        score_b = b.scores.loc[images, column].to_numpy()
        positives[column] = int(positive.sum())
        classes[column] = paired_differences(positive, score_a, score_b, threshold=threshold, n_bins=bins,
                                             settings=settings, strata=strata, min_tpr=min_tpr)
        mcnemar[column] = mcnemar_test((score_a > threshold) == positive, (score_b > threshold) == positive, threshold)
    result = PairComparison(a.name, b.name, a.setup, b.setup, len(images), settings, threshold, bins, positives,
                            classes, mcnemar, min_tpr=min_tpr)
    _compare_attention(a, b, images, layers, settings, result)
    return result


def _compare_attention(a: ScoredImages, b: ScoredImages, images: list[str], layers: Sequence[tuple[str, str]] | None,
                       settings: IntervalSettings, result: PairComparison) -> None:
    if not a.attention or not b.attention:
        if layers or a.attention or b.attention:
            missing = " and ".join(side for side, s in (("A", a), ("B", b)) if not s.attention)
            result.notes.append(f"attention quality not compared: {missing} has no per-image scores "
                                "(--masks for a checkpoint; `attnmel evaluate --masks` for an evaluation folder).")
        return
    if a.mask_threshold is not None and b.mask_threshold is not None and a.mask_threshold != b.mask_threshold:
        result.notes.append(f"attention quality not compared: A binarised its maps at {a.mask_threshold}, "
                            f"B at {b.mask_threshold}.")
        return
    jaccard_a, jaccard_b = a.attention["jaccard"], b.attention["jaccard"]
    pairs = list(layers) if layers else [(layer, layer) for layer in jaccard_a if layer in jaccard_b]
    if not pairs:
        result.notes.append(f"attention quality not compared: no layer in common (A: {', '.join(jaccard_a)}; "
                            f"B: {', '.join(jaccard_b)}); pair them with --layer A_LAYER:B_LAYER.")
        return
    for layer_a, layer_b in pairs:
        for side, layer, found in (("A", layer_a, jaccard_a), ("B", layer_b, jaccard_b)):
            if layer not in found:
                raise ConfigError(f"{side} has no attention layer {layer!r} (it has {', '.join(found)}).")
        name = layer_a if layer_a == layer_b else f"{layer_a} vs {layer_b}"
        result.attention[name] = {
            metric: paired_mean_difference(metric, a.attention[metric][layer_a].reindex(images).to_numpy(dtype=float),
                                           b.attention[metric][layer_b].reindex(images).to_numpy(dtype=float),
                                           settings)
            for metric in ("jaccard", "dice")
        }
        scored = (a.attention["jaccard"][layer_a].reindex(images).notna()
                  & b.attention["jaccard"][layer_b].reindex(images).notna())
        result.attention_images = int(scored.sum())


def write_comparison(result: PairComparison, output: str | Path, log=print) -> dict[str, Path]:
    """``compare.json`` and ``compare.md`` in ``output``, as one output set."""
    outputs = OutputSet(Path(output), "compare", known=("compare.json", "compare.md"), log=log)
    files = {"json": outputs.path("compare.json"), "markdown": outputs.path("compare.md")}
    atomic_write_json(files["json"], result.to_dict())
    atomic_write_text(files["markdown"], "# attnmel compare\n\n" + result.to_markdown() + "\n")
    outputs.commit()
    return files
