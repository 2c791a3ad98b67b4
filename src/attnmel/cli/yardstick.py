"""``attnmel yardstick``."""

from __future__ import annotations

import argparse

from attnmel.cli.options import fraction, non_negative_int, whole_number


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="the recipe: YAML file or preset name (e.g. isic2017/attnmel-shipped)")
    parser.add_argument("--data", required=True, action="append", metavar="[NAME=]PATH",
                        help="the recipe's training datasets; the first is cross-validated over --pool (repeatable)")
    parser.add_argument("--site", action="append", default=[], metavar="[NAME=]PATH",
                        help="a dataset whose held-out lesions every fold model is scored on; held out of training "
                             "where the recipe trains on it (repeatable)")
    parser.add_argument("--runs", required=True, help="folder of the fold runs and the table; give the same one to go on")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a recipe value, e.g. --set model.weights=PATH (repeatable)")
    parser.add_argument("--folds", type=whole_number(2), default=5, help="cross-validation folds (default 5)")
    parser.add_argument("--seeds", type=non_negative_int, nargs="+", default=[0], help="seeds (default 0)")
    parser.add_argument("--pool", default="train+val", help="the first dataset's splits to cross-validate (default train+val)")
    parser.add_argument("--held-out-share", type=fraction, default=0.1,
                        help="share of each --site's lesions held out (default 0.1)")
    parser.add_argument("--score-only", action="store_true", help="train nothing: score the folds that are finished")
    parser.set_defaults(handler=_yardstick)


def _yardstick(args: argparse.Namespace) -> int:
    from attnmel.yardstick import run_yardstick

    result = run_yardstick(args.config, args.data, args.runs, sites=args.site, overrides=args.overrides,
                           folds=args.folds, seeds=args.seeds, pool=args.pool, held_out_share=args.held_out_share,
                           train_missing=not args.score_only)
    if result.sites:
        print(result.to_markdown())
    if result.missing:
        print(f"{len(result.missing)} folds still to train (seed, fold): {result.missing}; run the same command to go on.")
        return 1 if args.score_only and not result.sites else 0
    return 0
