"""``attnmel predict``."""

from __future__ import annotations

import argparse
from pathlib import Path

from attnmel.cli.options import add_trust_pickle
from attnmel.evaluation.predict import predict_images


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("predict", help="probabilities and attention overlays for images")
    parser.add_argument("inputs", help="an image file or a folder of images")
    parser.add_argument("--checkpoint", required=True, action="append",
                        help="best.safetensors or a run folder; repeat it to average an ensemble")
    parser.add_argument("--output", default="predictions", help="folder for predictions.csv and overlay PNGs")
    parser.add_argument("--no-overlays", action="store_true")
    parser.add_argument("--tta", action="store_true", help="average the 8 dihedral views (probabilities and maps)")
    parser.add_argument("--device", default="auto")
    add_trust_pickle(parser)
    parser.set_defaults(handler=_predict)


def _predict(args: argparse.Namespace) -> int:
    results = predict_images(args.checkpoint, args.inputs, Path(args.output), overlays=not args.no_overlays,
                             device=args.device, tta=args.tta, trust_pickle=args.trust_pickle)
    for result in results:
        probabilities = "  ".join(f"{name} {p:.3f}" for name, p in result.probabilities.items())
        print(f"{result.image.name}: {probabilities}  -> {result.predicted_class}")
    print(f"wrote predictions.csv and {sum(len(r.overlays) for r in results)} overlay PNG(s) to {args.output}")
    return 0
