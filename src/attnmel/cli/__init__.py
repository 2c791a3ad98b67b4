"""The ``attnmel`` command line: parse arguments, call the library, print. Nothing else lives here.

Each command is a module with ``register(parser)``, which declares its options, and a handler that
imports the library it calls and returns an exit code. Only the command being run is imported,
so ``attnmel --version``, ``--help`` and light commands (``data check``, ``report``) never import
torch. Expected failures (``AttnmelError``) print one actionable line, without a traceback.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

from attnmel.cli.options import Parser
from attnmel.errors import AttnmelError
from attnmel.version import __version__

#: command -> one-line help, in the order ``attnmel --help`` lists them; ``attnmel.cli.<command>`` implements it
COMMANDS = {
    "data": "inspect datasets: integrity check, statistics, decode-once cache",
    "train": "train a model (a paper row preset or your YAML)",
    "evaluate": "metrics, curves and ISIC-format predictions for a split (default: the shipped model)",
    "calibrate": "refit temperature, threshold, prediction sets and OOD detector on your data into a new checkpoint",
    "predict": "probabilities and attention figures for images (default: the shipped model)",
    "yardstick": "judge a training recipe on several sites at once: grouped cross-validation and held-out lesions",
    "compare": "two models on the same images: each metric's difference with its interval and p-value",
    "report": "evaluations side by side with the paper's numbers (markdown + HTML)",
    "export": "ONNX (or a clean safetensors checkpoint) plus a model card (default: the shipped model)",
    "serve": "HTTP service and web page: probability plus attention maps (default: the shipped model)",
    "demo": "the shipped model on images it never saw, and a short training run (CPU, minutes)",
    "info": "list models, backbones, pretrained models and config presets",
}


def build_parser(command: str | None = None) -> Parser:
    """The parser; only ``command``'s options are registered (every command is listed by name)."""
    parser = Parser(
        prog="attnmel",
        description="Interpretable melanoma recognition with learned visual attention (AttnMel-CNN).",
    )
    parser.add_argument("--version", action="version", version=f"attnmel {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True, parser_class=Parser)
    for name, help_text in COMMANDS.items():
        sub = subparsers.add_parser(name, help=help_text, description=help_text[0].upper() + help_text[1:] + ".")
        if name == command:
            importlib.import_module(f"attnmel.cli.{name}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((arg for arg in argv if not arg.startswith("-")), None)
    parser = build_parser(command if command in COMMANDS else None)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version (0) or a bad option (2, one line already printed)
        return int(exc.code or 0)
    try:
        return int(args.handler(args) or 0)
    except AttnmelError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        from attnmel.io import WRITE_ERRNOS

        if exc.errno not in WRITE_ERRNOS:
            raise
        print(f"error: {exc.filename or 'output'}: cannot write here ({exc.strerror}). "
              "Fix: choose a writable output folder with free space (--output).", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted" + (f"; {INTERRUPTED[args.command]}" if args.command in INTERRUPTED else ""), file=sys.stderr)
        return 130


_NO_SET = ("this run's outputs are incomplete and carry no output manifest, so compare and report will not "
           "read them; run the command again")
#: what Ctrl-C leaves behind, by command: only training has epochs to resume from
INTERRUPTED = {"train": "completed epochs are kept (resume with --resume)",
               "yardstick": "finished folds and epochs are kept (run the same command again to go on)", "evaluate": _NO_SET, "predict": _NO_SET,
    "compare": _NO_SET, "export": _NO_SET}


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
