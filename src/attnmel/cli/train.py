"""``attnmel train``."""

from __future__ import annotations

import argparse

from attnmel.cli.options import non_negative_int, whole_number


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="YAML file or preset name (e.g. isic2017/attnmel-lesion); see `attnmel info`")
    parser.add_argument("--data", required=True, action="append", metavar="[NAME=]PATH",
                        help="dataset folder or manifest CSV as downloaded; repeat it to train on several datasets "
                             "(validation comes from the first; NAME defaults to the folder's name and is what "
                             "data.dataset_weights and data.held_out refer to)")
    parser.add_argument("--output", help="run folder (default: runs/<config name>)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value, e.g. --set train.epochs=5 (repeatable)")
    parser.add_argument("--fold", type=non_negative_int, metavar="K",
                        help="cross-validation: validate on fold K (0-based) of --folds N; sets data.fold and data.folds "
                             "(with data.split grouped and data.group_by, or fraction)")
    parser.add_argument("--folds", type=whole_number(2), metavar="N", help="number of cross-validation folds (with --fold)")
    parser.add_argument("--resume", action="store_true", help="continue the run in --output from its last complete epoch")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars (logs only)")
    parser.set_defaults(handler=_train)


def _train(args: argparse.Namespace) -> int:
    from attnmel.errors import ConfigError
    from attnmel.training.loop import train
    from attnmel.training.resume import run_to_start

    if (args.fold is None) != (args.folds is None):
        raise ConfigError("--fold K and --folds N go together (validate on fold K of N).")
    overrides = list(args.overrides) + ([f"data.fold={args.fold}", f"data.folds={args.folds}"] if args.folds else [])
    config, output = run_to_start(args.config, args.output, overrides, resume=args.resume)
    result = train(config, args.data, output, resume=args.resume, progress=not args.no_progress)
    print(f"best epoch {result.best_epoch}: val {config.train.select_metric} {result.best_metric:.4f}")
    print(f"checkpoint: {result.best_checkpoint}")
    return 0
