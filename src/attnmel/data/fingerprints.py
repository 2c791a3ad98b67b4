"""What a run read, as hashes (``split.json``'s ``fingerprints``): each side's image IDs with the
bytes of their files, so a resumed run can tell it is reading the data it started with.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

from attnmel.data.records import Sample
from attnmel.errors import DataError
from attnmel.io import file_sha256


def fingerprint(samples: Sequence[Sample], key=lambda s: s.image_id) -> str:
    """sha256 over each image's key and the sha256 of its file's bytes, in key order."""
    lines = sorted(f"{key(s)} {_file_hash(s.image_path)}" for s in samples)
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def _file_hash(path: Path) -> str:
    try:
        return file_sha256(path)
    except OSError as exc:
        raise DataError(path, f"cannot read the image ({exc.strerror or exc}).", "check the file.") from None

