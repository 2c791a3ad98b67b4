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
    fraction,
    inference_settings,
)


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="+", metavar="IMAGE",
                        help="image files and folders of images, one or several")
    add_checkpoint(parser)
    parser.add_argument("--output", default="predictions",
                        help="folder for predictions.csv, figures/ and report.html (default: %(default)s)")
    parser.add_argument("--threshold", type=fraction, default=None,
                        help="a two-class model says the positive class when its probability is above this "
                             "(default: the operating point stored in the checkpoint, else 0.5)")
    parser.add_argument("--no-figures", action="store_true", help="only predictions.csv and report.html")
    parser.add_argument("--gradcam", action="store_true",
                        help="add a Grad-CAM column to each figure (needs pip install 'attnmel[explain]')")
    parser.add_argument("--tta", action="store_true", help="average the 8 dihedral views (probabilities and maps)")
    add_batch_size(parser, 16)
    add_device(parser)
    add_trust_pickle(parser)
    parser.set_defaults(handler=_predict)


def _predict(args: argparse.Namespace) -> int:
    from attnmel.predict import predict_images, trust_flags

    checkpoints = checkpoints_or_default(args.checkpoint)
    figures = None if args.no_figures else "gradcam" if args.gradcam else "attention"
    outcome = predict_images(checkpoints, args.inputs, Path(args.output), figures=figures,
                             settings=inference_settings(args))
    if outcome.results:
        first = outcome.results[0].prediction
        print(f"threshold {first.threshold} ({first.threshold_rule})" if first.threshold is not None else "arg-max decision")
    for result in outcome.results:
        flat = f"  (flat map: {', '.join(result.flat_layers)})" if result.flat_layers else ""
        flags = "".join(f"  [{flag}]" for flag in trust_flags(result.prediction))
        if result.prediction.withheld:  # a flagged image: no probability, no class
            print(f"{result.image.name}: not answered{flat}{flags}")
            continue
        probabilities = "  ".join(f"{name} {p:.3f}" for name, p in result.probabilities.items())
        print(f"{result.image.name}: {probabilities}  -> {result.predicted_class}{flat}{flags}")
    skipped = f"; skipped {len(outcome.skipped)} unreadable file(s), listed in the report" if outcome.skipped else ""
    print(f"wrote predictions.csv, {sum(r.figure is not None for r in outcome.results)} figure(s) and report.html "
          f"to {args.output}{skipped}")
    return 0
