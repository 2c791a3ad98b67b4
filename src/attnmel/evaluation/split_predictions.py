"""A dataset split and the model's predictions on it: the one load -> read split -> infer path that
evaluate, calibrate, compare, attention quality and the trust fits share (``predict_split``).

Every image header of the split is checked before any is run (``read_split``), so a bad file fails
naming itself, not inside a DataLoader worker.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from attnmel.data.images import verify_image
from attnmel.data.masks import RoiSpec
from attnmel.data.readers import read_dataset
from attnmel.data.records import DatasetIndex, Sample
from attnmel.errors import DataError
from attnmel.inference import DataSplit, InferenceSettings, LoadedModel, Predictions, load_model
from attnmel.inference.loading import Keep, Source


def read_split(source: DataSplit, task: str) -> tuple[DatasetIndex, list[Sample]]:
    """The samples of one split (labels of ``source.task``, else of ``task``); every image header is
    checked first, so a bad file fails here, naming itself, not inside a DataLoader worker."""
    index = read_dataset(source.data, source.task or task, layout=source.layout)
    samples = index.split(source.split)
    if not samples:
        raise DataError(index.root, f"split {source.split!r} has no images.", "choose another split.")
    for sample in samples:
        verify_image(sample.image_path)
    return index, samples


@dataclass
class SplitPredictions:
    """What the one load -> read split -> infer path gives a door."""

    loaded: LoadedModel
    index: DatasetIndex
    samples: list[Sample]
    predictions: Predictions


def predict_split(
    checkpoints: Source | Sequence[Source],
    source: DataSplit,
    settings: InferenceSettings,
    *,
    roi: str | None = None,
    keep: Sequence[Keep] = (),
    desc: str = "eval",
) -> SplitPredictions:
    """Load the checkpoint(s), read the split and run the model over it: the path of every evaluating door.

    With ``roi`` (e.g. "lesion") the attention maps and that region's masks come too, and a model
    without maps is refused before any image is read."""
    loaded = load_model(checkpoints, settings)
    if roi is not None:
        loaded.require_maps()
        keep = ("attention", *keep)
    index, samples = read_split(source, loaded.task)
    predictions = loaded.infer(samples, settings, roi=RoiSpec(roi) if roi is not None else None, keep=keep, desc=desc)
    return SplitPredictions(loaded, index, samples, predictions)
