"""Cross-validation runs combined: out-of-fold predictions.

Each fold run (``attnmel train --fold K --folds N``) validated on its own share of the training
images and wrote which ones to ``split.json``. Each run predicts its own validation images, and
together they give one prediction per training image from a model that never saw it, scored as
one set. (The N fold checkpoints averaged on a held-out split are an ensemble instead:
``attnmel evaluate`` with several ``--checkpoint``.)
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from attnmel.arguments import check_arguments
from attnmel.data.images import verify_image
from attnmel.data.readers import read_dataset
from attnmel.data.splits import SPLIT_FILE, SplitRecord
from attnmel.errors import CheckpointError, DataError
from attnmel.evaluation.evaluate import scorer_frames
from attnmel.evaluation.plots import confusion_matrix_plot, roc_and_pr_curves
from attnmel.inference import InferenceSettings, Predictions, load_model
from attnmel.io import atomic_write_json, atomic_write_text
from attnmel.metrics.classification import ClassificationReport, classification_report
from attnmel.outputs import OutputSet, check_output_dir

#: what every fold of one cross-validation shares
_SAME_SPLIT = ("mode", "seed", "task", "train_split", "group_by", "folds")


@dataclass(frozen=True)
class FoldPart:
    run: str
    fold: int | None
    images: int


@dataclass
class OutOfFoldResult:
    """What ``out_of_fold_predictions`` measured; ``to_dict()`` is its ``metrics.json``."""

    output_dir: Path
    data: str
    layout: str
    task: str
    parts: list[FoldPart]
    #: folds of the cross-validation that no run given covers
    missing_folds: list[int]
    threshold: float
    classification: ClassificationReport
    predictions: Predictions
    files: dict[str, Path] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "out_of_fold": True,
            "data": self.data,
            "layout": self.layout,
            "task": self.task,
            "images": len(self.predictions.image_ids),
            "folds": [vars(part) for part in self.parts],
            "missing_folds": self.missing_folds,
            "threshold": self.threshold,
            "classification": self.classification.to_dict(),
        }


def run_folder(source: str | Path) -> Path:
    """The run folder of a checkpoint path (or the folder itself)."""
    path = Path(source)
    return path if path.is_dir() else path.parent


def default_oof_output(runs: Sequence[str | Path]) -> Path:
    """``<runs' parent>/<run name without -foldK>-oof``."""
    first = run_folder(runs[0])
    stem = re.sub(r"-?fold\d+$", "", first.name) or "cv"
    return first.parent / f"{stem}-oof"


def read_fold_splits(runs: Sequence[str | Path]) -> list[SplitRecord]:
    """Each run's ``split.json``, checked to be folds of one split: the same way of splitting, and
    validation sets that share no image."""
    records = [SplitRecord.read(run_folder(run) / SPLIT_FILE) for run in runs]
    first = records[0]
    seen: dict[str, str] = {}
    for run, record in zip(runs, records, strict=True):
        for key in _SAME_SPLIT:
            if getattr(record, key) != getattr(first, key):
                raise DataError(run_folder(run) / SPLIT_FILE,
                                f"{key} is {getattr(record, key)!r} but {getattr(first, key)!r} in {runs[0]}; these are "
                                "not folds of one split.", "give the runs of one attnmel train --fold K --folds N series.")
        for image_id in record.val:
            if image_id in seen:
                raise DataError(run_folder(run) / SPLIT_FILE,
                                f"validation image {image_id} is also in the validation split of {seen[image_id]}; "
                                "folds of one split never share an image.", "give each fold's run once.")
            seen[image_id] = str(run)
    return records


def out_of_fold_predictions(
    runs: Sequence[str | Path],
    data: str | Path,
    output_dir: str | Path,
    *,
    layout: str | None = None,
    settings: InferenceSettings = InferenceSettings(),
    log: Callable[[str], None] | None = print,
) -> OutOfFoldResult:
    """Predict every fold run's own validation images (from its ``split.json``) and write them together:
    ``oof_predictions.csv`` and ``oof_ground_truth.csv`` (ISIC scorer format), ``metrics.json``,
    ``roc.png``, ``pr.png`` and, for more than two classes, ``confusion.png``, as one output set."""
    if not runs:
        raise CheckpointError("out-of-fold predictions need the fold runs; pass one --checkpoint per fold.")
    check_arguments(threshold=settings.threshold)
    output_dir = check_output_dir(output_dir)
    records = read_fold_splits(runs)
    first = records[0]
    index = read_dataset(data, first.task, layout=layout)
    pool = {sample.image_id: sample for sample in index.split(first.train_split)}
    parts, image_ids, labels, probabilities = [], [], [], []
    names: tuple[list[str], list[str]] | None = None
    for run, record in zip(runs, records, strict=True):
        loaded = load_model(run, settings)
        if names is None:
            names = (loaded.class_names, loaded.score_columns)
        elif (loaded.class_names, loaded.score_columns) != names:
            raise CheckpointError(f"{run}: classes {loaded.class_names} differ from {names[0]} of {runs[0]}; "
                                  "folds of one cross-validation share their task.")
        missing = [image_id for image_id in record.val if image_id not in pool]
        if missing:
            raise DataError(index.root, f"{len(missing)} validation images of {run} are not in its "
                                        f"{first.train_split} split (e.g. {missing[0]}).",
                            "give --data the dataset the folds were trained on.")
        samples = [pool[image_id] for image_id in record.val]
        for sample in samples:
            verify_image(sample.image_path)
        predictions = loaded.infer(samples, settings, desc=f"fold {record.fold}" if record.fold is not None else str(run))
        parts.append(FoldPart(str(run), record.fold, len(samples)))
        image_ids += predictions.image_ids
        labels.append(predictions.labels)
        probabilities.append(predictions.probabilities)
    assert names is not None  # runs is not empty (checked above)
    class_names, score_columns = names
    combined = Predictions(image_ids, np.concatenate(labels), np.concatenate(probabilities))
    threshold = 0.5 if settings.threshold is None else settings.threshold  # folds of one run: no stored point
    report = classification_report(combined.labels, combined.probabilities, class_names, score_columns, threshold)
    covered = {record.fold for record in records}
    result = OutOfFoldResult(
        output_dir=output_dir, data=str(index.root), layout=index.layout, task=first.task, parts=parts,
        missing_folds=[k for k in range(first.folds or 0) if k not in covered], threshold=threshold,
        classification=report, predictions=combined,
    )
    outputs = OutputSet(output_dir, "evaluate", known=OOF_FILES, log=log)
    predicted, truth = scorer_frames(combined, class_names, score_columns)
    files = result.files
    files.update(predictions=outputs.path("oof_predictions.csv"), ground_truth=outputs.path("oof_ground_truth.csv"))
    atomic_write_text(files["predictions"], predicted.to_csv(index=False))
    atomic_write_text(files["ground_truth"], truth.to_csv(index=False))
    plots = roc_and_pr_curves(combined.labels, combined.probabilities, class_names, score_columns, output_dir,
                              "out of fold")
    if report.multiclass is not None:
        plots.update(confusion_matrix_plot(report.multiclass.confusion_matrix, class_names, output_dir, "out of fold"))
    files.update({name: outputs.add(path) for name, path in plots.items()})
    files["metrics"] = outputs.path("metrics.json")
    atomic_write_json(files["metrics"], result.to_dict())
    outputs.commit(split="out of fold", images=len(image_ids))
    return result


#: what ``evaluate --oof`` may write into its folder
OOF_FILES = ("oof_predictions.csv", "oof_ground_truth.csv", "metrics.json", "roc.png", "pr.png", "confusion.png")
