"""The ``attnmel`` command line: parse arguments, call the library, print. Nothing else lives here.

Each command group is a module with ``register(subparsers)``; handlers return an exit code.
Expected failures (``AttnmelError``) print one actionable line, without a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from attnmel import __version__
from attnmel.errors import AttnmelError

# Command modules, in the order `attnmel --help` lists them.
COMMAND_MODULES = ("data", "train", "evaluate", "calibrate", "predict", "report", "export", "serve", "demo", "info")


def build_parser() -> argparse.ArgumentParser:
    import importlib

    parser = argparse.ArgumentParser(
        prog="attnmel",
        description="Interpretable melanoma recognition with learned visual attention (AttnMel-CNN).",
    )
    parser.add_argument("--version", action="version", version=f"attnmel {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(f"attnmel.cli.{name}").register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except AttnmelError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; completed epochs are kept (resume with --resume)", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
