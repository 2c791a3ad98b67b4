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
Each run's val ROC AUC carries DeLong's interval, and the paired tests (prior vs none, AttnMel vs
the plain baseline: DeLong for ROC AUC, a paired bootstrap for Jaccard, per seed, on the
predictions each evaluation wrote) say which differences the 150 val images establish.

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
from dataclasses import dataclass, field
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch: idle threads sleep instead of spinning

from attnmel.config import load_config  # noqa: E402
from attnmel.evaluation.compare import compare_scored, read_predictions  # noqa: E402
from attnmel.evaluation.evaluate import EvaluationOptions, evaluate_checkpoint  # noqa: E402
from attnmel.inference import DataSplit, InferenceSettings  # noqa: E402
from attnmel.metrics.intervals import Interval, IntervalSettings  # noqa: E402
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
        *args.set,
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
        evaluate_checkpoint(output, DataSplit(args.data, "val"), evaluation, EvaluationOptions(masks=True),
                            InferenceSettings(tta=tta, progress=args.progress))
    metrics = json.loads((evaluation / "metrics.json").read_text())
    result = {key: metrics["classification"]["melanoma"][key] for key in METRICS}
    for layer, values in metrics.get("attention_quality", {}).get("layers", {}).items():
        result[f"jaccard_{layer}"] = values["jaccard"]
    auc = ((metrics.get("intervals") or {}).get("classification") or {}).get("melanoma", {}).get("roc_auc")
    if auc:
        result["roc_auc_low"], result["roc_auc_high"] = auc["low"], auc["high"]
    result["evaluation"] = str(evaluation)
    result["seed"] = seed
    result["seconds"] = round(time.perf_counter() - started)
    print(f"{name} seed {seed}: " + ", ".join(f"{k} {v:.3f}" for k, v in result.items() if isinstance(v, float)),
          flush=True)
    return result


# ---------------------------------------------------------------------- tables and verdicts
# ``summarise`` turns the runs into typed results (what the tests check); ``render`` writes them as
# markdown. Two kinds of uncertainty are kept apart: the spread over seeds (training noise: mean ±
# sd) and each run's confidence interval on the val images (test-set noise: DeLong for ROC AUC, a
# paired bootstrap for Jaccard), from the predictions every evaluation wrote.

#: (label, result key) of the table's metric columns; "shallow"/"deep" pick each run's gate layers
COLUMNS = (("val ROC AUC", "roc_auc"), ("val AP", "average_precision"),
           ("sens @ 90% spec", "sensitivity_at_90_specificity"), ("Jaccard stride-8 gate", "shallow"),
           ("Jaccard stride-16 gate (pool-4 eq.) or CAM", "deep"))
PRIORS = ("attnmel-mnv2-lesion", "attnmel-mnv2-lesion-x10", "attnmel-mnv2-lesion-x10-ema")
ALPHA = 0.05


@dataclass(frozen=True)
class MeanSd:
    """Mean and sample standard deviation over seeds (0 for a single seed)."""

    mean: float
    sd: float
    n: int

    @classmethod
    def of(cls, values: list[float | None]) -> MeanSd | None:
        values = [v for v in values if v is not None and not math.isnan(v)]
        if not values:
            return None
        return cls(statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0, len(values))

    def __str__(self) -> str:
        return f"{self.mean:.3f} ± {self.sd:.3f}"


@dataclass(frozen=True)
class RowSummary:
    name: str
    seeds: list[int]
    #: result key of ``COLUMNS`` -> mean ± sd over seeds (None: not measured)
    metrics: dict[str, MeanSd | None]
    #: (seed, DeLong interval of its val ROC AUC), where the evaluation recorded one
    auc_intervals: list[tuple[int, Interval]]


@dataclass(frozen=True)
class Criterion:
    name: str
    value: float
    target: str
    met: bool
    #: a change (printed with its sign) rather than a level
    change: bool = False

    def __str__(self) -> str:
        return f"{self.value:+.3f}" if self.change else f"{self.value:.3f}"


@dataclass(frozen=True)
class Check:
    """One issue criterion table: ``row`` against ``baseline``, paired by seed."""

    row: str
    baseline: str
    seeds: list[int]
    criteria: list[Criterion]


@dataclass(frozen=True)
class PairedTest:
    """One seed's row against its baseline on the same val images: B - A with interval and p-value."""

    row: str
    baseline: str
    seed: int
    #: "roc_auc" (DeLong) or "jaccard" (paired bootstrap over the images with a mask)
    metric: str
    #: the layers compared for "jaccard" (baseline's, row's)
    layers: tuple[str, str] | None
    difference: Interval
    p_value: float

    @property
    def significant(self) -> bool:
        return math.isfinite(self.p_value) and self.p_value < ALPHA


@dataclass(frozen=True)
class Summary:
    rows: list[RowSummary]
    #: issue 3: a lesion prior against no prior
    prior_checks: list[Check]
    #: issue 7: each AttnMel row against the plain baseline
    baseline_checks: list[Check]
    paired: list[PairedTest] = field(default_factory=list)


def _deep_layer(result: dict) -> str | None:
    """The pool-4 equivalent (stride-16 gate), or the CAM of a GAP model."""
    for key in ("jaccard_pool4", "jaccard_stage4", "jaccard_layer3", "jaccard_cam"):
        if key in result:
            return key
    return None


def _shallow_layer(result: dict) -> str | None:
    return next((k for k in ("jaccard_pool3", "jaccard_stage3", "jaccard_layer2") if k in result), None)


def _value(result: dict, key: str) -> float | None:
    if key in ("shallow", "deep"):
        key = _shallow_layer(result) if key == "shallow" else _deep_layer(result)
    return result.get(key) if key else None


def _mean(runs: list[dict], key: str, seeds: list[int]) -> float:
    """Mean over the given seeds; ``key="deep"`` picks each run's stride-16 (or CAM) Jaccard."""
    return statistics.mean(_value(r, key) for r in runs if r["seed"] in seeds)


def _common_seeds(*rows: list[dict]) -> list[int]:
    """Comparisons pair runs by seed, so rows finished for different seeds are compared fairly."""
    return sorted(set.intersection(*({r["seed"] for r in runs} for runs in rows)))


def _baseline_for(name: str, results: dict[str, list[dict]]) -> str:
    """TTA rows are compared with the baseline under TTA."""
    return "gap-mnv2-tta" if ROWS[name].get("tta") and "gap-mnv2-tta" in results else "gap-mnv2"


def _pairs(results: dict[str, list[dict]]) -> list[tuple[str, str]]:
    """(row, baseline) of the issue 3 and issue 7 checks, in table order."""
    pairs = [(prior, "attnmel-mnv2") for prior in PRIORS if prior in results and "attnmel-mnv2" in results]
    if "gap-mnv2" in results:
        pairs += [(name, _baseline_for(name, results)) for name in results if name.startswith("attnmel")]
    return pairs


def summarise(results: dict[str, list[dict]], paired: list[PairedTest] | None = None) -> Summary:
    results = {name: runs for name, runs in results.items() if runs}
    rows = [
        RowSummary(
            name, [r["seed"] for r in runs], {key: MeanSd.of([_value(r, key) for r in runs]) for _, key in COLUMNS},
            [(r["seed"], Interval(r["roc_auc"], r["roc_auc_low"], r["roc_auc_high"], 0.95, "delong"))
             for r in runs if r.get("roc_auc_low") is not None],
        )
        for name, runs in results.items()
    ]
    prior_checks, baseline_checks = [], []
    for row, baseline in _pairs(results):
        seeds = _common_seeds(results[baseline], results[row])
        if not seeds:
            continue
        auc_change = _mean(results[row], "roc_auc", seeds) - _mean(results[baseline], "roc_auc", seeds)
        deep = _mean(results[row], "deep", seeds)
        if baseline == "attnmel-mnv2":
            gain = deep - _mean(results[baseline], "deep", seeds)
            prior_checks.append(Check(row, baseline, seeds, [
                Criterion("Jaccard gain, lesion - no prior", gain, ">= +0.20", gain >= 0.2, change=True),
                Criterion("Jaccard with the lesion prior", deep, ">= 0.55", deep >= 0.55),
                Criterion("val AUC change, lesion - no prior", auc_change, ">= -0.02", auc_change >= -0.02, change=True),
            ]))
        else:
            baseline_checks.append(Check(row, baseline, seeds, [
                Criterion(f"AUC vs {baseline}", auc_change, ">= +0.02", auc_change >= 0.02, change=True),
                Criterion("stride-16 Jaccard", deep, ">= 0.6", deep >= 0.6),
            ]))
    return Summary(rows, prior_checks, baseline_checks, list(paired or []))


def paired_tests(results: dict[str, list[dict]], settings: IntervalSettings | None = None) -> list[PairedTest]:
    """DeLong's test of val ROC AUC and the paired bootstrap of the stride-16 (or CAM) Jaccard, per seed,
    for every (row, baseline) of the checks, from the predictions each evaluation wrote."""
    settings = settings or IntervalSettings()
    results = {name: runs for name, runs in results.items() if runs}
    found = []
    for row, baseline in _pairs(results):
        by_seed = {r["seed"]: r for r in results[baseline]}
        for run in results[row]:
            base = by_seed.get(run["seed"])
            if base is None or not base.get("evaluation") or not run.get("evaluation"):
                continue
            layers = [(_deep_layer(base)[len("jaccard_"):], _deep_layer(run)[len("jaccard_"):])] \
                if _deep_layer(base) and _deep_layer(run) else None
            comparison = compare_scored(read_predictions(base["evaluation"]), read_predictions(run["evaluation"]),
                                        settings=settings, layers=layers)
            auc = comparison.classes["melanoma"]["roc_auc"]
            found.append(PairedTest(row, baseline, run["seed"], "roc_auc", None, auc.difference, auc.p_value))
            for name, metrics in comparison.attention.items():
                jaccard = metrics["jaccard"]
                found.append(PairedTest(row, baseline, run["seed"], "jaccard", layers[0] if layers else (name, name),
                                        jaccard.difference, jaccard.p_value))
    return found


def significance(summary: Summary) -> list[str]:
    """One line per (row, baseline, metric): the per-seed differences and how many are significant."""
    lines = []
    groups: dict[tuple[str, str, str], list[PairedTest]] = {}
    for test in summary.paired:
        groups.setdefault((test.row, test.baseline, test.metric), []).append(test)
    for (row, baseline, metric), tests in groups.items():
        what = "val ROC AUC (DeLong)" if metric == "roc_auc" else \
            f"Jaccard {tests[0].layers[1]} vs {tests[0].layers[0]} (paired bootstrap)"
        per_seed = "; ".join(f"seed {t.seed}: {t.difference.format(3, 3, sign=True)}, p {_p(t.p_value)}" for t in tests)
        count = sum(t.significant for t in tests)
        verdict = ("significant in every seed" if count == len(tests) else
                   "not significant in any seed" if count == 0 else f"significant in {count} of {len(tests)} seeds")
        lines.append(f"- {row} - {baseline}, {what}: {per_seed} -> **{verdict}** (p < {ALPHA})")
    return lines


def _p(p: float) -> str:
    return "n/a" if not math.isfinite(p) else "< 0.001" if p < 0.001 else f"{p:.3f}"


def render(summary: Summary) -> str:
    lines = [
        "| row | seeds | " + " | ".join(label for label, _ in COLUMNS) + " | val ROC AUC 95% CI per seed (DeLong) |",
        "|---|---|" + "---|" * len(COLUMNS) + "---|",
    ]
    for row in summary.rows:
        cells = [str(row.metrics[key]) if row.metrics[key] is not None else "-" for _, key in COLUMNS]
        intervals = "; ".join(f"[{i.low:.2f}, {i.high:.2f}]" for _, i in row.auc_intervals) or "-"
        lines.append(f"| {row.name} | {','.join(str(s) for s in row.seeds)} | " + " | ".join(cells) + f" | {intervals} |")
    if summary.prior_checks:
        lines += ["", "Issue 3 check (same initialisation, paired by seed; stride-16 gate = pool-4 equivalent):"]
        for check in summary.prior_checks:
            lines += ["", f"{check.row} against {check.baseline} (seeds {check.seeds}):", "",
                      "| criterion | value | target | met |", "|---|---|---|---|"]
            lines += [f"| {c.name} | {c} | {c.target} | {c.met} |" for c in check.criteria]
    if summary.baseline_checks:
        lines += ["", "Issue 7 check (val ROC AUC against the plain baseline, same initialisation and budget, "
                  "paired by seed; TTA rows against the baseline with TTA):", ""]
        for check in summary.baseline_checks:
            auc, jaccard = check.criteria
            lines.append(f"- {check.row} (seeds {check.seeds}): AUC {auc} vs {check.baseline} "
                         f"(target {auc.target}: {auc.met}); stride-16 Jaccard {jaccard} (target {jaccard.target}: "
                         f"{jaccard.met})")
    if summary.paired:
        lines += ["", "Paired tests on the val images (B - A = row - baseline, per seed; 95% intervals):", ""]
        lines += significance(summary)
        lines += ["", "Seeds share the same val images, so their p-values are not independent evidence: a gain "
                  "significant in no seed is not established by this split, however consistent its sign. The "
                  "mean ± sd columns are the training noise; the intervals are the noise of 150 val images."]
    return "\n".join(lines)


def tables(results: dict[str, list[dict]], paired: list[PairedTest] | None = None) -> str:
    return render(summarise(results, paired))


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
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a config override for every trained row, after the row's own (repeatable)")
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
    print(tables(results, paired_tests(results)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
