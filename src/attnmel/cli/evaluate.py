"""``attnmel evaluate``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from attnmel.cli.calibrate import DEFAULT_BINS
from attnmel.cli.options import (
    add_batch_size,
    add_checkpoint,
    add_device,
    add_intervals,
    add_trust_pickle,
    add_workers,
    checkpoints_or_default,
    fraction,
    inference_settings,
    interval_settings,
    positive_int,
)


def register(parser: argparse.ArgumentParser) -> None:
    add_checkpoint(parser)
    parser.add_argument("--data", required=True, action="append", metavar="[NAME=]PATH",
                        help="dataset folder or manifest CSV (external validation on your own data); repeat it to "
                             "score the model on several datasets in one table (rows: datasets, named NAME or "
                             "after their folder)")
    parser.add_argument("--split", default="val", help="val, test, train (or all for folders without splits)")
    parser.add_argument("--output", help="where to write (default: <first checkpoint's run>/eval-<split>[-tta][-ensemble], "
                                         "or ./eval-<split> for the shipped model)")
    parser.add_argument("--threshold", type=fraction, default=None,
                        help="decision threshold (positive when p > threshold; default: the operating point stored "
                             "in the checkpoint, else 0.5)")
    parser.add_argument("--min-tpr", type=float, default=0.8,
                        help="pAUC above this sensitivity (ISIC 2024: 0.8 on Kaggle, 0.88 on the challenge site)")
    parser.add_argument("--tta", action="store_true", help="average the 8 dihedral views (4 rotations x flip)")
    parser.add_argument("--no-temperature", action="store_true",
                        help="ignore the temperature stored by `attnmel calibrate` (raw softmax)")
    parser.add_argument("--bins", type=positive_int, default=DEFAULT_BINS,
                        help="equal-width bins for ECE and the reliability diagram")
    parser.add_argument("--masks", action="store_true",
                        help="also score attention maps (or the CAM of GAP models) against the lesion masks: "
                             "Jaccard and Dice per layer, attention_quality.csv")
    parser.add_argument("--figures", action="store_true",
                        help="one figure per image in figures/: the view, each map with its colour bar, the lesion "
                             "outline and Jaccard with --masks, P(melanoma) and the truth")
    parser.add_argument("--mask-threshold", type=fraction, default=0.5,
                        help="a min-max-normalised map pixel counts as attended when above this (default 0.5, the paper)")
    parser.add_argument("--oof", action="store_true",
                        help="out-of-fold: each --checkpoint is a fold run (attnmel train --fold K --folds N) that predicts "
                             "its own validation images (from its split.json); writes oof_predictions.csv in the ISIC "
                             "scorer format and metrics over all folds (--split is not used)")
    add_intervals(parser)
    add_batch_size(parser, 64)
    add_workers(parser)
    add_device(parser)
    parser.add_argument("--json", action="store_true", help="print metrics as JSON")
    add_trust_pickle(parser)
    parser.set_defaults(handler=_evaluate)


def _evaluate(args: argparse.Namespace) -> int:
    from attnmel.evaluation.evaluate import (
        EvaluationOptions,
        default_output_dir,
        evaluate_checkpoint,
        format_attention_quality,
        format_calibration,
        format_metrics,
        format_multiclass,
    )
    from attnmel.evaluation.external import named_datasets
    from attnmel.inference import DataSplit

    if args.oof:
        return _out_of_fold(args)
    checkpoints = checkpoints_or_default(args.checkpoint, log=(lambda *_: None) if args.json else print)
    if len(args.data) > 1:
        return _external(args, checkpoints)
    (_, data), = named_datasets(args.data)  # [NAME=]PATH: one dataset's name has no use but is allowed
    output = Path(args.output) if args.output else default_output_dir(checkpoints, args.split, args.tta)
    options = EvaluationOptions(calibration_bins=args.bins, masks=args.masks, mask_threshold=args.mask_threshold,
                                intervals=interval_settings(args), figures=args.figures, min_tpr=args.min_tpr)
    result = evaluate_checkpoint(checkpoints, DataSplit(data, args.split), output, options,
                                 inference_settings(args), log=_log(args))
    if args.json:
        print(json.dumps(json.loads(result.files["metrics"].read_text()), indent=2))
    else:
        temperatures = ", ".join(f"{m['temperature']:.3g}" for m in result.members)
        print(f"{result.split}: {result.images} images; {len(result.members)} checkpoint(s), "
              f"temperature {temperatures}" + (", 8-view TTA" if args.tta else "")
              + "".join(f"; {n} {cls} images left out of the task" for cls, n in result.left_out.items()))
        print(format_metrics(result.classification, result.intervals))
        if result.classification.multiclass is not None:
            print(format_multiclass(result.classification.multiclass))
        print(format_calibration(result.calibration, result.intervals))
        if result.attention_quality is not None:
            print(format_attention_quality(result.attention_quality, result.intervals))
        if result.trust is not None:
            print(result.trust.describe())
        print(f"wrote {', '.join(p.name for p in result.files.values())} to {output}")
    return 0


def _external(args: argparse.Namespace, checkpoints) -> int:
    from attnmel.errors import ConfigError
    from attnmel.evaluation.evaluate import EvaluationOptions, default_output_dir
    from attnmel.evaluation.external import evaluate_datasets
    from attnmel.io import json_safe

    if args.oof or args.figures:
        raise ConfigError("several --data make one external-validation table; use --figures or --oof with one --data.")
    output = Path(args.output) if args.output else default_output_dir(checkpoints, "external", args.tta)
    options = EvaluationOptions(calibration_bins=args.bins, mask_threshold=args.mask_threshold,
                                intervals=interval_settings(args), min_tpr=args.min_tpr)
    table = evaluate_datasets(checkpoints, args.data, output, options, inference_settings(args), split=args.split,
                              log=_log(args))
    print(json.dumps(json_safe(table.to_dict()), indent=2) if args.json else table.to_markdown())
    if not args.json:
        print(f"wrote {', '.join(p.name for p in table.files.values())} to {output}")
    return 0


def _log(args: argparse.Namespace):
    """Notes (stale files moved aside) go to stderr under --json, so stdout stays one JSON document."""
    return (lambda line: print(line, file=sys.stderr)) if args.json else print


def _out_of_fold(args: argparse.Namespace) -> int:
    from attnmel.errors import ConfigError
    from attnmel.evaluation.evaluate import format_metrics, format_multiclass
    from attnmel.evaluation.folds import default_oof_output, out_of_fold_predictions

    if not args.checkpoint:
        raise ConfigError("--oof needs the fold runs: one --checkpoint per fold (attnmel train --fold K --folds N).")
    if args.masks:
        raise ConfigError("--oof scores classification only; run --masks on a split without --oof.")
    from attnmel.evaluation.external import named_datasets

    if len(args.data) > 1:
        raise ConfigError("--oof scores the fold runs on the one dataset they were trained on; give one --data.")
    (_, data), = named_datasets(args.data)
    output = Path(args.output) if args.output else default_oof_output(args.checkpoint)
    result = out_of_fold_predictions(args.checkpoint, data, output, settings=inference_settings(args), log=_log(args))
    if args.json:
        print(json.dumps(json.loads(result.files["metrics"].read_text()), indent=2))
        return 0
    folds = ", ".join(f"fold {part.fold}: {part.images}" for part in result.parts)
    print(f"out of fold: {len(result.predictions.image_ids)} images ({folds})"
          + (f"; folds {result.missing_folds} not given" if result.missing_folds else ""))
    print(format_metrics(result.classification))
    if result.classification.multiclass is not None:
        print(format_multiclass(result.classification.multiclass))
    print(f"wrote {', '.join(p.name for p in result.files.values())} to {output}")
    return 0
