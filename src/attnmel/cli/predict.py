"""``attnmel predict``."""

from __future__ import annotations

import argparse
from pathlib import Path

from attnmel.cli.options import (
    add_batch_size,
    add_checkpoint,
    add_device,
    add_trust_pickle,
    checkpoints_or_default,
)


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", help="an image file or a folder of images")
    add_checkpoint(parser)
    parser.add_argument("--output", default="predictions", help="folder for predictions.csv and overlay PNGs")
    parser.add_argument("--no-overlays", action="store_true")
    parser.add_argument("--tta", action="store_true", help="average the 8 dihedral views (probabilities and maps)")
    add_batch_size(parser, 16)
    add_device(parser)
    add_trust_pickle(parser)
    parser.set_defaults(handler=_predict)


def _predict(args: argparse.Namespace) -> int:
    from attnmel.evaluation.predict import predict_images

    checkpoints = checkpoints_or_default(args.checkpoint)
    results = predict_images(checkpoints, args.inputs, Path(args.output), overlays=not args.no_overlays,
                             batch_size=args.batch_size, device=args.device, tta=args.tta,
                             trust_pickle=args.trust_pickle)
    for result in results:
        probabilities = "  ".join(f"{name} {p:.3f}" for name, p in result.probabilities.items())
        print(f"{result.image.name}: {probabilities}  -> {result.predicted_class}")
    print(f"wrote predictions.csv and {sum(len(r.overlays) for r in results)} overlay PNG(s) to {args.output}")
    return 0
