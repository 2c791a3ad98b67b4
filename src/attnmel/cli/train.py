"""``attnmel train``."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="YAML file or preset name (e.g. isic2017/attnmel-lesion); see `attnmel info`")
    parser.add_argument("--data", required=True, help="dataset folder or manifest CSV")
    parser.add_argument("--output", help="run folder (default: runs/<config name>)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value, e.g. --set train.epochs=5 (repeatable)")
    parser.add_argument("--resume", action="store_true", help="continue the run in --output from its last complete epoch")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars (logs only)")
    parser.set_defaults(handler=_train)


def _train(args: argparse.Namespace) -> int:
    from attnmel.config import load_config
    from attnmel.errors import ConfigError
    from attnmel.training.loop import train
    from attnmel.training.resume import run_config

    if args.config:
        config = load_config(args.config, args.overrides)
    elif args.resume and args.output:
        config = run_config(args.output, args.overrides)
    else:
        raise ConfigError("--config is required (a YAML file or a preset such as isic2017/attnmel); "
                          "to resume, give --output RUN --resume.")
    output = Path(args.output or Path("runs") / config.name)
    result = train(config, args.data, output, resume=args.resume, progress=not args.no_progress)
    print(f"best epoch {result.best_epoch}: val {config.train.select_metric} {result.best_metric:.4f}")
    print(f"checkpoint: {result.best_checkpoint}")
    return 0
