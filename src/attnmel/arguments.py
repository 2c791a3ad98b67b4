"""Public arguments, checked in one place: every library entry point (``LoadedModel.predict`` and
``infer``, ``predict_images``, ``evaluate_checkpoint``, out-of-fold evaluation) and the CLI's option
parsers use these rules, so ``threshold=nan`` or ``batch_size=-1`` is one ``ConfigError`` naming the
argument, never an answer (everything labelled "other", or no results at all)."""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from typing import Any

from attnmel.errors import ConfigError

#: a rule returns what is wrong with a value (None when it is fine)
Rule = Callable[[Any], str | None]


def whole_number(low: int) -> Rule:
    def rule(value: Any) -> str | None:
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
            return f"must be a whole number of at least {low}"
        return None

    return rule


def fraction(value: Any) -> str | None:
    """A probability threshold: a finite number in [0, 1) (positive when p > threshold)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not (math.isfinite(value) and 0 <= value < 1):
        return "must be a number in [0, 1)"
    return None


def threshold(value: Any) -> str | None:
    """A decision threshold: a finite number in [0, 1]; 1 calls nothing positive (a stored "fixed" rule may)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not (math.isfinite(value) and 0 <= value <= 1):
        return "must be a number in [0, 1]"
    return None


def optional(rule: Rule) -> Rule:
    return lambda value: None if value is None else rule(value)


def flag(value: Any) -> str | None:
    return None if value is None or isinstance(value, bool) else "must be True, False or None"


RULES: dict[str, Rule] = {
    "threshold": optional(threshold),
    "mask_threshold": fraction,
    "batch_size": whole_number(1),
    "num_workers": whole_number(0),
    "calibration_bins": whole_number(1),
    "tta": flag,
}


def check_arguments(**values: Any) -> None:
    """Raise ``ConfigError`` for the first value its rule (``RULES``, by argument name) refuses."""
    for name, value in values.items():
        problem = RULES[name](value)
        if problem is not None:
            raise ConfigError(f"{name}={value!r}: {problem}.")
