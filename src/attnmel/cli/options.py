"""Options shared by several commands, with their values checked where they are parsed.

An option means the same thing in every command that takes it (``--workers``: images decoded in
parallel; ``--batch-size``: images per forward pass; ``--device``; ``--trust-pickle``), and a bad
value is one line naming the option and what it accepts.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable


class Parser(argparse.ArgumentParser):
    """``argparse`` with one-line errors: ``error: <command>: <problem>`` and exit code 2."""

    def error(self, message: str):  # noqa: D401 - argparse's signature
        print(f"error: {self.prog}: {message} (see `{self.prog} --help`)", file=sys.stderr)
        raise SystemExit(2)


def whole_number(low: int, high: int | None = None, what: str = "") -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < low or (high is not None and value > high):
            bound = f"from {low} to {high}" if high is not None else f"of at least {low}"
            raise argparse.ArgumentTypeError(f"must be a whole number {bound}{what}, not {text!r}")
        return value

    return parse


def _fraction(text: str) -> float:
    from attnmel.arguments import fraction as rule  # the library's own rule, so both doors agree

    try:
        value = float(text)
    except ValueError:
        value = -1.0
    problem = rule(value)
    if problem is not None:
        raise argparse.ArgumentTypeError(f"{problem}, not {text!r}")
    return value


def decimal(low: float, *, above: bool, unit: str = "") -> Callable[[str], float]:
    """A finite number above ``low`` (or at least ``low``), e.g. megabytes or milliseconds."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = float("nan")
        if not (value > low if above else value >= low) or value == float("inf"):
            raise argparse.ArgumentTypeError(f"must be {'above' if above else 'at least'} {low:g}{unit}, not {text!r}")
        return value

    return parse


positive_int = whole_number(1)
non_negative_int = whole_number(0)
port_number = whole_number(1, 65535, " (a TCP port)")
fraction = _fraction


def _level(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must be a confidence level between 0 and 1 (e.g. 0.95), not {text!r}")
    return value


#: the library's defaults (``attnmel.metrics.intervals``; a test keeps them equal), here so that
#: ``--help`` does not import scipy
CI_LEVEL, BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED, MIN_RESAMPLES = 0.95, 2000, 0, 100
CI_METHODS = ("percentile", "bca")


def add_intervals(parser: argparse.ArgumentParser, *, can_disable: bool = True) -> None:
    """``--ci-level``, ``--bootstrap``, ``--seed``, ``--ci-method`` (and ``--no-ci``): confidence intervals."""
    parser.add_argument("--ci-level", type=_level, default=CI_LEVEL, metavar="LEVEL",
                        help=f"confidence level of the intervals (default {CI_LEVEL})")
    parser.add_argument("--bootstrap", type=whole_number(MIN_RESAMPLES), default=BOOTSTRAP_RESAMPLES, metavar="N",
                        help=f"bootstrap resamples, stratified by class (default {BOOTSTRAP_RESAMPLES}; "
                             "ROC AUC uses DeLong's interval)")
    parser.add_argument("--seed", type=non_negative_int, default=BOOTSTRAP_SEED,
                        help=f"seed of the bootstrap resampling (default {BOOTSTRAP_SEED})")
    parser.add_argument("--ci-method", choices=CI_METHODS, default=CI_METHODS[0],
                        help="bootstrap interval: percentile (default) or bca (bias-corrected and accelerated)")
    if can_disable:
        parser.add_argument("--no-ci", action="store_true", help="no confidence intervals")


def interval_settings(args: argparse.Namespace):
    """The ``IntervalSettings`` the options ask for, or None under ``--no-ci``."""
    if getattr(args, "no_ci", False):
        return None
    from attnmel.metrics.intervals import IntervalSettings

    return IntervalSettings(args.ci_level, args.bootstrap, args.seed, args.ci_method)


#: InferenceSettings field <- the option's attribute, for the options a command has
_INFERENCE_OPTIONS = {"device": "device", "tta": "tta", "trust_pickle": "trust_pickle", "threshold": "threshold",
                      "batch_size": "batch_size", "workers": "workers"}


def inference_settings(args: argparse.Namespace):
    """The ``InferenceSettings`` of a command's options; those it does not have keep their defaults.
    Progress bars show unless ``--json``."""
    from attnmel.inference.settings import InferenceSettings

    given = {field: getattr(args, name) for field, name in _INFERENCE_OPTIONS.items() if getattr(args, name, None) is not None}
    if hasattr(args, "no_temperature"):
        given["use_temperature"] = not args.no_temperature
    return InferenceSettings(**given, progress=not getattr(args, "json", False))


def add_trust_pickle(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--trust-pickle", action="store_true",
                        help="also load legacy torch.save (pickle) checkpoints; unpickling can run code, "
                             "so only for files from a source you trust")


def add_workers(parser: argparse.ArgumentParser, default: int | None = 0) -> None:
    shown = "CPU count, at most 8" if default is None else str(default)
    parser.add_argument("--workers", type=non_negative_int, default=default, metavar="N",
                        help=f"images decoded in parallel by N workers; 0 decodes in this process (default: {shown})")


def add_batch_size(parser: argparse.ArgumentParser, default: int) -> None:
    parser.add_argument("--batch-size", type=positive_int, default=default, metavar="N",
                        help=f"images per forward pass (default: {default})")


def add_device(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda or cuda:N")


def add_checkpoint(parser: argparse.ArgumentParser, *, ensemble: bool = True) -> None:
    parser.add_argument(
        "--checkpoint", action="append" if ensemble else "store", default=None, metavar="PATH_OR_TAG",
        help="best.safetensors, a run folder, or a pretrained tag (`attnmel info`)"
             + ("; repeat it to average an ensemble" if ensemble else "")
             + " (default: the model shipped with attnmel)",
    )


def checkpoints_or_default(given: list[str] | str | None, log: Callable[[str], None] = print) -> list[str] | str | None:
    """``given`` as it is, or None (the shipped model) after saying so in one line."""
    if given:
        return given
    from attnmel.checkpoints.pretrained import get_pretrained

    weights = get_pretrained()
    log(f"no --checkpoint: using the shipped model '{weights.tag}' ({weights.description})")
    return None
