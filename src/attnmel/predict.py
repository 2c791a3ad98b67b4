"""``attnmel predict``: probabilities for new images, and where the model looked.

The images are any mix of files and folders, as a command line names them (a folder gives its
images in name order; a file named twice is predicted once).

For each image the model sees the evaluation view (centre 0.8 square, resized, centre crop).
The output folder gets ``predictions.csv``, one figure per image (``figures/<name>.png``: the view,
each attention map over it with a colour bar in its own units, or the class activation map of a
GAP model; with ``gradcam`` also a Grad-CAM column) and ``report.html`` listing every input with its
thumbnail, probability, figure and flags (flat maps, files that could not be read). A file that
cannot be read stops a run on that one image with one line naming it; among several it is skipped,
said, and listed in the report. Two images of one name (``a/lesion.jpg``, ``b/lesion.jpg``) get
figures of different names (``lesion.png``, ``lesion-2.png``); ``predictions.csv`` names each file.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pandas as pd

from attnmel.arguments import check_arguments
from attnmel.data.images import IMAGE_SUFFIXES
from attnmel.errors import DataError
from attnmel.evaluation.report import HtmlReport
from attnmel.inference import InferenceSettings, LoadedModel, Prediction, load_model
from attnmel.inference.prediction import decode_input
from attnmel.io import atomic_write_bytes, atomic_write_text
from attnmel.models.maps import FLAT_EPSILON
from attnmel.outputs import OutputSet, check_output_dir
from attnmel.visualize.figures import png_bytes
from attnmel.visualize.image import ImageFigure

#: the figure of each image: the attention maps, or the maps and Grad-CAM beside them
Figures = Literal["attention", "gradcam"]


@dataclass
class ImageResult:
    image: Path
    prediction: Prediction
    figure: Path | None = None

    @property
    def flat_layers(self) -> list[str]:
        """Layers whose map is flat (range below ``FLAT_EPSILON``)."""
        return self.prediction.flat_layers

    @property
    def probabilities(self) -> dict[str, float]:
        return self.prediction.probabilities

    @property
    def predicted_class(self) -> str:
        return self.prediction.predicted_class


@dataclass
class PredictResult:
    results: list[ImageResult]
    #: inputs that could not be read: (file, reason)
    skipped: list[tuple[Path, str]]
    files: dict[str, Path] = field(default_factory=dict)


def collect_images(path: str | Path) -> list[Path]:
    """The image files of a folder (by name; whether they decode is found out later), or the file itself."""
    path = Path(path)
    if not path.is_dir():
        if not os.path.lexists(path):
            raise DataError(path, "no such image or folder.", "check the path.")
        return [path]  # a file, or something that claims to be one (a broken link fails when it is read)
    images = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and not p.is_dir())
    if not images:
        raise DataError(path, "the folder contains no images (.jpg, .png, ...).", "point at a folder of dermoscopy images.")
    return images


def collect_inputs(inputs: Iterable[str | Path]) -> list[Path]:
    """The images of every input (files and folders, in the order given), each file once."""
    seen: set[Path] = set()
    images = []
    for path in (image for item in inputs for image in collect_images(item)):
        key = path.resolve() if path.exists() else path.absolute()
        if key not in seen:
            seen.add(key)
            images.append(path)
    return images


def figure_names(images: Sequence[Path]) -> list[str]:
    """One figure name per image: its stem, numbered from the second image of a stem on
    (``lesion``, ``lesion-2``), never a name another image's own stem has."""
    stems = {path.stem for path in images}
    taken: set[str] = set()
    names = []
    for path in images:
        name, n = path.stem, 1
        while name in taken or (n > 1 and name in stems):
            n += 1
            name = f"{path.stem}-{n}"
        taken.add(name)
        names.append(name)
    return names


def predict_images(
    checkpoint: str | Path | None | Sequence[str | Path | None],
    inputs: str | Path | Sequence[str | Path],
    output_dir: str | Path | None = None,
    *,
    figures: Figures | None = "attention",
    settings: InferenceSettings = InferenceSettings(batch_size=16),
    log: Callable[[str], None] = print,
) -> PredictResult:
    """Predict ``inputs`` (image files and folders, one or several) with ``checkpoint`` (None: the shipped model); with
    ``output_dir`` write ``predictions.csv``, ``report.html`` and, unless ``figures`` is None, a figure
    per image (``"gradcam"``: with a Grad-CAM column). Images are decoded in this process
    (``settings.workers`` is not used)."""
    check_arguments(threshold=settings.threshold)
    items = [inputs] if isinstance(inputs, str | Path) else list(inputs)
    if not items:
        raise DataError(None, "no image or folder given.", "name at least one image file or folder.")
    if output_dir is not None:
        check_output_dir(output_dir)
    loaded = load_model(checkpoint, settings)
    batch_size, gradcam = settings.batch_size, figures == "gradcam"
    paths = collect_inputs(items)
    single = len(items) == 1 and not Path(items[0]).is_dir()
    results: list[ImageResult] = []
    skipped: list[tuple[Path, str]] = []
    for start in range(0, len(paths), batch_size):
        chunk, images = [], []
        for path in paths[start:start + batch_size]:
            try:
                images.append(decode_input(path)[0])
            except DataError as exc:
                if single:
                    raise
                skipped.append((path, exc.problem or str(exc)))
                log(f"skipped {path}: {exc.problem or exc}")
                continue
            chunk.append(path)
        if not chunk:
            continue
        predictions = loaded.predict(images, threshold=settings.threshold, batch_size=batch_size)
        if gradcam:
            from attnmel.visualize.gradcam import LAYER, grad_cam_of_views

            for prediction, amap in zip(predictions, grad_cam_of_views(loaded, [p.view for p in predictions]),
                                        strict=True):
                prediction.extras[LAYER] = amap
        for path, prediction in zip(chunk, predictions, strict=True):
            prediction.source = str(path)
            results.append(ImageResult(path, prediction))
    if not results and skipped:
        where, which = (Path(items[0]), "its") if len(items) == 1 else (None, "the")
        raise DataError(where, f"none of {which} {len(paths)} images could be read.", "check the files listed above.")
    outcome = PredictResult(results, skipped)
    if output_dir is not None:
        write_outputs(outcome, loaded, OutputSet(output_dir, "predict", known=PREDICT_FILES, log=log), figures is not None)
    return outcome


#: what ``predict`` may write into its folder (moved aside when a re-run does not write it)
PREDICT_FILES = ("predictions.csv", "report.html", "figures/")


def write_outputs(outcome: PredictResult, loaded: LoadedModel, outputs: OutputSet, figures: bool) -> None:
    """``predictions.csv``, a figure per image and ``report.html`` (every input, skipped ones included), as
    one output set: figures an earlier run left are moved aside, never shown as this run's."""
    class_names = loaded.class_names
    rows = []
    for result, name in zip(outcome.results, figure_names([r.image for r in outcome.results]), strict=True):
        prediction = result.prediction
        withheld = prediction.withheld is not None  # no probability, class or set for a flagged image
        rows.append({"image": result.image.stem, **({} if withheld else prediction.probabilities),
                     "predicted": None if withheld else prediction.predicted_class,
                     "flat_maps": ";".join(result.flat_layers), "file": str(result.image), **_trust_columns(prediction)})
        if figures:
            image = ImageFigure.of(prediction).draw()
            result.figure = outputs.path(f"figures/{name}.png")
            atomic_write_bytes(result.figure, png_bytes(image))
    frame = pd.DataFrame(rows, columns=["image", *class_names, "predicted", "flat_maps", "file", *TRUST_COLUMNS])
    outcome.files["predictions"] = outputs.path("predictions.csv")
    atomic_write_text(outcome.files["predictions"], frame.to_csv(index=False))
    outcome.files["report"] = write_report(outcome, loaded, outputs.path("report.html"))
    outputs.commit(images=len(outcome.results))


TRUST_COLUMNS = ("threshold", "threshold_rule", "ood_score", "out_of_distribution", "prediction_set", "refer",
                 "refer_reasons", "withheld", "attention_warning", "trust_mode", "trust_note")


def _trust_columns(prediction: Prediction) -> dict[str, object]:
    values = {key: getattr(prediction, key) for key in TRUST_COLUMNS}
    if values["prediction_set"] is not None:
        values["prediction_set"] = None if prediction.withheld else "|".join(values["prediction_set"])
    values["refer_reasons"] = "; ".join(prediction.refer_reasons)
    return values


def trust_flags(prediction: Prediction) -> list[str]:
    """The warnings a reader must see before the probability."""
    flags = []
    if prediction.out_of_distribution:
        flags.append("OUT OF DISTRIBUTION: not like the images the model was fitted on; no probability or class "
                     "is given")
    elif prediction.refer:
        flags.append("refer: " + "; ".join(prediction.refer_reasons))
    if prediction.attention_warning:
        flags.append(f"attention: {prediction.attention_warning}")
    if prediction.trust_note:
        flags.append(prediction.trust_note)
    return flags


def write_report(outcome: PredictResult, loaded: LoadedModel, path: Path) -> Path:
    meta = loaded.meta
    report = HtmlReport(f"attnmel predict: {len(outcome.results)} image(s)")
    report.paragraph("Research use only: not a diagnostic tool.", notice=True)
    report.paragraph(
        f"Model: {meta.architecture.name} on {meta.architecture.backbone}, input {meta.preprocessing.image_size} px, "
        f"from {loaded.sources[0]}. P({meta.positive_class}) above the threshold means the model says "
        f"{meta.positive_class}; threshold {outcome.results[0].prediction.threshold} "
        f"({outcome.results[0].prediction.threshold_rule}). "
        + ("" if meta.ood_detector is not None else "No out-of-distribution check: the checkpoint carries no detector. ")
        + "An image flagged out of distribution gets no probability or class here, in its figure or in "
        "predictions.csv; an answer marked refer is to be judged by a person. A map is flagged flat when its values "
        f"span less than {FLAT_EPSILON} (relative to their size for unbounded maps): it is drawn as one colour, not "
        "stretched."
    )
    names = Counter(result.image.name for result in outcome.results)
    rows = []
    for result in outcome.results:
        p = result.prediction
        shown = str(result.image) if names[result.image.name] > 1 else result.image.name  # two of one name: paths
        flags = "; ".join(trust_flags(p) + (["flat: " + ", ".join(result.flat_layers)] if result.flat_layers else []))
        rows.append([shown, None if p.withheld else p.probability,
                     "not answered" if p.withheld else p.predicted_class, flags,
                     result.figure if result.figure is not None else None])
    rows += [[path_.name, None, "not read", reason, None] for path_, reason in outcome.skipped]
    report.table(["image", f"P({meta.positive_class})", "predicted", "flags", "figure"], rows)
    return report.write(path)
