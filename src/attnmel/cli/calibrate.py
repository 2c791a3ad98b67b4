"""``attnmel calibrate``."""

from __future__ import annotations

import argparse
import json

from attnmel.evaluation.calibration import calibrate_checkpoint
from attnmel.evaluation.evaluate import format_calibration
from attnmel.metrics.calibration import DEFAULT_BINS


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "calibrate", help="fit a softmax temperature on validation and store it in the checkpoint"
    )
    parser.add_argument("--checkpoint", required=True, help="best.safetensors, or a run folder")
    parser.add_argument("--data", required=True)
    parser.add_argument("--split", default="val", help="the split to fit on (default val; fitting on test makes its metrics optimistic)")
    parser.add_argument("--tta", action="store_true", help="fit the temperature to the 8-view TTA average")
    parser.add_argument("--bins", type=int, default=DEFAULT_BINS, help="equal-width bins for ECE")
    parser.add_argument("--dry-run", action="store_true", help="fit and report, but leave the checkpoint unchanged")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.set_defaults(handler=_calibrate)


def _calibrate(args: argparse.Namespace) -> int:
    result = calibrate_checkpoint(
        args.checkpoint, args.data, args.split, tta=args.tta, n_bins=args.bins, write=not args.dry_run,
        batch_size=args.batch_size, num_workers=args.workers, device=args.device, progress=not args.json,
    )
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
