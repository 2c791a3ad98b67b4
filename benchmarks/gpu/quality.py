"""The quality tasks: train one (row, seed) run, or finish it, then score its best checkpoint."""

from __future__ import annotations

import csv
import json
import math
import statistics
import time
from pathlib import Path

from .data import smoke_data
from .files import completed_epochs
from .report import QUALITY_METRICS
from .settings import FAST, ROWS, SMOKE_SET, Settings, SuiteError, Task


def quality_config(s: Settings, row: str, seed: int):
    from attnmel.config import load_config

    spec = ROWS[row]
    overrides = [*spec["set"], *FAST, f"train.seed={seed}", f"data.num_workers={min(s.workers, 8)}",
                 f"data.cache_dir={Path(s.work) / 'cache'}", f"train.device={s.device}"]
    if spec.get("weights"):
        if not s.weights or not Path(s.weights).is_file():
            raise SuiteError(f"{s.weights or '--weights'}: the ImageNet MobileNetV2 weights file is missing; run "
                             "`python benchmarks/gpu_prepare.py` beside the code (it copies it into .data/gpu-suite) "
                             "or pass --weights FILE.")
        overrides.append(f"model.weights={s.weights}")
    if s.smoke:
        overrides += SMOKE_SET
    config = load_config(spec["preset"], overrides)
    config.name = f"gpu-suite-{row}-seed{seed}"
    return config


def task_quality(s: Settings, task: Task, save) -> None:
    """Train one (row, seed) run (or finish it), then evaluate its best checkpoint on val with attention Jaccard."""
    from attnmel.evaluation.evaluate import EvaluationOptions, evaluate_checkpoint
    from attnmel.inference import DataSplit, InferenceSettings
    from attnmel.training.loop import train
    from attnmel.training.resume import STATE_FILE

    row, seed = task.spec["row"], task.spec["seed"]
    config = quality_config(s, row, seed)
    data = str(smoke_data(s)) if s.smoke else s.data
    output = Path(s.work) / "quality" / row / f"seed{seed}"
    started = time.perf_counter()
    save(row=row, seed=seed, epochs=config.train.epochs, image_size=config.data.image_size,
         batch_size=config.train.batch_size)
    if completed_epochs(output) < config.train.epochs:
        train(config, data, output, resume=(output / STATE_FILE).is_file(), progress=False,
              log=lambda text: print(text, flush=True))
    with open(output / "metrics.csv", newline="") as handle:
        history = list(csv.DictReader(handle))
    train_seconds = time.perf_counter() - started
    rates = [float(r["images_per_second"]) for r in history]
    save(train_seconds=round(train_seconds, 1), train_images_per_second=statistics.median(rates),
         best_epoch=max(history, key=lambda r: float(r["val_roc_auc"]))["epoch"])
    evaluation = output / "eval-val"
    if not (evaluation / "metrics.json").is_file():
        evaluate_checkpoint(output, DataSplit(data, "val"), evaluation, EvaluationOptions(masks=True),
                            InferenceSettings(device=s.device, progress=False))
    metrics = json.loads((evaluation / "metrics.json").read_text())
    values = {key: metrics["classification"]["melanoma"][key] for key in QUALITY_METRICS}
    for layer, layer_values in metrics.get("attention_quality", {}).get("layers", {}).items():
        values[f"jaccard_{layer}"] = layer_values["jaccard"]
    extra = []
    for i, item in enumerate(s.extra_eval):
        data, split = item.rsplit(":", 1)
        target = output / f"eval-extra{i}"
        if not (target / "metrics.json").is_file():
            evaluate_checkpoint(output, DataSplit(data, split), target, EvaluationOptions(masks=True),
                                InferenceSettings(device=s.device, progress=False))
        m = json.loads((target / "metrics.json").read_text())
        layers = m.get("attention_quality", {}).get("layers", {})
        deep = next((layers[k]["jaccard"] for k in ("pool4", "stage4", "layer3", "cam") if k in layers), None)
        extra.append({"data": data, "split": split, "images": m["images"],
                      **{k: m["classification"]["melanoma"][k] for k in QUALITY_METRICS},
                      "jaccard": "-" if deep is None or math.isnan(deep) else f"{deep:.3f}"})
    save(**values, extra=extra, seconds=round(time.perf_counter() - started, 1))
    print(f"{row} seed {seed}: " + ", ".join(f"{k} {v:.3f}" for k, v in values.items()), flush=True)
