"""Atomic file writes: a crash or SIGKILL leaves either the old file or the new one, never half.

Write to a temporary file in the same folder, fsync it, rename it over the target, fsync the folder.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import math
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from attnmel.errors import OutputError

#: errors that mean "this place cannot be written", as opposed to a bug
WRITE_ERRNOS = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


@contextlib.contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to ``target``; on success it replaces ``target`` atomically.

    A folder that cannot be written (read-only, full, no permission) is an ``OutputError`` naming
    ``target``; the previous file, if any, is left as it was."""
    target = Path(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as exc:
        raise _output_error(target, exc) from None
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        # mkstemp creates 0600, and some writers (safetensors) replace the file with a 0600 one:
        # give the result the permissions any new file gets under the umask, so colleagues can read runs
        os.chmod(tmp, 0o666 & ~_UMASK)
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, target)
        _fsync_dir(target.parent)
    except OSError as exc:
        if exc.errno in WRITE_ERRNOS:
            raise _output_error(target, exc) from None
        raise
    finally:
        if tmp.exists():
            tmp.unlink()


def _output_error(target: Path, exc: OSError) -> OSError | OutputError:
    return OutputError(target, exc.strerror or str(exc)) if exc.errno in WRITE_ERRNOS else exc


def file_sha256(path: str | Path) -> str:
    """The SHA-256 of a file's bytes (hex), read in blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def remove_stale_temporaries(folder: str | Path) -> list[Path]:
    """Delete the temporary files that writes killed mid-way left in ``folder`` (a VGG training
    state is ~1 GB); call it only where no other process is writing."""
    removed = []
    for path in Path(folder).glob(".*.tmp"):
        if path.is_file():
            path.unlink()
            removed.append(path)
    return removed


def atomic_write_bytes(target: str | Path, data: bytes) -> None:
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(target: str | Path, text: str) -> None:
    atomic_write_bytes(target, text.encode("utf-8"))


def atomic_write_json(target: str | Path, payload: Any) -> None:
    """Strict JSON: NaN and infinities (undefined metrics) are written as null."""
    text = json.dumps(json_safe(payload), indent=2, sort_keys=False, allow_nan=False)
    atomic_write_text(target, text + "\n")


def json_safe(value: Any) -> Any:
    """A copy that strict JSON can hold: NaN/inf become None; numpy values, paths and tuples become
    plain numbers, strings and lists."""
    if hasattr(value, "tolist") and not isinstance(value, list | tuple | dict):
        value = value.tolist()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _read_umask()


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # some filesystems do not allow opening folders
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def progress_bar(iterable: Any = None, show: bool = True, **options: Any):
    """A tqdm bar that draws only on a terminal: written to a log file, carriage-return updates
    would flood it (tqdm's ``disable=None`` turns the bar off when stderr is not a TTY)."""
    from tqdm import tqdm

    return tqdm(iterable, disable=None if show else True, **options)
