"""``attnmel compare``."""

from __future__ import annotations

import argparse
import json
import sys

from attnmel.cli.calibrate import DEFAULT_BINS
from attnmel.cli.options import (
    add_batch_size,
    add_device,
    add_intervals,
    add_trust_pickle,
    add_workers,
    fraction,
    inference_settings,
    interval_settings,
    positive_int,
)


def _layer_pair(text: str) -> tuple[str, str]:
    a, sep, b = text.partition(":")
    if not sep or not a or not b or ":" in b:
        raise argparse.ArgumentTypeError(f"must be A_LAYER:B_LAYER (e.g. stage4:cam), not {text!r}")
    return a, b


def register(parser: argparse.ArgumentParser) -> None:
    for side in ("a", "b"):
        parser.add_argument(side, metavar=side.upper(),
                            help="a checkpoint (best.safetensors, run folder or pretrained tag), an evaluation "
                                 "folder, or a predictions.csv in the ISIC scorer format")
    parser.add_argument("--data", help="dataset to score checkpoints on (not needed for prediction CSVs)")
    parser.add_argument("--split", default="val", help="the split checkpoints are scored on (default val)")
    parser.add_argument("--truth", metavar="FILE",
                        help="ground truth (ISIC scorer format) for prediction CSVs without ground_truth.csv beside them")
    parser.add_argument("--threshold", type=fraction, default=0.5,
                        help="decision threshold for sensitivity, specificity and McNemar (positive when p > threshold)")
    parser.add_argument("--bins", type=positive_int, default=DEFAULT_BINS, help="equal-width bins for ECE")
    parser.add_argument("--min-tpr", type=float, default=0.8,
                        help="pAUC above this sensitivity (ISIC 2024: 0.8 on Kaggle, 0.88 on the challenge site)")
    add_intervals(parser, can_disable=False)
    parser.add_argument("--tta", action="store_true", help="checkpoints: average the 8 dihedral views")
    parser.add_argument("--masks", action="store_true",
                        help="checkpoints: also compare attention Jaccard/Dice against the lesion masks")
    parser.add_argument("--mask-threshold", type=fraction, default=0.5,
                        help="a min-max-normalised map pixel counts as attended when above this (default 0.5)")
    parser.add_argument("--layer", type=_layer_pair, action="append", metavar="A_LAYER:B_LAYER",
                        help="attention layers to pair (repeatable; default: the layers both have), e.g. stage4:cam")
    add_batch_size(parser, 64)
    add_workers(parser)
    add_device(parser)
    add_trust_pickle(parser)
    parser.add_argument("--output", metavar="DIR", help="also write compare.json and compare.md here")
    parser.add_argument("--json", action="store_true", help="print the comparison as JSON")
    parser.set_defaults(handler=_compare)


def _compare(args: argparse.Namespace) -> int:
    from attnmel.evaluation.compare import compare_scored, load_side, write_comparison
    from attnmel.io import json_safe

    split = settings = None
    if args.data:  # a checkpoint may be scored: only then is torch imported
        from attnmel.inference import DataSplit

        split, settings = DataSplit(args.data, args.split), inference_settings(args)
    sides = [load_side(source, split, truth=args.truth, masks=args.masks, mask_threshold=args.mask_threshold,
                       settings=settings) for source in (args.a, args.b)]
    result = compare_scored(*sides, threshold=args.threshold, bins=args.bins, settings=interval_settings(args),
                            min_tpr=args.min_tpr,
                            layers=args.layer)
    log = (lambda line: print(line, file=sys.stderr)) if args.json else print
    files = write_comparison(result, args.output, log=log) if args.output else {}
    if args.json:
        print(json.dumps(json_safe(result.to_dict()), indent=2))
    else:
        print(result.to_markdown())
        if files:
            print(f"\nwrote {', '.join(p.name for p in files.values())} to {args.output}")
    return 0
