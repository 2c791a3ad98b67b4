"""``attnmel calibrate``."""

from __future__ import annotations

import argparse
import json

from attnmel.cli.options import (
    add_batch_size,
    add_device,
    add_trust_pickle,
    add_workers,
    inference_settings,
    positive_int,
)

#: the library's default (``attnmel.metrics.calibration.DEFAULT_BINS``; a test keeps them equal)
DEFAULT_BINS = 15


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, help="best.safetensors, or a run folder")
    parser.add_argument("--data", required=True)
    parser.add_argument("--split", default="val", help="the split to fit on (default val; fitting on test makes its metrics optimistic)")
    parser.add_argument("--tta", action="store_true", help="fit the temperature to the 8-view TTA average")
    parser.add_argument("--bins", type=positive_int, default=DEFAULT_BINS, help="equal-width bins for ECE")
    parser.add_argument("--dry-run", action="store_true", help="fit and report, but leave the checkpoint unchanged")
    add_batch_size(parser, 64)
    add_workers(parser)
    add_device(parser)
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    add_trust_pickle(parser)
    parser.set_defaults(handler=_calibrate)


def _calibrate(args: argparse.Namespace) -> int:
    from attnmel.evaluation.calibration import calibrate_checkpoint
    from attnmel.evaluation.evaluate import format_calibration
    from attnmel.inference import DataSplit

    result = calibrate_checkpoint(args.checkpoint, DataSplit(args.data, args.split), n_bins=args.bins,
                                  write=not args.dry_run, settings=inference_settings(args))
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
        return 0
    print(f"{args.split}: {result.images} images" + (", 8-view TTA" if result.tta else ""))
    print(f"before (temperature {result.previous_temperature:.4g}): {format_calibration(result.before)}")
    print(f"after  (temperature {result.temperature:.4g}): {format_calibration(result.after)}")
    if result.at_bound:
        print("note: the fit stopped at a search bound (validation may be perfectly separated); treat it with care")
    if args.split == "test":
        print("note: fitted on the test split, so later test metrics of this checkpoint are optimistic")
    print(f"stored temperature {result.temperature:.4g} in {result.checkpoint}" if result.written
          else "dry run: checkpoint unchanged")
    return 0
