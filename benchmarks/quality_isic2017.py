"""Recognition and attention quality on real ISIC 2017: train on train, select the epoch on val, measure on val.

Rows (issue 7), each over several seeds:
  gap-mnv2             plain fine-tuned MobileNetV2, GAP + linear (the baseline a user would reach for)
  attnmel-mnv2         AttnMel on MobileNetV2, no prior
  attnmel-mnv2-lesion  AttnMel on MobileNetV2 with the lesion prior (paper weights 0.001 / 0.01)
  attnmel-mnv2-lesion-x10  the same prior 10x stronger (0.01 / 0.1): a short schedule sees 1/17 of
                       the paper's 100 passes, so the paper's weights have less time to act; this is
                       configs/isic2017/attnmel-mobilenetv2-lesion
  attnmel-mnv2-lesion-x10-ema  the same with an EMA of the weights (decay 0.99, about one epoch)
  vgg16-scratch        AttnMel-CNN on VGG-16-BN from random init, the paper's recipe (SGD 0.01, step)
  *-tta                evaluation-only rows: the same trained run evaluated with the 8 dihedral views,
                       so that the table separates what the prior, EMA and TTA each add
All MobileNetV2 rows start from the same ImageNet weights (a local file) with the same optimiser and
budget (configs/isic2017/_finetune-mobilenetv2.yaml); they differ only in head, prior, EMA and TTA.
The second table is issue 3's check: the lesion prior against no prior, same initialisation.

    python benchmarks/quality_isic2017.py --data ../shared/data/isic2017 \
        --weights ../shared/weights/mobilenet_v2_imagenet_features.pth --out runs/quality

Finished runs and evaluations are reused (delete a run folder to redo it); ``--table-only`` prints
the table from what is finished, skipping the rest. On a GPU, a fuller budget:
``--epochs 20 --image-size 224 --vgg-epochs 50 --vgg-image-size 224``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch: idle threads sleep instead of spinning

from attnmel.config import load_config  # noqa: E402
from attnmel.evaluation.evaluate import evaluate_checkpoint  # noqa: E402
from attnmel.training.loop import train  # noqa: E402
from attnmel.training.resume import STATE_FILE  # noqa: E402

_LESION_X10 = ["model.name=attnmel", "data.roi=lesion", "loss.prior_weights=[0.01,0.1]"]
ROWS: dict[str, dict] = {
    "gap-mnv2": {"preset": "isic2017/gap-mobilenetv2", "set": []},
    "gap-mnv2-tta": {"evaluates": "gap-mnv2", "tta": True},
    "attnmel-mnv2": {"preset": "isic2017/gap-mobilenetv2", "set": ["model.name=attnmel"]},
    "attnmel-mnv2-lesion": {
        "preset": "isic2017/gap-mobilenetv2", "set": ["model.name=attnmel", "data.roi=lesion", "loss.prior_weights=[0.001,0.01]"]
    },
    "attnmel-mnv2-lesion-x10": {"preset": "isic2017/gap-mobilenetv2", "set": _LESION_X10},
    "attnmel-mnv2-lesion-x10-tta": {"evaluates": "attnmel-mnv2-lesion-x10", "tta": True},
    "attnmel-mnv2-lesion-x10-ema": {"preset": "isic2017/gap-mobilenetv2", "set": [*_LESION_X10, "train.ema_decay=0.99"]},
    "attnmel-mnv2-lesion-x10-ema-tta": {"evaluates": "attnmel-mnv2-lesion-x10-ema", "tta": True},
    "vgg16-scratch": {"preset": "isic2017/attnmel", "set": ["model.weights=null"], "vgg": True},
}
METRICS = ("roc_auc", "average_precision", "sensitivity_at_90_specificity")


def _trained_row(name: str) -> str:
    """The row whose training run ``name`` evaluates (evaluation-only rows reuse another row's run)."""
    return ROWS[name].get("evaluates", name)


def _config(name: str, seed: int, args: argparse.Namespace):
    name = _trained_row(name)
    row = ROWS[name]
    vgg = row.get("vgg", False)
    size = args.vgg_image_size if vgg else args.image_size
    overrides = [
        *row["set"],
        f"train.seed={seed}",
        f"train.epochs={args.vgg_epochs if vgg else args.epochs}",
        f"data.image_size={size}",
        f"data.resize={round(size * 256 / 224)}",
        f"data.num_workers={args.workers}",
        f"train.threads={args.threads}",
    ]
    if not vgg:
        overrides.append(f"model.weights={args.weights}")
    config = load_config(row["preset"], overrides)
    config.name = f"quality-{name}-seed{seed}"
    return config


def _completed_epochs(output: Path) -> int:
    metrics = output / "metrics.csv"
    return sum(1 for _ in metrics.open()) - 1 if metrics.is_file() else 0


def run(name: str, seed: int, args: argparse.Namespace) -> dict | None:
    """Train (or finish) one run, then evaluate its best checkpoint on val with attention quality.

    With ``--table-only`` an unfinished run is skipped (None) instead of trained.
    """
    output = Path(args.out) / _trained_row(name) / f"seed{seed}"
    config = _config(name, seed, args)
    started = time.perf_counter()
    if _completed_epochs(output) < config.train.epochs:
        if args.table_only:
            return None
        resume = (output / STATE_FILE).is_file()
        train(config, args.data, output, resume=resume, progress=args.progress)
    tta = ROWS[name].get("tta", False)
    evaluation = output / ("eval-val-tta" if tta else "eval-val")
    if not (evaluation / "metrics.json").is_file():
        evaluate_checkpoint(output, args.data, "val", evaluation, tta=tta, masks=True, progress=args.progress)
    metrics = json.loads((evaluation / "metrics.json").read_text())
    result = {key: metrics["classification"]["melanoma"][key] for key in METRICS}
    for layer, values in metrics.get("attention_quality", {}).get("layers", {}).items():
        result[f"jaccard_{layer}"] = values["jaccard"]
    result["seed"] = seed
    result["seconds"] = round(time.perf_counter() - started)
    print(f"{name} seed {seed}: " + ", ".join(f"{k} {v:.3f}" for k, v in result.items() if isinstance(v, float)),
          flush=True)
    return result


def _cell(values: list[float]) -> str:
    values = [v for v in values if v is not None and not math.isnan(v)]
    if not values:
        return "-"
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.3f} ± {spread:.3f}"


def _deep_layer(result: dict) -> str | None:
    """The pool-4 equivalent (stride-16 gate), or the CAM of a GAP model."""
    for key in ("jaccard_pool4", "jaccard_stage4", "jaccard_layer3", "jaccard_cam"):
        if key in result:
            return key
    return None


def _mean(runs: list[dict], key: str, seeds: list[int]) -> float:
    """Mean over the given seeds; ``key="deep"`` picks each run's stride-16 (or CAM) Jaccard."""
    return statistics.mean(r[_deep_layer(r) if key == "deep" else key] for r in runs if r["seed"] in seeds)


def _common_seeds(*rows: list[dict]) -> list[int]:
    """Comparisons pair runs by seed, so rows finished for different seeds are compared fairly."""
    return sorted(set.intersection(*({r["seed"] for r in runs} for runs in rows)))


def tables(results: dict[str, list[dict]]) -> str:
    lines = [
        "| row | seeds | val ROC AUC | val AP | sens @ 90% spec | Jaccard stride-8 gate | Jaccard stride-16 gate (pool-4 eq.) or CAM |",
        "|---|---|---|---|---|---|---|",
    ]
    results = {name: runs for name, runs in results.items() if runs}
    for name, runs in results.items():
        deep = _deep_layer(runs[0])
        shallow = next((k for k in ("jaccard_pool3", "jaccard_stage3", "jaccard_layer2") if k in runs[0]), None)
        lines.append(
            f"| {name} | {','.join(str(r['seed']) for r in runs)} | "
            + " | ".join(_cell([r[m] for r in runs]) for m in METRICS)
            + f" | {_cell([r[shallow] for r in runs]) if shallow else '-'}"
            + f" | {_cell([r[deep] for r in runs]) if deep else '-'} |"
        )
    # without TTA, like the attnmel-mnv2 row they are compared with
    priors = [p for p in ("attnmel-mnv2-lesion", "attnmel-mnv2-lesion-x10", "attnmel-mnv2-lesion-x10-ema") if p in results]
    if "attnmel-mnv2" in results and priors:
        lines += ["", "Issue 3 check (same initialisation, paired by seed; stride-16 gate = pool-4 equivalent):"]
        for prior in priors:
            plain, lesion = results["attnmel-mnv2"], results[prior]
            seeds = _common_seeds(plain, lesion)
            if not seeds:
                continue
            j_gain = _mean(lesion, "deep", seeds) - _mean(plain, "deep", seeds)
            j_lesion = _mean(lesion, "deep", seeds)
            auc_change = _mean(lesion, "roc_auc", seeds) - _mean(plain, "roc_auc", seeds)
            lines += [
                "",
                f"{prior} against attnmel-mnv2 (seeds {seeds}):",
                "",
                "| criterion | value | target | met |",
                "|---|---|---|---|",
                f"| Jaccard gain, lesion - no prior | {j_gain:+.3f} | >= +0.20 | {j_gain >= 0.2} |",
                f"| Jaccard with the lesion prior | {j_lesion:.3f} | >= 0.55 | {j_lesion >= 0.55} |",
                f"| val AUC change, lesion - no prior | {auc_change:+.3f} | >= -0.02 | {auc_change >= -0.02} |",
            ]
    if "gap-mnv2" in results:
        lines += ["", "Issue 7 check (val ROC AUC against the plain baseline, same initialisation and budget, "
                  "paired by seed; TTA rows against the baseline with TTA):", ""]
        for name, runs in results.items():
            baseline = "gap-mnv2-tta" if ROWS[name].get("tta") and "gap-mnv2-tta" in results else "gap-mnv2"
            seeds = _common_seeds(results[baseline], runs)
            if name.startswith("attnmel") and seeds:
                gain = _mean(runs, "roc_auc", seeds) - _mean(results[baseline], "roc_auc", seeds)
                deep = _mean(runs, "deep", seeds)
                lines.append(f"- {name} (seeds {seeds}): AUC {gain:+.3f} vs {baseline} (target >= +0.02: {gain >= 0.02}); "
                             f"stride-16 Jaccard {deep:.3f} (target >= 0.6: {deep >= 0.6})")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True)
    parser.add_argument("--weights", required=True, help="local ImageNet MobileNetV2 state dict (features.* keys)")
    parser.add_argument("--out", default="runs/quality")
    parser.add_argument("--rows", nargs="+", default=list(ROWS), choices=list(ROWS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=6, help="MobileNetV2 rows (reduced CPU budget)")
    parser.add_argument("--image-size", type=int, default=160)
    parser.add_argument("--vgg-epochs", type=int, default=5)
    parser.add_argument("--vgg-image-size", type=int, default=96)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--progress", action="store_true")
    parser.add_argument("--table-only", action="store_true", help="no training: tabulate the finished runs")
    args = parser.parse_args(argv)
    results: dict[str, list[dict]] = {name: [] for name in args.rows}
    for seed in args.seeds:
        for name in args.rows:
            result = run(name, seed, args)
            if result is not None:
                results[name].append(result)
    (Path(args.out) / "results.json").write_text(json.dumps(results, indent=2))
    print()
    print(f"ISIC 2017, train -> val (seeds {args.seeds}, where finished); MobileNetV2 rows {args.epochs} epochs at "
          f"{args.image_size} px, VGG {args.vgg_epochs} epochs at {args.vgg_image_size} px; mean ± std over seeds")
    print(tables(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
