"""Pre-flight: every image's header and end marker, and every mask the attention prior will read,
checked before a run's first step, so a truncated download fails in seconds instead of hours into
the run.
"""

from __future__ import annotations

from attnmel.data.images import verify_image, verify_mask
from attnmel.data.masks import RoiSpec, region_paths
from attnmel.data.records import Problem, Sample
from attnmel.errors import DataError


def preflight(samples: list[Sample], skip_bad: bool, roi: RoiSpec | None) -> tuple[list[Sample], list[Problem]]:
    """Check every image's (and needed mask's) header and end, which is cheap; with ``skip_bad``
    the bad ones are left out and returned as problems instead of raising."""
    good, bad = [], []
    for sample in samples:
        try:
            size = verify_image(sample.image_path)
            for mask in region_paths(sample, roi) if roi is not None else []:
                verify_mask(mask, size)
        except DataError as exc:
            if not skip_bad:
                raise
            bad.append(Problem(exc.path, "unreadable_image", f"{exc.problem} (skipped)"))
            continue
        good.append(sample)
    return good, bad

