"""``attnmel calibrate``."""

from __future__ import annotations

import argparse
import json

from attnmel.cli.options import (
    add_batch_size,
    add_checkpoint,
    add_device,
    add_trust_pickle,
    add_workers,
    checkpoints_or_default,
    fraction,
    inference_settings,
    positive_int,
)

#: the library's default (``attnmel.metrics.calibration.DEFAULT_BINS``; a test keeps them equal)
DEFAULT_BINS = 15


def register(parser: argparse.ArgumentParser) -> None:
    add_checkpoint(parser, ensemble=False)
    parser.add_argument("--data", required=True, help="labelled data to fit on (e.g. your own site's images)")
    parser.add_argument("--split", default="val", help="the split to fit on (default val; fitting on test makes its metrics optimistic)")
    parser.add_argument("--output", help="the new checkpoint (default: <name>-calibrated.safetensors beside the input, "
                                         "or in the current folder for the shipped model); never the input")
    parser.add_argument("--rule", choices=("sensitivity", "youden", "fixed"), default="sensitivity",
                        help="how the decision threshold is chosen (default: the highest reaching --target-sensitivity)")
    parser.add_argument("--target-sensitivity", type=fraction, default=0.85, help="for --rule sensitivity (default 0.85)")
    parser.add_argument("--fixed-threshold", type=fraction, default=0.5, help="for --rule fixed (default 0.5)")
    parser.add_argument("--alpha", type=fraction, default=0.1,
                        help="error rate of the conformal prediction sets (coverage 1 - alpha; default 0.1)")
    parser.add_argument("--tta", action="store_true",
                        help="fit for answers given with --tta (the 8-view average): stored as the TTA mode's fields")
    parser.add_argument("--fit", type=_fits, default=None, metavar="WHAT[,WHAT]",
                        help="what to refit, the rest kept: temperature, threshold, sets, detector (default: "
                             "temperature,threshold,sets, plus detector when --detector-data is given)")
    parser.add_argument("--detector-data", action="append", default=[], metavar="DATASET",
                        help="training-like images the OOD detector learns (repeat for several datasets); its "
                             "thresholds come from --data")
    parser.add_argument("--detector-split", default="train", help="the split of --detector-data (default train)")
    parser.add_argument("--bins", type=positive_int, default=DEFAULT_BINS, help="equal-width bins for ECE")
    parser.add_argument("--dry-run", action="store_true", help="fit and report, but write nothing")
    add_batch_size(parser, 64)
    add_workers(parser)
    add_device(parser)
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    add_trust_pickle(parser)
    parser.set_defaults(handler=_calibrate)


def _fits(value: str) -> tuple[str, ...]:
    names = tuple(part.strip() for part in value.split(",") if part.strip())
    known = ("temperature", "threshold", "sets", "detector")
    unknown = [name for name in names if name not in known]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"{value!r}: name some of {', '.join(known)}, separated by commas")
    return names


def _calibrate(args: argparse.Namespace) -> int:
    from attnmel.evaluation.calibration import CalibrationFit, calibrate_checkpoint
    from attnmel.evaluation.evaluate import format_calibration
    from attnmel.inference import DataSplit

    checkpoint = checkpoints_or_default(args.checkpoint, log=(lambda *_: None) if args.json else print)
    fit = CalibrationFit(n_bins=args.bins, rule=args.rule, target=args.target_sensitivity, fixed=args.fixed_threshold,
                         alpha=args.alpha, fit=args.fit,
                         detector_data=tuple(DataSplit(d, args.detector_split) for d in args.detector_data))
    result = calibrate_checkpoint(checkpoint, DataSplit(args.data, args.split), fit, inference_settings(args),
                                  write=not args.dry_run, output=args.output)
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
        return 0
    print(f"{args.split}: {result.images} images" + (", 8-view TTA" if result.tta else "")
          + f"; refitted for {result.mode} answers: {', '.join(result.fitted)}")
    print(f"before (temperature {result.previous_temperature:.4g}): {format_calibration(result.before)}")
    print(f"after  (temperature {result.temperature:.4g}): {format_calibration(result.after)}")
    point = result.operating_point
    if point is not None:
        print(f"threshold {point.threshold:.4g} ({point.describe()}): sensitivity {point.sensitivity:.3f} "
              f"[{point.sensitivity_interval[0]:.2f}, {point.sensitivity_interval[1]:.2f}], specificity "
              f"{point.specificity:.3f} [{point.specificity_interval[0]:.2f}, {point.specificity_interval[1]:.2f}]")
    sets = result.conformal
    if sets is not None:
        quantiles = ", ".join(f"{name} {q:.4g}" for name, (q, _) in (sets.per_class or {}).items()) or f"{sets.quantile:.4g}"
        print(f"prediction sets ({sets.kind}, alpha {sets.alpha:g}): a class is in the set when 1 - P(class) <= its "
              f"quantile: {quantiles}")
    detector = result.ood_detector
    if detector is not None and "detector" in result.fitted:
        print(f"OOD detector fitted on {detector.fitted_on}: {detector.rule}; flags {detector.flagged_share:.1%} of "
              f"{detector.threshold_on}")
    for note in result.notes:
        print(f"note: {note}")
    if result.at_bound:
        print("note: the fit stopped at a search bound (validation may be perfectly separated); treat it with care")
    if args.split == "test":
        print("note: fitted on the test split, so later test metrics of this checkpoint are optimistic")
    print(f"wrote the calibrated checkpoint {result.output} (the input {result.checkpoint} is unchanged)"
          if result.written else "dry run: nothing written")
    return 0
