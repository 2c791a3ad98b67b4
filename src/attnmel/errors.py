"""One family of errors, each a sentence a person can act on.

Every error that comes from user input names the file (or key) at fault and says how to fix it,
so the CLI can print it without a traceback (see ``attnmel.cli``).
"""

from __future__ import annotations

from pathlib import Path


class AttnmelError(Exception):
    """Base class: an expected failure with a message meant for the user."""


class DataError(AttnmelError):
    """A data file or dataset layout is unusable.

    ``path`` is the offending file or folder; ``fix`` says what the user can do about it.
    """

    def __init__(self, path: str | Path | None, problem: str | None = None, fix: str | None = None):
        if problem is None:
            # Rebuilt from a message alone: a DataLoader worker re-raises ``type(exc)(traceback_text)``.
            # Keep the original one-line message (the traceback's last line), so the file stays named.
            path, problem = None, _last_line(str(path))
        self.path = None if path is None else Path(path)
        self.problem = problem
        self.fix = fix
        where = f"{self.path}: " if self.path is not None else ""
        message = f"{where}{problem}"
        if fix:
            message += f" Fix: {fix}"
        super().__init__(message)


def _last_line(text: str) -> str:
    line = text.strip().splitlines()[-1] if text.strip() else text
    return line.split(": ", 1)[1] if line.startswith(f"{__name__}.DataError: ") else line


class ConfigError(AttnmelError):
    """A configuration file or override is invalid."""


class CheckpointError(AttnmelError):
    """A checkpoint is missing, unreadable, or not trusted."""


class WeightsError(AttnmelError):
    """Backbone weights could not be obtained or do not fit the backbone."""


class TrainingError(AttnmelError):
    """Training cannot continue (diverged loss, out of memory, ...); the last good checkpoint is kept."""


class OutputError(AttnmelError):
    """A result cannot be written (read-only folder, full disk, no permission); what was there is kept."""

    def __init__(self, path: str | Path, reason: str):
        self.path = Path(path)
        super().__init__(f"{self.path}: cannot write here ({reason}); what was there before is unchanged. "
                         "Fix: choose a writable output folder with free space (--output).")
