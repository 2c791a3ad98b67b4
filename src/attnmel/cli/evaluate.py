"""``attnmel evaluate``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from attnmel.cli.options import add_trust_pickle
from attnmel.evaluation.evaluate import evaluate_checkpoint, format_calibration, format_metrics
from attnmel.metrics.calibration import DEFAULT_BINS


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("evaluate", help="metrics, curves and ISIC-format predictions for a split")
    parser.add_argument("--checkpoint", required=True, action="append",
                        help="best.safetensors or a run folder; repeat it to average an ensemble")
    parser.add_argument("--data", required=True)
    parser.add_argument("--split", default="val", help="val, test, train (or all for folders without splits)")
    parser.add_argument("--output", help="where to write (default: <first checkpoint's run>/eval-<split>[-tta][-ensemble])")
    parser.add_argument("--threshold", type=float, default=0.5, help="decision threshold (positive when p > threshold)")
    parser.add_argument("--tta", action="store_true", help="average the 8 dihedral views (4 rotations x flip)")
    parser.add_argument("--no-temperature", action="store_true",
                        help="ignore the temperature stored by `attnmel calibrate` (raw softmax)")
    parser.add_argument("--bins", type=int, default=DEFAULT_BINS, help="equal-width bins for ECE and the reliability diagram")
    parser.add_argument("--masks", action="store_true",
                        help="also score attention maps (or the CAM of GAP models) against the lesion masks: "
                             "Jaccard and Dice per layer, attention_quality.csv")
    parser.add_argument("--mask-threshold", type=float, default=0.5,
                        help="a min-max-normalised map pixel counts as attended when above this (default 0.5, the paper)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--json", action="store_true", help="print metrics as JSON")
    add_trust_pickle(parser)
    parser.set_defaults(handler=_evaluate)


def default_output(checkpoint: str, name: str) -> Path:
    path = Path(checkpoint)
    return (path if path.is_dir() else path.parent) / name


def _evaluate(args: argparse.Namespace) -> int:
    name = f"eval-{args.split}" + ("-tta" if args.tta else "") + ("-ensemble" if len(args.checkpoint) > 1 else "")
    output = Path(args.output) if args.output else default_output(args.checkpoint[0], name)
    result = evaluate_checkpoint(
        args.checkpoint, args.data, args.split, output, threshold=args.threshold, tta=args.tta,
        use_temperature=not args.no_temperature, calibration_bins=args.bins, batch_size=args.batch_size,
        num_workers=args.workers, device=args.device, progress=not args.json, masks=args.masks,
        mask_threshold=args.mask_threshold, trust_pickle=args.trust_pickle,
    )
    if args.json:
        print(json.dumps(json.loads(result.files["metrics"].read_text()), indent=2))
    else:
        temperatures = ", ".join(f"{m['temperature']:.3g}" for m in result.members)
        print(f"{result.split}: {result.images} images; {len(result.members)} checkpoint(s), "
              f"temperature {temperatures}" + (", 8-view TTA" if args.tta else ""))
        print(format_metrics(result.classification))
        print(format_calibration(result.calibration))
        if result.attention_quality is not None:
            print(result.attention_quality.to_string())
        print(f"wrote {', '.join(p.name for p in result.files.values())} to {output}")
    return 0
