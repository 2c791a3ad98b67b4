"""What a run read, as hashes (``split.json``'s ``fingerprints``): each side's image IDs with the
bytes of their files, so a resumed run can tell it is reading the data it started with.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

from attnmel.data.masks import RoiSpec, region_paths
from attnmel.data.records import Sample
from attnmel.errors import DataError
from attnmel.io import file_sha256


def fingerprint(samples: Sequence[Sample], key=lambda s: s.image_id) -> str:
    """sha256 over each image's key and the sha256 of its file's bytes, in key order."""
    lines = sorted(f"{key(s)} {_file_hash(s.image_path)}" for s in samples)
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


#: what of an image, besides its pixels, changes what a run learns or selects its best epoch on
LEARNED = ("labels", "datasets", "masks")


def learned_fingerprints(samples: Sequence[Sample], key=lambda s: s.image_id,
                         roi: RoiSpec | None = None) -> dict[str, str]:
    """``LEARNED`` -> sha256 over each image's key and that value: its label, the dataset it came from
    (weights and held-out shares go by dataset name) and, with an attention prior (``roi``), the bytes
    of each mask file the prior reads. Group IDs are left out: they only choose the sides, which the
    image lists record."""
    values = {"labels": lambda s: str(s.label), "datasets": lambda s: str(s.dataset)}
    if roi is not None:
        values["masks"] = lambda s: " ".join(_file_hash(path) for path in prior_files(s, roi)) or "-"
    return {what: hashlib.sha256("\n".join(sorted(f"{key(s)} {value(s)}" for s in samples)).encode()).hexdigest()
            for what, value in values.items()}


def prior_files(sample: Sample, roi: RoiSpec) -> list[Path]:
    """Every file the attention prior reads for ``sample``: ``region_paths``, and an ISIC 2017 Part 2
    superpixel map with its features JSON where the dermoscopic region comes from them."""
    paths = list(region_paths(sample, roi))
    if roi.kind == "dermo" and not sample.attribute_paths and sample.superpixel_paths is not None:
        paths += list(sample.superpixel_paths)
    return paths


def _file_hash(path: Path) -> str:
    try:
        return file_sha256(path)
    except OSError as exc:
        raise DataError(path, f"cannot read the image ({exc.strerror or exc}).", "check the file.") from None

