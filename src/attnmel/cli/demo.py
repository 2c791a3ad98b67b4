"""``attnmel demo``."""

from __future__ import annotations

import argparse


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--output", default="demo-output")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override the short training run's config, e.g. --set train.epochs=2")
    parser.add_argument("--no-progress", action="store_true")
    parser.set_defaults(handler=_demo)


def _demo(args: argparse.Namespace) -> int:
    from attnmel.demo import run_demo

    run_demo(args.output, overrides=args.overrides, progress=not args.no_progress)
    return 0
