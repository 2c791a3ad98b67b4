"""Public arguments, checked in one place: every library entry point (``LoadedModel.predict`` and
``infer``, ``predict_images``, ``evaluate_checkpoint``, out-of-fold evaluation) and the CLI's option
parsers use these rules, so ``threshold=nan`` or ``batch_size=-1`` is one ``ConfigError`` naming the
argument, never an answer (everything labelled "other", or no results at all). ``path_name`` is the
one rule for names that become part of a path, so no name (``..``, ``a/../b``) leads a write outside
the folder it was meant for."""

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


#: characters no name that becomes part of a path may hold: separators (both systems'), a drive's colon
_PATH_SEPARATORS = ("/", "\\", ":")
#: longest name in UTF-8 bytes: a file system's 255, less room for what is added to it (".png", "-2")
MAX_NAME_BYTES = 200


def path_name(value: Any) -> str | None:
    """THE rule for every name a user or a file gives that becomes one component of a path (a dataset's
    name in an external-validation folder, a run id in ``stale-<id>/``, a config's run folder, an image
    ID in a figure's file name): joined to a folder, it must name something inside that folder."""
    if not isinstance(value, str) or not value.strip():
        return "must be a non-empty name"
    if value in (".", ".."):
        return "names the folder itself or its parent, not a name inside it"
    found = next((c for c in value if c in _PATH_SEPARATORS or ord(c) < 32 or ord(c) == 127), None)
    if found is not None:
        return f"holds {found!r}, which a name inside a folder cannot hold"
    if len(value.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES:
        return f"is longer than {MAX_NAME_BYTES} bytes, too long for a file name"
    return None


def check_path_name(value: Any, what: str, fix: str = "choose a plain name (letters, digits, - _ .)") -> str:
    """``value`` when ``path_name`` accepts it, else a ``ConfigError`` naming ``what`` and the fix."""
    problem = path_name(value)
    if problem is not None:
        raise ConfigError(f"{what} {value!r} {problem}. Fix: {fix}.")
    return value


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
