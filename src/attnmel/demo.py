"""``attnmel demo``: the whole path on the bundled sample, on a CPU, in a few minutes.

Train AttnMel-CNN (with the lesion prior) on 40 bundled ISIC 2017 images, evaluate on the 20
validation images, draw attention overlays, and write a self-contained HTML report.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from importlib import resources
from pathlib import Path

import numpy as np

from attnmel.config import load_config
from attnmel.errors import AttnmelError
from attnmel.evaluation.evaluate import evaluate_checkpoint
from attnmel.evaluation.overlays import heatmap_overlay
from attnmel.evaluation.predict import predict_images
from attnmel.evaluation.report import HtmlReport
from attnmel.io import atomic_write_text
from attnmel.training.loop import train

DISCLAIMER = (
    "The demo model was trained for a few minutes on 40 images. It is not a diagnostic tool and must "
    "not be used on patients; it shows how attnmel works, nothing more."
)
_MARKER = ".attnmel-demo"


def sample_data_path() -> Path:
    return Path(str(resources.files("attnmel") / "sample_data" / "isic2017"))


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
    data = sample_data_path()
    config = load_config("demo", overrides)
    result = train(config, data, output / "run", progress=progress, log=log)
    evaluation = evaluate_checkpoint(result.best_checkpoint, data, "val", output / "evaluation", progress=progress)
    predictions = predict_images(result.best_checkpoint, data / "ISIC-2017_Validation_Data", output / "overlays")
    truth = dict(zip(evaluation.predictions.image_ids, evaluation.predictions.labels.tolist(), strict=True))
    report = _report(config.name, result, evaluation, predictions, truth, time.perf_counter() - started)
    path = report.write(output / "report.html")
    log(f"report: {path.resolve()}")
    log(DISCLAIMER)
    return path


def _report(name, result, evaluation, predictions, truth, seconds) -> HtmlReport:
    positive = evaluation.classification["melanoma"]
    report = HtmlReport("attnmel demo: AttnMel-CNN-Lesion on 40 ISIC 2017 images")
    report.paragraph(DISCLAIMER, notice=True)
    report.heading("Validation metrics (20 images, 6 melanoma)")
    keys = ["roc_auc", "average_precision", "accuracy", "sensitivity", "specificity", "balanced_accuracy",
            "precision", "sensitivity_at_90_specificity"]
    report.table(["metric", "melanoma vs rest"], [[k.replace("_", " "), getattr(positive, k)] for k in keys])
    report.paragraph(
        f"Best epoch {result.best_epoch} of {len(result.history)} by validation ROC AUC; threshold 0.5 "
        f"(positive when p > 0.5); whole demo {seconds:.0f} s."
    )
    report.figures([(evaluation.files["roc"], "ROC curve"), (evaluation.files["pr"], "precision-recall curve")])
    report.heading("Training")
    report.table(
        ["epoch", "train loss", "prior (Dice) loss", "val ROC AUC", "val AP", "images/s"],
        [[r["epoch"], r["train_loss"], r["train_prior_loss"], r["val_roc_auc"], r["val_average_precision"],
          r["images_per_second"]] for r in result.history],
    )
    report.heading("Where the model looked (validation images)")
    report.paragraph(
        "For each image: what the model saw, then each attention map (pool-3, pool-4) min-max normalised "
        "and overlaid (red = high attention). Captions give P(melanoma) and the true label."
    )
    names = ["other", "melanoma"]
    items = []
    for prediction in predictions:
        label = names[truth.get(prediction.image.stem, 0)]
        caption = f"{prediction.image.stem}: P(mel) {prediction.probabilities['melanoma']:.2f}, truth {label}"
        items.append((_pil(prediction.view), caption))
        for layer, amap in prediction.attention.items():
            items.append((heatmap_overlay(prediction.view, amap), f"{layer} attention"))
    report.figures(items, layout="grid")
    return report


def _pil(view: np.ndarray):
    from PIL import Image

    return Image.fromarray(view)
