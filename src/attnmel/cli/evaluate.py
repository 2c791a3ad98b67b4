"""``attnmel evaluate``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from attnmel.cli.options import add_trust_pickle
from attnmel.evaluation.evaluate import evaluate_checkpoint, format_metrics


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("evaluate", help="metrics, curves and ISIC-format predictions for a split")
    parser.add_argument("--checkpoint", required=True, help="best.safetensors, or a run folder")
    parser.add_argument("--data", required=True)
    parser.add_argument("--split", default="val", help="val, test, train (or all for folders without splits)")
    parser.add_argument("--output", help="where to write (default: <run>/eval-<split>)")
    parser.add_argument("--threshold", type=float, default=0.5, help="decision threshold (positive when p > threshold)")
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
    output = Path(args.output) if args.output else default_output(args.checkpoint, f"eval-{args.split}")
    result = evaluate_checkpoint(
        args.checkpoint, args.data, args.split, output, threshold=args.threshold, batch_size=args.batch_size,
        num_workers=args.workers, device=args.device, progress=not args.json, trust_pickle=args.trust_pickle,
    )
    if args.json:
        print(json.dumps(json.loads(result.files["metrics"].read_text()), indent=2))
    else:
        print(f"{result.metrics['split']}: {result.metrics['images']} images")
        print(format_metrics(result.metrics["classification"]))
        print(f"wrote {', '.join(p.name for p in result.files.values())} to {output}")
    return 0
