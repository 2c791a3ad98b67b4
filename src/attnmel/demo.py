"""``attnmel demo``: the shipped model on images it never saw, and a short training run, on a CPU in minutes.

1. The model shipped with attnmel is evaluated on the bundled ISIC 2016 images that appear nowhere
   in ISIC 2017, its training and selection data (``sample_data/isic2016-unseen``): ROC AUC and the
   other metrics, and the attention Jaccard against their lesion masks.
2. One figure per image: what the model saw with the lesion outline, each attention map with its
   colour bar and its Jaccard, P(melanoma) and the truth.
3. A short training run on 40 bundled ISIC 2017 images shows that training works; it is labelled as
   such, and its model's maps are never shown as the shipped model's attention.
Everything goes into a self-contained HTML report.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from importlib import resources
from pathlib import Path

from attnmel.checkpoints.card import model_card
from attnmel.config import load_config
from attnmel.errors import AttnmelError
from attnmel.evaluation.evaluate import EvaluationOptions, EvaluationResult, evaluate_checkpoint
from attnmel.evaluation.report import HtmlReport
from attnmel.inference import DataSplit, InferenceSettings, load_model
from attnmel.io import atomic_write_text
from attnmel.training.loop import TrainResult, train

DISCLAIMER = "Research use only: attnmel's models are not diagnostic tools and must not be used on patients."
_MARKER = ".attnmel-demo"
UNSEEN_SPLIT = "test"


def sample_data_path() -> Path:
    """The 60 bundled ISIC 2017 images (the short training run and the tests use them)."""
    return Path(str(resources.files("attnmel") / "sample_data" / "isic2017"))


def unseen_data_path() -> Path:
    """The bundled ISIC 2016 images that the shipped model never saw (by content)."""
    return Path(str(resources.files("attnmel") / "sample_data" / "isic2016-unseen"))


def _fresh_output(output: Path) -> None:
    """Reuse a previous demo folder, never a folder that holds something else."""
    if output.exists() and any(output.iterdir()):
        if not (output / _MARKER).exists():
            raise AttnmelError(f"{output}: exists and is not a demo folder; choose another --output.")
        shutil.rmtree(output)
    output.mkdir(parents=True, exist_ok=True)
    atomic_write_text(output / _MARKER, "written by attnmel demo\n")


def run_demo(
    output: str | Path = "demo-output",
    *,
    overrides: list[str] | None = None,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> Path:
    started = time.perf_counter()
    output = Path(output)
    _fresh_output(output)
    unseen = unseen_data_path()
    model = load_model()
    log(f"the shipped model on {unseen.name}: images it never saw in training or selection")
    evaluation = evaluate_checkpoint(None, DataSplit(unseen, UNSEEN_SPLIT), output / "shipped-model",
                                     EvaluationOptions(masks=True), InferenceSettings(progress=progress))
    figures = _figures(model, evaluation, output / "shipped-model" / "figures")
    log(_summary(model, evaluation))
    log("a short training run on 40 bundled ISIC 2017 images (to show that training works)")
    run = train(load_config("demo", overrides), sample_data_path(), output / "training-run", progress=progress, log=log)
    report = _report(model, evaluation, figures, run, time.perf_counter() - started)
    path = report.write(output / "report.html")
    log(f"report: {path.resolve()}")
    log(DISCLAIMER)
    return path


def _summary(model, evaluation: EvaluationResult) -> str:
    """The headline a user reads in the terminal: recognition with its interval, and where the model looked."""
    positive = evaluation.classification[model.meta.positive_class]
    auc = f"ROC AUC {positive.roc_auc:.3f}"
    if evaluation.intervals is not None:
        interval = evaluation.intervals.classification[model.meta.positive_class]["roc_auc"]
        auc += f" [{interval.low:.2f}, {interval.high:.2f}]"
    quality = evaluation.attention_quality
    looked = ", ".join(f"{layer} {quality.mean(layer):.2f} ({quality.flat_count(layer)} flat)" for layer in quality.layers)
    return (f"  {positive.n} unseen images ({positive.n_positive} melanoma): {auc}; "
            f"mean Jaccard of the attention against the lesion: {looked}")


def _figures(model, evaluation: EvaluationResult, folder: Path) -> list[tuple[Path, str]]:
    """One figure per image: the view with the lesion outline, each map with its Jaccard, P(melanoma), truth."""
    from attnmel.io import atomic_write_bytes
    from attnmel.visualize import ImageFigure, png_bytes

    predictions, quality = evaluation.predictions, evaluation.attention_quality
    index = {image_id: i for i, image_id in enumerate(predictions.image_ids)}
    paths = sorted((unseen_data_path() / "ISBI2016_ISIC_Part3_Test_Data").glob("*.jpg"))
    names = model.class_names
    out = []
    for path, prediction in zip(paths, model.predict([str(p) for p in paths]), strict=True):
        i = index[path.stem]
        jaccard = {layer: float(quality.jaccard[layer][i]) for layer in quality.layers} if quality.has_mask[i] else None
        mask = predictions.masks[i] if quality.has_mask[i] else None
        image = ImageFigure.of(prediction, truth=names[predictions.labels[i]], lesion_mask=mask,
                               jaccard=jaccard).draw()
        target = folder / f"{path.stem}.png"
        atomic_write_bytes(target, png_bytes(image))
        out.append((target, path.stem))
    return out


def _report(model, evaluation: EvaluationResult, figures, run: TrainResult, seconds: float) -> HtmlReport:
    meta = model.meta
    positive = evaluation.classification[meta.positive_class]
    quality = evaluation.attention_quality
    n, n_positive = positive.n, positive.n_positive
    report = HtmlReport("attnmel demo: the shipped model on images it never saw")
    report.paragraph(DISCLAIMER, notice=True)
    report.paragraph(
        f"The model shipped with attnmel ({model_card(meta).title}, {meta.preprocessing.image_size} px input; trained on "
        f"{(meta.training.data or {}).get('train', {}).get('images', '?')} ISIC 2017 images, epoch chosen on ISIC 2017 "
        f"validation), scored on {n} ISIC 2016 images ({n_positive} melanoma) that have no identical or "
        "near-identical image anywhere in ISIC 2017. With so few images every number below is uncertain; melanoma "
        "is over-represented compared with the challenge data."
    )
    report.heading(f"Recognition ({n} unseen images, {n_positive} melanoma)")
    keys = ["roc_auc", "average_precision", "sensitivity", "specificity", "balanced_accuracy",
            "sensitivity_at_90_specificity"]
    report.table(["metric", "melanoma vs rest"], [[k.replace("_", " "), getattr(positive, k)] for k in keys])
    report.figures([(evaluation.files["roc"], "ROC curve"), (evaluation.files["pr"], "precision-recall curve"),
                    (evaluation.files["reliability"], "reliability")])
    report.heading("Where the model looked: attention against the lesion masks")
    report.table(["layer", "mean Jaccard", "mean Dice", "flat maps"],
                 [[layer, quality.mean(layer), quality.mean(layer, "dice"),
                   f"{quality.flat_count(layer)} of {quality.images_with_mask}"] for layer in quality.layers])
    report.paragraph(
        "Each figure: what the model saw (white: the lesion outline from the mask), then each attention map "
        "over it with a colour bar in the map's own units, its range, and its Jaccard against the lesion; "
        "a map whose values span less than 0.05 would be drawn flat, never stretched."
    )
    report.figures([(path, name) for path, name in figures], layout="stack")
    report.heading("A short training run (not the shipped model)")
    report.paragraph(
        f"To show that training works, the demo trains AttnMel-CNN-Lesion from scratch on 40 bundled ISIC 2017 "
        f"images at a reduced input for {len(run.history)} epochs on this CPU. A model trained this way is a "
        "demonstration of the tool, not a model of melanoma: its maps are not shown here."
    )
    report.table(
        ["epoch", "train loss", "prior (Dice) loss", "val ROC AUC (20 images)", "images/s"],
        [[r["epoch"], r["train_loss"], r["train_prior_loss"], r["val_roc_auc"], r["images_per_second"]]
         for r in run.history],
    )
    report.paragraph(f"The whole demo took {seconds:.0f} s.")
    return report
